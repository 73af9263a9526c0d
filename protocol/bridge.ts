// The browser <-> kernel comm protocol of the tsnb bridge: the `data` of comm_open/comm_msg on the
// `tsnb_comm` target. Flat unions on `op`; `parseBrowserMessage`/`parseKernelMessage` turn unknown JSON
// into a typed message or a clear error. Pure and browser-safe (the shim imports it).
//
// Values are batched: one `values` message carries many items. Each item's value is JSON in which binary
// parts are placeholders (protocol/values.ts) numbered from 0 *within the item*; the item's `nbuf` binary
// parts are the next `nbuf` comm buffers of the message, in item order. So a batch never re-numbers
// placeholders and binary data is never base64.

import type { JsonObject, JsonValue } from "./jupyter.js";
import { decodeValue, encodeValue } from "./values.js";
import { checkCallId, checkMethod, checkPayload, isObject, parseReplyOutcome, type RpcErrorInfo } from "./rpc.js";

/**
 * The shim's latency nudge (frontend-shim/index.ts): a stdin message that only carries the browser's TCP ACK.
 * Either a bare message of this type (classic Notebook pages) or an input_reply whose parent header is
 * NUDGE_PARENT (@jupyterlab/services' public sendInputReply). The kernel drops both before input handling.
 */
export const NUDGE_MSG_TYPE = "tsnb_nudge";
export const NUDGE_PARENT = {
  msg_id: "tsnb-nudge",
  msg_type: NUDGE_MSG_TYPE,
  session: "",
  username: "",
  date: "",
  version: "5.3",
} as const;

export const BRIDGE_TARGET = "tsnb_comm";
export const BRIDGE_VERSION = 1;
/**
 * Pages name their `tsnb_comm` comms with this prefix. The server sends every IOPub message to every
 * connection of a kernel, so a page also sees the comm messages of other pages' comms; the prefix lets
 * it recognise those as another front-end's bridge traffic and ignore them.
 */
export const BRIDGE_COMM_ID_PREFIX = "tsnb-";
/** Longest address accepted, in UTF-16 units: addresses are names, not payloads. */
export const MAX_ADDRESS_LENGTH = 1024;
/**
 * Browser -> kernel messages are chunked below this size: the Jupyter server closes a websocket that
 * receives a message over 10 MiB (tornado's default), so a bigger value would kill the connection.
 */
export const BROWSER_CHUNK_BYTES = 8 * 1024 * 1024;
/**
 * RPC calls and replies from the kernel with more than 1 MiB of binary data are sent in parts of this size
 * (configurable in the kernel's bridge options): the page can show progress, and each part counts against the
 * comm's ack window, so a slow page holds the kernel back. Four fit the kernel's chunk window, so the transfer
 * never waits for a round trip per part. Smaller parts cost more per byte: traced under load, the server
 * delivered 4 MiB parts no faster per message than 16 MiB ones.
 */
export const KERNEL_CHUNK_BYTES = 16 * 1024 * 1024;
/**
 * The last value of an address with at least this much binary data is held by the program, not the kernel: the
 * program has it anyway (it sent it, or subscribed and was given it), and the kernel asks it to replay the value
 * to a front-end that starts listening (`comm_replay`). A kernel that kept it would hold a copy of every large
 * value ever sent, one per address (two 100 MB values: 400+ MB of kernel RSS by the next transfer).
 */
export const HELD_VALUE_BYTES = 16 * 1024 * 1024;
/** Largest chunked message the page reassembles. */
export const MAX_CHUNKED_MESSAGE_BYTES = 1024 * 1024 * 1024;

/** One value in a batch, as it travels: JSON with local placeholders plus its binary parts count. */
export interface WireItem {
  address: string;
  value: JsonValue;
  /** How many of the message's buffers belong to this item (omitted when 0). */
  nbuf?: number;
}

/** One value with its own binary parts, as both ends handle it after splitting a batch. */
export interface ValueItem {
  address: string;
  value: JsonValue;
  buffers: Uint8Array[];
}

