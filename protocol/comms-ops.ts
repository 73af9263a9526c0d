// The comms ops between the user program and the kernel, carried on the program channel in the pipe
// framing beside the ops of protocol/program.ts. Flat unions on `op`. Value batches use the same item
// format as the browser bridge (bridge.ts): each item's placeholders are local, and its `nbuf` binary
// parts are the next frame buffers. Pure, browser-safe.

import type { CellId } from "./program.js";
import { checkItems, MAX_ADDRESS_LENGTH, type ParseResult, type WireItem } from "./bridge.js";

// ---- program -> kernel ---------------------------------------------------------------------------

/** Values for the browser, in send order. `cell` is the cell whose code sent them (shim injection goes there). */
export interface CommSendOp {
  op: "comm_send";
  cell: CellId | null;
  items: WireItem[];
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

export type ProgramCommOp = CommSendOp | CommSubscribeOp | CommUnsubscribeOp | CommReadOp | CommSyncOp;

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
}

export type KernelCommOp = CommDeliverOp | CommSyncAckOp | CommListenersOp | CommFrontendsOp;

export const PROGRAM_COMM_OPS: readonly ProgramCommOp["op"][] = [
  "comm_send",
  "comm_subscribe",
  "comm_unsubscribe",
  "comm_read",
  "comm_sync",
];

export function isProgramCommOp(op: string): op is ProgramCommOp["op"] {
  return (PROGRAM_COMM_OPS as readonly string[]).includes(op);
}

// ---- validation (the kernel must not trust a program's frames) --------------------------------------

function address(v: unknown): string | null {
  return typeof v === "string" && v !== "" && v.length <= MAX_ADDRESS_LENGTH ? v : null;
}

function cellOf(v: unknown): CellId | null | undefined {
  if (v === null || v === undefined) return null;
  return typeof v === "string" ? v : undefined;
}

/** Validates a frame header from the program whose op is a comm op. */
export function parseProgramCommOp(header: { [key: string]: unknown }, bufferCount: number): ParseResult<ProgramCommOp> {
  const op = header.op;
  const fail = (detail: string): ParseResult<ProgramCommOp> => ({ ok: false, error: `"${String(op)}" op: ${detail}` });
  if (op !== "comm_send" && bufferCount > 0) return fail(`carries ${bufferCount} unexpected binary parts`);
  switch (op) {
    case "comm_send": {
      const cell = cellOf(header.cell);
      if (cell === undefined) return fail('"cell" must be a string or null');
      const e = checkItems(header.items, bufferCount);
      if (e) return fail(e);
      return { ok: true, message: { op, cell, items: header.items as WireItem[] } };
    }
    case "comm_subscribe":
    case "comm_read": {
      const cell = cellOf(header.cell);
      const a = address(header.address);
      if (cell === undefined) return fail('"cell" must be a string or null');
      if (a === null) return fail(`"address" must be a non-empty string of at most ${MAX_ADDRESS_LENGTH} characters`);
      return { ok: true, message: { op, cell, address: a } };
    }
    case "comm_unsubscribe": {
      const a = address(header.address);
      if (a === null) return fail(`"address" must be a non-empty string of at most ${MAX_ADDRESS_LENGTH} characters`);
      return { ok: true, message: { op, address: a } };
    }
    case "comm_sync":
      if (typeof header.id !== "string") return fail('"id" must be a string');
      return { ok: true, message: { op, id: header.id } };
    default:
      return { ok: false, error: `unknown comm op ${JSON.stringify(op)}` };
  }
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
    case "comm_frontends":
      if (typeof header.count !== "number") return fail("needs count");
      return { ok: true, message: { op, count: header.count } };
    default:
      return { ok: false, error: `unknown comm op ${JSON.stringify(op)}` };
  }
}
