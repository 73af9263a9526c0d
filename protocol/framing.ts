// The pipe framing between the kernel and user programs (documented in PIPES.md). Pure, browser-safe.
//
//   u32 big-endian  headerLength
//   headerLength    UTF-8 JSON object: { "v": 1, "op": "...", ..., "buffers": [len0, len1, ...] }
//   len0 bytes, len1 bytes, ...   raw binary parts, concatenated, in the order of "buffers"
//
// "buffers" may be omitted when there are none.

import type { JsonObject } from "./jupyter.js";

export const FRAMING_VERSION = 1;

export interface FrameLimits {
  /** Largest JSON header accepted, in bytes. */
  maxHeaderBytes: number;
  /** Largest total of binary parts in one frame, in bytes. */
  maxBufferBytes: number;
}

export const DEFAULT_FRAME_LIMITS: FrameLimits = {
  maxHeaderBytes: 64 * 1024 * 1024,
  maxBufferBytes: 256 * 1024 * 1024,
};

export interface RawFrame {
  header: JsonObject & { op: string };
  buffers: Uint8Array[];
}

export type FrameError =
  | { type: "header_too_large"; length: number; limit: number }
  | { type: "buffers_too_large"; length: number; limit: number }
  | { type: "bad_json"; detail: string }
  | { type: "bad_header"; detail: string };