// ---- browser -> kernel ---------------------------------------------------------------------------

/** comm_open data sent by the shim. */
export interface OpenData {
  version: number;
}

export type BrowserToKernel =
  /** The browser listens to `address`; the kernel replays the last value and forwards new ones. */
  | { op: "listen"; address: string; latest_only: boolean }
  | { op: "unlisten"; address: string }
  /**
   * `ack` piggybacks flow control on traffic the browser sends anyway: a separate `ack` message costs a
   * busy/idle pair on IOPub, which the server's Nagle-delayed writes turn into a ~40 ms stall.
   */
  | { op: "values"; items: WireItem[]; ack?: number }
  | { op: "pong"; nonce: number }
  /** The shim has handled the `values` batch `seq` and every earlier one (flow control). */
  | { op: "ack"; seq: number }
  /**
   * Part of a message too large for one websocket message: buffer 0 holds the next slice of the
   * message encoded in the pipe framing (protocol/framing.ts). The kernel decodes it once `last`.
   */
  | { op: "chunk"; id: string; index: number; last: boolean }
  | RpcCallMessage
  | RpcReplyMessage
  | RpcBatchMessage;

/**
 * Several calls and replies in one comm message (both directions): calls made in one task go out together,
 * so 1000 concurrent calls cost a few comm messages (and busy/idle pairs) instead of 1000. Each message's
 * `nbuf` binary parts are the next ones of the comm message, in order.
 */
export interface RpcBatchMessage {
  op: "rpc_batch";
  messages: (RpcCallMessage | RpcReplyMessage)[];
}

/**
 * A remote call (protocol/rpc.ts), in either direction: browser -> program (`tsnb_comm.call`) or, from the
 * kernel, program -> browser (`comms.callFrontend`). `value` is the encoded `[args, kwargs]`; all the
 * message's binary parts belong to it.
 */
export interface RpcCallMessage {
  op: "call";
  id: string;
  method: string;
  value: JsonValue;
  nbuf?: number;
}

/** The answer to a call with the same `id`: `value` (+ binary parts) or `error`. */
export interface RpcReplyMessage {
  op: "reply";
  id: string;
  value?: JsonValue;
  nbuf?: number;
  error?: RpcErrorInfo;
}

// ---- kernel -> browser ---------------------------------------------------------------------------

export type KernelToBrowser =
  | { op: "open_ack"; comm_id: string; version: number }
  | { op: "values"; seq: number; items: WireItem[] }
  | { op: "ping"; nonce: number }
  /** The program wants the browser's current value of `address`: a shim holding one sends it. */
  | { op: "read"; address: string }
  /** Something the browser sent was refused; nothing of it reached the program. */
  | { op: "error"; message: string }
  | RpcCallMessage
  | RpcReplyMessage
  /**
   * Part of a large RPC call or reply: buffer 0 holds the next slice of the message in the pipe framing;
   * `total` is the framed size and `call` the call id, so the page can report progress before the end.
   * `seq` is acknowledged like a `values` batch's, as soon as the part arrived.
   */
  | { op: "chunk"; id: string; index: number; last: boolean; total: number; call: string; seq?: number }
  | RpcBatchMessage;

export type BrowserOp = BrowserToKernel["op"];
export type KernelOp = KernelToBrowser["op"];

export type ParseResult<T> = { ok: true; message: T } | { ok: false; error: string };

// ---- validation ----------------------------------------------------------------------------------

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** What is wrong with an address from the browser or a program, or null when it is one. */
export function addressProblem(v: unknown): string | null {
  if (typeof v !== "string" || v === "") return '"address" must be a non-empty string';
  if (v.length > MAX_ADDRESS_LENGTH) return `"address" is longer than ${MAX_ADDRESS_LENGTH} characters`;
  return null;
}

function checkAddress(v: unknown, where: string): string | null {
  const problem = addressProblem(v);
  return problem === null ? null : `${where}: ${problem}`;
}

