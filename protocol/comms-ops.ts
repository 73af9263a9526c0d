// The comms ops between the user program and the kernel, carried on the program channel in the pipe
// framing beside the ops of protocol/program.ts. Flat unions on `op`. Value batches use the same item
// format as the browser bridge (bridge.ts): each item's placeholders are local, and its `nbuf` binary
// parts are the next frame buffers. Pure, browser-safe.

import type { CellId } from "./program.js";
import { addressProblem, checkItems, type ParseResult, type WireItem } from "./bridge.js";
import type { JsonValue } from "./jupyter.js";
import { checkCallId, checkMethod, checkPayload, parseReplyOutcome, type RpcErrorInfo } from "./rpc.js";

// ---- program -> kernel ---------------------------------------------------------------------------

/** Values for the browser, in send order. `cell` is the cell whose code sent them (shim injection goes there). */
export interface CommSendOp {
  op: "comm_send";
  cell: CellId | null;
  items: WireItem[];
  /**
   * Only for this front-end (comm id), and not a new value: the program's answer to `comm_replay`. The kernel
   * sends it there if that front-end still listens, and leaves its store alone.
   */
  frontend?: string;
}

/** The program wants values the browser sends to `address` (sent on the first subscriber only). */
export interface CommSubscribeOp {
  op: "comm_subscribe";
  cell: CellId | null;
  address: string;
}

export interface CommUnsubscribeOp {
  op: "comm_unsubscribe";
  address: string;
}

/** Ask the browsers listening on `address` for their current value; it arrives as a normal delivery. */
export interface CommReadOp {
  op: "comm_read";
  cell: CellId | null;
  address: string;
}

/**
 * Answered with `comm_sync_ack` once every earlier op reached the kernel and the kernel's queue towards
 * the browser is below its high-water mark: awaiting it is how a fast sender is slowed down.
 */
export interface CommSyncOp {
  op: "comm_sync";
  id: string;
}

/**
 * RPC (protocol/rpc.ts). Program -> kernel `comm_rpc_call` calls a browser function: `target` is "first"
 * (every front-end is asked, the first real answer wins; "method not found" from one waits for the others)
 * or a front-end's comm id. Kernel -> program `comm_rpc_call` is a browser calling a registered function.
 * `value` is the encoded `[args, kwargs]`; all binary parts of the frame belong to it.
 */
export interface CommRpcCallOp {
  op: "comm_rpc_call";
  id: string;
  method: string;
  value: JsonValue;
  nbuf?: number;
  /** Program -> kernel only. */
  cell?: CellId | null;
  /** Program -> kernel only: "first" or a front-end (comm) id. */
  target?: string;
}

/** The answer to the `comm_rpc_call` with the same id, in either direction: `value` or `error`. */
export interface CommRpcReplyOp {
  op: "comm_rpc_reply";
  id: string;
  value?: JsonValue;
  nbuf?: number;
  error?: RpcErrorInfo;
}

/** The program gave up on its call `id` (timeout): the kernel forgets it, a late answer is dropped. */
export interface CommRpcCancelOp {
  op: "comm_rpc_cancel";
  id: string;
}

/**
 * A piece of one large program -> kernel message, so the kernel passes each piece on while the next is still on its
 * way instead of holding the whole message first. The pieces' bytes, in `index` order from 0, are that message in
 * the framing of PIPES.md section 1; the first piece holds exactly its header (length prefix and JSON), the others
 * its binary data. The message is a `comm_send` of one value or a `comm_rpc_reply`. Exactly one binary part.
 */
export interface CommChunkOp {
  op: "comm_chunk";
  id: string;
  index: number;
  last: boolean;
}

export type ProgramCommOp =
  | CommChunkOp
  | CommSendOp
  | CommSubscribeOp
  | CommUnsubscribeOp
  | CommReadOp
  | CommSyncOp
  | CommRpcCallOp
  | CommRpcReplyOp
  | CommRpcCancelOp;

// ---- kernel -> program ---------------------------------------------------------------------------

/** Values from the browser for addresses the program subscribed to, in arrival order. */
export interface CommDeliverOp {
  op: "comm_deliver";
  items: WireItem[];
}

export interface CommSyncAckOp {
  op: "comm_sync_ack";
  id: string;
}

/** How many browser-side listeners `address` has now; sent whenever the count changes. */
export interface CommListenersOp {
  op: "comm_listeners";
  address: string;
  count: number;
}

/** How many front-ends (open comms) are connected now; sent whenever it changes. */
export interface CommFrontendsOp {
  op: "comm_frontends";
  count: number;
  /** The front-ends' comm ids (targets for `comm_rpc_call`). */
  ids?: string[];
}

/**
 * A front-end started listening on `address`, whose current value is a large one the program holds (the kernel
 * keeps only small values, HELD_VALUE_BYTES): the program answers with `comm_send {frontend}` of that value.
 */
export interface CommReplayOp {
  op: "comm_replay";
  address: string;
  frontend: string;
}

