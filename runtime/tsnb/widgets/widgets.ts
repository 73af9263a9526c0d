// Widgets, program side (issue 4). The program holds the truth: each widget keeps its state here and
// publishes it on its comm state address; a browser view sends user actions on the input address, which
// are validated and clamped here, applied, and re-broadcast with an `ack` so every view converges and
// the sending view recognises the echo of its own edit.
//
// `on("change")` and `changes()` report changes made in a browser (one per user action that changed the
// value); setting `w.value` from the program does not call back (the program already knows). Callbacks
// run in the async context of the cell that registered them, so their output lands under that cell.

import { AsyncResource } from "node:async_hooks";
import { Console } from "node:console";
import { Writable } from "node:stream";
import { inspect } from "node:util";
import { existsSync, readFileSync } from "node:fs";
import { API_KEY, DISPLAYED, type DisplayHandle, type Tsnb } from "../api.js";
import { SnapshotPublisher } from "./snapshots.js";
import {
  clampToStep,
  escapeHtml,
  inputAddress,
  parseWidgetInput,
  stateAddress,
  type Ack,
  type StateValue,
  type WidgetInput,
  type WidgetKind,
  type WidgetState,
  type WidgetStateMessage,
} from "../../../protocol/widgets.js";
import { COMMS_KEY, type Comms, type Disposable } from "../comms/comms.js";
import { disposable } from "../../../protocol/disposable.js";
import { DEFAULT_UPLOAD_CHUNK_BYTES, DEFAULT_UPLOAD_WINDOW, MAX_UPLOAD_CHUNK_BYTES, MAX_UPLOAD_WINDOW, parseUploadOp, uploadMethod } from "../../../protocol/upload.js";
import { MemorySink, TempFileSink, UploadDir, UploadError, UploadReceiver, type UploadedFile, type UploadedTempFile, type UploadProgress, type UploadSink } from "./upload.js";

export { UploadError } from "./upload.js";
export type { UploadedFile, UploadedTempFile, UploadProgress } from "./upload.js";

export interface WidgetOptions {
  description?: string;
  disabled?: boolean;
  /** The comms to use (tests); the runtime's own by default. */
  comms?: Comms;
}

export interface ChangeEvent<T> {
  value: T;
  old: T;
  widget: Widget;
}

export interface ClickEvent {
  widget: Widget;
}

/** A browser sent something this widget cannot take (reported as the callback error of its cell). */
export class WidgetInputError extends Error {
  override readonly name = "WidgetInputError";
}

/** Iteration over changes ended because the widget was disposed. */
export class WidgetDisposedError extends Error {
  override readonly name = "WidgetDisposedError";
}

const JUPYTER_DISPLAY = Symbol.for("Jupyter.display");
const WIDGETS_KEY = Symbol.for("tsnb.widgets");

function globalComms(): Comms {
  const comms = (globalThis as { [COMMS_KEY]?: Comms })[COMMS_KEY];
  if (!comms) throw new Error("tsnb widgets only work inside a tsnb kernel (no runtime found in this process)");
  return comms;
}

/**
 * What a page's bootstrap asks the kernel to run when it has no shim (a reloaded classic Notebook page:
 * the shim the kernel injected was transient and is gone; or a second tab). The program answers with the
 * shim as a display under that silent request, which only the asking page routes to its callback; the
 * page then boots it. (The kernel's own injection cannot be used for this: it injects only when no shim
 * at all is connected, so a second tab would never get one.) One per process, on globalThis so a second
 * copy of this module shares it.
 */
interface WidgetsGlobal {
  shim(): void;
  /** Keeps saved widget outputs showing the current state (snapshots.ts). */
  snapshots: SnapshotPublisher;
  kernelId: string | null;
}

/** How long a changed widget output waits at most for its refreshed snapshot while changes keep coming. */
const SNAPSHOT_THROTTLE_MS = 250;

export const SHIM_MIME = "application/x-tsnb-shim";

function readShim(): string {
  // dist/shim.js sits beside tsnb.js, or one level up from a split chunk.
  const candidates = [new URL("./shim.js", import.meta.url), new URL("../shim.js", import.meta.url), new URL("../../dist/shim.js", import.meta.url)];
  for (const url of candidates) {
    if (url.protocol === "file:" && existsSync(url)) return readFileSync(url, "utf8");
  }
  throw new Error(`the browser shim (dist/shim.js) was not found next to ${import.meta.url}: run npm run build`);
}

function widgetsGlobal(): WidgetsGlobal {
  const g = globalThis as { [WIDGETS_KEY]?: WidgetsGlobal };
  const existing = g[WIDGETS_KEY];
  if (existing) return existing;
  const api = (globalThis as { [API_KEY]?: Tsnb })[API_KEY];
  const snapshots = new SnapshotPublisher({
    throttleMs: SNAPSHOT_THROTTLE_MS,
    setTimer: (fn, ms) => {
      const handle = setTimeout(fn, ms);
      // A pending refresh never keeps a finished program alive.
      handle.unref();
      return { dispose: () => clearTimeout(handle) };
    },
  });
  // Lives as long as the process: the runtime calls it at the end of every cell.
  api?.beforeCellDone(() => snapshots.flush());
  const created: WidgetsGlobal = {
    shim: () => {
      if (!api) throw new Error("no tsnb runtime in this process");
      api.display.bundle({ [SHIM_MIME]: readShim(), "text/plain": "" });
    },
    snapshots,
    kernelId: process.env.TSNB_KERNEL_ID || null,
  };
  g[WIDGETS_KEY] = created;
  return created;
}

/** The code a page's bootstrap asks the kernel to run. */
export const WAKE_CODE = `(globalThis as any)[Symbol.for("tsnb.widgets")]?.shim()`;

/**
 * The script in every widget output. With the shim present it makes it mount placeholders now; without
 * one it asks the kernel, once per page, to run WAKE_CODE and boots the shim the program sends back:
 * through the page's own kernel connection in classic Notebook; elsewhere (JupyterLab, Notebook 7, whose
 * output scripts cannot reach the page's kernel object) over a websocket of its own to the kernel this
 * output names, found through the page's `jupyter-config-data`. That script only runs where the output is
 * trusted (JupyterLab runs no scripts in untrusted HTML), and does nothing when that kernel is gone.
 */
