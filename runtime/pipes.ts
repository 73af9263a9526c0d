// Named pipes for `!commands` (PIPES.md section 6): every shell command gets a private directory (0700)
// with two FIFOs (0600), `TSNB_PIPE` (program -> kernel) and `TSNB_PIPE_BACK` (kernel -> program), and a
// random `TSNB_PIPE_TOKEN` its first frame must carry. The frames use the pipe framing with the comms ops,
// which this runtime relays through its own `comms` (so flow control, batching, subscriptions and shim
// injection are exactly those of a cell's `comms.send`) and display ops, pinned to the command's cell.
//
// Why the runtime and not the kernel serves these FIFOs: the runtime spawns the command, so it knows
// when it exits (cleanup) and which cell it belongs to, and relaying through `comms` needs no new kernel
// ops and keeps the kernel's bridge single-program. See PIPES.md for the trade-offs.
//
// The FIFOs themselves (directory, modes, non-blocking opens, the keep-alive that turns the command's exit
// into end-of-file once everything it wrote was read) are node/fifo-pair.ts's, shared with the kernel's
// channel to this program.

import { FifoPair, type FifoEnv } from "../node/fifo-pair.js";
import { sweepStaleDirs } from "../node/stale-dirs.js";
import { itemOf, joinItems, splitItems, valueOf } from "../protocol/bridge.js";
import { parsePipeInputRequest, parseProgramCommOp, type PipeInputReplyOp, type ProgramCommOp } from "../protocol/comms-ops.js";
import { DEFAULT_FRAME_LIMITS, describeFrameError, encodeFrame, FrameDecoder, type FrameLimits, type RawFrame } from "../protocol/framing.js";
import type { JsonObject } from "../protocol/jupyter.js";
import type { CellId, ProgramToKernel } from "../protocol/program.js";
import type { Comms, Disposable } from "./tsnb/comms/comms.js";

export interface PipeHost {
  comms: Comms;
  /** Sends a display-type op to the kernel (after any buffered stream output). */
  send(op: ProgramToKernel): void;
  /** Writes text into the command's cell. */
  write(name: "stdout" | "stderr", text: string): void;
  /** Asks the user for a line under the command's cell, as the cell's `await input()` does. */
  requestInput(request: { prompt: string; password: boolean }): Promise<string>;
}

export interface PipeOptions {
  host: PipeHost;
  /** The cell the command runs in (its display output goes there). */
  cell: CellId | null;
  /** How the command is named in error messages, e.g. `!python3 demo.py`. */
  label: string;
  limits?: FrameLimits;
  /** After the command exited, how long to wait for what it wrote to be read (a grandchild may hold the pipe). */
  drainMs?: number;
  /** Bytes queued towards a command that does not read TSNB_PIPE_BACK before its pipe is closed. */
  maxBackBytes?: number;
  /** Deadline of a `comm_read` from the command. */
  readTimeoutMs?: number;
}

/** The states of one command's pipe: a closed union with one transition function. */
export type PipeState = { type: "awaiting_hello" } | { type: "open" } | { type: "failed"; error: string } | { type: "closed" };

export type PipeEvent = { type: "hello_ok" } | { type: "fail"; error: string } | { type: "close" };

export function stepPipe(state: PipeState, event: PipeEvent): PipeState {
  if (state.type === "failed" || state.type === "closed") return state;
  switch (event.type) {
    case "hello_ok":
      return state.type === "awaiting_hello" ? { type: "open" } : { type: "failed", error: "a second hello frame" };
    case "fail":
      return { type: "failed", error: event.error };
    case "close":
      return { type: "closed" };
    default: {
      const unreachable: never = event;
      throw new Error(`unknown pipe event ${JSON.stringify(unreachable)}`);
    }
  }
}

/** The comm ops a command may send on its pipe (RPC ops are not relayed yet). */
type PipeCommOp = Extract<ProgramCommOp, { op: "comm_send" | "comm_subscribe" | "comm_unsubscribe" | "comm_read" | "comm_sync" }>;

const PIPE_COMM_OPS: readonly string[] = ["comm_send", "comm_subscribe", "comm_unsubscribe", "comm_read", "comm_sync"] satisfies PipeCommOp["op"][];

