// ZMTP 3 (https://rfc.zeromq.org/spec/23/ and /spec/37/), the wire protocol of zeromq sockets, for the side of a
// connection that the kernel sees: greeting, the NULL security mechanism's READY handshake, frames and commands.
// Pure: bytes in, events out, so it is tested without sockets (kernel/transport/zmtp.ts does the I/O).
//
// Jupyter signs messages itself (HMAC over the frames), so NULL is the only mechanism a kernel needs; a peer that
// asks for PLAIN or CURVE is refused in the handshake.

import { concatBytes } from "./bytes.js";

export const GREETING_BYTES = 64;
/** Frames larger than this end the connection before they are buffered (zeromq's ZMQ_MAXMSGSIZE, per frame). */
export const DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024;

const FLAG_MORE = 0x01;
const FLAG_LONG = 0x02;
const FLAG_COMMAND = 0x04;

export type SocketType = "ROUTER" | "PUB" | "REP";

/** Which peer socket types each kernel-side type accepts (RFC 23's compatibility table, as libzmq enforces it). */
const COMPATIBLE_PEERS: Record<SocketType, readonly string[]> = {
  ROUTER: ["DEALER", "REQ", "ROUTER"],
  PUB: ["SUB", "XSUB"],
  REP: ["REQ", "DEALER"],
};

export function isCompatiblePeer(own: SocketType, peer: string): boolean {
  return COMPATIBLE_PEERS[own].includes(peer);
}

const ascii = new TextEncoder();
const asciiDecoder = new TextDecoder();

/**
 * Our greeting. We announce 3.0: libzmq then sends subscriptions as plain messages and never starts 3.1 heartbeats
 * we did not ask for. (3.1 commands from a peer that sends them anyway are still understood.)
 */
export function encodeGreeting(): Uint8Array {
  const g = new Uint8Array(GREETING_BYTES);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 0;
  g.set(ascii.encode("NULL"), 12);
  // as-server (byte 32) and the filler stay 0: NULL ignores the role.
  return g;
}

export type GreetingError =
  | { type: "not_zmtp" }
  | { type: "old_version"; major: number }
  | { type: "mechanism"; mechanism: string };

export type Greeting = { major: number; minor: number; mechanism: string };

export function parseGreeting(bytes: Uint8Array): { ok: true; greeting: Greeting } | { ok: false; error: GreetingError } {
  // ZMTP 1.0 peers (libzmq 2.x) start with a length byte instead of the 0xFF signature.
  if (bytes.length < GREETING_BYTES || bytes[0] !== 0xff || (bytes[9]! & 0x01) !== 0x01) return { ok: false, error: { type: "not_zmtp" } };
  const major = bytes[10]!;
  if (major < 3) return { ok: false, error: { type: "old_version", major } };
  let end = 12;
  while (end < 32 && bytes[end] !== 0) end++;
  const mechanism = asciiDecoder.decode(bytes.subarray(12, end));
  if (mechanism !== "NULL") return { ok: false, error: { type: "mechanism", mechanism } };
  return { ok: true, greeting: { major, minor: bytes[11]!, mechanism } };
}

export function describeGreetingError(error: GreetingError): string {
  switch (error.type) {
    case "not_zmtp":
      return "not a ZMTP 3 greeting (an old zeromq, or not zeromq at all)";
    case "old_version":
      return `ZMTP ${error.major}.x is not supported (need 3.0 or later, zeromq 4.x)`;
    case "mechanism":
      return `security mechanism ${JSON.stringify(error.mechanism)} is not supported (Jupyter uses NULL and signs messages itself)`;
    default: {
      const unreachable: never = error;
      return String(unreachable);
    }
  }
}

/** The header that precedes a frame body of `size` bytes. */
export function encodeFrameHeader(size: number, options: { more: boolean; command?: boolean }): Uint8Array {
  const flags = (options.more ? FLAG_MORE : 0) | (options.command ? FLAG_COMMAND : 0);
  if (size < 256) return Uint8Array.of(flags, size);
  const h = new Uint8Array(9);
  h[0] = flags | FLAG_LONG;
  new DataView(h.buffer).setBigUint64(1, BigInt(size));
  return h;
}

/** Below this a frame body is copied next to its header, so a message of small frames is one write. */
const COALESCE_BELOW = 16 * 1024;