export function bootstrapScript(kernelId: string | null): string {
  const code = JSON.stringify(WAKE_CODE);
  const mime = JSON.stringify(SHIM_MIME);
  const kernel = JSON.stringify(kernelId).replace(/</g, "\\u003c");
  return `(function () {
  var g = window;
  if (g.tsnbWidgets) { g.tsnbWidgets.scan(); return; }
  if (g.tsnb_comm || g.tsnbWidgetBoot) return;
  var boot = function (data, kernelId) {
    var js = data && data[${mime}];
    if (typeof js !== "string" || g.tsnb_comm) return false;
    (0, eval)(js);
    g.tsnbShimBoot({ kernelId: kernelId });
    return true;
  };
  var nb = g.Jupyter && g.Jupyter.notebook;
  if (nb && nb.events) {
    g.tsnbWidgetBoot = true;
    var ask = function () {
      if (g.tsnb_comm) return;
      var onOutput = function (msg) { boot(msg && msg.content && msg.content.data, nb.kernel.id); };
      nb.kernel.execute(${code}, { iopub: { output: onOutput } }, { silent: false, store_history: false });
    };
    if (nb.kernel && nb.kernel.is_connected()) ask();
    else nb.events.one("kernel_ready.Kernel", ask);
    return;
  }
  var kernelId = ${kernel};
  var el = document.getElementById("jupyter-config-data");
  if (!kernelId || !el || typeof WebSocket !== "function") return;
  var config;
  try { config = JSON.parse(el.textContent || "{}"); } catch (err) { return; }
  g.tsnbWidgetBoot = true;
  var base = new URL(config.wsUrl || config.baseUrl || "/", location.href).href.replace(/^http/, "ws");
  if (base.slice(-1) !== "/") base += "/";
  var rnd = function () { return Math.random().toString(36).slice(2) + Date.now().toString(36); };
  var session = rnd(), msgId = rnd();
  var url = base + "api/kernels/" + encodeURIComponent(kernelId) + "/channels?session_id=" + session + (config.token ? "&token=" + encodeURIComponent(config.token) : "");
  var ws = new WebSocket(url);
  var done = function (ok) {
    clearTimeout(timer);
    if (!ok) g.tsnbWidgetBoot = false;
    try { ws.close(); } catch (err) { console.debug("tsnb widgets: closing the wake socket failed", err); }
  };
  var timer = setTimeout(function () { done(false); }, 30000);
  ws.onerror = function () { done(false); };
  ws.onopen = function () {
    ws.send(JSON.stringify({
      header: { msg_id: msgId, session: session, username: "", msg_type: "execute_request", version: "5.3", date: new Date().toISOString() },
      parent_header: {}, metadata: {}, channel: "shell", buffers: [],
      content: { code: ${code}, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: false }
    }));
  };
  ws.onmessage = function (event) {
    if (typeof event.data !== "string") return;
    var msg = JSON.parse(event.data);
    if (!msg.parent_header || msg.parent_header.msg_id !== msgId) return;
    if (msg.msg_type === "display_data" && boot(msg.content.data, kernelId)) done(true);
    // The request's output is complete at its idle (the shell reply may come before the output).
    else if (msg.msg_type === "status" && msg.content.execution_state === "idle") done(!!g.tsnb_comm);
  };
})();`;
}

type Callback<E> = (event: E) => void | Promise<void>;

interface Listener<E> {
  call(event: E): unknown;
}

/** Adds `callback` to `set` until disposed, bound to the registering cell's context so what it prints lands under that cell. */
function addListener(set: Set<Listener<unknown>>, callback: Callback<never>): Disposable {
  const listener = { call: AsyncResource.bind(callback as (e: unknown) => unknown) };
  set.add(listener);
  return disposable(() => set.delete(listener));
}

export abstract class Widget<S extends WidgetState = WidgetState> implements Disposable {
  readonly id: string;
  readonly kind: WidgetKind;
  protected readonly comms: Comms;
  protected current: S;
  private readonly subscription: Disposable;
  private readonly snapshots: SnapshotPublisher;
  /** The id Jupyter gave this program's kernel (the kernel passes it as TSNB_KERNEL_ID); null outside one. */
  private readonly kernelId: string | null;
  protected readonly changeListeners = new Set<Listener<ChangeEvent<unknown>>>();
  private readonly clickListeners = new Set<Listener<ClickEvent>>();
  private readonly endIterators = new Set<(error: Error) => void>();
  private disposed = false;

  protected constructor(kind: WidgetKind, initial: S, options: WidgetOptions) {
    this.kind = kind;
    this.id = globalThis.crypto.randomUUID();
    this.comms = options.comms ?? globalComms();
    const shared = widgetsGlobal();
    this.snapshots = shared.snapshots;
    this.kernelId = shared.kernelId;
    this.current = initial;
    this.subscription = this.comms.subscribe(inputAddress(this.id), (raw) => this.receive(raw));
    this.broadcast(null);
  }

  get description(): string {
    return String(this.current.description ?? "");
  }

  set description(text: string) {
    this.setState({ description: String(text) } as unknown as Partial<S>);
  }

  get disabled(): boolean {
    return this.current.disabled === true;
  }

  set disabled(flag: boolean) {
    this.setState({ disabled: Boolean(flag) } as unknown as Partial<S>);
  }

  /** A copy of the current state (what the views show). */
  get state(): S {
    return { ...this.current };
  }

  on(event: "change", callback: Callback<ChangeEvent<unknown>>): Disposable;
  on(event: "click", callback: Callback<ClickEvent>): Disposable;
  on(event: "change" | "click", callback: Callback<never>): Disposable {
    this.checkOpen();
    if (typeof callback !== "function") throw new TypeError(`widget.on("${event}") needs a callback function`);
    if (event !== "change" && event !== "click") throw new TypeError(`unknown widget event ${JSON.stringify(event)} (use "change" or "click")`);
    return addListener((event === "change" ? this.changeListeners : this.clickListeners) as Set<Listener<unknown>>, callback);
  }

