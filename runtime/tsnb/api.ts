// The `tsnb` library that cells use: display (with rich variants and updatable handles), clearOutput and
// input. One instance per program, created by the runtime and published on globalThis under API_KEY, so
// the cell globals and `import ... from "tsnb"` are the very same functions.

import { inspect } from "node:util";
import type { JsonObject, JsonValue, MimeBundle } from "../../protocol/jupyter.js";
import type { CellId, ProgramToKernel } from "../../protocol/program.js";
import { disposable, type Disposable } from "../../protocol/disposable.js";

export const API_KEY = Symbol.for("tsnb.api");
/** Marks values that are not shown as a cell's result (a display handle: its content is already shown). */
export const NO_RESULT = Symbol.for("tsnb.noResult");
/** Deno's protocol: `obj[Symbol.for("Jupyter.display")]()` returns a MIME bundle. */
export const JUPYTER_DISPLAY = Symbol.for("Jupyter.display");
/**
 * `obj[Symbol.for("tsnb.displayed")](handle)` is called after `display(obj)` with the output's handle, so a
 * value whose look changes later (a widget) can keep its saved output current. Such values are displayed
 * (display_data with a display id) rather than returned as execute_result when they are a cell's last value.
 */
export const DISPLAYED = Symbol.for("tsnb.displayed");

export interface TsnbHost {
  /** Sends an op after any buffered stream output. */
  send(op: ProgramToKernel): void;
  currentCell(): CellId | null;
  requestInput(options: { prompt: string; password: boolean }): Promise<string>;
  newDisplayId(): string;
}

export interface DisplayOptions {
  metadata?: JsonObject;
}

export interface DisplayHandle<T = unknown> {
  /** The display_id; updates target every output that shows it. */
  readonly id: string;
  /** Replaces the shown content (update_display_data) with a new value of the same kind. */
  update(value: T, options?: DisplayOptions): void;
}

export type Binary = Uint8Array | ArrayBuffer | string;

export interface DisplayFunction {
  (value: unknown, options?: DisplayOptions): DisplayHandle<unknown>;
  html(html: string, options?: DisplayOptions): DisplayHandle<string>;
  markdown(markdown: string, options?: DisplayOptions): DisplayHandle<string>;
  svg(svg: string, options?: DisplayOptions): DisplayHandle<string>;
  png(data: Binary, options?: DisplayOptions): DisplayHandle<Binary>;
  jpeg(data: Binary, options?: DisplayOptions): DisplayHandle<Binary>;
  json(value: JsonValue, options?: DisplayOptions): DisplayHandle<JsonValue>;
  latex(latex: string, options?: DisplayOptions): DisplayHandle<string>;
  /** Shows a raw MIME bundle as it is. */
  bundle(bundle: MimeBundle, options?: DisplayOptions): DisplayHandle<MimeBundle>;
}

export interface InputFunction {
  (prompt?: string): Promise<string>;
  password(prompt?: string): Promise<string>;
}

export interface ClearOutputOptions {
  /** Clear only when the next output arrives (avoids flicker in animations). */
  wait?: boolean;
}

export interface Tsnb {
  display: DisplayFunction;
  input: InputFunction;
  clearOutput(options?: ClearOutputOptions): void;
  /** Formats a value the way cell results are shown. */
  toMimeBundle(value: unknown): Promise<MimeBundle>;
  /**
   * Runs `hook` at the end of every cell, in that cell's context, before its reply: the last moment its
   * output (updates of earlier displays included) still reaches a headless client such as nbclient, which
   * stops reading a cell's messages at its idle.
   */
  beforeCellDone(hook: () => void): Disposable;
  /** Called by the runtime as a cell ends (inside the cell's context); runs the `beforeCellDone` hooks. */
  runBeforeCellDone(): void;
}

export class DisplayError extends Error {
  override readonly name = "DisplayError";
}

function plain(value: unknown): string {
  return inspect(value, { depth: 4, colors: false, maxArrayLength: 200, breakLength: 100 });
}

function base64(data: Binary, what: string): string {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString("base64");
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
  throw new DisplayError(`${what} expects a Uint8Array, Buffer, ArrayBuffer or base64 string, got ${plain(data)}`);
}

function isBundle(value: unknown): value is MimeBundle {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Rich bundle from Jupyter.display (may be async), else util.inspect text. text/plain is always present. */
export function isNoResult(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as { [NO_RESULT]?: unknown })[NO_RESULT] === true;
}

export async function toMimeBundle(value: unknown): Promise<MimeBundle> {
  const method = (value as { [JUPYTER_DISPLAY]?: unknown } | null | undefined)?.[JUPYTER_DISPLAY];
  if ((typeof value === "object" || typeof value === "function") && value !== null && typeof method === "function") {
    const bundle: unknown = await (method as () => unknown).call(value);
    if (!isBundle(bundle)) throw new DisplayError(`[Symbol.for("Jupyter.display")]() must return a MIME bundle object, got ${plain(bundle)}`);
    return { "text/plain": plain(value), ...bundle };
  }
  return { "text/plain": plain(value) };
}

/**
 * Like toMimeBundle, but synchronous when [Symbol.for("Jupyter.display")]() is: the output then leaves in
 * the same turn, before anything the caller does next (a cell's reply, an update of the same display).
 */