/**
 * A multipart message as the chunks to write: headers and small bodies are packed together, large bodies are
 * passed through as they are (no copy of a value's bytes).
 */
export function encodeMessage(frames: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pending: Uint8Array[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    out.push(concatBytes(pending));
    pending = [];
  };
  frames.forEach((body, i) => {
    const header = encodeFrameHeader(body.byteLength, { more: i < frames.length - 1 });
    pending.push(header);
    if (body.byteLength < COALESCE_BELOW) {
      pending.push(body);
    } else {
      flush();
      out.push(body);
    }
  });
  flush();
  return out;
}

export function encodeCommand(name: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const nameBytes = ascii.encode(name);
  const body = new Uint8Array(1 + nameBytes.byteLength + data.byteLength);
  body[0] = nameBytes.byteLength;
  body.set(nameBytes, 1);
  body.set(data, 1 + nameBytes.byteLength);
  return concatBytes([encodeFrameHeader(body.byteLength, { more: false, command: true }), body]);
}

/** READY with its metadata (Socket-Type, and Identity for the types that have one). */
export function encodeReady(properties: Record<string, Uint8Array | string>): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [name, value] of Object.entries(properties)) {
    const n = ascii.encode(name);
    const v = typeof value === "string" ? ascii.encode(value) : value;
    const p = new Uint8Array(1 + n.byteLength + 4 + v.byteLength);
    p[0] = n.byteLength;
    p.set(n, 1);
    new DataView(p.buffer).setUint32(1 + n.byteLength, v.byteLength);
    p.set(v, 1 + n.byteLength + 4);
    parts.push(p);
  }
  return encodeCommand("READY", concatBytes(parts));
}

/** ERROR tells the peer why we hang up (libzmq logs the reason and does not reconnect in a tight loop). */
export function encodeError(reason: string): Uint8Array {
  const r = ascii.encode(reason.slice(0, 255));
  return encodeCommand("ERROR", Uint8Array.of(r.byteLength, ...r));
}

export type Command =
  | { type: "READY"; properties: Map<string, Uint8Array> }
  | { type: "ERROR"; reason: string }
  | { type: "PING"; ttlDeciseconds: number; context: Uint8Array }
  | { type: "PONG"; context: Uint8Array }
  | { type: "SUBSCRIBE"; topic: Uint8Array }
  | { type: "CANCEL"; topic: Uint8Array }
  | { type: "unknown"; name: string };

/** Parses a command frame's body; null when it is malformed (the caller hangs up). */
export function parseCommand(body: Uint8Array): Command | null {
  if (body.byteLength < 1) return null;
  const nameLength = body[0]!;
  if (body.byteLength < 1 + nameLength) return null;
  const name = asciiDecoder.decode(body.subarray(1, 1 + nameLength));
  const data = body.subarray(1 + nameLength);
  switch (name) {
    case "READY": {
      const properties = parseProperties(data);
      return properties === null ? null : { type: "READY", properties };
    }
    case "ERROR": {
      if (data.byteLength < 1 || data.byteLength < 1 + data[0]!) return null;
      return { type: "ERROR", reason: asciiDecoder.decode(data.subarray(1, 1 + data[0]!)) };
    }
    case "PING": {
      if (data.byteLength < 2) return null;
      return { type: "PING", ttlDeciseconds: (data[0]! << 8) | data[1]!, context: data.subarray(2) };
    }
    case "PONG":
      return { type: "PONG", context: data };
    case "SUBSCRIBE":
      return { type: "SUBSCRIBE", topic: data };
    case "CANCEL":
      return { type: "CANCEL", topic: data };
    default:
      return { type: "unknown", name };
  }
}

function parseProperties(data: Uint8Array): Map<string, Uint8Array> | null {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const properties = new Map<string, Uint8Array>();
  let at = 0;
  while (at < data.byteLength) {
    const nameLength = data[at]!;
    if (nameLength === 0 || at + 1 + nameLength + 4 > data.byteLength) return null;
    // Property names are case-insensitive (RFC 37); keep them as the peer sent them, compare lowercased.
    const name = asciiDecoder.decode(data.subarray(at + 1, at + 1 + nameLength)).toLowerCase();
    at += 1 + nameLength;
    const valueLength = view.getUint32(at);
    at += 4;
    if (at + valueLength > data.byteLength) return null;
    properties.set(name, data.subarray(at, at + valueLength));
    at += valueLength;
  }
  return properties;
}