  /** `for await (const v of w.changes())`: each value a browser set, in order, until disposed. */
  changes<T = unknown>(): AsyncIterableIterator<T> & Disposable {
    this.checkOpen();
    const buffered: T[] = [];
    let waiting: { resolve(r: IteratorResult<T>): void; reject(e: Error): void } | null = null;
    let finished: Error | "done" | null = null;
    const subscription = this.on("change", (e) => {
      if (waiting) {
        const w = waiting;
        waiting = null;
        w.resolve({ value: e.value as T, done: false });
      } else buffered.push(e.value as T);
    });
    const end = (reason: Error | "done") => {
      if (finished !== null) return;
      finished = reason;
      subscription.dispose();
      this.endIterators.delete(end);
      if (waiting) {
        const w = waiting;
        waiting = null;
        if (reason === "done") w.resolve({ value: undefined as never, done: true });
        else w.reject(reason);
      }
    };
    this.endIterators.add(end);
    const iterator: AsyncIterableIterator<T> & Disposable = {
      next: () => {
        if (buffered.length > 0) return Promise.resolve({ value: buffered.shift() as T, done: false });
        if (finished === "done") return Promise.resolve({ value: undefined as never, done: true });
        if (finished !== null) return Promise.reject(finished);
        if (waiting) return Promise.reject(new Error("widget.changes(): next() called while another next() is pending"));
        return new Promise((resolve, reject) => (waiting = { resolve, reject }));
      },
      return: () => {
        end("done");
        return Promise.resolve({ value: undefined as never, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
      dispose: () => end("done"),
    };
    return iterator;
  }

  /** Static HTML of the current state: what a saved notebook or nbconvert shows without a live kernel. */
  abstract staticHtml(): string;

  [JUPYTER_DISPLAY](): { [mime: string]: string } {
    this.checkOpen();
    // Publishing again in the displaying cell counts as a use of comms there, which is what makes the
    // kernel inject the shim into a page that has none.
    this.broadcast(null);
    return this.displayBundle();
  }

  /** The output of the current state: a mount point holding the static HTML, and the bootstrap script. */
  displayBundle(): { [mime: string]: string } {
    return {
      "text/html": `<div class="tsnb-widget" data-tsnb-widget="${this.id}">${this.staticHtml()}</div><script>${bootstrapScript(this.kernelId)}</script>`,
      "text/plain": this.toString(),
    };
  }

  /** `display(w)` hands over the output's handle: the saved output follows later changes (snapshots.ts). */
  [DISPLAYED](handle: DisplayHandle<unknown>): void {
    if (!this.disposed) this.snapshots.displayed(this, handle, this.displayBundle());
  }

  /** How many front-ends show this widget live (listen on its state); null when the comms cannot say. */
  liveViews(): number | null {
    const comms = this.comms as Partial<Pick<Comms, "listeners">>;
    return typeof comms.listeners === "function" ? comms.listeners.call(this.comms, stateAddress(this.id)) : null;
  }

  toString(): string {
    const { value } = this.current;
    const desc = this.description ? `description=${JSON.stringify(this.description)}` : "";
    const val = value !== undefined ? `value=${JSON.stringify(value)}` : "";
    return `${this.kind}(${[val, desc].filter(Boolean).join(", ")})`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.subscription.dispose();
    this.snapshots.forget(this);
    for (const end of [...this.endIterators]) end(new WidgetDisposedError(`${this.kind} ${this.id} was disposed`));
    this.changeListeners.clear();
    this.clickListeners.clear();
  }

  protected setState(patch: Partial<S>): void {
    this.checkOpen();
    this.current = { ...this.current, ...patch };
    this.broadcast(null);
  }

  /** Validates a browser's new value for `key`; returns the value to store or throws WidgetInputError. */
  protected acceptInput(key: string, _value: unknown): StateValue {
    throw new WidgetInputError(`${this.kind} does not take "${key}" from the browser`);
  }

  protected onClick(): boolean {
    return false;
  }

  private broadcast(ack: Ack | null): void {
    if (this.disposed) return;
    const message: WidgetStateMessage = { type: "state", id: this.id, kind: this.kind, state: this.current, ack };
    this.comms.send(stateAddress(this.id), message);
    this.snapshots.changed();
  }

  private receive(raw: unknown): Promise<void> | void {
    const parsed = parseWidgetInput(raw);
    if (!parsed.ok) throw new WidgetInputError(`${this.kind} ${this.id}: ${parsed.error}`);
    return this.apply(parsed.value);
  }

  private apply(input: WidgetInput): Promise<void> | void {
    const ack = { client: input.client, seq: input.seq };
    switch (input.type) {
      case "click": {
        if (this.disabled || !this.onClick()) {
          this.broadcast(ack);
          return;
        }
        this.broadcast(ack);
        return this.fire(this.clickListeners, { widget: this as Widget });
      }
      case "set": {
        if (this.disabled) {
          // The view shows the unchanged state again.
          this.broadcast(ack);
          return;
        }
        let accepted: StateValue;
        try {
          accepted = this.acceptInput(input.key, input.value);
        } catch (err) {
          this.broadcast(ack);
          throw err;
        }
        const old = this.current[input.key];
        this.current = { ...this.current, [input.key]: accepted };
        this.broadcast(ack);
        if (input.key === "value" && !sameValue(old, accepted)) return this.fire(this.changeListeners, { value: accepted, old, widget: this as Widget });
        return;
      }
      default: {
        const unreachable: never = input;
        throw new Error(`unhandled widget input ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Calls every listener; errors (thrown or rejected) are re-thrown together so the comms report them. */
  protected async fire<E>(listeners: Set<Listener<E>>, event: E): Promise<void> {
    const results = [...listeners].map((l) => {
      try {
        return Promise.resolve(l.call(event));
      } catch (err) {
        return Promise.reject(err);
      }
    });
    const errors = (await Promise.allSettled(results)).flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} ${this.kind} callbacks failed`);
  }

  private checkOpen(): void {
    if (this.disposed) throw new WidgetDisposedError(`${this.kind} ${this.id} was disposed`);
  }
}

function sameValue(a: StateValue | undefined, b: StateValue): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}

function attr(s: string): string {
  return escapeHtml(s);
}

function labelHtml(w: Widget): string {
  return w.description ? `<label class="tsnb-w-label">${escapeHtml(w.description)}</label>` : "";
}

function disabledAttr(w: Widget): string {
  return w.disabled ? " disabled" : "";
}

// ---- value widgets --------------------------------------------------------------------------------

abstract class ValueWidget<T extends StateValue, S extends WidgetState & { value: T }> extends Widget<S> {
  get value(): T {
    return this.current.value;
  }

  set value(v: T) {
    this.setState({ value: this.checkProgramValue(v) } as Partial<S>);
  }

  /** Validates a value set by the program: throws a clear TypeError/RangeError instead of storing junk. */
  protected abstract checkProgramValue(v: unknown): T;

  protected override acceptInput(key: string, value: unknown): StateValue {
    if (key !== "value") return super.acceptInput(key, value);
    try {
      return this.checkBrowserValue(value);
    } catch (err) {
      throw new WidgetInputError(`${this.kind}: the browser sent an unusable value ${JSON.stringify(value)}: ${(err as Error).message}`);
    }
  }

  /** A browser's value: clamped where that makes sense, else checked like a program value. */
  protected checkBrowserValue(v: unknown): T {
    return this.checkProgramValue(v);
  }
}

export interface BoolOptions extends WidgetOptions {
  value?: boolean;
}

type BoolState = { value: boolean; description: string; disabled: boolean };

function bool(v: unknown): boolean {
  if (typeof v !== "boolean") throw new TypeError(`expected a boolean, got ${JSON.stringify(v)}`);
  return v;
}

export class Checkbox extends ValueWidget<boolean, BoolState> {
  constructor(options: BoolOptions = {}) {
    super("Checkbox", { value: bool(options.value ?? false), description: options.description ?? "", disabled: options.disabled ?? false }, options);
  }
  protected checkProgramValue(v: unknown): boolean {
    return bool(v);
  }
  staticHtml(): string {
    return `<label class="tsnb-w-label"><input type="checkbox"${this.value ? " checked" : ""} disabled> ${escapeHtml(this.description)}</label>`;
  }
}

export class ToggleButton extends ValueWidget<boolean, BoolState> {
  constructor(options: BoolOptions = {}) {
    super("ToggleButton", { value: bool(options.value ?? false), description: options.description ?? "", disabled: options.disabled ?? false }, options);
  }
  protected checkProgramValue(v: unknown): boolean {
    return bool(v);
  }
  staticHtml(): string {
    return `<button class="tsnb-w-button" aria-pressed="${this.value}" disabled>${escapeHtml(this.description)}</button>`;
  }
}

export interface ButtonOptions extends WidgetOptions {
  /** primary, success, info, warning, danger or "" */
  buttonStyle?: string;
}

export class Button extends Widget<{ description: string; disabled: boolean; buttonStyle: string }> {
  constructor(options: ButtonOptions = {}) {
    super("Button", { description: options.description ?? "", disabled: options.disabled ?? false, buttonStyle: options.buttonStyle ?? "" }, options);
  }
  protected override onClick(): boolean {
    return true;
  }
  staticHtml(): string {
    return `<button class="tsnb-w-button" disabled>${escapeHtml(this.description)}</button>`;
  }
}

export interface SliderOptions extends WidgetOptions {
  value?: number;
  min?: number;
  max?: number;
  step?: number;
}

type RangeState = { value: number; min: number; max: number; step: number; description: string; disabled: boolean };

function finite(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v)) throw new TypeError(`${what} must be a finite number, got ${JSON.stringify(v)}`);
  return v;
}

function rangeState(kind: string, options: SliderOptions, defaults: { max: number; step: number }, integer: boolean): RangeState {
  const min = finite(options.min ?? 0, `${kind} min`);
  const max = finite(options.max ?? defaults.max, `${kind} max`);
  const step = finite(options.step ?? defaults.step, `${kind} step`);
  if (max < min) throw new RangeError(`${kind}: max (${max}) is below min (${min})`);
  if (step <= 0) throw new RangeError(`${kind}: step must be positive, got ${step}`);
  if (integer && (!Number.isInteger(min) || !Number.isInteger(max) || !Number.isInteger(step))) throw new TypeError(`${kind}: min, max and step must be integers`);
  const value = clampToStep(finite(options.value ?? min, `${kind} value`), { min, max, step });
  return { value, min, max, step, description: options.description ?? "", disabled: options.disabled ?? false };
}

abstract class RangeWidget extends ValueWidget<number, RangeState> {
  get min(): number {
    return this.current.min;
  }
  get max(): number {
    return this.current.max;
  }
  get step(): number {
    return this.current.step;
  }
  /** Setting the program's value clamps it too (ipywidgets does the same), so the state is always valid. */
  protected checkProgramValue(v: unknown): number {
    return clampToStep(finite(v, `${this.kind} value`), this.current);
  }
  /** A slider's; Progress has its own. */
  staticHtml(): string {
    return `${labelHtml(this)}<input type="range" min="${this.min}" max="${this.max}" step="${this.step}" value="${this.value}" disabled> <output class="tsnb-w-readout">${this.value}</output>`;
  }
}

export class IntSlider extends RangeWidget {
  constructor(options: SliderOptions = {}) {
    super("IntSlider", rangeState("IntSlider", options, { max: 100, step: 1 }, true), options);
  }
}

export class FloatSlider extends RangeWidget {
  constructor(options: SliderOptions = {}) {
    super("FloatSlider", rangeState("FloatSlider", options, { max: 10, step: 0.1 }, false), options);
  }
}

export class Progress extends RangeWidget {
  constructor(options: SliderOptions = {}) {
    super("Progress", rangeState("Progress", { step: 1e-9, ...options }, { max: 100, step: 1e-9 }, false), options);
  }
  protected override acceptInput(key: string, value: unknown): StateValue {
    throw new WidgetInputError(`Progress is read-only in the browser (got "${key}" = ${JSON.stringify(value)})`);
  }
  override staticHtml(): string {
    return `${labelHtml(this)}<progress min="${this.min}" max="${this.max}" value="${this.value}">${this.value}</progress>`;
  }
}

export interface NumberInputOptions extends WidgetOptions {
  value?: number;
  min?: number;
  max?: number;
  step?: number;
  integer?: boolean;
}

type NumberState = { value: number; min: number | null; max: number | null; step: number; integer: boolean; description: string; disabled: boolean };

export class NumberInput extends ValueWidget<number, NumberState> {
  constructor(options: NumberInputOptions = {}) {
    const integer = options.integer ?? false;
    const min = options.min === undefined ? null : finite(options.min, "NumberInput min");
    const max = options.max === undefined ? null : finite(options.max, "NumberInput max");
    if (min !== null && max !== null && max < min) throw new RangeError(`NumberInput: max (${max}) is below min (${min})`);
    const step = finite(options.step ?? (integer ? 1 : 0.1), "NumberInput step");
    const initial = { value: 0, min, max, step, integer, description: options.description ?? "", disabled: options.disabled ?? false };
    super("NumberInput", initial, options);
    this.setState({ value: this.checkProgramValue(options.value ?? min ?? 0) });
  }
  protected checkProgramValue(v: unknown): number {
    let n = finite(v, "NumberInput value");
    if (this.current.integer) n = Math.round(n);
    if (this.current.min !== null) n = Math.max(this.current.min, n);
    if (this.current.max !== null) n = Math.min(this.current.max, n);
    return n;
  }
  staticHtml(): string {
    return `${labelHtml(this)}<input type="number" value="${this.value}" disabled>`;
  }
}

export interface TextOptions extends WidgetOptions {
  value?: string;
  placeholder?: string;
}

type TextState = { value: string; placeholder: string; description: string; disabled: boolean };

function str(v: unknown): string {
  if (typeof v !== "string") throw new TypeError(`expected a string, got ${JSON.stringify(v)}`);
  return v;
}

export class Text extends ValueWidget<string, TextState> {
  constructor(options: TextOptions = {}) {
    super("Text", { value: str(options.value ?? ""), placeholder: options.placeholder ?? "", description: options.description ?? "", disabled: options.disabled ?? false }, options);
  }
  protected checkProgramValue(v: unknown): string {
    return str(v);
  }
  staticHtml(): string {
    return `${labelHtml(this)}<input type="text" value="${attr(this.value)}" disabled>`;
  }
}

export class Textarea extends ValueWidget<string, TextState> {
  constructor(options: TextOptions = {}) {
    super("Textarea", { value: str(options.value ?? ""), placeholder: options.placeholder ?? "", description: options.description ?? "", disabled: options.disabled ?? false }, options);
  }
  protected checkProgramValue(v: unknown): string {
    return str(v);
  }
  staticHtml(): string {
    return `${labelHtml(this)}<textarea disabled>${escapeHtml(this.value)}</textarea>`;
  }
}

export interface DropdownOptions extends WidgetOptions {
  options: readonly string[];
  value?: string | null;
}

type DropdownState = { value: string | null; options: readonly string[]; description: string; disabled: boolean };

/** One of a list of strings: Dropdown (a select box), Select (a list box) and RadioButtons. */
abstract class ChoiceWidget extends ValueWidget<string | null, DropdownState> {
  protected constructor(kind: "Dropdown" | "Select" | "RadioButtons", options: DropdownOptions) {
    if (!Array.isArray(options?.options) || !options.options.every((o) => typeof o === "string")) throw new TypeError(`${kind} needs options: an array of strings`);
    const opts = [...options.options];
    super(kind, { value: null, options: opts, description: options.description ?? "", disabled: options.disabled ?? false }, options);
    this.setState({ value: this.checkProgramValue(options.value === undefined ? (opts[0] ?? null) : options.value) });
  }
  get options(): readonly string[] {
    return this.current.options;
  }
  /** Replaces the options; the value stays if it is still one of them, else becomes the first. */
  set options(options: readonly string[]) {
    if (!Array.isArray(options) || !options.every((o) => typeof o === "string")) throw new TypeError(`${this.kind} options must be an array of strings`);
    const value = this.current.value !== null && options.includes(this.current.value) ? this.current.value : (options[0] ?? null);
    this.setState({ options: [...options], value });
  }
  protected checkProgramValue(v: unknown): string | null {
    if (v === null) return null;
    if (typeof v !== "string" || !this.current.options.includes(v)) throw new RangeError(`${JSON.stringify(v)} is not one of the options ${JSON.stringify(this.current.options)}`);
    return v;
  }
}

export class Dropdown extends ChoiceWidget {
  constructor(options: DropdownOptions) {
    super("Dropdown", options);
  }
  staticHtml(): string {
    const opts = this.options.map((o) => `<option${o === this.value ? " selected" : ""}>${escapeHtml(o)}</option>`).join("");
    return `${labelHtml(this)}<select disabled>${opts}</select>`;
  }
}

export class Select extends ChoiceWidget {
  constructor(options: DropdownOptions) {
    super("Select", options);
  }
  staticHtml(): string {
    const opts = this.options.map((o) => `<option${o === this.value ? " selected" : ""}>${escapeHtml(o)}</option>`).join("");
    return `${labelHtml(this)}<select size="${Math.min(8, Math.max(2, this.options.length))}" disabled>${opts}</select>`;
  }
}

export class RadioButtons extends ChoiceWidget {
  constructor(options: DropdownOptions) {
    super("RadioButtons", options);
  }
  staticHtml(): string {
    const opts = this.options.map((o) => `<label><input type="radio"${o === this.value ? " checked" : ""} disabled> ${escapeHtml(o)}</label>`).join(" ");
    return `${labelHtml(this)}<span role="radiogroup">${opts}</span>`;
  }
}

export interface ColorPickerOptions extends WidgetOptions {
  value?: string;
}

export class ColorPicker extends ValueWidget<string, LabelState> {
  constructor(options: ColorPickerOptions = {}) {
    super("ColorPicker", { value: "#000000", description: options.description ?? "", disabled: options.disabled ?? false }, options);
    this.setState({ value: this.checkProgramValue(options.value ?? "#000000") });
  }
  protected checkProgramValue(v: unknown): string {
    if (typeof v !== "string" || !/^#[0-9a-fA-F]{6}$/.test(v)) throw new TypeError(`a color must be "#rrggbb", got ${JSON.stringify(v)}`);
    return v.toLowerCase();
  }
  staticHtml(): string {
    return `${labelHtml(this)}<input type="color" value="${this.value}" disabled> <code>${this.value}</code>`;
  }
}

export interface RangeSliderOptions extends WidgetOptions {
  value?: readonly [number, number];
  min?: number;
  max?: number;
  step?: number;
}

type PairState = { value: readonly number[]; min: number; max: number; step: number; description: string; disabled: boolean };

/** Two integer handles, low and high; the program keeps low <= high. */
export class IntRangeSlider extends ValueWidget<readonly number[], PairState> {
  constructor(options: RangeSliderOptions = {}) {
    const base = rangeState("IntRangeSlider", { ...options, value: undefined }, { max: 100, step: 1 }, true);
    super("IntRangeSlider", { ...base, value: [base.min, base.max] }, options);
    this.setState({ value: this.checkProgramValue(options.value ?? [base.min, base.max]) });
  }
  get min(): number {
    return this.current.min;
  }
  get max(): number {
    return this.current.max;
  }
  protected checkProgramValue(v: unknown): readonly number[] {
    if (!Array.isArray(v) || v.length !== 2) throw new TypeError(`an IntRangeSlider value is [low, high], got ${JSON.stringify(v)}`);
    const [a, b] = v.map((x) => clampToStep(finite(x, "IntRangeSlider value"), this.current)) as [number, number];
    return a <= b ? [a, b] : [b, a];
  }
  staticHtml(): string {
    const [lo, hi] = this.value;
    return `${labelHtml(this)}<input type="range" min="${this.min}" max="${this.max}" value="${lo}" disabled><input type="range" min="${this.min}" max="${this.max}" value="${hi}" disabled> <output class="tsnb-w-readout">${lo} – ${hi}</output>`;
  }
}

export interface ImageOptions extends WidgetOptions {
  value?: Uint8Array;
  /** png, jpeg, gif, webp or svg+xml */
  format?: string;
  width?: number;
  height?: number;
}

type ImageState = { src: string; format: string; width: number | null; height: number | null; description: string; disabled: boolean };

/** Shows image bytes; `value` is the Uint8Array, which travels to the page as a data URL. */
export class Image extends Widget<ImageState> {
  private bytes: Uint8Array;
  constructor(options: ImageOptions = {}) {
    const format = imageFormat(options.format ?? "png");
    const bytes = imageBytes(options.value ?? new Uint8Array());
    super("Image", { src: dataUrl(format, bytes), format, width: options.width ?? null, height: options.height ?? null, description: options.description ?? "", disabled: options.disabled ?? false }, options);
    this.bytes = bytes;
  }
  get value(): Uint8Array {
    return this.bytes;
  }
  set value(bytes: Uint8Array) {
    this.bytes = imageBytes(bytes);
    this.setState({ src: dataUrl(this.current.format, this.bytes) });
  }
  staticHtml(): string {
    const size = `${this.current.width !== null ? ` width="${this.current.width}"` : ""}${this.current.height !== null ? ` height="${this.current.height}"` : ""}`;
    return `<img src="${this.current.src}" alt="${attr(this.description)}"${size}>`;
  }
}

function imageFormat(format: unknown): string {
  if (typeof format !== "string" || !/^(png|jpeg|gif|webp|svg\+xml)$/.test(format)) throw new TypeError(`an Image format is png, jpeg, gif, webp or svg+xml, got ${JSON.stringify(format)}`);
  return format;
}

function imageBytes(v: unknown): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`an Image value must be a Uint8Array, got ${Object.prototype.toString.call(v)}`);
  return v;
}

function dataUrl(format: string, bytes: Uint8Array): string {
  return `data:image/${format};base64,${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")}`;
}

export interface LabelOptions extends WidgetOptions {
  value?: string;
}

type LabelState = { value: string; description: string; disabled: boolean };

/** A text the program sets and the page only shows: Label (escaped) and HTML (as given). */
abstract class ShownText extends ValueWidget<string, LabelState> {
  protected constructor(kind: "Label" | "HTML", options: LabelOptions) {
    super(kind, { value: str(options.value ?? ""), description: options.description ?? "", disabled: options.disabled ?? false }, options);
  }
  protected checkProgramValue(v: unknown): string {
    return str(v);
  }
  protected override checkBrowserValue(): string {
    throw new Error(`${this.kind === "HTML" ? "an HTML widget" : "a Label"} is not editable`);
  }
}

export class Label extends ShownText {
  constructor(options: LabelOptions = {}) {
    super("Label", options);
  }
  staticHtml(): string {
    return `<span class="tsnb-w-text">${escapeHtml(this.value)}</span>`;
  }
}

/** Shows the program's HTML as given (the output is trusted like any display.html). */
export class HTML extends ShownText {
  constructor(options: LabelOptions = {}) {
    super("HTML", options);
  }
  staticHtml(): string {
    return `<div class="tsnb-w-html">${this.value}</div>`;
  }
}

export interface FileUploadOptions<S extends UploadStorage = "memory"> extends WidgetOptions {
  /** File types the picker offers, as in <input accept>, e.g. ".csv,image/*". */
  accept?: string;
  multiple?: boolean;
  /**
   * "memory" (default): each file arrives as a Uint8Array (`data`), allocated once from its announced size.
   * "file": each file is written to a private temporary directory as it arrives (`path`); the program holds
   * no more than a few chunks of it. Files are removed when a newer upload replaces them, on dispose and at exit.
   */
  storage?: S;
  /** Bytes per chunk the page sends (default 2 MiB, at most 6 MiB). */
  chunkBytes?: number;
  /** Chunks the page keeps unacknowledged at most (default 4). */
  window?: number;
  /** An upload with nothing arriving for this long fails (default 60,000 ms). */
  stallTimeoutMs?: number;
}

export type UploadStorage = "memory" | "file";
export type UploadedFileOf<S extends UploadStorage> = S extends "file" ? UploadedTempFile : UploadedFile;

type UploadState = { value: readonly string[]; accept: string; multiple: boolean; description: string; disabled: boolean; chunkBytes: number; window: number };

function positiveInt(v: unknown, what: string, max: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1 || v > max) throw new RangeError(`FileUpload: ${what} must be an integer from 1 to ${max}, got ${String(v)}`);
  return v;
}