export function describeFrameError(error: FrameError): string {
  switch (error.type) {
    case "header_too_large":
      return `frame header of ${error.length} bytes exceeds the ${error.limit}-byte limit`;
    case "buffers_too_large":
      return `frame binary parts of ${error.length} bytes exceed the ${error.limit}-byte limit`;
    case "bad_json":
      return `frame header is not valid JSON: ${error.detail}`;
    case "bad_header":
      return `frame header is invalid: ${error.detail}`;
    default: {
      const unreachable: never = error;
      return String(unreachable);
    }
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes one frame as a list of chunks to write in order (binary parts are not copied). */
export function encodeFrame(header: JsonObject & { op: string }, buffers: readonly Uint8Array[] = []): Uint8Array[] {
  const fullHeader: JsonObject = { v: FRAMING_VERSION, ...header };
  if (buffers.length > 0) fullHeader.buffers = buffers.map((b) => b.byteLength);
  const json = encoder.encode(JSON.stringify(fullHeader));
  const prefix = new Uint8Array(4);
  new DataView(prefix.buffer).setUint32(0, json.byteLength, false);
  return [prefix, json, ...buffers];
}

/**
 * The framed header alone (length prefix and JSON, one array) of a frame whose binary parts have these lengths:
 * for a frame sent in pieces whose binary parts come later.
 */
export function encodeFrameHeader(header: JsonObject & { op: string }, lengths: readonly number[]): Uint8Array {
  const fullHeader: JsonObject = { v: FRAMING_VERSION, ...header };
  if (lengths.length > 0) fullHeader.buffers = [...lengths];
  const json = encoder.encode(JSON.stringify(fullHeader));
  const out = new Uint8Array(4 + json.byteLength);
  new DataView(out.buffer).setUint32(0, json.byteLength, false);
  out.set(json, 4);
  return out;
}

/**
 * Reads the header at the start of a framed message's first bytes (for a message arriving in pieces): the header,
 * its binary parts' lengths and where the binary data starts, or what is wrong. The header must be whole in `bytes`.
 */
export function readFrameHeader(
  bytes: Uint8Array,
  limits: FrameLimits = DEFAULT_FRAME_LIMITS,
): { ok: true; header: RawFrame["header"]; lengths: number[]; dataOffset: number } | { ok: false; error: FrameError } {
  if (bytes.byteLength < 4) return { ok: false, error: { type: "bad_header", detail: "the header is not whole in the first piece" } };
  const length = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, false);
  if (length > limits.maxHeaderBytes) return { ok: false, error: { type: "header_too_large", length, limit: limits.maxHeaderBytes } };
  if (bytes.byteLength < 4 + length) return { ok: false, error: { type: "bad_header", detail: "the header is not whole in the first piece" } };
  const parsed = parseHeader(bytes.subarray(4, 4 + length), limits);
  if (!parsed.ok) return parsed;
  return { ok: true, header: parsed.value.header, lengths: parsed.value.lengths, dataOffset: 4 + length };
}

/** A binary part at least this large that is still arriving is filled in place (see takeParts). */
const FILL_IN_PLACE_BYTES = 1024 * 1024;

interface PendingFrame {
  header: RawFrame["header"];
  lengths: number[];
  total: number;
  /** Binary parts complete so far, in order. */
  parts: Uint8Array[];
  /** The part being filled in place, if any. */
  filling: { out: Uint8Array; filled: number } | null;
}

/**
 * Incremental decoder: feed it chunks as they arrive, get whole frames out. After the first error it
 * stays failed: a stream that lost its framing cannot be resynchronised, so the caller closes the pipe.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private pendingHeader: PendingFrame | null = null;
  /** Bytes already moved out of `chunks` into the pending frame's parts (whole or being filled). */
  private held = 0;
  private failed: FrameError | null = null;

  constructor(private readonly limits: FrameLimits = DEFAULT_FRAME_LIMITS) {}

  get error(): FrameError | null {
    return this.failed;
  }

  /** Bytes received but not yet part of a whole frame. */
  get bufferedBytes(): number {
    return this.buffered + this.held;
  }

  push(chunk: Uint8Array): { frames: RawFrame[]; error: FrameError | null } {
    const frames: RawFrame[] = [];
    if (this.failed) return { frames, error: this.failed };
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.byteLength;
    }
    for (;;) {
      if (this.pendingHeader === null) {
        if (this.buffered < 4) break;
        const lengthBytes = this.peek(4);
        const headerLength = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 4).getUint32(0, false);
        if (headerLength > this.limits.maxHeaderBytes) {
          return this.fail(frames, { type: "header_too_large", length: headerLength, limit: this.limits.maxHeaderBytes });
        }
        if (this.buffered < 4 + headerLength) break;
        this.take(4);
        const parsed = parseHeader(this.take(headerLength), this.limits);
        if (!parsed.ok) return this.fail(frames, parsed.error);
        this.pendingHeader = { ...parsed.value, parts: [], filling: null };
      }
      const pending = this.pendingHeader;
      if (!this.takeParts(pending)) break;
      this.pendingHeader = null;
      this.held = 0;
      frames.push({ header: pending.header, buffers: pending.parts });
    }
    return { frames, error: null };
  }

  private fail(frames: RawFrame[], error: FrameError) {
    this.failed = error;
    this.chunks = [];
    this.buffered = 0;
    this.pendingHeader = null;
    this.held = 0;
    return { frames, error };
  }

  /**
   * Moves the pending frame's binary parts out of `chunks` as their bytes arrive; true once all are there.
   * A large part is allocated once at its final size and filled chunk by chunk: keeping the chunks until the
   * part is complete and then concatenating them would hold it twice (a 100 MB value cost 200 MB at peak).
   */
  private takeParts(pending: PendingFrame): boolean {
    while (pending.parts.length < pending.lengths.length) {
      const n = pending.lengths[pending.parts.length]!;
      if (pending.filling === null) {
        if (this.buffered >= n) {
          pending.parts.push(this.take(n));
          this.held += n;
          continue;
        }
        if (n < FILL_IN_PLACE_BYTES || this.buffered === 0) return false;
        pending.filling = { out: new Uint8Array(n), filled: 0 };
      }
      const fill = pending.filling;
      while (fill.filled < n && this.chunks.length > 0) {
        const chunk = this.chunks[0]!;
        const want = Math.min(n - fill.filled, chunk.byteLength);
        fill.out.set(want === chunk.byteLength ? chunk : chunk.subarray(0, want), fill.filled);
        fill.filled += want;
        this.held += want;
        this.buffered -= want;
        if (want === chunk.byteLength) this.chunks.shift();
        else this.chunks[0] = chunk.subarray(want);
      }
      if (fill.filled < n) return false;
      pending.parts.push(fill.out);
      pending.filling = null;
    }
    return true;
  }

  private peek(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.byteLength >= n) return first.subarray(0, n);
    return this.concat(n, false);
  }

  private take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[0]!;
    if (first.byteLength === n) {
      this.chunks.shift();
      this.buffered -= n;
      return first;
    }
    if (first.byteLength > n) {
      this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return first.subarray(0, n);
    }
    return this.concat(n, true);
  }

  private concat(n: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(n);
    let offset = 0;
    let index = 0;
    while (offset < n) {
      const chunk = this.chunks[index]!;
      const want = Math.min(n - offset, chunk.byteLength);
      out.set(chunk.subarray(0, want), offset);
      offset += want;
      if (consume) {
        if (want === chunk.byteLength) this.chunks.shift();
        else this.chunks[0] = chunk.subarray(want);
      } else {
        index++;
      }
    }
    if (consume) this.buffered -= n;
    return out;
  }
}

