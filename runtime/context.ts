// Which cell is running right now, carried across awaits and timers so output from callbacks lands under
// the cell that created them.
//
// Why not AsyncLocalStorage: in Node 20 it enables async_hooks, and then interrupting JavaScript that runs
// in a callback or after an await (Runtime.terminateExecution skips the hooks' `after` bookkeeping) aborts
// the whole process on a native CHECK (callback.cc "execution_async_id == 0"), losing every variable. V8
// promise hooks do not arm that check, so this tracker uses them for promises and wraps the timer
// functions; other callbacks (I/O events) run without a cell and the kernel files their output under the
// most recent cell.
//
// An interrupted cell's pending continuations are not cancelled: terminating JavaScript from a promise
// hook empties V8's whole microtask queue (the runtime's own pending work with it), and skipping the
// timers of an interrupted cell would also skip library timers (output and comms batching) that cell
// happened to start. So, like threads in Python, work the cell scheduled may still run later; a running
// loop there is stopped by the next interrupt.

import { syncBuiltinESMExports } from "node:module";
import timers from "node:timers";
import { promiseHooks } from "node:v8";
import type { Disposable } from "../protocol/disposable.js";

type AnyFn = (...args: unknown[]) => unknown;

const TIMER_FUNCTIONS = ["setTimeout", "setInterval", "setImmediate"] as const;

export class ContextTracker<T extends object> implements Disposable {
  private active: T | undefined = undefined;
  private readonly saved: (T | undefined)[] = [];
  private readonly promises = new WeakMap<Promise<unknown>, T>();
  private lastThrow: T | undefined = undefined;
  private readonly restore: (() => void)[] = [];
  private disposed = false;

  constructor() {
    const stopHooks = promiseHooks.createHook({
      init: (promise) => {
        if (this.active !== undefined) this.promises.set(promise, this.active);
      },
      before: (promise) => {
        this.saved.push(this.active);
        this.active = this.promises.get(promise);
      },
      after: () => {
        this.active = this.saved.pop();
      },
    });
    this.restore.push(() => stopHooks());
    this.wrapTimers();
  }

  current(): T | undefined {
    return this.active;
  }

  run<R>(context: T | undefined, fn: () => R): R {
    const previous = this.active;
    this.active = context;
    try {
      return fn();
    } catch (err) {
      // uncaughtException handlers run after this frame is gone; remember whose callback threw.
      this.lastThrow = context;
      throw err;
    } finally {
      this.active = previous;
    }
  }

  /** Binds `fn` to the current context (if any). */
  bind<F extends AnyFn>(fn: F): F {
    const context = this.active;
    if (context === undefined || typeof fn !== "function") return fn;
    const tracker = this;
    return function (this: unknown, ...args: unknown[]) {
      return tracker.run(context, () => fn.apply(this, args));
    } as F;
  }

  contextOfPromise(promise: Promise<unknown>): T | undefined {
    return this.promises.get(promise);
  }

  /** The context of the callback whose exception is being reported, consumed once. */
  takeThrowContext(): T | undefined {
    const context = this.lastThrow;
    this.lastThrow = undefined;
    return context;
  }

  /**
   * Forgets the current context. Called at the top of an event-loop callback after an interrupt, when
   * terminated JavaScript skipped the `finally` blocks that would have restored it.
   */
  reset(): void {
    this.active = undefined;
    this.saved.length = 0;
    this.lastThrow = undefined;
  }

  private wrapTimers(): void {
    const g = globalThis as unknown as Record<string, AnyFn>;
    const t = timers as unknown as Record<string, AnyFn>;
    for (const name of TIMER_FUNCTIONS) {
      const original = g[name]!;
      const wrapped = this.wrapScheduler(original, 0);
      g[name] = wrapped;
      const moduleOriginal = t[name];
      if (moduleOriginal === original) t[name] = wrapped;
      this.restore.push(() => {
        g[name] = original;
        if (moduleOriginal === original) t[name] = original;
      });
    }
    const originalMicrotask = g.queueMicrotask!;
    g.queueMicrotask = this.wrapScheduler(originalMicrotask, 0);
    const originalNextTick = process.nextTick;
    process.nextTick = this.wrapScheduler(originalNextTick as AnyFn, 0) as typeof process.nextTick;
    this.restore.push(() => {
      g.queueMicrotask = originalMicrotask;
      process.nextTick = originalNextTick;
    });
    syncBuiltinESMExports();
  }

  /** Wraps a scheduling function whose callback is argument `index`. */
  private wrapScheduler(original: AnyFn, index: number): AnyFn {
    const tracker = this;
    const wrapped = function (this: unknown, ...args: unknown[]) {
      if (tracker.active !== undefined && typeof args[index] === "function") args[index] = tracker.bind(args[index] as AnyFn);
      return original.apply(this, args);
    };
    // Keep util.promisify(setTimeout) and friends working.
    for (const key of Reflect.ownKeys(original)) {
      if (key === "length" || key === "name" || key === "prototype") continue;
      const descriptor = Object.getOwnPropertyDescriptor(original, key);
      if (descriptor) Object.defineProperty(wrapped, key, descriptor);
    }
    Object.defineProperty(wrapped, "name", { value: original.name });
    return wrapped;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const undo of this.restore.splice(0).reverse()) undo();
    syncBuiltinESMExports();
    this.reset();
  }
}