/**
 * Files picked in the page. The page sends each file in chunks (protocol/upload.ts), with a window of
 * unacknowledged chunks, and shows a progress bar; the program gets `progress` events, then a `change`
 * event when every file is in, or an `error` event (an UploadError) when the upload fails. The state every
 * page sees holds only the names; the bytes stay in this program: `value` is the files with their `data`
 * (or `path` with `storage: "file"`).
 */
export class FileUpload<S extends UploadStorage = "memory"> extends Widget<UploadState> {
  private files: readonly UploadedFileOf<S>[] = [];
  readonly storage: S;
  private readonly receiver: UploadReceiver<UploadedFileOf<S>>;
  private readonly registration: Disposable;
  private readonly frontendWatch: Disposable | null;
  private readonly dir = new UploadDir();
  /** The temporary subdirectory holding the current value's files ("file" storage). */
  private currentDir: string | null = null;
  private readonly progressListeners = new Set<Listener<UploadProgress & { widget: Widget }>>();
  private readonly errorListeners = new Set<Listener<UploadError>>();
  private closing = false;

  constructor(options: FileUploadOptions<S> = {}) {
    const storage = (options.storage ?? "memory") as S;
    if (storage !== "memory" && storage !== "file") throw new TypeError(`FileUpload: storage must be "memory" or "file", got ${JSON.stringify(storage)}`);
    const chunkBytes = positiveInt(options.chunkBytes ?? DEFAULT_UPLOAD_CHUNK_BYTES, "chunkBytes", MAX_UPLOAD_CHUNK_BYTES);
    const window = positiveInt(options.window ?? DEFAULT_UPLOAD_WINDOW, "window", MAX_UPLOAD_WINDOW);
    const stallMs = positiveInt(options.stallTimeoutMs ?? 60_000, "stallTimeoutMs", 24 * 3600_000);
    super(
      "FileUpload",
      { value: [], accept: options.accept ?? "", multiple: options.multiple ?? false, description: options.description ?? "Upload", disabled: options.disabled ?? false, chunkBytes, window },
      options,
    );
    this.storage = storage;
    // Callbacks run (and report errors) in the context of the cell that made the widget.
    const report = AsyncResource.bind((error: unknown) => reportLater(error));
    this.receiver = new UploadReceiver<UploadedFileOf<S>>({
      stallMs,
      setTimer: (ms, fn) => {
        const t = setTimeout(fn, ms);
        return { dispose: () => clearTimeout(t) };
      },
      makeSink: (infos) => {
        if (this.current.disabled) throw new UploadError("the FileUpload is disabled");
        if (!this.current.multiple && infos.length > 1) throw new UploadError("several files sent to a single-file upload");
        if (this.storage === "file") {
          const dir = this.dir.newUploadDir();
          return { sink: new TempFileSink(dir, infos) as unknown as UploadSink<UploadedFileOf<S>>, dir };
        }
        return { sink: new MemorySink(infos) as unknown as UploadSink<UploadedFileOf<S>>, dir: null };
      },
      hooks: {
        progress: (p) => {
          for (const l of [...this.progressListeners]) {
            try {
              l.call({ ...p, widget: this as Widget });
            } catch (err) {
              report(err);
            }
          }
        },
        complete: (files, upload) => {
          const old = this.current.value;
          const previousDir = this.currentDir;
          this.files = files;
          this.currentDir = upload.dir;
          if (previousDir !== null) this.dir.remove(previousDir);
          const names = files.map((f) => f.name);
          this.setState({ value: names });
          this.fire(this.changeListeners, { value: names, old, widget: this as Widget }).catch(report);
        },
        failed: (error) => {
          // The program disposed the widget itself: it knows, and nobody may listen any more.
          if (this.closing) return;
          if (this.errorListeners.size === 0) {
            // Nobody handles it: show it under the widget's cell rather than losing it.
            report(error);
            return;
          }
          this.fire(this.errorListeners, error).catch(report);
        },
      },
    });
    this.registration = this.comms.register(uploadMethod(this.id), (args: unknown) => {
      const parsed = parseUploadOp(args);
      if (!parsed.ok) throw new UploadError(`FileUpload: ${parsed.error}`);
      return this.receiver.handle(parsed.value);
    });
    this.frontendWatch = this.comms.onFrontends((ids) => this.receiver.frontendsChanged(ids));
  }

