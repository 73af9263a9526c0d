// Node's console.log spends most of its time in util.formatWithOptions, even for `console.log("line", i)`:
// a 10,000-line print loop took 40-75 ms in formatting alone (bare Node, this machine), more than the whole
// rest of the path to the notebook. Print loops are the most common heavy output of a notebook, so the
// console formats arguments that are all primitives itself, exactly as formatWithOptions does without colors,
// and hands everything else (objects, symbols, `%` format strings, colors, custom inspect options) to Node.
// Only the formatting step is replaced (Node's internal kFormatForStdout/kFormatForStderr methods), so group
// indentation, stream selection and error handling stay Node's own.

import { Console } from "node:console";
import { disposable, type Disposable } from "../protocol/disposable.js";

type Format = (this: Console, args: unknown[]) => string;
type GetInspectOptions = (this: Console, stream: unknown) => object;

/** Finds one of Node's internal console symbols by its description, on the object or its prototypes. */
function findSymbol(target: object, description: string): symbol | null {
  for (let o: object | null = target; o !== null; o = Object.getPrototypeOf(o) as object | null) {
    const found = Object.getOwnPropertySymbols(o).find((s) => s.description === description);
    if (found !== undefined) return found;
  }
  return null;
}

/**
 * `args` as formatWithOptions({}, ...args) would print them, or null when that needs Node's formatter:
 * a non-primitive (or symbol) argument, or a first string with `%` followed by more arguments (format
 * specifiers). Strings print raw; numbers as `${n}` except -0; bigints with their `n`.
 */
export function formatPrimitives(args: readonly unknown[]): string | null {
  let text = "";
  for (let i = 0; i < args.length; i++) {
    const value = args[i];
    let part: string;
    switch (typeof value) {
      case "string":
        if (i === 0 && args.length > 1 && value.includes("%")) return null;
        part = value;
        break;
      case "number":
        part = Object.is(value, -0) ? "-0" : String(value);
        break;
      case "bigint":
        part = `${value}n`;
        break;
      case "boolean":
      case "undefined":
        part = String(value);
        break;
      case "object":
        if (value !== null) return null;
        part = "null";
        break;
      default:
        return null;
    }
    text = i === 0 ? part : `${text} ${part}`;
  }
  return text;
}

type ConsoleMethod = "log" | "info" | "debug" | "warn" | "error";

export interface FastConsoleOptions {
  /**
   * The streams' write functions that never throw (the runtime's capture). While a console stream's `write` is
   * still this function, log/info/debug/warn/error with primitive arguments write to it directly.
   */
  directWrites?: { stdout: unknown; stderr: unknown };
}

/**
 * Installs the primitive fast path on `target` (the global console by default). Returns null, leaving the
 * console untouched, when this Node version's console lacks the internal methods it relies on.
 */
