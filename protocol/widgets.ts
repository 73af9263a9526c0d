// Widgets over the comms bridge (issue 4). Pure: shared by the user program and the browser views.
//
// Each widget lives on two comm addresses:
//   tsnb.widget/<id>/state  program -> browsers: the full state, after every change. The kernel's
//                           last-value store replays it to a view that mounts later (reload, second tab).
//   tsnb.widget/<id>/input  browser -> program: one user action (a new value, a click).
// The program is the source of truth: it validates/clamps an input, updates its state and re-broadcasts
// it with `ack` naming the input it answers, so the sending view knows which state is the echo of its
// own edit (ipywidgets' echo_update idea) and other views simply follow.

import { isObject } from "./rpc.js";

export const WIDGET_PREFIX = "tsnb.widget/";

export function stateAddress(id: string): string {
  return `${WIDGET_PREFIX}${id}/state`;
}

export function inputAddress(id: string): string {
  return `${WIDGET_PREFIX}${id}/input`;
}

export type WidgetKind =
  | "Button"
  | "Checkbox"
  | "ToggleButton"
  | "IntSlider"
  | "FloatSlider"
  | "Text"
  | "Textarea"
  | "Dropdown"
  | "Label"
  | "HTML"
  | "Progress"
  | "NumberInput"
  | "HBox"
  | "VBox"
  | "Select"
  | "RadioButtons"
  | "ColorPicker"
  | "IntRangeSlider"
  | "Image"
  | "Tabs"
  | "Accordion"
  | "Grid"
  | "FileUpload"
  | "Output";

export const WIDGET_KINDS: readonly WidgetKind[] = [
  "Button",
  "Checkbox",
  "ToggleButton",
  "IntSlider",
  "FloatSlider",
  "Text",
  "Textarea",
  "Dropdown",
  "Label",
  "HTML",
  "Progress",
  "NumberInput",
  "HBox",
  "VBox",
  "Select",
  "RadioButtons",
  "ColorPicker",
  "IntRangeSlider",
  "Image",
  "Tabs",
  "Accordion",
  "Grid",
  "FileUpload",
  "Output",
];

export type StateValue = string | number | boolean | null | readonly string[] | readonly number[];
export type WidgetState = { readonly [key: string]: StateValue };

export interface Ack {
  client: string;
  seq: number;
}

/** Program -> browsers on the state address. */
export interface WidgetStateMessage {
  type: "state";
  id: string;
  kind: WidgetKind;
  state: WidgetState;
  /** The input this state answers (null for a change the program made). */
  ack: Ack | null;
}

/** Browser -> program on the input address: one user action. */
export type WidgetInput =
  | { type: "set"; key: string; value: unknown; client: string; seq: number }
  | { type: "click"; client: string; seq: number };

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };


export function parseWidgetInput(raw: unknown): Parsed<WidgetInput> {
  if (!isObject(raw)) return { ok: false, error: "a widget input must be an object" };
  const { type, client, seq } = raw;
  if (typeof client !== "string" || client === "") return { ok: false, error: "a widget input needs a client id" };
  if (typeof seq !== "number" || !Number.isSafeInteger(seq)) return { ok: false, error: "a widget input needs an integer seq" };
  switch (type) {
    case "set":
      if (typeof raw.key !== "string" || raw.key === "") return { ok: false, error: "a widget set needs a key" };
      return { ok: true, value: { type, key: raw.key, value: raw.value, client, seq } };
    case "click":
      return { ok: true, value: { type, client, seq } };
    default:
      return { ok: false, error: `unknown widget input type ${JSON.stringify(type)}` };
  }
}

export function parseWidgetState(raw: unknown): Parsed<WidgetStateMessage> {
  if (!isObject(raw) || raw.type !== "state") return { ok: false, error: "not a widget state message" };
  const { id, kind, state, ack } = raw;
  if (typeof id !== "string") return { ok: false, error: "a widget state needs an id" };
  if (typeof kind !== "string" || !(WIDGET_KINDS as readonly string[]).includes(kind)) return { ok: false, error: `unknown widget kind ${String(kind)}` };
  if (!isObject(state)) return { ok: false, error: "a widget state needs a state object" };
  let parsedAck: Ack | null = null;
  if (isObject(ack) && typeof ack.client === "string" && typeof ack.seq === "number") parsedAck = { client: ack.client, seq: ack.seq };
  return { ok: true, value: { type: "state", id, kind: kind as WidgetKind, state: state as WidgetState, ack: parsedAck } };
}

/** Clamps to [min, max] and snaps to the step grid counted from min (floating error rounded away). */
export function clampToStep(value: number, opts: { min: number; max: number; step: number }): number {
  const { min, max, step } = opts;
  let v = Math.min(max, Math.max(min, value));
  if (step > 0) {
    const n = Math.round((v - min) / step);
    v = min + n * step;
    const digits = decimals(step) + decimals(min);
    v = Number(v.toFixed(Math.min(15, digits)));
    if (v > max) v = Number((v - step).toFixed(Math.min(15, digits)));
  }
  return v;
}

function decimals(x: number): number {
  const s = String(x);
  const e = s.indexOf("e-");
  if (e >= 0) return Number(s.slice(e + 2));
  const dot = s.indexOf(".");
  return dot < 0 ? 0 : s.length - dot - 1;
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}