  get value(): readonly UploadedFileOf<S>[] {
    return this.files;
  }

  /** Uploads in progress (from any page). */
  get uploading(): number {
    return this.receiver.running;
  }

  override on(event: "change", callback: Callback<ChangeEvent<unknown>>): Disposable;
  override on(event: "click", callback: Callback<ClickEvent>): Disposable;
  override on(event: "progress", callback: Callback<UploadProgress & { widget: Widget }>): Disposable;
  override on(event: "error", callback: Callback<UploadError>): Disposable;
  override on(event: "change" | "click" | "progress" | "error", callback: Callback<never>): Disposable {
    if (event === "change") return super.on(event, callback as Callback<ChangeEvent<unknown>>);
    if (event === "click") return super.on(event, callback as Callback<ClickEvent>);
    if (event !== "progress" && event !== "error") throw new TypeError(`unknown FileUpload event ${JSON.stringify(event)} (use "change", "progress" or "error")`);
    if (typeof callback !== "function") throw new TypeError(`widget.on("${event}") needs a callback function`);
    return addListener((event === "progress" ? this.progressListeners : this.errorListeners) as Set<Listener<unknown>>, callback);
  }

  protected override acceptInput(key: string, value: unknown): StateValue {
    if (key !== "value") return super.acceptInput(key, value);
    // A whole-value set: what pages sent before chunked uploads. Still taken for small files in memory.
    if (this.storage === "file") throw new WidgetInputError('FileUpload: a storage: "file" upload takes files in chunks only');
    if (!Array.isArray(value)) throw new WidgetInputError("FileUpload: the page must send an array of files");
    const files = value.map((f: unknown, i): UploadedFile => {
      const file = f as { name?: unknown; type?: unknown; data?: unknown };
      if (typeof file?.name !== "string" || typeof file.type !== "string" || !(file.data instanceof Uint8Array)) throw new WidgetInputError(`FileUpload: file ${i} needs a name, a type and Uint8Array data`);
      return { name: file.name, type: file.type, size: file.data.byteLength, lastModified: 0, data: file.data };
    });
    if (!this.current.multiple && files.length > 1) throw new WidgetInputError("FileUpload: several files sent to a single-file upload");
    this.files = files as unknown as UploadedFileOf<S>[];
    return files.map((f) => f.name);
  }

