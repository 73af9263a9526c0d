// The execution layer: supervises the user program (one at a time, respawned after a crash), runs cells on
// it, routes its output to the cells that produced it, forwards input requests to stdin, and answers
// complete/inspect with a deadline.

import type {
  CompleteRequestContent,
  ErrorContent,
  ExecuteRequestContent,
  Header,
  InspectRequestContent,
  JsonObject,
  JupyterMessage,
} from "../../protocol/jupyter.js";
import type { CompleteReplyOp, InspectReplyOp, ProgramToKernel } from "../../protocol/program.js";
import type { ExecuteContext, Execution } from "../core/execution.js";
import type { KernelIO, ParentHeader } from "../core/io.js";
import { DisposedError } from "../../protocol/disposable.js";
import type { Log } from "../log.js";
import { DEFAULT_COALESCE_LIMITS, OutputPublisher, type CoalesceLimits } from "./output.js";
import { sweepStaleProgramFifos } from "./program-fifos.js";
import { describeExit, ProgramProcess, type ExitReason, type ProgramEvent } from "./program-process.js";
import { executorTransition, programOf, type ExecutorEvent, type ExecutorState, type ReadyWaiter } from "./state.js";

export interface ExecutorOptions {
  io: KernelIO;
  log: Log;
  /** dist/program.js */
  programPath: string;
  cwd: string;
  /** Extra environment for the program (the comms bridge adds its pipe variables here). */
  env?: () => Record<string, string>;
  /** How long a cell waits for a starting program before failing. */
  startTimeoutMs?: number;
  /** complete/inspect deadline. */
  queryTimeoutMs?: number;
  /** Between the `shutdown` op and SIGKILL. */
  shutdownGraceMs?: number;
  coalesce?: CoalesceLimits;
  /** Pause reading the program while this much is waiting in the IOPub queue. */
  backpressure?: { messages: number; bytes: number };
  extension?: ProgramExtension;
}

/**
 * A component that speaks its own ops with the program on the same channel (the comms bridge, issue 3).
 * The executor hands it every op for which `handles` is true, tells it when a program starts and stops,
 * and lets it write frames to the program (`Executor.sendToProgram`) and hold reading (`Executor.holdReading`).
 */
export interface ProgramExtension {
  handles(op: string): boolean;
  /** Returns an error to show under the op's cell, or null. */
  onOp(header: JsonObject & { op: string }, buffers: Uint8Array[]): string | null;
  programStarted(): void;
  programStopped(): void;
  /** The cell's code finished; its reply and idle come next (the comms blank an unconnected shim here). */
  cellFinished?(cell: string): void;
}

/**
 * What is remembered of each of the last MAX_REMEMBERED_CELLS cells, for output their timers send later: the
 * header only. The request itself (its code, its routing identities) is kept only while the cell runs, in
 * RunningCell: remembering every request kept up to 1000 cells' source in the kernel.
 */
interface CellInfo {
  parent: Header;
}

interface RunningCell {
  id: string;
  /** The execute_request, for the input_request a running cell may send. */
  request: JupyterMessage<ExecuteRequestContent>;
  /** Settles the cell's execute() with how it ended. */
  finish(outcome: CellOutcome): void;
}

type CellOutcome =
  | { type: "done"; op: Extract<ProgramToKernel, { op: "execute_done" }> }
  | { type: "program_lost"; message: string }
  | { type: "disposed" };

interface PendingQuery {
  resolve(op: CompleteReplyOp | InspectReplyOp | null): void;
  timer: NodeJS.Timeout;
}

/** Cells remembered for routing late output (timers, callbacks) to the cell that created it. */
const MAX_REMEMBERED_CELLS = 1000;

export class Executor implements Execution {
  private readonly io: KernelIO;
  private readonly log: Log;
  private readonly output: OutputPublisher;
  private state: ExecutorState<ProgramProcess, RunningCell> = { type: "no_program" };
  private executionCount = 0;
  private nextId = 1;
  private cells = new Map<string, CellInfo>();
  private lastCell: string | null = null;
  private queries = new Map<string, PendingQuery>();
  /** input_request msg_id -> the program's input id. */
  private inputs = new Map<string, string>();
  private throttled = false;
  private holds = new Set<string>();
  private disposing: Promise<void> | null = null;

