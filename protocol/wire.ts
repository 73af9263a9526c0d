// Jupyter wire frames <-> parsed messages. Pure: the HMAC is injected so this module stays browser-safe.
//
// Frames: [identities..., "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]

import type { Header, JsonObject, JupyterMessage } from "./jupyter.js";

export const DELIMITER = "<IDS|MSG>";
const DELIMITER_BYTES = new TextEncoder().encode(DELIMITER);

/**
 * Signs and verifies the four JSON frames. Node's implementation is HMAC-SHA256 with a constant-time
 * compare (kernel/transport/signer.ts); an empty key signs with "" and accepts only "".
 */
export interface Signer {
  /** Strings are signed as their UTF-8 bytes. */
  sign(parts: readonly (Uint8Array | string)[]): string;
  verify(signature: string, parts: readonly Uint8Array[]): boolean;
}

/** An outgoing frame: bytes, or text that goes on the wire as UTF-8. */
export type WireFrame = Uint8Array | string;

export type DecodeError =
  | { type: "no_delimiter" }
  | { type: "truncated"; frameCount: number }
  | { type: "bad_signature" }
  | { type: "bad_json"; frame: "header" | "parent_header" | "metadata" | "content"; detail: string }
  | { type: "bad_header"; detail: string };

export type DecodeResult =
  | { ok: true; message: JupyterMessage }
  | { ok: false; error: DecodeError; identities: Uint8Array[] };

export function describeDecodeError(error: DecodeError): string {
  switch (error.type) {
    case "no_delimiter":
      return `no "${DELIMITER}" delimiter frame`;
    case "truncated":
      return `truncated message: ${error.frameCount} frames after the delimiter, need at least 5`;
    case "bad_signature":
      return "bad HMAC signature";
    case "bad_json":
      return `invalid JSON in the ${error.frame} frame: ${error.detail}`;
    case "bad_header":
      return `invalid header: ${error.detail}`;
    default: {
      const unreachable: never = error;
      return String(unreachable);
    }
  }
}

function isDelimiter(frame: Uint8Array): boolean {
  if (frame.length !== DELIMITER_BYTES.length) return false;
  for (let i = 0; i < frame.length; i++) if (frame[i] !== DELIMITER_BYTES[i]) return false;
  return true;
}

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

function parseJsonObject(bytes: Uint8Array): { ok: true; value: JsonObject } | { ok: false; detail: string } {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, detail: "not a JSON object" };
  }
  return { ok: true, value: value as JsonObject };
}

function validateHeader(value: JsonObject): { ok: true; header: Header } | { ok: false; detail: string } {
  for (const field of ["msg_id", "msg_type"] as const) {
    if (typeof value[field] !== "string" || value[field] === "") {
      return { ok: false, detail: `"${field}" must be a non-empty string` };
    }
  }
  // Older clients omit some fields; default them rather than refuse the message.
  const str = (v: unknown, fallback: string) => (typeof v === "string" ? v : fallback);
  return {
    ok: true,
    header: {
      msg_id: value.msg_id as string,
      msg_type: value.msg_type as string,
      session: str(value.session, ""),
      username: str(value.username, ""),
      date: str(value.date, ""),
      version: str(value.version, "5.0"),
    },
  };
}

/** Verify the signature over the raw frames first, then parse. Never throws. */
export function decodeFrames(frames: readonly Uint8Array[], signer: Signer): DecodeResult {
  const delimiterIndex = frames.findIndex(isDelimiter);
  if (delimiterIndex < 0) return { ok: false, error: { type: "no_delimiter" }, identities: [] };
  const identities = frames.slice(0, delimiterIndex).map((f) => f);
  const rest = frames.slice(delimiterIndex + 1);
  if (rest.length < 5) {
    return { ok: false, error: { type: "truncated", frameCount: rest.length }, identities };
  }
  const [signatureFrame, headerFrame, parentFrame, metadataFrame, contentFrame] = rest as [
    Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array,
  ];
  let signature: string;
  try {
    signature = decoder.decode(signatureFrame);
  } catch {
    // A signature that is not even UTF-8 cannot match any hex digest.
    return { ok: false, error: { type: "bad_signature" }, identities };
  }
  if (!signer.verify(signature, [headerFrame, parentFrame, metadataFrame, contentFrame])) {
    return { ok: false, error: { type: "bad_signature" }, identities };
  }
  const header = parseJsonObject(headerFrame);
  if (!header.ok) return { ok: false, error: { type: "bad_json", frame: "header", detail: header.detail }, identities };
  const validHeader = validateHeader(header.value);
  if (!validHeader.ok) return { ok: false, error: { type: "bad_header", detail: validHeader.detail }, identities };
  const parent = parseJsonObject(parentFrame);
  if (!parent.ok) return { ok: false, error: { type: "bad_json", frame: "parent_header", detail: parent.detail }, identities };
  const metadata = parseJsonObject(metadataFrame);
  if (!metadata.ok) return { ok: false, error: { type: "bad_json", frame: "metadata", detail: metadata.detail }, identities };
  const content = parseJsonObject(contentFrame);
  if (!content.ok) return { ok: false, error: { type: "bad_json", frame: "content", detail: content.detail }, identities };
  return {
    ok: true,
    message: {
      identities,
      header: validHeader.header,
      parent_header: parent.value as unknown as Header | Record<string, never>,
      metadata: metadata.value,
      content: content.value,
      buffers: rest.slice(5),
    },
  };
}

export interface EncodableMessage {
  identities: readonly Uint8Array[];
  header: Header;
  parent_header: Header | Record<string, never>;
  metadata: JsonObject;
  content: JsonObject;
  buffers: readonly Uint8Array[];
}

/**
 * The frames with the signature and the four JSON parts as strings, which the transport encodes once each with
 * the runtime's native UTF-8 encoder (the browser's and Node's differ).
 */
export function encodeWireFrames(message: EncodableMessage, signer: Signer): WireFrame[] {
  const parts = [
    JSON.stringify(message.header),
    JSON.stringify(message.parent_header),
    JSON.stringify(message.metadata),
    JSON.stringify(message.content),
  ];
  return [...message.identities, DELIMITER, signer.sign(parts), ...parts, ...message.buffers];
}

/** The same frames as bytes (what a receiver sees). */
export function encodeFrames(message: EncodableMessage, signer: Signer): Uint8Array[] {
  return encodeWireFrames(message, signer).map((f) => (typeof f === "string" ? encoder.encode(f) : f));
}