  override dispose(): void {
    this.closing = true;
    this.registration.dispose();
    this.frontendWatch?.dispose();
    this.receiver.dispose();
    this.dir.dispose();
    this.progressListeners.clear();
    this.errorListeners.clear();
    super.dispose();
  }

  staticHtml(): string {
    const names = this.current.value.length > 0 ? ` <span class="tsnb-w-text">${escapeHtml(this.current.value.join(", "))}</span>` : "";
    return `<button class="tsnb-w-button" disabled>${escapeHtml(this.description)}</button>${names}`;
  }
}

/**
 * Raises an error from a callback outside the current call stack, so the runtime reports it under the
 * cell whose context is current (the widget's), as it does for any error thrown in a callback.
 */
function reportLater(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}

/**
 * An area the program writes into: `append(text)`, `display(value)`, `clear()`, and `capture(fn)`, which
 * shows what a synchronous `fn` logs with console.* here instead of under the cell. Every page shows the
 * same content, also pages opened later; useful for callbacks whose cell output is long gone.
 */
export class Output extends Widget<LabelState> {
  constructor(options: WidgetOptions = {}) {
    super("Output", { value: "", description: options.description ?? "", disabled: options.disabled ?? false }, options);
  }
  get html(): string {
    return String(this.current.value);
  }
  append(text: string): void {
    this.setState({ value: `${this.html}<pre class="tsnb-w-out">${escapeHtml(String(text))}</pre>` });
  }
  /** Shows a value as the cell would (HTML, image or text). */
  async display(value: unknown): Promise<void> {
    const api = (globalThis as { [API_KEY]?: Tsnb })[API_KEY];
    const bundle = api ? await api.toMimeBundle(value) : { "text/plain": inspect(value) };
    const html = bundle["text/html"];
    const png = bundle["image/png"];
    let piece: string;
    if (typeof html === "string") piece = `<div>${html}</div>`;
    else if (typeof png === "string") piece = `<img src="data:image/png;base64,${png}">`;
    else piece = `<pre class="tsnb-w-out">${escapeHtml(String(bundle["text/plain"] ?? ""))}</pre>`;
    this.setState({ value: this.html + piece });
  }
  clear(): void {
    this.setState({ value: "" });
  }
  /**
   * Runs `fn` with console.* writing here. Only what runs synchronously is captured: an async function's
   * later output goes to its cell as usual (use append/display there).
   */
  capture<T>(fn: () => T): T {
    if (typeof fn !== "function") throw new TypeError("Output.capture needs a function");
    const chunks: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer | string, _encoding, done) {
        chunks.push(String(chunk));
        done();
      },
    });
    const saved = globalThis.console;
    globalThis.console = new Console({ stdout: sink, stderr: sink });
    try {
      return fn();
    } finally {
      globalThis.console = saved;
      if (chunks.length > 0) this.append(chunks.join("").replace(/\n$/, ""));
    }
  }
  staticHtml(): string {
    return `<div class="tsnb-w-output">${this.html}</div>`;
  }
}