/** Validates `items` against the number of binary parts that came with the message. */
export function checkItems(items: unknown, bufferCount: number): string | null {
  if (!Array.isArray(items)) return '"items" must be a list';
  let used = 0;
  for (let i = 0; i < items.length; i++) {
    const item: unknown = items[i];
    const where = `items[${i}]`;
    if (!isObject(item)) return `${where} must be an object`;
    const addressError = checkAddress(item.address, where);
    if (addressError) return addressError;
    if (!("value" in item)) return `${where}: "value" is missing`;
    if (item.nbuf !== undefined && !isCount(item.nbuf)) return `${where}: "nbuf" must be a non-negative integer`;
    used += (item.nbuf as number | undefined) ?? 0;
  }
  if (used !== bufferCount) {
    return `the items use ${used} binary parts but the message carries ${bufferCount}`;
  }
  return null;
}

/** Turns the `data` of a comm_msg from the browser into a typed message, or says what is wrong. */
export function parseBrowserMessage(data: unknown, bufferCount: number): ParseResult<BrowserToKernel> {
  if (!isObject(data)) return { ok: false, error: "message data must be a JSON object" };
  const op = data.op;
  if (typeof op !== "string") return { ok: false, error: 'message has no "op"' };
  const fail = (detail: string): ParseResult<BrowserToKernel> => ({ ok: false, error: `"${op}" message: ${detail}` });
  const noBuffers = () => (bufferCount === 0 ? null : `carries ${bufferCount} unexpected binary parts`);
  switch (op) {
    case "listen": {
      const e = checkAddress(data.address, "listen") ?? noBuffers();
      if (e) return fail(e);
      if (data.latest_only !== undefined && typeof data.latest_only !== "boolean") {
        return fail('"latest_only" must be a boolean');
      }
      return { ok: true, message: { op, address: data.address as string, latest_only: data.latest_only === true } };
    }
    case "unlisten": {
      const e = checkAddress(data.address, "unlisten") ?? noBuffers();
      if (e) return fail(e);
      return { ok: true, message: { op, address: data.address as string } };
    }
    case "values": {
      const e = checkItems(data.items, bufferCount);
      if (e) return fail(e);
      if (data.ack !== undefined && !isCount(data.ack)) return fail('"ack" must be a non-negative integer');
      const message: BrowserToKernel = { op, items: data.items as WireItem[] };
      if (data.ack !== undefined) message.ack = data.ack as number;
      return { ok: true, message };
    }
    case "pong": {
      if (!isCount(data.nonce)) return fail('"nonce" must be a non-negative integer');
      return { ok: true, message: { op, nonce: data.nonce } };
    }
    case "ack": {
      if (!isCount(data.seq)) return fail('"seq" must be a non-negative integer');
      return { ok: true, message: { op, seq: data.seq } };
    }
    case "chunk": {
      if (typeof data.id !== "string" || data.id === "" || data.id.length > 128) {
        return fail('"id" must be a short non-empty string');
      }
      if (!isCount(data.index)) return fail('"index" must be a non-negative integer');
      if (typeof data.last !== "boolean") return fail('"last" must be a boolean');
      if (bufferCount !== 1) return fail(`must carry exactly one binary part, got ${bufferCount}`);
      return { ok: true, message: { op, id: data.id, index: data.index, last: data.last } };
    }
    case "call":
    case "reply":
    case "rpc_batch": {
      const parsed = op === "rpc_batch" ? parseRpcBatch(data, bufferCount) : parseRpcMessage(data, bufferCount);
      return typeof parsed === "string" ? fail(parsed) : { ok: true, message: parsed };
    }
    default:
      return { ok: false, error: `unknown op ${JSON.stringify(op).slice(0, 80)}` };
  }
}

/** Validates comm_open data from the browser. */
export function parseOpenData(data: unknown): ParseResult<OpenData> {
  if (!isObject(data)) return { ok: false, error: "comm_open data must be a JSON object" };
  if (data.version !== BRIDGE_VERSION) {
    return { ok: false, error: `unsupported tsnb bridge version ${JSON.stringify(data.version)}, expected ${BRIDGE_VERSION}` };
  }
  return { ok: true, message: { version: BRIDGE_VERSION } };
}

