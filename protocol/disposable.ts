// Every subscription, timer and pending call in the kernel and the user program is a Disposable (one definition
// for both; pure, so browser-safe). dispose() is idempotent; work that
// was still pending when its owner went away is rejected with a DisposedError so callers can tell "cancelled by
// shutdown/restart" from a real failure.

export interface Disposable {
  dispose(): void;
}

export class DisposedError extends Error {
  override readonly name = "DisposedError";
  constructor(what: string) {
    super(`${what} was disposed`);
  }
}

export function disposable(fn: () => void): Disposable {
  let done = false;
  return {
    dispose() {
      if (done) return;
      done = true;
      fn();
    },
  };
}

export function timer(ms: number, fn: () => void): Disposable {
  const handle = setTimeout(fn, ms);
  return disposable(() => clearTimeout(handle));
}

/** Rejects with `DeadlineError` when `ms` passes first. */
export class DeadlineError extends Error {
  override readonly name = "DeadlineError";
  constructor(what: string, ms: number) {
    super(`${what} did not finish within ${ms} ms`);
  }
}