// ---- layout ---------------------------------------------------------------------------------------

export interface BoxOptions extends WidgetOptions {
  children?: readonly Widget[];
}

type BoxState = { children: readonly string[]; description: string; disabled: boolean };

type ContainerState = BoxState & { titles: readonly string[]; selected: number; columns: number };

abstract class Box extends Widget<ContainerState> {
  private kids: readonly Widget[];
  protected constructor(kind: "HBox" | "VBox" | "Tabs" | "Accordion" | "Grid", options: BoxOptions & { titles?: readonly string[]; selected?: number; columns?: number }) {
    const kids = checkChildren(kind, options.children ?? []);
    const titles = options.titles ?? [];
    if (!Array.isArray(titles) || !titles.every((t) => typeof t === "string")) throw new TypeError(`${kind} titles must be an array of strings`);
    const columns = options.columns ?? 2;
    if (!Number.isInteger(columns) || columns < 1) throw new RangeError(`${kind} columns must be a positive integer, got ${columns}`);
    super(
      kind,
      { children: kids.map((k) => k.id), titles: [...titles], selected: Math.max(0, Math.min(kids.length - 1, options.selected ?? 0)), columns, description: options.description ?? "", disabled: options.disabled ?? false },
      options,
    );
    this.kids = kids;
  }
  get children(): readonly Widget[] {
    return this.kids;
  }
  set children(children: readonly Widget[]) {
    this.kids = checkChildren(this.kind, children);
    this.setState({ children: this.kids.map((k) => k.id) });
  }
  staticHtml(): string {
    return this.kids.map((k) => `<div class="tsnb-widget" data-tsnb-widget="${k.id}">${k.staticHtml()}</div>`).join("");
  }
}

