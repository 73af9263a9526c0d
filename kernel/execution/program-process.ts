// One user-program process: spawned as ARCHITECTURE.md says, spoken to in the pipe framing on fd 3, interrupted
// through fd 4, raw fd 1/2 captured. It reports everything through one `onEvent` callback; the executor decides
// what a crash means for the cell that was running.

import { spawn, type ChildProcess } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { describeFrameError, encodeFrame, FrameDecoder, type RawFrame } from "../../protocol/framing.js";
import type { JsonObject } from "../../protocol/jupyter.js";
import type { HelloOp, KernelToProgram, ProgramToKernel } from "../../protocol/program.js";
import type { Log } from "../log.js";
import { parseProgramOp } from "./ops.js";

export type ExitReason =
  | { type: "exited"; code: number | null; signal: NodeJS.Signals | null }
  | { type: "bad_frame"; detail: string }
  | { type: "spawn_failed"; detail: string }
  | { type: "no_hello"; ms: number }
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

export class ProgramProcess {
  private state: ProgramState = { type: "starting" };
  private readonly child: ChildProcess;
  private readonly channel: (Readable & Writable) | null;
  private readonly interruptChannel: Writable | null;
  private readonly decoder = new FrameDecoder();
  private readonly exited: Promise<void>;
  private paused = false;

  constructor(private readonly options: ProgramProcessOptions) {
    const { programPath, cwd, env, log } = options;
    this.child = spawn(process.execPath, [
      "--experimental-import-meta-resolve",
      // Interrupts stop JavaScript with terminateExecution; Node 20's async-hook stack checks would abort the
      // whole program (and lose every variable) when that lands inside a callback. See runtime/README.md.
      "--no-force-async-hooks-checks",
      programPath,
    ], {
      cwd,
      env,
      stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"],
    });
    this.exited = new Promise((resolve) => this.child.once("close", () => resolve()));
    this.channel = (this.child.stdio[3] as (Readable & Writable) | null) ?? null;
    this.interruptChannel = (this.child.stdio[4] as Writable | null) ?? null;

    this.child.once("error", (err) => {
      // spawn errors (ENOENT for node itself) arrive here instead of as an exit.
      this.apply({ type: "exit", reason: { type: "spawn_failed", detail: err.message } });
    });
    this.child.once("exit", (code, signal) => {
      // Output written just before exiting may still be in the pipes: report the exit once they are read
      // ("close"), but not later than a moment after, since a grandchild may hold fd 1 open indefinitely.
      this.resume();
      const report = () => this.apply({ type: "exit", reason: { type: "exited", code, signal } });
      const timer = setTimeout(report, 200);
      this.child.once("close", () => {
        clearTimeout(timer);
        report();
      });
    });
    for (const name of ["stdout", "stderr"] as const) {
      const stream = this.child[name];
      stream?.setEncoding("utf8");
      stream?.on("data", (text: string) => this.options.onEvent({ type: "raw", name, text }));
      stream?.on("error", (err) => log.warn(`program ${name}: ${err.message}`));
    }
    this.channel?.on("data", (chunk: Buffer) => this.onChannelData(chunk));
    this.channel?.on("error", (err) => log.warn(`program channel: ${err.message}`));
    this.interruptChannel?.on("error", (err) => log.warn(`program interrupt channel: ${err.message}`));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get current(): ProgramState {
    return this.state;
  }

  send(op: KernelToProgram): boolean {
    return this.sendFrame(op as unknown as JsonObject & { op: string });
  }

  sendFrame(header: JsonObject & { op: string }, buffers: readonly Uint8Array[] = []): boolean {
    if (this.state.type !== "ready" || !this.channel || this.channel.destroyed) return false;
    const [prefix, json, ...parts] = encodeFrame(header, buffers);
    // One write for length and header: the program then wakes once per op, not twice.
    this.channel.write(Buffer.concat([prefix!, json!]));
    for (const part of parts) this.channel.write(part);
    return true;
  }

  /** Written to fd 4, which a helper thread reads even while the main thread spins in `while (true) {}`. */
  interrupt(): boolean {
    if (this.state.type !== "ready" || !this.interruptChannel || this.interruptChannel.destroyed) return false;
    for (const chunk of encodeFrame({ op: "interrupt" })) this.interruptChannel.write(chunk);
    return true;
  }

  /**
   * Stops reading the program's output. Its writes then block on the full pipe, which is the backpressure that
   * keeps the kernel's memory bounded when a cell prints faster than IOPub drains.
   */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.channel?.pause();
    this.child.stdout?.pause();
    this.child.stderr?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.channel?.resume();
    this.child.stdout?.resume();
    this.child.stderr?.resume();
  }

  /** Asks the program to exit, then kills it after `graceMs`. Resolves once the process is gone. */
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
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }

  /** Kills at once: for a program that broke the framing, there is nothing left to say to it. */
  kill(reason: ExitReason): void {
    this.apply({ type: "exit", reason });
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }

  private sendRaw(op: KernelToProgram): void {
    if (!this.channel || this.channel.destroyed) return;
    for (const chunk of encodeFrame(op as unknown as JsonObject & { op: string })) this.channel.write(chunk);
  }

  private onChannelData(chunk: Buffer): void {
    if (this.state.type === "exited") return;
    const { frames, error } = this.decoder.push(chunk);
    for (const frame of frames) this.onFrame(frame);
    if (error) this.kill({ type: "bad_frame", detail: describeFrameError(error) });
  }

  private onFrame(frame: RawFrame): void {
    if (this.state.type === "exited") return;
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
      this.apply({ type: "hello", hello: op });
      return;
    }
    this.options.onEvent({ type: "op", op, buffers: frame.buffers });
  }

  private apply(event: ProgramTransition): void {
    const before = this.state;
    const after = programTransition(before, event);
    if (after === before) return;
    this.state = after;
    if (after.type === "ready" && before.type === "starting") this.options.onEvent({ type: "ready", hello: after.hello });
    if (after.type === "exited") this.options.onEvent({ type: "exit", reason: after.reason, wasReady: after.wasReady });
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
    case "stopped":
      return "was stopped";
    default: {
      const unreachable: never = reason;
      return String(unreachable);
    }
  }
}