export function pingReply(ping: { context: Uint8Array }): Uint8Array {
  return encodeCommand("PONG", ping.context);
}

export type DecodeEvent =
  | { type: "greeting"; greeting: Greeting }
  | { type: "command"; command: Command }
  | { type: "frame"; body: Uint8Array; more: boolean };

export type StreamError =
  | { type: "greeting"; error: GreetingError }
  | { type: "reserved_flags"; flags: number }
  | { type: "too_large"; size: number; limit: number }
  | { type: "bad_command" };

export function describeStreamError(error: StreamError): string {
  switch (error.type) {
    case "greeting":
      return describeGreetingError(error.error);
    case "reserved_flags":
      return `frame flags 0x${error.flags.toString(16)} use reserved bits`;
    case "too_large":
      return `a frame of ${error.size} bytes is over the ${error.limit}-byte limit`;
    case "bad_command":
      return "malformed command frame";
    default: {
      const unreachable: never = error;
      return String(unreachable);
    }
  }
}

type DecoderState =
  | { type: "greeting"; bytes: Uint8Array; filled: number }
  | { type: "header"; bytes: Uint8Array; filled: number }
  | { type: "body"; flags: number; body: Uint8Array; filled: number }
  | { type: "failed" };

/** Small frames are copied out of the read chunk, so a stored 10-byte buffer does not pin a 64 KiB chunk. */
const SHARE_CHUNK_FROM = 16 * 1024;

/**
 * An incremental reader of one connection's byte stream: the 64-byte greeting, then frames. Feed it chunks as
 * they arrive, in any sizes; it returns what they completed. After an error it stays failed (the connection
 * must be closed: ZMTP cannot resynchronise).
 */
export class ZmtpDecoder {
  private state: DecoderState = { type: "greeting", bytes: new Uint8Array(GREETING_BYTES), filled: 0 };
  private readonly maxFrameBytes: number;