export function installFastConsoleFormat(target: Console = console, options: FastConsoleOptions = {}): Disposable | null {
  const keys = {
    stdout: findSymbol(target, "kFormatForStdout"),
    stderr: findSymbol(target, "kFormatForStderr"),
    options: findSymbol(target, "kGetInspectOptions"),
    groupIndent: findSymbol(target, "kGroupIndent"),
  };
  if (keys.stdout === null || keys.stderr === null || keys.options === null || keys.groupIndent === null) return null;
  const record = target as unknown as Record<symbol, unknown>;
  const getOptions = record[keys.options];
  const originals = { stdout: record[keys.stdout], stderr: record[keys.stderr] };
  if (typeof getOptions !== "function" || typeof originals.stdout !== "function" || typeof originals.stderr !== "function") return null;
  const ownBefore = {
    stdout: Object.getOwnPropertyDescriptor(target, keys.stdout),
    stderr: Object.getOwnPropertyDescriptor(target, keys.stderr),
  };

  const make = (original: Format, streamKey: "_stdout" | "_stderr"): Format =>
    function (this: Console, args: unknown[]): string {
      const stream = (this as unknown as Record<string, unknown>)[streamKey];
      // Colors or custom inspect options change how primitives print: Node's formatter then.
      const options = (getOptions as GetInspectOptions).call(this, stream);
      if (Object.keys(options).length === 0) {
        const text = formatPrimitives(args);
        if (text !== null) return text;
      }
      return original.call(this, args);
    };
  const define = (key: symbol, value: unknown) =>
    Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable: false });
  define(keys.stdout, make(originals.stdout as Format, "_stdout"));
  define(keys.stderr, make(originals.stderr as Format, "_stderr"));

  // Direct path: Node's log -> kWriteToConsole chain (rest arguments, group indent, the error listener it adds
  // and removes around every write) runs interpreted until V8 warms it up, which made the first 10,000-line
  // print loop of a session cost ~3x a warm one. Taken only outside groups, with default inspect options, and
  // while the stream's write is still the trusted one (the runtime's capture, which never throws, so Node's
  // error swallowing has nothing to do); anything else goes through Node's method.
  const direct = options.directWrites;
  const ownMethods: { name: ConsoleMethod; before: PropertyDescriptor | undefined }[] = [];
  if (direct !== undefined) {
    const wrap = (name: ConsoleMethod, streamKey: "_stdout" | "_stderr", trusted: unknown) => {
      const method = record[name as unknown as symbol] as unknown;
      if (typeof method !== "function") return;
      ownMethods.push({ name, before: Object.getOwnPropertyDescriptor(target, name) });
      const original = method as (...args: unknown[]) => void;
      const fast = function (this: unknown, ...args: unknown[]): void {
        const stream = (target as unknown as Record<string, { write: unknown } | undefined>)[streamKey];
        if (stream !== undefined && stream.write === trusted && record[keys.groupIndent!] === "") {
          if (Object.keys((getOptions as GetInspectOptions).call(target, stream)).length === 0) {
            const text = formatPrimitives(args);
            if (text !== null) {
              (stream.write as (text: string) => unknown).call(stream, `${text}\n`);
              return;
            }
          }
        }
        original.apply(target, args);
      };
      Object.defineProperty(target, name, { value: fast, writable: true, configurable: true, enumerable: true });
    };
    for (const name of ["log", "info", "debug"] as const) wrap(name, "_stdout", direct.stdout);
    for (const name of ["warn", "error"] as const) wrap(name, "_stderr", direct.stderr);
  }

  return disposable(() => {
    for (const name of ["stdout", "stderr"] as const) {
      const key = keys[name]!;
      const before = ownBefore[name];
      if (before) Object.defineProperty(target, key, before);
      else delete record[key];
    }
    for (const { name, before } of ownMethods) {
      if (before) Object.defineProperty(target, name, before);
      else delete (target as unknown as Record<string, unknown>)[name];
    }
  });
}

/**
 * Replaces the global console with a plain Node Console on the same streams. Node wraps the global console's
 * methods so that, while any inspector session is connected (the runtime's evaluator always has one), each
 * call is also sent to V8's inspector console, which keeps the last ~1000 messages with their arguments:
 * objects passed to console.log stayed alive (2,000 logged 100 KB objects held ~100 MB), and every call cost
 * 2-3x as much. The inspector-only methods (profile, timeStamp, context, createTask, Console) are carried over.
 */
export function installPlainConsole(): Disposable {
  const before = Object.getOwnPropertyDescriptor(globalThis, "console");
  const original = globalThis.console;
  const plain = new Console({ stdout: process.stdout, stderr: process.stderr });
  for (const key of Reflect.ownKeys(original)) {
    if (key in plain) continue;
    const descriptor = Object.getOwnPropertyDescriptor(original, key);
    if (descriptor) Object.defineProperty(plain, key, descriptor);
  }
  Object.defineProperty(globalThis, "console", { value: plain, writable: true, configurable: true, enumerable: false });
  // The original object is still what `require("node:console")` and `import console from "node:console"` hand
  // out (libraries do that), and its wrapped methods still fed V8's console storage: five cells logging a 40 MB
  // array through it kept 200 MB alive. Its methods now are the plain console's (bound to it, so group
  // indentation and counters are shared with the global one).
  const replaced: { key: string | symbol; before: PropertyDescriptor }[] = [];
  for (const key of Reflect.ownKeys(original)) {
    const before = Object.getOwnPropertyDescriptor(original, key);
    const value: unknown = Reflect.get(plain, key);
    if (before === undefined || !before.configurable || typeof before.value !== "function" || typeof value !== "function") continue;
    if (!Object.prototype.hasOwnProperty.call(plain, key) || plain[key as keyof Console] === before.value) continue;
    Object.defineProperty(original, key, { ...before, value });
    replaced.push({ key, before });
  }
  return disposable(() => {
    for (const { key, before } of replaced) Object.defineProperty(original, key, before);
    if (before) Object.defineProperty(globalThis, "console", before);
  });
}