/**
 * Kernel -> program `comm_chunk` (CommChunkOp, same fields): a piece of one large `comm_deliver` (of one value) or
 * `comm_rpc_call` from a page, passed on as the page's chunks arrive. Piece 0 is exactly its header. An empty last
 * piece that leaves it incomplete means the kernel gave up on it (the page went away or sent garbage).
 */
export type KernelCommOp = CommDeliverOp | CommSyncAckOp | CommListenersOp | CommFrontendsOp | CommRpcCallOp | CommRpcReplyOp | CommReplayOp | CommChunkOp;

export const PROGRAM_COMM_OPS: readonly ProgramCommOp["op"][] = [
  "comm_chunk",
  "comm_send",
  "comm_subscribe",
  "comm_unsubscribe",
  "comm_read",
  "comm_sync",
  "comm_rpc_call",
  "comm_rpc_reply",
  "comm_rpc_cancel",
];

export function isProgramCommOp(op: string): op is ProgramCommOp["op"] {
  return (PROGRAM_COMM_OPS as readonly string[]).includes(op);
}

// ---- validation (the kernel must not trust a program's frames) --------------------------------------

function address(v: unknown): string | null {
  return addressProblem(v) === null ? (v as string) : null;
}

function cellOf(v: unknown): CellId | null | undefined {
  if (v === null || v === undefined) return null;
  return typeof v === "string" ? v : undefined;
}

/** Validates a frame header from the program whose op is a comm op. */
export function parseProgramCommOp(header: { [key: string]: unknown }, bufferCount: number): ParseResult<ProgramCommOp> {
  const op = header.op;
  const fail = (detail: string): ParseResult<ProgramCommOp> => ({ ok: false, error: `"${String(op)}" op: ${detail}` });
  const carriesBuffers = op === "comm_send" || op === "comm_rpc_call" || op === "comm_rpc_reply" || op === "comm_chunk";
  if (!carriesBuffers && bufferCount > 0) return fail(`carries ${bufferCount} unexpected binary parts`);
  switch (op) {
    case "comm_send": {
      const cell = cellOf(header.cell);
      if (cell === undefined) return fail('"cell" must be a string or null');
      const e = checkItems(header.items, bufferCount);
      if (e) return fail(e);
      const send: CommSendOp = { op, cell, items: header.items as WireItem[] };
      if (header.frontend !== undefined) {
        if (typeof header.frontend !== "string" || header.frontend === "") return fail('"frontend" must be a front-end (comm) id');
        send.frontend = header.frontend;
      }
      return { ok: true, message: send };
    }
    case "comm_chunk": {
      const chunk = parseChunk(header, bufferCount);
      return typeof chunk === "string" ? fail(chunk) : { ok: true, message: chunk };
    }
    case "comm_subscribe":
    case "comm_read": {
      const cell = cellOf(header.cell);
      const a = address(header.address);
      if (cell === undefined) return fail('"cell" must be a string or null');
      if (a === null) return fail(addressProblem(header.address)!);
      return { ok: true, message: { op, cell, address: a } };
    }
    case "comm_unsubscribe": {
      const a = address(header.address);
      if (a === null) return fail(addressProblem(header.address)!);
      return { ok: true, message: { op, address: a } };
    }
    case "comm_sync":
      if (typeof header.id !== "string") return fail('"id" must be a string');
      return { ok: true, message: { op, id: header.id } };
    case "comm_rpc_call": {
      const cell = cellOf(header.cell);
      if (cell === undefined) return fail('"cell" must be a string or null');
      const target = header.target ?? "first";
      if (typeof target !== "string" || target === "") return fail('"target" must be "first" or a front-end id');
      const call = parseRpcCall(header, bufferCount);
      if (typeof call === "string") return fail(call);
      return { ok: true, message: { ...call, cell, target } };
    }
    case "comm_rpc_reply": {
      const reply = parseRpcReply(header, bufferCount);
      return typeof reply === "string" ? fail(reply) : { ok: true, message: reply };
    }
    case "comm_rpc_cancel": {
      const e = checkCallId(header.id);
      if (e) return fail(e);
      return { ok: true, message: { op, id: header.id as string } };
    }
    default:
      return { ok: false, error: `unknown comm op ${JSON.stringify(op)}` };
  }
}

function parseRpcCall(header: { [key: string]: unknown }, bufferCount: number): CommRpcCallOp | string {
  const e = checkCallId(header.id) ?? checkMethod(header.method) ?? checkPayload(header, bufferCount);
  if (e) return e;
  const call: CommRpcCallOp = { op: "comm_rpc_call", id: header.id as string, method: header.method as string, value: header.value as JsonValue };
  if (bufferCount > 0) call.nbuf = bufferCount;
  return call;
}