  constructor(options: { maxFrameBytes?: number } = {}) {
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /**
   * Where a reader that can choose its buffer (Node's `onread`) should put the next bytes: the unread rest of a
   * frame body of at least `minBytes`, so a large frame is read in place instead of copied out of read chunks.
   * Null: read anywhere and push() it. After reading n bytes into the view, call pushedInPlace(n).
   */
  inPlaceTarget(minBytes: number): Uint8Array | null {
    const state = this.state;
    if (state.type !== "body" || state.body.byteLength - state.filled < minBytes) return null;
    return state.body.subarray(state.filled);
  }

  pushedInPlace(n: number): { events: DecodeEvent[]; error: StreamError | null } {
    const state = this.state;
    if (state.type !== "body" || n > state.body.byteLength - state.filled) throw new Error("pushedInPlace without an inPlaceTarget");
    state.filled += n;
    if (state.filled < state.body.byteLength) return { events: [], error: null };
    const event = this.frameEvent(state.flags, state.body);
    this.state = { type: "header", bytes: new Uint8Array(9), filled: 0 };
    return event === null ? this.fail([], { type: "bad_command" }) : { events: [event], error: null };
  }

  /** `transient`: the chunk's memory is reused after this call (a reader's scratch buffer), so nothing may view it. */
  push(chunk: Uint8Array, options: { transient?: boolean } = {}): { events: DecodeEvent[]; error: StreamError | null } {
    const shareFrom = options.transient ? Infinity : SHARE_CHUNK_FROM;
    const events: DecodeEvent[] = [];
    let at = 0;
    while (at < chunk.byteLength) {
      const state = this.state;
      switch (state.type) {
        case "failed":
          return { events, error: null };
        case "greeting": {
          const n = Math.min(GREETING_BYTES - state.filled, chunk.byteLength - at);
          state.bytes.set(chunk.subarray(at, at + n), state.filled);
          state.filled += n;
          at += n;
          // The signature alone tells a non-ZMTP peer apart: answer it without waiting for 64 bytes it may never send.
          if (state.filled >= 1 && state.bytes[0] !== 0xff) return this.fail(events, { type: "greeting", error: { type: "not_zmtp" } });
          if (state.filled < GREETING_BYTES) break;
          const parsed = parseGreeting(state.bytes);
          if (!parsed.ok) return this.fail(events, { type: "greeting", error: parsed.error });
          events.push({ type: "greeting", greeting: parsed.greeting });
          this.state = { type: "header", bytes: new Uint8Array(9), filled: 0 };
          break;
        }
        case "header": {
          // Fast path: a whole frame inside this chunk, header included.
          if (state.filled === 0) {
            const whole = this.wholeFrame(chunk, at, shareFrom);
            if (whole.type === "error") return this.fail(events, whole.error);
            if (whole.type === "frame") {
              at = whole.end;
              const event = this.frameEvent(whole.flags, whole.body);
              if (event === null) return this.fail(events, { type: "bad_command" });
              events.push(event);
              break;
            }
          }
          state.bytes[state.filled++] = chunk[at++]!;
          const flags = state.bytes[0]!;
          if ((flags & 0xf8) !== 0) return this.fail(events, { type: "reserved_flags", flags });
          const headerBytes = flags & FLAG_LONG ? 9 : 2;
          if (state.filled < headerBytes) break;
          const size = headerBytes === 2 ? state.bytes[1]! : Number(new DataView(state.bytes.buffer).getBigUint64(1));
          if (size > this.maxFrameBytes) return this.fail(events, { type: "too_large", size, limit: this.maxFrameBytes });
          if (size === 0) {
            const event = this.frameEvent(flags, new Uint8Array(0));
            if (event === null) return this.fail(events, { type: "bad_command" });
            events.push(event);
            this.state = { type: "header", bytes: state.bytes, filled: 0 };
          } else {
            this.state = { type: "body", flags, body: new Uint8Array(size), filled: 0 };
          }
          break;
        }
        case "body": {
          const n = Math.min(state.body.byteLength - state.filled, chunk.byteLength - at);
          state.body.set(chunk.subarray(at, at + n), state.filled);
          state.filled += n;
          at += n;
          if (state.filled < state.body.byteLength) break;
          const event = this.frameEvent(state.flags, state.body);
          if (event === null) return this.fail(events, { type: "bad_command" });
          events.push(event);
          this.state = { type: "header", bytes: new Uint8Array(9), filled: 0 };
          break;
        }
        default: {
          const unreachable: never = state;
          throw new Error(`unknown decoder state ${String(unreachable)}`);
        }
      }
    }
    return { events, error: null };
  }

  /** A frame that lies entirely in `chunk` from `at`, or null when it runs past the chunk's end. */
  private wholeFrame(
    chunk: Uint8Array,
    at: number,
    shareFrom: number,
  ): { type: "frame"; flags: number; body: Uint8Array; end: number } | { type: "partial" } | { type: "error"; error: StreamError } {
    const available = chunk.byteLength - at;
    if (available < 2) return { type: "partial" };
    const flags = chunk[at]!;
    if ((flags & 0xf8) !== 0) return { type: "error", error: { type: "reserved_flags", flags } };
    const long = (flags & FLAG_LONG) !== 0;
    if (long && available < 9) return { type: "partial" };
    const size = long ? Number(new DataView(chunk.buffer, chunk.byteOffset + at + 1, 8).getBigUint64(0)) : chunk[at + 1]!;
    if (size > this.maxFrameBytes) return { type: "error", error: { type: "too_large", size, limit: this.maxFrameBytes } };
    const start = at + (long ? 9 : 2);
    if (start + size > chunk.byteLength) return { type: "partial" };
    const view = chunk.subarray(start, start + size);
    return { type: "frame", flags, body: size >= shareFrom ? view : view.slice(), end: start + size };
  }

  private frameEvent(flags: number, body: Uint8Array): DecodeEvent | null {
    if (flags & FLAG_COMMAND) {
      const command = parseCommand(body);
      return command === null ? null : { type: "command", command };
    }
    return { type: "frame", body, more: (flags & FLAG_MORE) !== 0 };
  }

  private fail(events: DecodeEvent[], error: StreamError): { events: DecodeEvent[]; error: StreamError } {
    this.state = { type: "failed" };
    return { events, error };
  }
}
