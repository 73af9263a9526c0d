// One user-program process: spawned as ARCHITECTURE.md says, spoken to in the pipe framing over its own pair
// of FIFOs (program-fifos.ts), interrupted through fd 4, raw fd 1/2 captured. It reports everything through
// one `onEvent` callback; the executor decides what a crash means for the cell that was running.

import { spawn, type ChildProcess } from "node:child_process";
import type { Writable } from "node:stream";
import { describeFrameError, encodeFrame, FrameDecoder, type RawFrame } from "../../protocol/framing.js";
import type { JsonObject } from "../../protocol/jupyter.js";
import type { HelloOp, KernelToProgram, ProgramToKernel } from "../../protocol/program.js";
import { errorMessage, type Log } from "../log.js";
import { InterruptForcer, withoutInspectorNotices } from "./interrupt-forcer.js";
import { parseProgramOp } from "./ops.js";
import { createProgramFifos, type ProgramFifos } from "./program-fifos.js";

export type ExitReason =
  | { type: "exited"; code: number | null; signal: NodeJS.Signals | null }
  | { type: "bad_frame"; detail: string }
  | { type: "spawn_failed"; detail: string }
  | { type: "no_hello"; ms: number }
  /** Its first frame was not a hello with the TSNB_PIPE_TOKEN it was given: the kernel ended it. */
  | { type: "refused"; detail: string }
  | { type: "stopped" };

export type ProgramEvent =
  | { type: "ready"; hello: HelloOp }
  | { type: "op"; op: ProgramToKernel; buffers: Uint8Array[] }
  | { type: "extension_op"; header: JsonObject & { op: string }; buffers: Uint8Array[] }
  | { type: "raw"; name: "stdout" | "stderr"; text: string }
  | { type: "exit"; reason: ExitReason; wasReady: boolean };

export type ProgramState =
  | { type: "starting" }
  | { type: "ready"; hello: HelloOp }
  | { type: "stopping" }
  | { type: "exited"; reason: ExitReason; wasReady: boolean };

export type ProgramTransition =
  | { type: "hello"; hello: HelloOp }
  | { type: "stop" }
  | { type: "exit"; reason: ExitReason };

/** The whole lifecycle: starting -> ready -> (stopping ->) exited. Exits are final; extra events are ignored. */
export function programTransition(state: ProgramState, event: ProgramTransition): ProgramState {
  switch (state.type) {
    case "starting":
    case "ready":
    case "stopping": {
      const wasReady = state.type === "ready" || state.type === "stopping";
      switch (event.type) {
        case "hello":
          return state.type === "starting" ? { type: "ready", hello: event.hello } : state;
        case "stop":
          return { type: "stopping" };
        case "exit":
          // Our own stop may surface as a signal exit; report it as what it was.
          return { type: "exited", reason: state.type === "stopping" ? { type: "stopped" } : event.reason, wasReady };
        default: {
          const unreachable: never = event;
          return unreachable;
        }
      }
    }
    case "exited":
      return state;
    default: {
      const unreachable: never = state;
      return unreachable;
    }
  }
}

export interface ProgramProcessOptions {
  programPath: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  log: Log;
  onEvent(event: ProgramEvent): void;
  /** Ops (such as the comms bridge's) that are passed through unparsed as `extension_op` events. */
  isExtensionOp?: (op: string) => boolean;
}

/** After the process exited, how long to wait for the output it wrote (a grandchild may hold fd 1 open). */
const DRAIN_MS = 200;

export class ProgramProcess {
  private state: ProgramState = { type: "starting" };
  /** Null until the FIFOs exist and the process is spawned. */
  private child: ChildProcess | null = null;
  private fifos: ProgramFifos | null = null;
  private interruptChannel: Writable | null = null;
  private readonly decoder = new FrameDecoder();
  private readonly exited: Promise<void>;
  private markExited: () => void = () => undefined;
  private paused = false;
  private interruptSeq = 0;
  private forcer: InterruptForcer | null = null;

  constructor(private readonly options: ProgramProcessOptions) {
    this.exited = new Promise((resolve) => {
      this.markExited = resolve;
    });
    void this.launch();
  }

