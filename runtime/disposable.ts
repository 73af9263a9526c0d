// Disposables of the user-program runtime: dispose() is idempotent and rejects pending work with DisposedError.

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
