// Interrupts, program side. The kernel numbers every interrupt and writes it to fd 4, which the main thread
// reads: when the event loop is free (a cell awaiting, or nothing running) the running cell's signal fires at
// once and the program acknowledges on the main channel. When the main thread is busy running JavaScript
// (`while (true) {}`, in a cell, after an await or in a timer callback), nothing here can run; the kernel sees
// no acknowledgement and stops that JavaScript itself through this program's inspector port (see
// kernel/execution/interrupt-forcer.ts): first it calls NOTE_KEY with the interrupt's number on top of the
// running code (so the cell knows it was interrupted), then Runtime.terminateExecution.
//
// This replaced a worker thread that read fd 4 and talked to the inspector from inside the process: a second
// V8 isolate and Node environment, 9.3 MB RSS for the whole session. The inspector's port costs 0.5 MB.

import inspector from "node:inspector";
import { Socket } from "node:net";
import { describeFrameError, FrameDecoder } from "../protocol/framing.js";
import type { Disposable } from "../protocol/disposable.js";
import type { InterruptSignal } from "./evaluator/evaluate.js";

/** Where the kernel's inspector probe finds the function that records an interrupt's number. */
export const NOTE_KEY = Symbol.for("tsnb.interrupt.note");

export interface InterruptControllerOptions {
  fd: number;
  log(text: string): void;
  /** Called once per interrupt, from the event loop, after the running cell's signal fired. */
  onInterrupt(): void;
  /** Tells the kernel the main thread handled interrupt `seq`: it must not stop running JavaScript for it. */
  acknowledge(seq: number): void;
}

interface ActiveSignal {
  startSeq: number;
  fire(): void;
}

/**
 * Opens the inspector on a random loopback port for the kernel's interrupts. The URL's path is a random UUID
 * and is the only key: the kernel starts the program with `--inspect-publish-uid=stderr`, so Node does not list
 * it over HTTP (/json/list) and prints it only on the program's stderr, which the kernel reads and drops.
 * Returns null (interrupts of busy code then cannot be forced) when the port cannot be opened.
 */
export function openInspectorPort(log: (text: string) => void): string | null {
  try {
    if (inspector.url() === undefined) inspector.open(0, "127.0.0.1", false);
    return inspector.url() ?? null;
  } catch (err) {
    log(`could not open the inspector port, so busy code cannot be interrupted: ${err instanceof Error ? err.message : String(err)}`);
    return null;
  }
}

export class InterruptController implements Disposable {
  /** Highest interrupt number seen, from fd 4 or the kernel's probe: what `isInterrupted` compares with. */
  private requested = 0;
  /** Highest interrupt number acted on (signals fired, kernel told). */
  private handled = 0;
  private readonly active = new Set<ActiveSignal>();
  private readonly socket: Socket;
  private readonly decoder = new FrameDecoder();
  private disposed = false;

  constructor(private readonly options: InterruptControllerOptions) {
    // Runs on top of whatever JavaScript is executing, so it only records the number: acting (firing promises,
    // flushing output) waits for the event loop and the fd 4 frame that carries the same number.
    Object.defineProperty(globalThis, NOTE_KEY, {
      value: (seq: unknown) => {
        if (typeof seq === "number" && seq > this.requested) this.requested = seq;
      },
      configurable: true,
      enumerable: false,
    });
    this.socket = new Socket({ fd: options.fd, readable: true, writable: false });
    // The main channel decides when the program exits, not the interrupt channel.
    this.socket.unref();
    this.socket.on("data", (chunk: Buffer) => {
      const { frames, error } = this.decoder.push(chunk);
      for (const frame of frames) {
        if (frame.header.op !== "interrupt") {
          options.log(`ignored op ${JSON.stringify(frame.header.op)} on the interrupt channel`);
          continue;
        }
        const seq = frame.header.seq;
        this.handle(typeof seq === "number" && Number.isInteger(seq) ? seq : Math.max(this.requested, this.handled) + 1);
      }
      if (error) {
        options.log(`interrupt channel: ${describeFrameError(error)}`);
        this.socket.destroy();
      }
    });
    this.socket.on("error", (err) => options.log(`interrupt channel error: ${err.message}`));
  }

  private handle(seq: number): void {
    if (this.disposed || seq <= this.handled) return;
    this.handled = seq;
    if (seq > this.requested) this.requested = seq;
    for (const signal of this.active) if (signal.startSeq < seq) signal.fire();
    this.options.onInterrupt();
    this.options.acknowledge(seq);
  }

  /** A signal for one cell: fires only for interrupts requested after this call. */
  signal(): InterruptSignal & Disposable {
    const startSeq = this.requested;
    let fire!: () => void;
    const interrupted = new Promise<void>((resolve) => (fire = resolve));
    const entry: ActiveSignal = { startSeq, fire };
    this.active.add(entry);
    return {
      interrupted,
      isInterrupted: () => this.requested > startSeq,
      dispose: () => {
        this.active.delete(entry);
      },
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.socket.destroy();
    this.active.clear();
    delete (globalThis as { [NOTE_KEY]?: unknown })[NOTE_KEY];
  }
}

interface AsyncWrapBinding {
  async_hook_fields: Uint32Array;
  constants: { kCheck: number };
}

/**
 * Node checks that every callback's async-id bookkeeping unwinds (the "async hook stack has become
 * corrupted" abort). Runtime.terminateExecution inside a timer callback skips that unwinding, so the
 * check would kill the process and every variable with it. This is what `--no-force-async-hooks-checks`
 * does; the kernel starts the program with fixed flags, so it is switched off here. Returns a note when
 * that was not possible (interrupting callback code may then crash the program).
 */
export function disarmAsyncHookChecks(): string | null {
  const previous = process.noDeprecation;
  // process.binding("async_wrap") is deprecated (DEP0111); the warning would reach the user's cell.
  process.noDeprecation = true;
  try {
    const binding = (process as unknown as { binding(name: string): AsyncWrapBinding }).binding("async_wrap");
    binding.async_hook_fields[binding.constants.kCheck] = 0;
    return null;
  } catch (err) {
    return `could not disable async hook checks: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    process.noDeprecation = previous;
  }
}