function syncBundle(value: unknown): MimeBundle | Promise<MimeBundle> {
  const method = (value as { [JUPYTER_DISPLAY]?: unknown } | null | undefined)?.[JUPYTER_DISPLAY];
  if ((typeof value === "object" || typeof value === "function") && value !== null && typeof method === "function") {
    const bundle: unknown = (method as () => unknown).call(value);
    if (bundle instanceof Promise) return bundle.then((b: unknown) => checkedBundle(value, b));
    return checkedBundle(value, bundle);
  }
  return { "text/plain": plain(value) };
}

function checkedBundle(value: unknown, bundle: unknown): MimeBundle {
  if (!isBundle(bundle)) throw new DisplayError(`[Symbol.for("Jupyter.display")]() must return a MIME bundle object, got ${plain(bundle)}`);
  return { "text/plain": plain(value), ...bundle };
}

export function createTsnb(host: TsnbHost): Tsnb {
  const show = <T>(toBundle: (value: T) => MimeBundle | Promise<MimeBundle>, value: T, options?: DisplayOptions): DisplayHandle<T> => {
    const id = host.newDisplayId();
    const cell = host.currentCell();
    const emit = (bundle: MimeBundle, opts: DisplayOptions | undefined, update: boolean) => {
      const metadata = opts?.metadata ?? {};
      if (update) host.send({ op: "update_display", cell: host.currentCell() ?? cell, data: bundle, metadata, transient: { display_id: id } });
      else host.send({ op: "display", cell, data: bundle, metadata, transient: { display_id: id } });
    };
    const run = (v: T, opts: DisplayOptions | undefined, update: boolean) => {
      const bundle = toBundle(v);
      if (bundle instanceof Promise) {
        // An async [Symbol.for("Jupyter.display")](): its failure is left unhandled on purpose, so the
        // runtime reports it as an error under the cell that displayed it.
        void bundle.then((b) => emit(b, opts, update));
      } else emit(bundle, opts, update);
    };
    run(value, options, false);
    const handle: DisplayHandle<T> = { id, update: (v: T, opts?: DisplayOptions) => run(v, opts, true) };
    // `display.html(...)` as a cell's last line shows the HTML once, not the handle as well.
    Object.defineProperty(handle, NO_RESULT, { value: true, enumerable: false });
    return handle;
  };

  const text = (mime: string, label: string) => (s: string) => {
    if (typeof s !== "string") throw new DisplayError(`display.${label} expects a string, got ${plain(s)}`);
    return { [mime]: s, "text/plain": `[${label}]` };
  };

  const display = ((value: unknown, options?: DisplayOptions) => {
    const handle = show(syncBundle, value, options);
    if (hasDisplayedHook(value)) value[DISPLAYED](handle);
    return handle;
  }) as DisplayFunction;
  display.html = (s, o) => show(text("text/html", "html"), s, o);
  display.markdown = (s, o) => show((v: string) => ({ ...text("text/markdown", "markdown")(v), "text/plain": v }), s, o);
  display.svg = (s, o) => show(text("image/svg+xml", "svg"), s, o);
  display.latex = (s, o) => show((v: string) => ({ ...text("text/latex", "latex")(v), "text/plain": v }), s, o);
  display.png = (d, o) => show((v: Binary) => ({ "image/png": base64(v, "display.png"), "text/plain": "[png image]" }), d, o);
  display.jpeg = (d, o) => show((v: Binary) => ({ "image/jpeg": base64(v, "display.jpeg"), "text/plain": "[jpeg image]" }), d, o);
  display.json = (v, o) => show((j: JsonValue) => ({ "application/json": j, "text/plain": plain(j) }), v, o);
  display.bundle = (b, o) =>
    show((v: MimeBundle) => {
      if (!isBundle(v)) throw new DisplayError(`display.bundle expects a MIME bundle object, got ${plain(v)}`);
      return v;
    }, b, o);

  const input = ((prompt = "") => host.requestInput({ prompt: String(prompt), password: false })) as InputFunction;
  input.password = (prompt = "") => host.requestInput({ prompt: String(prompt), password: true });

  const clearOutput = (options: ClearOutputOptions = {}) => {
    host.send({ op: "clear_output", cell: host.currentCell(), wait: options.wait === true });
  };

  const cellDoneHooks = new Set<() => void>();
  const beforeCellDone = (hook: () => void): Disposable => {
    if (typeof hook !== "function") throw new TypeError("beforeCellDone needs a function");
    // A wrapper per registration, so registering the same function twice needs two disposals.
    const entry = () => hook();
    cellDoneHooks.add(entry);
    return disposable(() => cellDoneHooks.delete(entry));
  };
  const runBeforeCellDone = () => {
    const errors: unknown[] = [];
    for (const hook of [...cellDoneHooks]) {
      try {
        hook();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} end-of-cell hooks failed`);
  };

  return { display, input, clearOutput, toMimeBundle, beforeCellDone, runBeforeCellDone };
}

/** A value that wants its display handle (see DISPLAYED). */
export function hasDisplayedHook(value: unknown): value is { [DISPLAYED](handle: DisplayHandle<unknown>): void } {
  return (typeof value === "object" || typeof value === "function") && value !== null && typeof (value as { [DISPLAYED]?: unknown })[DISPLAYED] === "function";
}