  constructor(private readonly options: ExecutorOptions) {
    this.io = options.io;
    this.log = options.log;
    this.output = new OutputPublisher({ io: this.io, limits: options.coalesce ?? DEFAULT_COALESCE_LIMITS, afterPublish: () => this.throttle() });
  }

  /**
   * Spawns the program now, so the first cell does not pay for its start-up, and removes FIFO directories
   * that killed kernels left behind.
   */
  start(): void {
    this.ensureProgram();
    void sweepStaleProgramFifos({ log: (text) => this.log.warn(text) });
  }

  get programPid(): number | undefined {
    return this.program?.pid;
  }

  private get program(): ProgramProcess | null {
    return programOf(this.state);
  }

  private get running(): RunningCell | null {
    return this.state.type === "running" ? this.state.cell : null;
  }

  /** Every state change goes through here; the effects of a change are the callers'. */
  private apply(event: ExecutorEvent<ProgramProcess, RunningCell>): ExecutorState<ProgramProcess, RunningCell> {
    const before = this.state;
    this.state = executorTransition(before, event);
    return before;
  }

  async execute(ctx: ExecuteContext): Promise<JsonObject> {
    const { request } = ctx;
    const { code, silent, store_history, allow_stdin } = request.content;
    if (store_history && !silent) this.executionCount++;
    const executionCount = this.executionCount;
    const id = `cell-${this.nextId++}`;
    this.remember(id, { parent: request.header });
    if (!silent) ctx.publish("execute_input", { code, execution_count: executionCount });

    const failed = (error: ErrorContent): JsonObject => {
      this.output.publish({ parent: request.header, msgType: "error", content: { ...error } });
      return { status: "error", execution_count: executionCount, ...error };
    };

    try {
      await this.waitForProgram();
    } catch (err) {
      if (err instanceof DisposedError) return { status: "error", execution_count: executionCount, ename: "KernelShuttingDown", evalue: err.message, traceback: [] };
      const message = `The TypeScript program could not start: ${err instanceof Error ? err.message : String(err)}`;
      return failed({ ename: "ProgramStartError", evalue: message, traceback: [message] });
    }
    const outcome = await new Promise<CellOutcome>((resolve) => {
      const state = this.state;
      if (state.type !== "ready") {
        // The program died between saying hello and this cell; the next cell gets a fresh one.
        resolve({ type: "program_lost", message: "The TypeScript program stopped before the cell could run. Run the cell again." });
        return;
      }
      this.apply({ type: "cell_started", cell: { id, request, finish: resolve } });
      const sent = state.program.send({ op: "execute", id, code, silent, store_history, allow_stdin, execution_count: executionCount });
      if (!sent) resolve({ type: "program_lost", message: "The TypeScript program was not running; a fresh program has started. Run the cell again." });
    });
    if (this.running?.id === id) this.apply({ type: "cell_finished" });
    // An input request the cell left unanswered (interrupted, failed) can no longer be answered.
    this.inputs.clear();
    this.output.flush();
    this.options.extension?.cellFinished?.(id);

    switch (outcome.type) {
      case "done": {
        const done = outcome.op;
        if (done.status === "error") {
          return failed({ ename: done.ename, evalue: done.evalue, traceback: Array.isArray(done.traceback) ? done.traceback : [] });
        }
        if (done.result && !silent) {
          const data = { ...done.result.data };
          // Front-ends fall back to text/plain, and nbformat requires it.
          if (typeof data["text/plain"] !== "string") data["text/plain"] = "";
          this.output.publish({
            parent: request.header,
            msgType: "execute_result",
            content: { execution_count: executionCount, data, metadata: done.result.metadata ?? {} },
          });
        }
        return { status: "ok", execution_count: executionCount, user_expressions: {}, payload: done.payload ?? [] };
      }
      case "program_lost":
        return failed({ ename: "ProgramExited", evalue: outcome.message, traceback: [outcome.message] });
      case "disposed":
        return { status: "error", execution_count: executionCount, ename: "KernelShuttingDown", evalue: "the kernel is shutting down", traceback: [] };
      default: {
        const unreachable: never = outcome;
        throw new Error(`unexpected outcome ${JSON.stringify(unreachable)}`);
      }
    }
  }

