// Remote procedure calls over the comms bridge, in both directions, wslink-style:
//   browser -> program: the shim's `tsnb_comm.call(method, args, kwargs)` runs a function the program
//                       registered with `comms.register(method, fn)`;
//   program -> browser: `comms.callFrontend(method, ...args)` runs a function a page registered with
//                       `tsnb_comm.register(method, fn)`.
// The kernel relays calls and replies and remembers which are in flight, so it can answer them itself
// when the side that should answer goes away (a closed comm, a program that exited): no call hangs.
//
// Arguments and results travel like bridge values (protocol/values.ts): JSON with placeholders for typed
// arrays, whose bytes are the message's binary parts (all of them belong to the call or reply). Pure and
// browser-safe.

import type { JsonObject, JsonValue } from "./jupyter.js";

/** wslink's codes, plus the ones tsnb needs because it relays calls across processes. */
export const RpcCode = {
  /** No function is registered under that name. */
  METHOD_NOT_FOUND: -32601,
  /** The arguments could not be decoded (or were not [args, kwargs]). */
  INVALID_PARAMS: -32602,
  /** The function threw (or its promise rejected). */
  EXCEPTION: -32001,
  /** The function's result cannot travel (a function, a symbol, a cycle...). */
  RESULT_NOT_SERIALIZABLE: -32002,
  /** The program exited or restarted before answering. */
  PROGRAM_EXITED: -32003,
  /** The comm to the browser closed (or none is connected) before an answer came. */
  DISCONNECTED: -32004,
  /** No answer within the caller's timeout. */
  TIMEOUT: -32005,
} as const;

export type RpcCodeValue = (typeof RpcCode)[keyof typeof RpcCode];

/** An error as it travels: wslink's shape. `data.stack` is the remote stack when there is one. */
export interface RpcErrorInfo {
  code: number;
  message: string;
  data?: { stack?: string; [key: string]: JsonValue | undefined };
}

/** A failed remote call, on either side: `code` says which failure (RpcCode), `remoteStack` where it threw. */
export class RpcError extends Error {
  override readonly name = "RpcError";
  readonly code: number;
  readonly data: RpcErrorInfo["data"];
  constructor(info: RpcErrorInfo) {
    super(info.message);
    this.code = info.code;
    this.data = info.data;
  }
  get remoteStack(): string | undefined {
    return this.data?.stack;
  }
  toJSON(): RpcErrorInfo {
    const out: RpcErrorInfo = { code: this.code, message: this.message };
    if (this.data !== undefined) out.data = this.data;
    return out;
  }
}

/** The info of an error thrown by a called function: message, and stack as `data.stack`. */
export function errorInfo(code: number, error: unknown): RpcErrorInfo {
  if (error instanceof RpcError) return error.toJSON();
  if (error instanceof Error) {
    const info: RpcErrorInfo = { code, message: `${error.name}: ${error.message}` };
    if (typeof error.stack === "string") info.data = { stack: error.stack };
    return info;
  }
  return { code, message: String(error) };
}

/** Longest method name accepted: names, not payloads. */
export const MAX_METHOD_LENGTH = 256;
/** Longest call id accepted. */
export const MAX_CALL_ID_LENGTH = 128;

/** The payload of a call or reply: an encoded value (placeholders) and how many binary parts it uses. */
export interface RpcPayload {
  value: JsonValue;
  /** Binary parts of the message that belong to the value (all of them; omitted when 0). */
  nbuf?: number;
}

export function isObject(v: unknown): v is { [key: string]: unknown } {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

export function checkMethod(v: unknown): string | null {
  if (typeof v !== "string" || v === "") return '"method" must be a non-empty string';
  if (v.length > MAX_METHOD_LENGTH) return `"method" is longer than ${MAX_METHOD_LENGTH} characters`;
  return null;
}

export function checkCallId(v: unknown): string | null {
  if (typeof v !== "string" || v === "" || v.length > MAX_CALL_ID_LENGTH) return `"id" must be a non-empty string of at most ${MAX_CALL_ID_LENGTH} characters`;
  return null;
}

/** Checks that a message's `value`/`nbuf` fit its binary parts. */
export function checkPayload(data: { [key: string]: unknown }, bufferCount: number): string | null {
  if (!("value" in data)) return '"value" is missing';
  const nbuf = data.nbuf ?? 0;
  if (typeof nbuf !== "number" || !Number.isSafeInteger(nbuf) || nbuf < 0) return '"nbuf" must be a non-negative integer';
  if (nbuf !== bufferCount) return `"nbuf" says ${nbuf} binary parts but the message carries ${bufferCount}`;
  return null;
}

export function checkErrorInfo(v: unknown): RpcErrorInfo | string {
  if (!isObject(v)) return '"error" must be an object';
  if (typeof v.code !== "number" || !Number.isInteger(v.code)) return '"error.code" must be an integer';
  if (typeof v.message !== "string") return '"error.message" must be a string';
  const info: RpcErrorInfo = { code: v.code, message: v.message };
  if (isObject(v.data)) info.data = v.data as JsonObject;
  return info;
}

/**
 * A reply carries exactly one of `value` (with its binary parts) and `error` (with none). Returns the
 * parsed outcome or what is wrong.
 */
export type ReplyOutcome = { ok: true; value: JsonValue; nbuf: number } | { ok: false; error: RpcErrorInfo };

export function parseReplyOutcome(data: { [key: string]: unknown }, bufferCount: number): ReplyOutcome | string {
  if ("error" in data && data.error !== undefined) {
    if ("value" in data) return 'a reply carries "value" or "error", not both';
    if (bufferCount !== 0) return `an error reply carries ${bufferCount} unexpected binary parts`;
    const info = checkErrorInfo(data.error);
    return typeof info === "string" ? info : { ok: false, error: info };
  }
  const e = checkPayload(data, bufferCount);
  if (e) return e;
  return { ok: true, value: data.value as JsonValue, nbuf: bufferCount };
}

/** Call arguments as they travel: `[args, kwargs]`. Checks the decoded shape. */
export function splitParams(params: unknown): { args: unknown[]; kwargs: { [key: string]: unknown } } | string {
  if (!Array.isArray(params) || params.length !== 2) return "call parameters must be [args, kwargs]";
  const [args, kwargs] = params as [unknown, unknown];
  if (!Array.isArray(args)) return "call args must be a list";
  if (!isObject(kwargs)) return "call kwargs must be an object";
  return { args, kwargs };
}
