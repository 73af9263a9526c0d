// Evaluates compiled cells through an in-process inspector session with V8's REPL mode: let/const/class
// can be redeclared across cells, top-level await works and the completion value of the last expression
// comes back. The result RemoteObject is turned into the real JS value by handing it to a private stash
// object with Runtime.callFunctionOn.

import inspector from "node:inspector";
import type { Disposable } from "../../protocol/disposable.js";
import { DisposedError } from "../../protocol/disposable.js";

export type EvalOutcome =
  | { type: "value"; value: unknown }
  | { type: "exception"; value: unknown }
  | { type: "interrupted" };

/** A signal for one evaluation: resolves when the user interrupts it. */
export interface InterruptSignal {
  readonly interrupted: Promise<void>;
  isInterrupted(): boolean;
}

interface RemoteObject {
  type: string;
  subtype?: string;
  value?: unknown;
  unserializableValue?: string;
  objectId?: string;
  description?: string;
}

interface EvaluateResponse {
  result: RemoteObject;
  exceptionDetails?: { exception?: RemoteObject; text: string };
}

const GROUP = "tsnb-eval";

/** CDP's unserializableValue: a bigint ("12n") or one of NaN, Infinity, -Infinity, -0. */
function unserializable(text: string): number | bigint {
  return text.endsWith("n") ? BigInt(text.slice(0, -1)) : Number(text);
}
const STASH = Symbol.for("tsnb.stash");

export interface EvaluatorOptions {
  log(text: string): void;
}

export class Evaluator implements Disposable {
  private readonly session = new inspector.Session();
  private readonly stash: { value: unknown } = { value: undefined };
  private stashId: Promise<string>;
  private disposed = false;

  constructor(private readonly options: EvaluatorOptions) {
    this.session.connect();
    Object.defineProperty(globalThis, STASH, { value: this.stash, enumerable: false, configurable: true });
    this.stashId = this.post<EvaluateResponse>("Runtime.evaluate", { expression: "globalThis[Symbol.for('tsnb.stash')]" }).then(
      (r) => {
        if (!r.result.objectId) throw new Error("tsnb: could not reach the evaluation stash");
        return r.result.objectId;
      },
    );
  }

  post<T>(method: string, params: object): Promise<T> {
    if (this.disposed) return Promise.reject(new DisposedError("the evaluator"));
    return new Promise<T>((resolve, reject) => {
      this.session.post(method, params, (err, result) => {
        if (err) reject(err);
        else resolve(result as T);
      });
    });
  }

  /**
   * Runs a compiled cell. `replMode` (see CompiledCell.replMode) evaluates it in V8's REPL mode, whose result is a
   * promise the inspector awaits; otherwise as a plain script, whose completion value comes back at once.
   */
  async evaluate(js: string, signal: InterruptSignal, options: { replMode: boolean } = { replMode: true }): Promise<EvalOutcome> {
    const interrupted = signal.interrupted.then((): EvalOutcome => ({ type: "interrupted" }));
    // Only a RemoteObject with an objectId pins anything in the group; a primitive result (the common
    // `1 + 1`) needs no release round trip. Unknown (interrupted, failed) means release to be safe.
    let holdsObjects = true;
    const evaluation = this.post<EvaluateResponse>(
      "Runtime.evaluate",
      options.replMode ? { expression: js, replMode: true, awaitPromise: true, objectGroup: GROUP } : { expression: js, objectGroup: GROUP },
    ).then(
      async (response): Promise<EvalOutcome> => {
        holdsObjects = response.result.objectId !== undefined || response.exceptionDetails?.exception?.objectId !== undefined;
        if (response.exceptionDetails) {
          const remote = response.exceptionDetails.exception;
          const value = remote ? await this.toValue(remote) : new Error(response.exceptionDetails.text);
          return { type: "exception", value };
        }
        return { type: "value", value: await this.toValue(response.result) };
      },
      (err: unknown): EvalOutcome => {
        // Runtime.terminateExecution makes the evaluate call itself fail ("Execution was terminated").
        if (signal.isInterrupted()) return { type: "interrupted" };
        return { type: "exception", value: err instanceof Error ? err : new Error(String(err)) };
      },
    );
    try {
      return await Promise.race([evaluation, interrupted]);
    } finally {
      // Objects of an interrupted evaluation are released too; the cell's promise is abandoned.
      if (holdsObjects) this.release(GROUP);
    }
  }

  /** Lets V8 collect the remote objects of a finished evaluation. */
  private release(objectGroup: string): void {
    if (this.disposed) return;
    this.post("Runtime.releaseObjectGroup", { objectGroup }).catch((err: unknown) =>
      this.options.log(`releasing ${objectGroup} failed: ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  private async toValue(remote: RemoteObject): Promise<unknown> {
    // Primitives come back by value: no second inspector round trip through the stash.
    if (remote.objectId === undefined) {
      if (remote.unserializableValue !== undefined) return unserializable(remote.unserializableValue);
      return remote.type === "undefined" ? undefined : remote.value;
    }
    await this.post("Runtime.callFunctionOn", {
      objectId: await this.stashId,
      functionDeclaration: "function (v) { this.value = v; }",
      arguments: [{ objectId: remote.objectId }],
    });
    const value = this.stash.value;
    this.stash.value = undefined;
    return value;
  }

  /** Names declared with let/const/class at the top level of earlier cells (not on globalThis). */
  async lexicalNames(): Promise<string[]> {
    const r = await this.post<{ names: string[] }>("Runtime.globalLexicalScopeNames", {});
    return r.names;
  }

  /** Evaluates an expression only if V8 can prove it has no side effects; null otherwise. */
  async evaluateSideEffectFree(expression: string): Promise<{ found: true; value: unknown } | { found: false }> {
    const r = await this.post<EvaluateResponse>("Runtime.evaluate", {
      expression,
      throwOnSideEffect: true,
      silent: true,
      timeout: 200,
      objectGroup: GROUP + "-introspect",
    });
    try {
      if (r.exceptionDetails) return { found: false };
      return { found: true, value: await this.toValue(r.result) };
    } finally {
      this.release(GROUP + "-introspect");
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.session.disconnect();
    delete (globalThis as { [STASH]?: unknown })[STASH];
  }
}