/** The shim's side: the `data` of a comm_msg from the kernel. */
export function parseKernelMessage(data: unknown, bufferCount: number): ParseResult<KernelToBrowser> {
  if (!isObject(data)) return { ok: false, error: "message data must be a JSON object" };
  const op = data.op;
  if (typeof op !== "string") return { ok: false, error: 'message has no "op"' };
  const fail = (detail: string): ParseResult<KernelToBrowser> => ({ ok: false, error: `"${op}" message: ${detail}` });
  switch (op) {
    case "open_ack":
      if (typeof data.comm_id !== "string" || typeof data.version !== "number") return fail("needs comm_id and version");
      return { ok: true, message: { op, comm_id: data.comm_id, version: data.version } };
    case "values": {
      if (!isCount(data.seq)) return fail('"seq" must be a non-negative integer');
      const e = checkItems(data.items, bufferCount);
      if (e) return fail(e);
      return { ok: true, message: { op, seq: data.seq, items: data.items as WireItem[] } };
    }
    case "ping":
      if (!isCount(data.nonce)) return fail('"nonce" must be a non-negative integer');
      return { ok: true, message: { op, nonce: data.nonce } };
    case "read": {
      const e = checkAddress(data.address, "read");
      if (e) return fail(e);
      return { ok: true, message: { op, address: data.address as string } };
    }
    case "error":
      return { ok: true, message: { op, message: typeof data.message === "string" ? data.message : String(data.message) } };
    case "call":
    case "reply":
    case "rpc_batch": {
      const parsed = op === "rpc_batch" ? parseRpcBatch(data, bufferCount) : parseRpcMessage(data, bufferCount);
      return typeof parsed === "string" ? fail(parsed) : { ok: true, message: parsed };
    }
    case "chunk": {
      if (typeof data.id !== "string" || data.id === "") return fail('"id" must be a non-empty string');
      if (!isCount(data.index) || !isCount(data.total) || typeof data.last !== "boolean" || typeof data.call !== "string") {
        return fail("needs index, total, last and call");
      }
      if (data.seq !== undefined && !isCount(data.seq)) return fail('"seq" must be a non-negative integer');
      if (bufferCount !== 1) return fail(`must carry exactly one binary part, got ${bufferCount}`);
      const chunk: KernelToBrowser = { op, id: data.id, index: data.index, last: data.last, total: data.total, call: data.call };
      if (data.seq !== undefined) chunk.seq = data.seq;
      return { ok: true, message: chunk };
    }
    default:
      return { ok: false, error: `unknown op ${JSON.stringify(op).slice(0, 80)}` };
  }
}

/** Validates an `rpc_batch`: every message, and their binary parts against the comm message's. */
export function parseRpcBatch(data: { [key: string]: unknown }, bufferCount: number): RpcBatchMessage | string {
  if (!Array.isArray(data.messages) || data.messages.length === 0) return '"messages" must be a non-empty list';
  const messages: (RpcCallMessage | RpcReplyMessage)[] = [];
  let used = 0;
  for (let i = 0; i < data.messages.length; i++) {
    const m: unknown = data.messages[i];
    if (!isObject(m) || (m.op !== "call" && m.op !== "reply")) return `messages[${i}] must be a call or a reply`;
    const nbuf = m.nbuf ?? 0;
    if (!isCount(nbuf)) return `messages[${i}]: "nbuf" must be a non-negative integer`;
    const parsed = parseRpcMessage(m, nbuf);
    if (typeof parsed === "string") return `messages[${i}]: ${parsed}`;
    messages.push(parsed);
    used += nbuf;
  }
  if (used !== bufferCount) return `the messages use ${used} binary parts but the comm message carries ${bufferCount}`;
  return { op: "rpc_batch", messages };
}