function isPipeCommOp(op: ProgramCommOp): op is PipeCommOp {
  return PIPE_COMM_OPS.includes(op.op);
}

const DISPLAY_OPS = ["display", "update_display", "clear_output"] as const;

/** The program's pid follows it, so a later program can remove the directory if this one is killed (see PipeRegistry). */
const DIR_PREFIX = "tsnb-pipe-";

/** One command's pipes. `close()` after the command exited drains, closes and removes them. */
export class CommandPipes implements Disposable {
  private state: PipeState = { type: "awaiting_hello" };
  private readonly decoder: FrameDecoder;
  private readonly subscriptions = new Map<string, Disposable>();
  private ended: Promise<void>;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly options: PipeOptions,
    private readonly fifos: FifoPair,
  ) {
    const { reader, writer: back } = fifos;
    this.decoder = new FrameDecoder(options.limits ?? DEFAULT_FRAME_LIMITS);
    this.ended = new Promise<void>((resolve) => {
      reader.on("close", () => resolve());
    });
    reader.on("data", (chunk: Buffer) => this.onData(chunk));
    reader.on("error", (err) => this.fail(`reading TSNB_PIPE failed: ${err.message}`));
    back.on("error", (err) => {
      // EPIPE and friends: the command closed its end; nothing more can be told to it.
      if (this.state.type === "open" || this.state.type === "awaiting_hello") this.fail(`writing TSNB_PIPE_BACK failed: ${err.message}`);
    });
  }

  static async open(options: PipeOptions): Promise<CommandPipes> {
    // A command whose pipes cannot be made still runs, without TSNB_PIPE (see Runtime), so mkfifo is looked
    // for on the program's PATH only, as the command itself is.
    return new CommandPipes(options, await FifoPair.create({ prefix: DIR_PREFIX, systemMkfifo: false }));
  }

  /** What the command's environment gets: TSNB_PIPE, TSNB_PIPE_BACK and TSNB_PIPE_TOKEN. */
  get env(): FifoEnv {
    return this.fifos.env;
  }

  private isShut(): boolean {
    return this.state.type === "failed" || this.state.type === "closed";
  }

  get current(): PipeState {
    return this.state;
  }

  private apply(event: PipeEvent): PipeState {
    const before = this.state;
    this.state = stepPipe(before, event);
    return before;
  }

  private onData(chunk: Buffer): void {
    if (this.state.type === "failed" || this.state.type === "closed") return;
    const out = this.decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    for (const frame of out.frames) {
      // A frame before this one may have failed the pipe.
      if (this.isShut()) return;
      this.onFrame(frame);
    }
    if (out.error) this.fail(describeFrameError(out.error));
  }

  private onFrame(frame: RawFrame): void {
    const header = frame.header;
    if (this.state.type === "awaiting_hello") {
      if (header.op !== "hello" || !this.fifos.tokenMatches(header.token)) {
        this.fail(
          header.op === "hello"
            ? "the hello frame does not carry the TSNB_PIPE_TOKEN of this command"
            : `the first frame must be {"op": "hello", "token": TSNB_PIPE_TOKEN}, got op ${JSON.stringify(header.op)}`,
        );
        return;
      }
      this.apply({ type: "hello_ok" });
      this.toProgram({ op: "hello_ack", frontends: this.options.host.comms.frontends });
      return;
    }
    const error = this.handle(header, frame.buffers);
    if (error !== null) this.fail(error);
  }

  /** Acts on one frame of an open pipe; returns what was wrong with it. */
  private handle(header: JsonObject & { op: string }, buffers: Uint8Array[]): string | null {
    const { host } = this.options;
    const op = header.op;
    if ((DISPLAY_OPS as readonly string[]).includes(op)) return this.display(header);
    if (op === "hello") return "a second hello frame";
    if (op === "input_request") return this.input(header, buffers.length);
    const parsed = parseProgramCommOp(header, buffers.length);
    if (!parsed.ok) {
      return parsed.error.startsWith("unknown comm op")
        ? `unknown op ${JSON.stringify(op)} (known: hello, comm_send, comm_subscribe, comm_unsubscribe, comm_read, comm_sync, display, update_display, clear_output, input_request)`
        : parsed.error;
    }
    const message = parsed.message;
    if (!isPipeCommOp(message)) return `op ${JSON.stringify(message.op)} is not supported on pipes`;
    switch (message.op) {
      case "comm_send": {
        const values: { address: string; value: unknown }[] = [];
        for (const item of splitItems(message.items, buffers)) {
          try {
            values.push({ address: item.address, value: valueOf(item) });
          } catch (err) {
            return `a value for ${JSON.stringify(item.address)} could not be decoded: ${err instanceof Error ? err.message : String(err)}`;
          }
        }
        // Decoded first: a bad item refuses the whole frame, so nothing of it reaches the browser.
        for (const v of values) host.comms.send(v.address, v.value);
        return null;
      }
      case "comm_subscribe": {
        if (this.subscriptions.has(message.address)) return null;
        const address = message.address;
        this.subscriptions.set(
          address,
          host.comms.subscribe(address, (value) => {
            const batch = joinItems([itemOf(address, value)]);
            this.toProgram({ op: "comm_deliver", items: batch.items as unknown as JsonObject[] }, batch.buffers);
          }),
        );
        return null;
      }
      case "comm_unsubscribe":
        this.subscriptions.get(message.address)?.dispose();
        this.subscriptions.delete(message.address);
        return null;
      case "comm_read": {
        const address = message.address;
        // A pipe's comm_read may carry its own deadline (`timeout_ms`), capped at ten minutes.
        const asked = header.timeout_ms;
        const timeout = typeof asked === "number" && asked >= 0 ? Math.min(asked, 600_000) : (this.options.readTimeoutMs ?? 10_000);
        host.comms.read(address, { timeout }).then(
          (value) => {
            // A subscribed command gets the answer through its subscription already.
            if (this.subscriptions.has(address)) return;
            const batch = joinItems([itemOf(address, value)]);
            this.toProgram({ op: "comm_deliver", items: batch.items as unknown as JsonObject[] }, batch.buffers);
          },
          (err: unknown) => {
            const text = err instanceof Error ? err.message : String(err);
            this.toProgram({ op: "comm_read_failed", address, message: text });
          },
        );
        return null;
      }
      case "comm_sync": {
        const id = message.id;
        host.comms.sync().then(
          () => this.toProgram({ op: "comm_sync_ack", id }),
          (err: unknown) => this.fail(`comm_sync failed: ${err instanceof Error ? err.message : String(err)}`),
        );
        return null;
      }
      default: {
        const unreachable: never = message;
        return `unhandled op ${JSON.stringify(unreachable)}`;
      }
    }
  }

  /** Serves the command's `input()`; the answer, or why there is none, goes back as `input_reply`. */
  private input(header: JsonObject & { op: string }, bufferCount: number): string | null {
    const parsed = parsePipeInputRequest(header, bufferCount);
    if (!parsed.ok) return parsed.error;
    const { id, prompt, password } = parsed.message;
    const reply = (answer: PipeInputReplyOp) => this.toProgram(answer as unknown as JsonObject & { op: string });
    this.options.host.requestInput({ prompt, password }).then(
      (value) => reply({ op: "input_reply", id, status: "ok", value }),
      (err: unknown) =>
        reply({
          op: "input_reply",
          id,
          status: "error",
          ename: err instanceof Error ? err.name : "InputError",
          evalue: err instanceof Error ? err.message : String(err),
        }),
    );
    return null;
  }

  private display(header: JsonObject & { op: string }): string | null {
    const { host, cell } = this.options;
    const isObject = (v: unknown): v is JsonObject => v !== null && typeof v === "object" && !Array.isArray(v);
    const op = header.op as (typeof DISPLAY_OPS)[number];
    switch (op) {
      case "display":
      case "update_display": {
        if (!isObject(header.data)) return `"${op}" op: "data" must be an object of MIME type -> content`;
        if (header.metadata !== undefined && !isObject(header.metadata)) return `"${op}" op: "metadata" must be an object`;
        const displayId = header.display_id;
        if (displayId !== undefined && typeof displayId !== "string") return `"${op}" op: "display_id" must be a string`;
        const metadata = (header.metadata as JsonObject | undefined) ?? {};
        if (op === "update_display") {
          if (displayId === undefined) return '"update_display" op: "display_id" is required';
          host.send({ op: "update_display", cell, data: header.data, metadata, transient: { display_id: displayId } });
        } else {
          host.send({ op: "display", cell, data: header.data, metadata, transient: displayId === undefined ? {} : { display_id: displayId } });
        }
        return null;
      }
      case "clear_output":
        host.send({ op: "clear_output", cell, wait: header.wait === true });
        return null;
      default: {
        const unreachable: never = op;
        return `unhandled op ${String(unreachable)}`;
      }
    }
  }

  private toProgram(header: JsonObject & { op: string }, buffers: Uint8Array[] = []): void {
    if (this.state.type !== "open" && header.op !== "error") return;
    const back = this.fifos.writer;
    if (back.destroyed) return;
    const limit = this.options.maxBackBytes ?? 64 * 1024 * 1024;
    if (back.writableLength > limit && header.op !== "error") {
      this.fail(`the command does not read TSNB_PIPE_BACK (over ${limit} bytes queued for it)`);
      return;
    }
    for (const part of encodeFrame(header, buffers)) back.write(part);
  }

  /** Shows the error in the cell, tells the command, and closes its pipe; the cell's other output stays. */
  private fail(error: string): void {
    const before = this.apply({ type: "fail", error });
    if (before.type === "failed" || before.type === "closed") return;
    this.options.host.write("stderr", `tsnb: the pipe of ${this.options.label} was closed: ${error}\n`);
    this.toProgram({ op: "error", message: error });
    this.disposeSubscriptions();
    this.fifos.writer.end();
    this.fifos.reader.destroy();
    this.fifos.endOfWrites();
  }

  private disposeSubscriptions(): void {
    for (const s of this.subscriptions.values()) s.dispose();
    this.subscriptions.clear();
  }

  /**
   * Call once the command exited: reads what it wrote before exiting (up to `drainMs`), then closes
   * both pipes and removes the directory. Idempotent.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      this.fifos.endOfWrites();
      let timer: NodeJS.Timeout | null = null;
      const deadline = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.options.drainMs ?? 2000);
      });
      const outcome = await Promise.race([this.ended.then(() => "ended" as const), deadline]);
      if (timer !== null) clearTimeout(timer);
      if (outcome === "timeout" && this.state.type !== "failed") {
        this.options.host.write("stderr", `tsnb: ${this.options.label} exited but something still holds its TSNB_PIPE open; the pipe is closed\n`);
      }
      this.dispose();
    })();
    return this.closing;
  }

  /** Closes everything at once (no drain) and removes the directory. Idempotent. */
  dispose(): void {
    this.apply({ type: "close" });
    this.disposeSubscriptions();
    this.fifos.dispose();
  }
}

/**
 * The pipes of the program's running commands: closes them when the program exits, and on first use
 * removes directories left by earlier programs that were killed (SIGKILL skips every cleanup).
 */
export class PipeRegistry implements Disposable {
  private readonly open = new Set<CommandPipes>();
  private swept: Promise<void> | null = null;
  private disposed = false;

  constructor(private readonly options: { log(text: string): void }) {}

  async create(options: PipeOptions): Promise<CommandPipes> {
    if (this.disposed) throw new Error("the program is shutting down");
    this.swept ??= this.sweep();
    await this.swept;
    const pipes = await CommandPipes.open(options);
    this.open.add(pipes);
    return pipes;
  }

  /** Drains and removes a command's pipes once it exited. */
  async close(pipes: CommandPipes): Promise<void> {
    try {
      await pipes.close();
    } finally {
      this.open.delete(pipes);
    }
  }

  private sweep(): Promise<void> {
    return sweepStaleDirs({ prefix: DIR_PREFIX, kind: "pipe", log: (text) => this.options.log(text) });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const pipes of this.open) pipes.dispose();
    this.open.clear();
  }
}