  private async launch(): Promise<void> {
    const { programPath, cwd, env, log } = this.options;
    let fifos: ProgramFifos;
    try {
      fifos = await createProgramFifos();
    } catch (err) {
      this.apply({ type: "exit", reason: { type: "spawn_failed", detail: `its channel could not be created: ${errorMessage(err)}` } });
      this.markExited();
      return;
    }
    if (this.state.type !== "starting") {
      // Stopped or killed while its FIFOs were being made: it never runs.
      fifos.dispose();
      this.apply({ type: "exit", reason: { type: "stopped" } });
      this.markExited();
      return;
    }
    this.fifos = fifos;
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [
        "--experimental-import-meta-resolve",
        // Interrupts stop JavaScript with terminateExecution; Node 20's async-hook stack checks would abort the
        // whole program (and lose every variable) when that lands inside a callback. See runtime/README.md.
        "--no-force-async-hooks-checks",
        // The program opens its inspector for interrupts (runtime/interrupt.ts); this keeps Node from listing the
        // port's secret URL over HTTP. It is printed on stderr instead, which onStderr drops.
        "--inspect-publish-uid=stderr",
        programPath,
      ], {
        cwd,
        env: { ...env, ...fifos.env },
        // fd 3 is unused since the main channel moved to the FIFOs; fd 4 stays the interrupt channel.
        stdio: ["ignore", "pipe", "pipe", "ignore", "pipe"],
      });
    } catch (err) {
      // Invalid options throw instead of emitting "error"; this runs detached from the constructor, so a throw
      // here would be an unhandled rejection that ends the kernel.
      fifos.dispose();
      this.apply({ type: "exit", reason: { type: "spawn_failed", detail: errorMessage(err) } });
      this.markExited();
      return;
    }
    this.child = child;
    this.interruptChannel = (child.stdio[4] as Writable | null) ?? null;
    const readerClosed = new Promise<void>((resolve) => fifos.reader.once("close", () => resolve()));
    let finished = false;
    const finish = (reason: ExitReason) => {
      if (finished) return;
      finished = true;
      this.apply({ type: "exit", reason });
      fifos.dispose();
      this.markExited();
    };

    child.once("error", (err) => {
      // spawn errors (ENOENT for node itself) arrive here instead of as an exit.
      if (child.pid === undefined) finish({ type: "spawn_failed", detail: err.message });
      else log.warn(`program process: ${err.message}`);
    });
    child.once("exit", (code, signal) => {
      // Frames and output written just before exiting may still be in the FIFO and the pipes: report the exit
      // once they are read, but not later than a moment after, since a grandchild may hold fd 1 open.
      this.resume();
      fifos.endOfWrites();
      const report = () => finish({ type: "exited", code, signal });
      const timer = setTimeout(report, DRAIN_MS);
      const childClosed = new Promise<void>((resolve) => child.once("close", () => resolve()));
      void Promise.all([childClosed, readerClosed]).then(() => {
        clearTimeout(timer);
        report();
      });
    });
    for (const name of ["stdout", "stderr"] as const) {
      const stream = child[name];
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => {
        const text = name === "stderr" ? withoutInspectorNotices(chunk) : chunk;
        if (text !== "") this.options.onEvent({ type: "raw", name, text });
      });
      stream?.on("error", (err) => log.warn(`program ${name}: ${err.message}`));
    }
    fifos.reader.on("data", (chunk: Buffer) => this.onChannelData(chunk));
    fifos.reader.on("error", (err) => log.warn(`program channel (TSNB_PIPE): ${err.message}`));
    fifos.writer.on("error", (err) => log.warn(`program channel (TSNB_PIPE_BACK): ${err.message}`));
    this.interruptChannel?.on("error", (err) => log.warn(`program interrupt channel: ${err.message}`));
    if (this.paused) this.pauseStreams();
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get current(): ProgramState {
    return this.state;
  }

  send(op: KernelToProgram): boolean {
    return this.sendFrame(op as unknown as JsonObject & { op: string });
  }

  sendFrame(header: JsonObject & { op: string }, buffers: readonly Uint8Array[] = []): boolean {
    const writer = this.fifos?.writer;
    if (this.state.type !== "ready" || !writer || writer.destroyed) return false;
    const [prefix, json, ...parts] = encodeFrame(header, buffers);
    // One write for length and header: the program then wakes once per op, not twice.
    writer.write(Buffer.concat([prefix!, json!]));
    for (const part of parts) writer.write(part);
    return true;
  }

  /**
   * Written to fd 4, which the program's main thread reads when its event loop is free; when it is busy
   * running JavaScript, the forcer stops that through the program's inspector (interrupt-forcer.ts).
   */
  interrupt(): boolean {
    if (this.state.type !== "ready" || !this.interruptChannel || this.interruptChannel.destroyed) return false;
    const seq = ++this.interruptSeq;
    for (const chunk of encodeFrame({ op: "interrupt", seq })) this.interruptChannel.write(chunk);
    if (this.forcer) this.forcer.force(seq);
    else this.options.log.warn("interrupt: the program has no inspector port, so code that keeps it busy cannot be stopped");
    return true;
  }

  /**
   * Stops reading the program's output. Its writes then block on the full FIFO, which is the backpressure that
   * keeps the kernel's memory bounded when a cell prints faster than IOPub drains.
   */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.pauseStreams();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.fifos?.reader.resume();
    this.child?.stdout?.resume();
    this.child?.stderr?.resume();
  }

  private pauseStreams(): void {
    this.fifos?.reader.pause();
    this.child?.stdout?.pause();
    this.child?.stderr?.pause();
  }

  /** Asks the program to exit, then kills it after `graceMs`. Resolves once the process is gone and its FIFOs removed. */
  async stop(graceMs: number): Promise<void> {
    if (this.state.type === "exited") return this.exited;
    const wasReady = this.state.type === "ready";
    if (wasReady) this.sendRaw({ op: "shutdown" });
    this.apply({ type: "stop" });
    this.resume();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exited,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, wasReady ? graceMs : 0);
      }),
    ]);
    clearTimeout(timer);
    this.killChild();
    await this.exited;
  }

  /** Kills at once: for a program that broke the framing, there is nothing left to say to it. */
  kill(reason: ExitReason): void {
    this.apply({ type: "exit", reason });
    this.killChild();
  }

  private killChild(): void {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }

  private sendRaw(op: KernelToProgram): void {
    const writer = this.fifos?.writer;
    if (!writer || writer.destroyed) return;
    for (const chunk of encodeFrame(op as unknown as JsonObject & { op: string })) writer.write(chunk);
  }

  private onChannelData(chunk: Buffer): void {
    if (this.state.type === "exited") return;
    const { frames, error } = this.decoder.push(chunk);
    for (const frame of frames) this.onFrame(frame);
    if (error) this.kill({ type: "bad_frame", detail: describeFrameError(error) });
  }

  private onFrame(frame: RawFrame): void {
    if (this.state.type === "exited") return;
    if (this.state.type === "starting") {
      this.onFirstFrame(frame);
      return;
    }
    if (this.options.isExtensionOp?.(frame.header.op)) {
      this.options.onEvent({ type: "extension_op", header: frame.header, buffers: frame.buffers });
      return;
    }
    const parsed = parseProgramOp(frame.header);
    if (!parsed.ok) {
      this.options.log.warn(`ignored a message from the program: ${parsed.error}`);
      return;
    }
    const op = parsed.op;
    if (op.op === "hello") {
      this.options.log.warn("ignored a second hello from the program");
      return;
    }
    if (op.op === "interrupt_ack") {
      this.forcer?.acknowledge(op.seq);
      return;
    }
    this.options.onEvent({ type: "op", op, buffers: frame.buffers });
  }

  /** The first frame must be a well-formed hello carrying this program's TSNB_PIPE_TOKEN; anything else ends it. */
  private onFirstFrame(frame: RawFrame): void {
    const header = frame.header;
    if (header.op !== "hello") {
      this.kill({ type: "refused", detail: `its first frame was ${JSON.stringify(header.op)}, not a hello carrying TSNB_PIPE_TOKEN` });
      return;
    }
    if (!this.fifos?.tokenMatches(header.token)) {
      this.kill({ type: "refused", detail: "its hello did not carry the TSNB_PIPE_TOKEN it was given" });
      return;
    }
    const parsed = parseProgramOp(header);
    if (!parsed.ok || parsed.op.op !== "hello") {
      this.kill({ type: "refused", detail: `its hello was malformed (${parsed.ok ? "not a hello" : parsed.error})` });
      return;
    }
    if (typeof parsed.op.inspector === "string") this.forcer = new InterruptForcer({ url: parsed.op.inspector, log: this.options.log });
    this.apply({ type: "hello", hello: parsed.op });
  }

  private apply(event: ProgramTransition): void {
    const before = this.state;
    const after = programTransition(before, event);
    if (after === before) return;
    this.state = after;
    if (after.type === "ready" && before.type === "starting") this.options.onEvent({ type: "ready", hello: after.hello });
    if (after.type === "exited") {
      this.forcer?.dispose();
      this.options.onEvent({ type: "exit", reason: after.reason, wasReady: after.wasReady });
    }
  }
}

export function describeExit(reason: ExitReason): string {
  switch (reason.type) {
    case "exited":
      return reason.signal ? `was killed by ${reason.signal}` : `exited (code ${reason.code ?? "unknown"})`;
    case "bad_frame":
      return `sent an unreadable message (${reason.detail}) and was stopped`;
    case "spawn_failed":
      return `could not be started (${reason.detail})`;
    case "no_hello":
      return `did not start within ${reason.ms} ms`;
    case "refused":
      return `was refused by the kernel: ${reason.detail}`;
    case "stopped":
      return "was stopped";
    default: {
      const unreachable: never = reason;
      return String(unreachable);
    }
  }
}
