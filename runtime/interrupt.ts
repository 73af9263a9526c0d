// Main-thread side of interrupts: starts the interrupter worker, acknowledges its notifications and fails
// the running cell. See interrupter.ts for why the worker exists.

import { Worker } from "node:worker_threads";
import type { Disposable } from "../protocol/disposable.js";
import type { InterruptSignal } from "./evaluator/evaluate.js";
import { SHARED_SLOTS, SLOT, type InterrupterData, type MainToWorker, type WorkerToMain } from "./interrupt-shared.js";

export interface InterruptControllerOptions {
  workerUrl: URL;
  fd: number;
  log(text: string): void;
  /** Called for every interrupt the main thread sees, after the running cell's signal fired. */
  onInterrupt(): void;
}

interface ActiveSignal {
  startSeq: number;
  fire(): void;
}

export class InterruptController implements Disposable {
  private readonly shared = new Int32Array(new SharedArrayBuffer(SHARED_SLOTS * 4));
  private readonly worker: Worker;
  private readonly active = new Set<ActiveSignal>();
  private disposed = false;

  constructor(private readonly options: InterruptControllerOptions) {
    const data: InterrupterData = { shared: this.shared.buffer as SharedArrayBuffer, fd: options.fd };
    this.worker = new Worker(options.workerUrl, { workerData: data, stdout: false, stderr: false });
    this.worker.unref();
    this.worker.on("message", (message: WorkerToMain) => this.onMessage(message));
    this.worker.on("error", (err) => options.log(`interrupter failed: ${err.stack ?? err.message}`));
  }

  private onMessage(message: WorkerToMain): void {
    switch (message.type) {
      case "interrupt": {
        Atomics.store(this.shared, SLOT.acknowledged, Math.max(message.seq, Atomics.load(this.shared, SLOT.acknowledged)));
        Atomics.notify(this.shared, SLOT.acknowledged);
        for (const signal of this.active) if (signal.startSeq < message.seq) signal.fire();
        this.options.onInterrupt();
        break;
      }
      case "log":
        this.options.log(message.text);
        break;
      default: {
        const unreachable: never = message;
        this.options.log(`unknown interrupter message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** A signal for one cell: fires only for interrupts requested after this call. */
  signal(): InterruptSignal & Disposable {
    const startSeq = Atomics.load(this.shared, SLOT.requested);
    let fire!: () => void;
    const interrupted = new Promise<void>((resolve) => (fire = resolve));
    const entry: ActiveSignal = { startSeq, fire };
    this.active.add(entry);
    return {
      interrupted,
      isInterrupted: () => Atomics.load(this.shared, SLOT.requested) > startSeq,
      dispose: () => {
        this.active.delete(entry);
      },
    };
  }

  /** Synchronous so it can run in a process 'exit' handler. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const message: MainToWorker = { type: "release" };
    this.worker.postMessage(message);
    Atomics.wait(this.shared, SLOT.released, 0, 500);
    void this.worker.terminate();
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