  complete(content: CompleteRequestContent): Promise<JsonObject> {
    const empty = { status: "ok", matches: [], cursor_start: content.cursor_pos, cursor_end: content.cursor_pos, metadata: {} };
    return this.query({ op: "complete", code: content.code, cursor_pos: content.cursor_pos }).then((reply) => {
      if (!reply || reply.op !== "complete_reply") return empty;
      return {
        status: "ok",
        matches: reply.matches,
        cursor_start: reply.cursor_start,
        cursor_end: reply.cursor_end,
        metadata: reply.metadata ?? {},
      };
    });
  }

  inspect(content: InspectRequestContent): Promise<JsonObject> {
    const empty = { status: "ok", found: false, data: {}, metadata: {} };
    return this.query({ op: "inspect", code: content.code, cursor_pos: content.cursor_pos, detail_level: content.detail_level }).then(
      (reply) => {
        if (!reply || reply.op !== "inspect_reply") return empty;
        return { status: "ok", found: reply.found, data: reply.data ?? {}, metadata: {} };
      },
    );
  }

  interrupt(): void {
    if (!this.running) return;
    if (!this.program?.interrupt()) this.log.warn("interrupt: the program is not ready");
  }

  inputReply(message: JupyterMessage): void {
    const parentId = "msg_id" in message.parent_header ? message.parent_header.msg_id : undefined;
    let key = parentId !== undefined && this.inputs.has(parentId) ? parentId : undefined;
    // Some clients do not set the parent on input_reply; with one request outstanding it is unambiguous.
    if (key === undefined && this.inputs.size === 1) key = this.inputs.keys().next().value;
    if (key === undefined) {
      this.log.warn("input_reply that answers no pending input_request: ignored");
      return;
    }
    const inputId = this.inputs.get(key)!;
    this.inputs.delete(key);
    const value = message.content.value;
    if (typeof value !== "string") {
      this.program?.send({ op: "input_reply", id: inputId, status: "error", ename: "InputError", evalue: '"value" in input_reply must be a string' });
      return;
    }
    this.program?.send({ op: "input_reply", id: inputId, status: "ok", value });
  }

  dispose(): Promise<void> {
    if (this.disposing) return this.disposing;
    const before = this.apply({ type: "dispose" });
    this.disposing = (async () => {
      if (before.type === "running") before.cell.finish({ type: "disposed" });
      if (before.type === "starting") for (const w of before.waiters) w.reject(new DisposedError("the program"));
      for (const [, q] of this.queries) {
        clearTimeout(q.timer);
        q.resolve(null);
      }
      this.queries.clear();
      this.inputs.clear();
      this.output.dispose();
      await programOf(before)?.stop(this.options.shutdownGraceMs ?? 1000);
    })();
    return this.disposing;
  }

  // ---- the program -------------------------------------------------------------------------------

  private ensureProgram(): void {
    if (this.state.type !== "no_program") return;
    const program: ProgramProcess = new ProgramProcess({
      programPath: this.options.programPath,
      cwd: this.options.cwd,
      env: { ...process.env, ...(this.options.env?.() ?? {}) },
      log: this.log,
      onEvent: (event) => {
        if (this.program === program) this.onProgramEvent(event);
      },
      ...(this.options.extension ? { isExtensionOp: (op: string) => this.options.extension!.handles(op) } : {}),
    });
    this.apply({ type: "spawned", program });
    if (this.holds.size > 0) program.pause();
  }