function checkChildren(kind: string, children: readonly Widget[]): readonly Widget[] {
  if (!Array.isArray(children) || !children.every((c) => c instanceof Widget)) throw new TypeError(`${kind} children must be an array of widgets`);
  return [...children];
}

export class HBox extends Box {
  constructor(options: BoxOptions = {}) {
    super("HBox", options);
  }
}

export class VBox extends Box {
  constructor(options: BoxOptions = {}) {
    super("VBox", options);
  }
}

/** Children in a grid of `columns` columns, row by row. */
export class Grid extends Box {
  constructor(options: BoxOptions & { columns?: number } = {}) {
    super("Grid", options);
  }
  override staticHtml(): string {
    return `<div style="display:grid;grid-template-columns:repeat(${this.current.columns},auto);gap:4px">${super.staticHtml()}</div>`;
  }
}

export interface PagedOptions extends BoxOptions {
  /** One title per child (missing ones show as "1", "2", ...). */
  titles?: readonly string[];
  /** Index of the open page. */
  selected?: number;
}

/** Tabs and Accordion: one child shown at a time; the page picks it, the program reads/sets `selected`. */
abstract class Paged extends Box {
  get selected(): number {
    return this.current.selected;
  }
  set selected(index: number) {
    if (!this.isPage(index)) throw new RangeError(`${this.kind}.selected must be an index below ${this.children.length}, got ${index}`);
    this.setState({ selected: index });
  }
  get titles(): readonly string[] {
    return this.current.titles;
  }
  protected override acceptInput(key: string, value: unknown): StateValue {
    if (key !== "selected") return super.acceptInput(key, value);
    if (!this.isPage(value)) throw new WidgetInputError(`${this.kind}: no page ${JSON.stringify(value)}`);
    return value;
  }
  private isPage(index: unknown): index is number {
    return typeof index === "number" && Number.isInteger(index) && index >= 0 && index < this.children.length;
  }
  override staticHtml(): string {
    return this.children
      .map((k, i) => `<details${i === this.selected ? " open" : ""}><summary>${escapeHtml(this.titles[i] ?? String(i + 1))}</summary><div class="tsnb-widget" data-tsnb-widget="${k.id}">${k.staticHtml()}</div></details>`)
      .join("");
  }
}

export class Tabs extends Paged {
  constructor(options: PagedOptions = {}) {
    super("Tabs", options);
  }
}

export class Accordion extends Paged {
  constructor(options: PagedOptions = {}) {
    super("Accordion", options);
  }
}

// ---- interact -------------------------------------------------------------------------------------

type ValueOf<W> = W extends { value: infer V } ? V : never;

export interface Interactive extends Disposable {
  /** The controls and the output, to display. */
  readonly widget: VBox;
  /** Resolves when the latest run finished. */
  readonly idle: Promise<void>;
}

/**
 * Controls for a function: shows the controls and the function's result, and runs it again on every
 * change of a control (runs never overlap: changes during a run coalesce into one more run).
 */
export function interact<C extends { [name: string]: Widget & { value: unknown } }>(
  fn: (args: { [K in keyof C]: ValueOf<C[K]> }) => unknown,
  controls: C,
  options: { comms?: Comms } = {},
): Interactive {
  if (typeof fn !== "function") throw new TypeError("interact needs a function");
  const entries = Object.entries(controls);
  if (!entries.every(([, w]) => w instanceof Widget)) throw new TypeError("interact needs an object of widgets: { name: widget }");
  const output = new HTML({ value: "", comms: options.comms });
  const widget = new VBox({ children: [...entries.map(([, w]) => w), output], comms: options.comms });
  let running: Promise<void> = Promise.resolve();
  let again = false;
  let busy = false;
  const runOnce = async () => {
    const args = Object.fromEntries(entries.map(([name, w]) => [name, w.value])) as { [K in keyof C]: ValueOf<C[K]> };
    try {
      const result = await fn(args);
      output.value = `<pre class="tsnb-w-result">${escapeHtml(result === undefined ? "" : typeof result === "string" ? result : inspect(result, { depth: 4 }))}</pre>`;
    } catch (err) {
      output.value = `<pre class="tsnb-w-result tsnb-w-error">${escapeHtml(err instanceof Error ? `${err.name}: ${err.message}` : String(err))}</pre>`;
      throw err;
    }
  };
  const schedule = (): Promise<void> => {
    if (busy) {
      again = true;
      return running;
    }
    busy = true;
    running = (async () => {
      try {
        do {
          again = false;
          await runOnce();
        } while (again);
      } finally {
        busy = false;
      }
    })();
    return running;
  };
  const subs = entries.map(([, w]) => w.on("change", () => schedule()));
  // A failing run shows its error in the output widget; the first run's error also goes to the calling
  // cell's stderr (later runs' errors reach the cell through the change callbacks).
  schedule().then(undefined, (err: unknown) => console.error(err));
  return {
    widget,
    get idle() {
      // "Finished", whether the run succeeded or failed: a failure is shown in the output widget.
      return running.then(
        () => undefined,
        () => undefined,
      );
    },
    dispose: () => {
      for (const s of subs) s.dispose();
    },
  };
}
