// Messages between the kernel and the user-program process that runs cells, carried in the pipe framing
// (framing.ts, PIPES.md) over the program's private channel. Flat unions with `op` at the top level so a
// `switch (msg.op)` narrows. Pure, browser-safe.
//
// Output ops carry `cell`: the id of the execute request whose code (or whose timers and callbacks)
// produced it, so output from a callback that fires after its cell finished still lands under that cell.
// `cell: null` means "no cell" (output at start-up); the kernel then uses the most recent cell.

import type { ErrorContent, JsonObject, MimeBundle } from "./jupyter.js";

export type CellId = string;

// ---- kernel -> program ---------------------------------------------------------------------------

export interface ExecuteOp {
  op: "execute";
  id: CellId;
  code: string;
  silent: boolean;
  store_history: boolean;
  allow_stdin: boolean;
  /** The count this cell shows as In[n] (already incremented by the kernel when store_history). */
  execution_count: number;
}

export interface CompleteOp {
  op: "complete";
  id: string;
  code: string;
  cursor_pos: number;
}

export interface InspectOp {
  op: "inspect";
  id: string;
  code: string;
  cursor_pos: number;
  detail_level: 0 | 1;
}

export type InputReplyOp =
  | { op: "input_reply"; id: string; status: "ok"; value: string }
  | { op: "input_reply"; id: string; status: "error"; ename: string; evalue: string };

/**
 * Sent on the interrupt channel (fd 4), numbered from 1 per program. The program's main thread acknowledges
 * with `interrupt_ack` once it handled it; a main thread busy running JavaScript cannot, and the kernel then
 * stops that JavaScript through the program's inspector (`hello.inspector`).
 */
export interface InterruptOp {
  op: "interrupt";
  seq: number;
}

export interface ShutdownOp {
  op: "shutdown";
}

export type KernelToProgram = ExecuteOp | CompleteOp | InspectOp | InputReplyOp | InterruptOp | ShutdownOp;

// ---- program -> kernel ---------------------------------------------------------------------------

/** The program's first frame; `token` is the TSNB_PIPE_TOKEN the kernel gave it (anything else ends it). */
export interface HelloOp {
  op: "hello";
  pid: number;
  node_version: string;
  token: string;
  /** The program's inspector WebSocket URL (loopback, secret path), or null when it could not be opened. */
  inspector?: string | null;
}

/** The main thread handled interrupt `seq` (see InterruptOp). */
export interface InterruptAckOp {
  op: "interrupt_ack";
  seq: number;
}

export interface StreamOp {
  op: "stream";
  cell: CellId | null;
  name: "stdout" | "stderr";
  text: string;
}

export interface DisplayOp {
  op: "display";
  cell: CellId | null;
  data: MimeBundle;
  metadata: JsonObject;
  /** `{display_id}` when the display can be updated later. */
  transient: JsonObject;
}

export interface UpdateDisplayOp {
  op: "update_display";
  cell: CellId | null;
  data: MimeBundle;
  metadata: JsonObject;
  transient: JsonObject & { display_id: string };
}

export interface ClearOutputOp {
  op: "clear_output";
  cell: CellId | null;
  wait: boolean;
}

/** An error outside the cell's own completion: an unhandled rejection, a throwing callback. */
export interface ErrorOutputOp extends ErrorContent {
  op: "error_output";
  cell: CellId | null;
}

export interface InputRequestOp {
  op: "input_request";
  id: string;
  cell: CellId | null;
  prompt: string;
  password: boolean;
}

export type ExecuteDoneOp =
  | {
      op: "execute_done";
      id: CellId;
      status: "ok";
      result: { data: MimeBundle; metadata: JsonObject } | null;
      /** execute_reply payloads, e.g. `{source: "page", data, start}` for `name?` help. */
      payload?: JsonObject[];
    }
  | ({ op: "execute_done"; id: CellId; status: "error" } & ErrorContent);

export interface CompleteReplyOp {
  op: "complete_reply";
  id: string;
  matches: string[];
  cursor_start: number;
  cursor_end: number;
  metadata: JsonObject;
}

export interface InspectReplyOp {
  op: "inspect_reply";
  id: string;
  found: boolean;
  data: MimeBundle;
}

export type ProgramToKernel =
  | HelloOp
  | InterruptAckOp
  | StreamOp
  | DisplayOp
  | UpdateDisplayOp
  | ClearOutputOp
  | ErrorOutputOp
  | InputRequestOp
  | ExecuteDoneOp
  | CompleteReplyOp
  | InspectReplyOp;

export type ProgramOpName = ProgramToKernel["op"];