  private waitForProgram(): Promise<void> {
    this.ensureProgram();
    const state = this.state;
    switch (state.type) {
      case "disposed":
        return Promise.reject(new DisposedError("the executor"));
      case "ready":
      case "running":
        return Promise.resolve();
      case "no_program":
        return Promise.reject(new Error("no program could be spawned"));
      case "starting":
        break;
      default: {
        const unreachable: never = state;
        return Promise.reject(new Error(`unknown state ${JSON.stringify(unreachable)}`));
      }
    }
    const ms = this.options.startTimeoutMs ?? 30_000;
    return new Promise<void>((resolve, reject) => {
      const waiter: ReadyWaiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        state.waiters.delete(waiter);
        reject(new Error(`it did not start within ${ms} ms`));
        // A program that never says hello is as good as dead; replace it so the next cell can try again.
        state.program.kill({ type: "no_hello", ms });
      }, ms);
      state.waiters.add(waiter);
    });
  }

  private onProgramEvent(event: ProgramEvent): void {
    switch (event.type) {
      case "ready": {
        this.log.info(`user program ready (pid ${event.hello.pid}, node ${event.hello.node_version})`);
        const before = this.apply({ type: "hello" });
        if (before.type === "starting") for (const w of before.waiters) w.resolve();
        this.options.extension?.programStarted();
        return;
      }
      case "extension_op": {
        const error = this.options.extension?.onOp(event.header, event.buffers) ?? null;
        if (error !== null) {
          const cell = typeof event.header.cell === "string" ? event.header.cell : null;
          this.output.publish({ parent: this.cellFor(cell).parent, msgType: "stream", content: { name: "stderr", text: `tsnb: ${error}\n` } });
        }
        return;
      }
      case "op":
        this.onOp(event.op);
        return;
      case "raw": {
        // Raw fd output (native code, inherited fds) belongs to whatever ran last.
        const cell = this.lastCell;
        const parent: ParentHeader = cell ? this.cells.get(cell)?.parent ?? {} : {};
        this.output.stream({ cellKey: cell ?? "", parent, name: event.name, text: event.text });
        return;
      }
      case "exit":
        this.onProgramExit(event.reason, event.wasReady);
        return;
      default: {
        const unreachable: never = event;
        this.log.error(`unknown program event ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onProgramExit(reason: ExitReason, wasReady: boolean): void {
    const message = `The TypeScript program ${describeExit(reason)}. Variables and imports were lost; a fresh program has started.`;
    this.log.warn(message);
    const before = this.apply({ type: "program_exited" });
    if (wasReady) this.options.extension?.programStopped();
    this.inputs.clear();
    for (const [, q] of this.queries) {
      clearTimeout(q.timer);
      q.resolve(null);
    }
    this.queries.clear();
    this.output.flush();
    if (before.type === "starting") {
      for (const w of before.waiters) w.reject(new Error(`the program ${describeExit(reason)}`));
    }
    if (!wasReady) {
      // Never came up: starting it again in a loop would only repeat the failure. The next cell retries.
      return;
    }
    if (before.type === "running") {
      before.cell.finish({ type: "program_lost", message });
    } else if (this.lastCell) {
      // Nobody is waiting on a reply, so tell the user under the cell they last ran.
      const parent = this.cells.get(this.lastCell)?.parent ?? {};
      this.output.publish({ parent, msgType: "stream", content: { name: "stderr", text: message + "\n" } });
    }
    this.ensureProgram();
  }

  private onOp(op: ProgramToKernel): void {
    switch (op.op) {
      case "hello":
      case "interrupt_ack":
        // Both are handled by ProgramProcess (the interrupt forcer); they never reach here.
        return;
      case "stream": {
        const { key, parent } = this.cellFor(op.cell);
        this.output.stream({ cellKey: key, parent, name: op.name, text: op.text });
        return;
      }
      case "display":
        this.output.publish({
          parent: this.cellFor(op.cell).parent,
          msgType: "display_data",
          content: { data: op.data, metadata: op.metadata ?? {}, transient: op.transient ?? {} },
        });
        return;
      case "update_display":
        this.output.publish({
          parent: this.cellFor(op.cell).parent,
          msgType: "update_display_data",
          content: { data: op.data, metadata: op.metadata ?? {}, transient: op.transient },
        });
        return;
      case "clear_output":
        this.output.publish({ parent: this.cellFor(op.cell).parent, msgType: "clear_output", content: { wait: op.wait === true } });
        return;
      case "error_output":
        this.output.publish({
          parent: this.cellFor(op.cell).parent,
          msgType: "error",
          content: { ename: op.ename, evalue: op.evalue, traceback: Array.isArray(op.traceback) ? op.traceback : [] },
        });
        return;
      case "input_request":
        this.onInputRequest(op);
        return;
      case "execute_done":
        if (this.running && this.running.id === op.id) this.running.finish({ type: "done", op });
        else this.log.warn(`execute_done for ${op.id}, which is not running: ignored`);
        return;
      case "complete_reply":
      case "inspect_reply": {
        const q = this.queries.get(op.id);
        if (!q) return;
        this.queries.delete(op.id);
        clearTimeout(q.timer);
        q.resolve(op);
        return;
      }
      default: {
        const unreachable: never = op;
        this.log.warn(`unknown op from the program: ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onInputRequest(op: Extract<ProgramToKernel, { op: "input_request" }>): void {
    const cellId = op.cell ?? this.running?.id ?? null;
    const cell = this.running;
    const refuse = (evalue: string) =>
      this.program?.send({ op: "input_reply", id: op.id, status: "error", ename: "StdinNotImplementedError", evalue });
    if (!cell || cell.id !== cellId) {
      refuse("input() can only be used while its cell is running");
      return;
    }
    if (!cell.request.content.allow_stdin) {
      refuse("input() is not supported by this front-end (the request did not allow stdin)");
      return;
    }
    // The prompt must appear after everything the cell printed before asking.
    this.output.flush();
    const header = this.io.sendStdin({
      request: cell.request,
      msgType: "input_request",
      content: { prompt: typeof op.prompt === "string" ? op.prompt : "", password: op.password === true },
    });
    this.inputs.set(header.msg_id, op.id);
  }

  private query(op: { op: "complete"; code: string; cursor_pos: number } | { op: "inspect"; code: string; cursor_pos: number; detail_level: 0 | 1 }) {
    // While a cell runs, the program's main thread is busy; waiting would only delay the reply.
    if (this.running || !this.program || this.program.current.type !== "ready") return Promise.resolve(null);
    const program = this.program;
    const id = `q-${this.nextId++}`;
    return new Promise<CompleteReplyOp | InspectReplyOp | null>((resolve) => {
      const timer = setTimeout(() => {
        this.queries.delete(id);
        resolve(null);
      }, this.options.queryTimeoutMs ?? 1000);
      this.queries.set(id, { resolve, timer });
      if (!program.send({ ...op, id })) {
        clearTimeout(timer);
        this.queries.delete(id);
        resolve(null);
      }
    });
  }

  private cellFor(cell: string | null): { key: string; parent: ParentHeader } {
    const id = cell ?? this.lastCell;
    if (id === null) return { key: "", parent: {} };
    const info = this.cells.get(id);
    if (!info) return { key: id, parent: {} };
    return { key: id, parent: info.parent };
  }

  private remember(id: string, info: CellInfo): void {
    this.cells.set(id, info);
    this.lastCell = id;
    if (this.cells.size > MAX_REMEMBERED_CELLS) {
      const oldest = this.cells.keys().next().value;
      if (oldest !== undefined) this.cells.delete(oldest);
    }
  }

  /** Writes an extension's frame to the current program; false when none is running. */
  sendToProgram(header: JsonObject & { op: string }, buffers: Uint8Array[] = []): boolean {
    return this.program?.sendFrame(header, buffers) ?? false;
  }

  /** The parent header that output attributed to `cell` is published under (null: the most recent cell). */
  parentForCell(cell: string | null): ParentHeader {
    return this.cellFor(cell).parent;
  }

  /** Stops reading the program while any holder holds (`reason` names the holder). */
  holdReading(reason: string, hold: boolean): void {
    if (hold) this.holds.add(reason);
    else this.holds.delete(reason);
    if (this.holds.size > 0) this.program?.pause();
    else this.program?.resume();
  }

  /** Stops reading the program while IOPub is behind; resumes once the queue has drained. */
  private throttle(): void {
    if (this.throttled || !this.program) return;
    const limit = this.options.backpressure ?? { messages: 16, bytes: 4 * 1024 * 1024 };
    const pending = this.io.iopubPending();
    if (pending.messages < limit.messages && pending.bytes < limit.bytes) return;
    this.throttled = true;
    this.holdReading("iopub", true);
    void this.io.iopubDrained().then(() => {
      this.throttled = false;
      this.holdReading("iopub", false);
    });
  }
}