function parseHeader(
  bytes: Uint8Array,
  limits: FrameLimits,
):
  | { ok: true; value: { header: RawFrame["header"]; lengths: number[]; total: number } }
  | { ok: false; error: FrameError } {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (err) {
    return { ok: false, error: { type: "bad_json", detail: err instanceof Error ? err.message : String(err) } };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, error: { type: "bad_header", detail: "not a JSON object" } };
  }
  const header = value as JsonObject;
  if (header.v !== FRAMING_VERSION) {
    return { ok: false, error: { type: "bad_header", detail: `unsupported version ${JSON.stringify(header.v)}, expected ${FRAMING_VERSION}` } };
  }
  if (typeof header.op !== "string" || header.op === "") {
    return { ok: false, error: { type: "bad_header", detail: '"op" must be a non-empty string' } };
  }
  const rawLengths = header.buffers ?? [];
  if (!Array.isArray(rawLengths) || !rawLengths.every((n) => typeof n === "number" && Number.isInteger(n) && n >= 0)) {
    return { ok: false, error: { type: "bad_header", detail: '"buffers" must be a list of byte lengths' } };
  }
  const lengths = rawLengths as number[];
  const total = lengths.reduce((a, b) => a + b, 0);
  if (total > limits.maxBufferBytes) {
    return { ok: false, error: { type: "buffers_too_large", length: total, limit: limits.maxBufferBytes } };
  }
  delete header.buffers;
  return { ok: true, value: { header: header as RawFrame["header"], lengths, total } };
}

/**
 * The next `length` bytes of a list of parts (an encoded frame) from a position: a view when inside one part,
 * else a copy. Cutting a frame into chunks this way copies only the chunks that span two parts.
 */
export function sliceParts(
  parts: readonly Uint8Array[],
  length: number,
  from: { partIndex: number; partOffset: number },
): { bytes: Uint8Array; at: { partIndex: number; partOffset: number } } {
  let { partIndex, partOffset } = from;
  const first = parts[partIndex]!;
  let bytes: Uint8Array;
  if (first.byteLength - partOffset >= length) {
    bytes = first.subarray(partOffset, partOffset + length);
    partOffset += length;
  } else {
    bytes = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const p = parts[partIndex]!;
      const take = Math.min(length - filled, p.byteLength - partOffset);
      bytes.set(p.subarray(partOffset, partOffset + take), filled);
      filled += take;
      partOffset += take;
      if (partOffset === p.byteLength && filled < length) {
        partIndex++;
        partOffset = 0;
      }
    }
  }
  // Skip exhausted parts (and empty ones) so the next slice starts on real bytes.
  while (partIndex < parts.length && partOffset === parts[partIndex]!.byteLength) {
    partIndex++;
    partOffset = 0;
  }
  return { bytes, at: { partIndex, partOffset } };
}