/** Splits a batch's buffers among its messages (views, no copies). */
export function splitRpcBatch(batch: RpcBatchMessage, buffers: readonly Uint8Array[]): { message: RpcCallMessage | RpcReplyMessage; buffers: Uint8Array[] }[] {
  let next = 0;
  return batch.messages.map((message) => {
    const n = message.nbuf ?? 0;
    const own = buffers.slice(next, next + n);
    next += n;
    return { message, buffers: own };
  });
}

/** Validates a `call` or `reply` message (the same shape in both directions). */
export function parseRpcMessage(data: { [key: string]: unknown }, bufferCount: number): RpcCallMessage | RpcReplyMessage | string {
  const idError = checkCallId(data.id);
  if (idError) return idError;
  const id = data.id as string;
  if (data.op === "call") {
    const e = checkMethod(data.method) ?? checkPayload(data, bufferCount);
    if (e) return e;
    const message: RpcCallMessage = { op: "call", id, method: data.method as string, value: data.value as JsonValue };
    if (bufferCount > 0) message.nbuf = bufferCount;
    return message;
  }
  const outcome = parseReplyOutcome(data, bufferCount);
  if (typeof outcome === "string") return outcome;
  if (!outcome.ok) return { op: "reply", id, error: outcome.error };
  const message: RpcReplyMessage = { op: "reply", id, value: outcome.value };
  if (outcome.nbuf > 0) message.nbuf = outcome.nbuf;
  return message;
}

// ---- batching ------------------------------------------------------------------------------------

/** Splits a validated batch into items that each own their binary parts (no copies). */
export function splitItems(items: readonly WireItem[], buffers: readonly Uint8Array[]): ValueItem[] {
  const out: ValueItem[] = [];
  let next = 0;
  for (const item of items) {
    const n = item.nbuf ?? 0;
    out.push({ address: item.address, value: item.value, buffers: buffers.slice(next, next + n) });
    next += n;
  }
  return out;
}

/** Joins items into a batch: the wire items plus the message's buffers, in order. */
export function joinItems(items: readonly ValueItem[]): { items: WireItem[]; buffers: Uint8Array[] } {
  const wire: WireItem[] = [];
  const buffers: Uint8Array[] = [];
  for (const item of items) {
    const w: WireItem = { address: item.address, value: item.value };
    if (item.buffers.length > 0) {
      w.nbuf = item.buffers.length;
      for (const b of item.buffers) buffers.push(b);
    }
    wire.push(w);
  }
  return { items: wire, buffers };
}

/** Encodes a live value (typed arrays anywhere) as an item. Throws ValueEncodeError for what cannot travel. */
export function itemOf(address: string, value: unknown): ValueItem {
  const encoded = encodeValue(value);
  return { address, value: encoded.json, buffers: encoded.buffers };
}

/** Rebuilds the live value of an item (typed arrays of the same type). Throws ValueDecodeError. */
export function valueOf(item: ValueItem): unknown {
  return decodeValue(item.value, item.buffers);
}

/**
 * Approximate wire size of an item, for batch limits and memory accounting. Strings count one byte per
 * UTF-16 unit, which is close enough for budgeting and far cheaper than encoding.
 */
/** Bytes of an item's binary parts. */
export function binarySize(item: ValueItem): number {
  let size = 0;
  for (const b of item.buffers) size += b.byteLength;
  return size;
}

export function itemSize(item: ValueItem): number {
  let size = item.address.length + 32 + jsonSize(item.value);
  for (const b of item.buffers) size += b.byteLength;
  return size;
}

function jsonSize(v: JsonValue): number {
  if (v === null) return 4;
  switch (typeof v) {
    case "string":
      return v.length + 2;
    case "number":
      return 8;
    case "boolean":
      return 5;
    default:
      break;
  }
  let size = 2;
  if (Array.isArray(v)) {
    for (const x of v) size += jsonSize(x) + 1;
  } else {
    for (const key in v) size += key.length + 4 + jsonSize((v as JsonObject)[key] as JsonValue);
  }
  return size;
}