/** A `comm_chunk` has the same fields in both directions. */
function parseChunk(header: { [key: string]: unknown }, bufferCount: number): CommChunkOp | string {
  const e = checkCallId(header.id);
  if (e) return e;
  if (!Number.isInteger(header.index) || (header.index as number) < 0 || typeof header.last !== "boolean") return "needs index and last";
  if (bufferCount !== 1) return `must carry exactly one binary part, got ${bufferCount}`;
  return { op: "comm_chunk", id: header.id as string, index: header.index as number, last: header.last };
}

function parseRpcReply(header: { [key: string]: unknown }, bufferCount: number): CommRpcReplyOp | string {
  const e = checkCallId(header.id);
  if (e) return e;
  const outcome = parseReplyOutcome(header, bufferCount);
  if (typeof outcome === "string") return outcome;
  const id = header.id as string;
  if (!outcome.ok) return { op: "comm_rpc_reply", id, error: outcome.error };
  const reply: CommRpcReplyOp = { op: "comm_rpc_reply", id, value: outcome.value };
  if (outcome.nbuf > 0) reply.nbuf = outcome.nbuf;
  return reply;
}

/** Validates a frame header from the kernel whose op is a comm op (the program side's check). */
export function parseKernelCommOp(header: { [key: string]: unknown }, bufferCount: number): ParseResult<KernelCommOp> {
  const op = header.op;
  const fail = (detail: string): ParseResult<KernelCommOp> => ({ ok: false, error: `"${String(op)}" op: ${detail}` });
  switch (op) {
    case "comm_deliver": {
      const e = checkItems(header.items, bufferCount);
      if (e) return fail(e);
      return { ok: true, message: { op, items: header.items as WireItem[] } };
    }
    case "comm_sync_ack":
      if (typeof header.id !== "string") return fail('"id" must be a string');
      return { ok: true, message: { op, id: header.id } };
    case "comm_listeners": {
      const a = address(header.address);
      if (a === null || typeof header.count !== "number") return fail("needs address and count");
      return { ok: true, message: { op, address: a, count: header.count } };
    }
    case "comm_frontends": {
      if (typeof header.count !== "number") return fail("needs count");
      const message: CommFrontendsOp = { op, count: header.count };
      if (Array.isArray(header.ids) && header.ids.every((id) => typeof id === "string")) message.ids = header.ids as string[];
      return { ok: true, message };
    }
    case "comm_rpc_call": {
      const call = parseRpcCall(header, bufferCount);
      return typeof call === "string" ? fail(call) : { ok: true, message: call };
    }
    case "comm_rpc_reply": {
      const reply = parseRpcReply(header, bufferCount);
      return typeof reply === "string" ? fail(reply) : { ok: true, message: reply };
    }
    case "comm_chunk": {
      const chunk = parseChunk(header, bufferCount);
      return typeof chunk === "string" ? fail(chunk) : { ok: true, message: chunk };
    }
    case "comm_replay": {
      const a = address(header.address);
      if (a === null || typeof header.frontend !== "string" || header.frontend === "") return fail("needs address and frontend");
      return { ok: true, message: { op, address: a, frontend: header.frontend } };
    }
    default:
      return { ok: false, error: `unknown comm op ${JSON.stringify(op)}` };
  }
}

// ---- pipe clients <-> the runtime (PIPES.md section 6) ------------------------------------------------

/** Longest prompt a pipe client may show; a front-end shows it on one line. */
export const MAX_PROMPT_LENGTH = 64 * 1024;

/**
 * A `!command` asks the notebook user for a line of input (its `input()`/`getpass()`): the runtime serves it
 * as a cell's `await input()`, so the front-end shows the prompt under the command's cell.
 */
export interface PipeInputRequestOp {
  op: "input_request";
  id: string;
  prompt: string;
  password: boolean;
}

/** The answer to the `input_request` with the same id: the line, or why there is none (no stdin, interrupted). */
export type PipeInputReplyOp =
  | { op: "input_reply"; id: string; status: "ok"; value: string }
  | { op: "input_reply"; id: string; status: "error"; ename: string; evalue: string };

/** Validates a pipe client's `input_request` (`prompt` defaults to "", `password` to false). */
export function parsePipeInputRequest(header: { [key: string]: unknown }, bufferCount: number): ParseResult<PipeInputRequestOp> {
  const fail = (detail: string): ParseResult<PipeInputRequestOp> => ({ ok: false, error: `"input_request" op: ${detail}` });
  if (bufferCount > 0) return fail(`carries ${bufferCount} unexpected binary parts`);
  const idProblem = checkCallId(header.id);
  if (idProblem) return fail(idProblem);
  const prompt = header.prompt ?? "";
  if (typeof prompt !== "string" || prompt.length > MAX_PROMPT_LENGTH) return fail(`"prompt" must be a string of at most ${MAX_PROMPT_LENGTH} characters`);
  const password = header.password ?? false;
  if (typeof password !== "boolean") return fail('"password" must be true or false');
  return { ok: true, message: { op: "input_request", id: header.id as string, prompt, password } };
}
