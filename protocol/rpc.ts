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

import { DisposedError, timer, type Disposable } from "./disposable.js";
import type { JsonObject, JsonValue } from "./jupyter.js";
import { decodeValue, encodeValue } from "./values.js";

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
  /** `cause` tells why a call was given up locally, e.g. a DisposedError when its owner shut down. */
  constructor(info: RpcErrorInfo, options?: { cause?: unknown }) {
    super(info.message, options);
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

/** What a called function came to: its result (not yet encoded), or the error to answer with. */
export type CallOutcome = { value: unknown } | { error: RpcErrorInfo };

/** A reply's payload as it travels, and the binary parts of its value. */
export interface EncodedReply {
  payload: { value: JsonValue; nbuf?: number } | { error: RpcErrorInfo };
  buffers: Uint8Array[];
}

/** Encodes an outcome for a reply; a result that cannot travel becomes error -32002. */
export function encodeReply(outcome: CallOutcome): EncodedReply {
  if ("error" in outcome) return { payload: { error: outcome.error }, buffers: [] };
  let encoded;
  try {
    encoded = encodeValue(outcome.value === undefined ? null : outcome.value);
  } catch (err) {
    return { payload: { error: errorInfo(RpcCode.RESULT_NOT_SERIALIZABLE, err) }, buffers: [] };
  }
  const payload: { value: JsonValue; nbuf?: number } = { value: encoded.json };
  if (encoded.buffers.length > 0) payload.nbuf = encoded.buffers.length;
  return { payload, buffers: encoded.buffers };
}

export interface RunCallOptions<F> {
  /** The function registered under the called name, if any. */
  handler: F | undefined;
  /** The -32601 message when nothing is registered under the name (it may list what is). */
  notFound: () => string;
  /** The call's encoded `[args, kwargs]` and its binary parts. */
  value: JsonValue;
  buffers: Uint8Array[];
  /** How this side calls its functions: `fn(args, kwargs)` in the program, `fn(...args)` in a page. */
  invoke: (handler: F, args: unknown[], kwargs: { [key: string]: unknown }) => unknown;
  /** Called exactly once, synchronously or when the function's promise settles. */
  reply: (outcome: CallOutcome) => void;
}

/**
 * Answers an incoming call on either side: -32601 when nothing is registered, -32602 when the arguments do
 * not decode to `[args, kwargs]`, -32001 when the function throws or its promise rejects, else its result.
 */
export function runCall<F>(options: RunCallOptions<F>): void {
  const { handler, reply } = options;
  if (handler === undefined) {
    reply({ error: { code: RpcCode.METHOD_NOT_FOUND, message: options.notFound() } });
    return;
  }
  let params;
  try {
    params = splitParams(decodeValue(options.value, options.buffers));
  } catch (err) {
    params = `the arguments could not be decoded: ${String(err)}`;
  }
  if (typeof params === "string") {
    reply({ error: { code: RpcCode.INVALID_PARAMS, message: params } });
    return;
  }
  let result: unknown;
  try {
    result = options.invoke(handler, params.args, params.kwargs);
  } catch (err) {
    reply({ error: errorInfo(RpcCode.EXCEPTION, err) });
    return;
  }
  Promise.resolve(result).then(
    (value) => reply({ value }),
    (err: unknown) => reply({ error: errorInfo(RpcCode.EXCEPTION, err) }),
  );
}

export interface PendingCallsOptions {
  /** Who owns the calls, for errors: "tsnb_comm", "comms". */
  owner: string;
  /** Why calls fail once the table is disposed, e.g. "tsnb_comm was closed". */
  closedReason: string;
}

export interface PendingCallOptions<T> {
  /** Names the call in errors, e.g. `tsnb_comm.call("sum")`. */
  label: string;
  timeoutMs: number;
  /** Runs when the deadline passes, just before the call fails with -32005 (to tell the other side to give up). */
  onTimeout?: () => void;
  /** The owner's own bookkeeping for the call (what to send, whether it went out...). */
  data: T;
}

interface PendingCall<T> {
  label: string;
  data: T;
  resolve(value: unknown): void;
  reject(error: RpcError): void;
  deadline: Disposable;
}

/**
 * Calls this side made and the other side has not answered yet, by call id: one table for the page's
 * `tsnb_comm.call` and the program's `comms.callFrontend`. Every call ends exactly once: with its reply,
 * at its deadline (-32005), when the owner gives it up (`rejectIf`), or when the table is disposed
 * (-32004, with a DisposedError as `cause`); no call is ever left pending.
 */
export class PendingCalls<T = undefined> implements Disposable {
  private readonly calls = new Map<string, PendingCall<T>>();
  private disposed = false;

  constructor(private readonly options: PendingCallsOptions) {}

  /** Starts waiting for call `id`'s reply. The promise rejects only with an RpcError. */
  add(id: string, call: PendingCallOptions<T>): Promise<unknown> {
    if (this.disposed) return Promise.reject(this.closedError(call.label));
    if (this.calls.has(id)) return Promise.reject(new Error(`${call.label}: call id "${id}" is already pending`));
    return new Promise<unknown>((resolve, reject) => {
      const deadline = timer(call.timeoutMs, () => {
        if (this.calls.get(id)?.deadline !== deadline) return;
        this.calls.delete(id);
        call.onTimeout?.();
        reject(new RpcError({ code: RpcCode.TIMEOUT, message: `${call.label} got no answer within ${call.timeoutMs} ms` }));
      });
      this.calls.set(id, { label: call.label, data: call.data, resolve, reject, deadline });
    });
  }

  /** The owner's data for a pending call. */
  get(id: string): T | undefined {
    return this.calls.get(id)?.data;
  }

  /** Pending calls' ids and data, oldest first. */
  *entries(): IterableIterator<[string, T]> {
    for (const [id, call] of this.calls) yield [id, call.data];
  }

  get size(): number {
    return this.calls.size;
  }

  /**
   * Ends call `id` with the reply that came for it: its error, or its value decoded (one that does not
   * decode fails with -32602, naming `from`, the side that answered). False when `id` is not pending:
   * an answer after the deadline, or to a call given up.
   */
  settle(id: string, reply: { error?: RpcErrorInfo; value?: JsonValue }, buffers: readonly Uint8Array[], from: string): boolean {
    const call = this.take(id);
    if (call === undefined) return false;
    if (reply.error) {
      call.reject(new RpcError(reply.error));
      return true;
    }
    let value: unknown;
    try {
      value = decodeValue(reply.value ?? null, buffers);
    } catch (err) {
      call.reject(new RpcError({ code: RpcCode.INVALID_PARAMS, message: `${from}'s result could not be decoded: ${String(err)}` }));
      return true;
    }
    call.resolve(value);
    return true;
  }

  /** Fails every pending call whose data matches, with the error `makeError` builds from its label. */
  rejectIf(matches: (data: T) => boolean, makeError: (label: string) => RpcError): number {
    let count = 0;
    for (const [id, call] of [...this.calls]) {
      if (!matches(call.data)) continue;
      this.take(id);
      call.reject(makeError(call.label));
      count++;
    }
    return count;
  }

  /** Fails every pending call with -32004 and refuses new ones. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const [id, call] of [...this.calls]) {
      this.take(id);
      call.reject(this.closedError(call.label));
    }
  }

  private take(id: string): PendingCall<T> | undefined {
    const call = this.calls.get(id);
    if (call === undefined) return undefined;
    this.calls.delete(id);
    call.deadline.dispose();
    return call;
  }

  private closedError(label: string): RpcError {
    return new RpcError(
      { code: RpcCode.DISCONNECTED, message: `${label}: ${this.options.closedReason}` },
      { cause: new DisposedError(`${this.options.owner}'s pending calls`) },
    );
  }
}
