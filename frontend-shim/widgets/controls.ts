// The DOM of the leaf widget kinds (everything but the containers), built inside their view's content
// widget. Native controls wherever one exists, because they bring the keyboard, focus and screen-reader
// behaviour for free: a range input is a `slider` with aria-valuemin/max/now and arrow, PageUp/PageDown,
// Home and End keys; a button answers Enter and Space. The one control HTML lacks, a slider with two
// thumbs, is built here on the WAI-ARIA multi-thumb slider pattern.
//
// Accessible names: the widget's description is a visible <label> tied to its control; without a
// description the control gets an aria-label naming its kind (KIND_NAMES), so every control has a name.

import type { StateValue, WidgetKind, WidgetState } from "../../protocol/widgets.js";
import type { UploadProgressEvent } from "./upload.js";

export type ContainerKind = "HBox" | "VBox" | "Grid" | "Tabs" | "Accordion";
export type LeafKind = Exclude<WidgetKind, ContainerKind>;

export function isContainer(kind: WidgetKind): kind is ContainerKind {
  return kind === "HBox" || kind === "VBox" || kind === "Grid" || kind === "Tabs" || kind === "Accordion";
}

export interface Actions {
  set(key: string, value: StateValue): void;
  click(): void;
  /** Sends picked files to the program in chunks (FileUpload); resolves when the program took them all. */
  upload(files: readonly File[], settings: { chunkBytes: number; window: number; signal: AbortSignal }, onProgress: (p: UploadProgressEvent) => void): Promise<void>;
}

export interface Controls {
  /** Shows `state`, leaving alone the keys in `skip` (the user's own unanswered edits). */
  apply(state: WidgetState, skip: ReadonlySet<string>): void;
}

/** Adds a DOM listener that lives as long as the content widget (removed by its dispose). */
export type Listen = <K extends keyof HTMLElementEventMap>(target: HTMLElement, type: K, fn: (event: HTMLElementEventMap[K]) => void) => void;

export interface LeafContext {
  doc: Document;
  actions: Actions;
  /** A page-unique id for the control, so its label can point at it. */
  inputId: string;
  listen: Listen;
}

/** The accessible name of a control whose widget has no description. */
export const KIND_NAMES: { readonly [K in LeafKind]: string } = {
  Button: "Button",
  Checkbox: "Checkbox",
  ToggleButton: "Toggle",
  IntSlider: "Slider",
  FloatSlider: "Slider",
  Text: "Text",
  Textarea: "Text",
  Dropdown: "Dropdown",
  Label: "Label",
  HTML: "HTML",
  Progress: "Progress",
  NumberInput: "Number",
  Select: "Select",
  RadioButtons: "Options",
  ColorPicker: "Color",
  IntRangeSlider: "Range",
  Image: "Image",
  FileUpload: "Upload",
  Output: "Output",
};

export function num(v: StateValue | undefined, fallback: number): number {
  return typeof v === "number" ? v : fallback;
}

export function text(v: StateValue | undefined): string {
  return typeof v === "string" ? v : "";
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, doc: Document): HTMLElementTagNameMap[K] {
  const e = doc.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

function stringOptions(state: WidgetState): readonly string[] {
  return Array.isArray(state.options) ? (state.options as readonly string[]) : [];
}

function optionElements(options: readonly string[], doc: Document): HTMLOptionElement[] {
  return options.map((o) => {
    const option = el("option", "", doc);
    option.value = o;
    option.textContent = o;
    return option;
  });
}

/** Builds the DOM of one leaf kind into `row`. */
export function buildLeaf(kind: LeafKind, row: HTMLElement, ctx: LeafContext): Controls {
  const { doc, actions, inputId, listen } = ctx;
  const label = el("label", "tsnb-w-label", doc);
  label.htmlFor = inputId;
  label.id = `${inputId}-label`;
  /** Shows the description as the label of `control`, or names the control by its kind without one. */
  const name = (state: WidgetState, control: HTMLElement): void => {
    const description = text(state.description);
    label.textContent = description;
    label.hidden = description === "";
    if (description === "") control.setAttribute("aria-label", KIND_NAMES[kind]);
    else control.removeAttribute("aria-label");
  };
  /** A button is named by its own text (the description), or by its kind without one. */
  const nameButton = (state: WidgetState, b: HTMLButtonElement): void => {
    b.textContent = text(state.description);
    if (b.textContent === "") b.setAttribute("aria-label", KIND_NAMES[kind]);
    else b.removeAttribute("aria-label");
  };
  switch (kind) {
    case "Button": {
      const b = el("button", "tsnb-w-button", doc);
      b.type = "button";
      listen(b, "click", () => actions.click());
      row.append(b);
      return {
        apply(state) {
          nameButton(state, b);
          b.disabled = state.disabled === true;
          b.dataset.style = text(state.buttonStyle);
        },
      };
    }
    case "ToggleButton": {
      const b = el("button", "tsnb-w-button tsnb-w-toggle", doc);
      b.type = "button";
      listen(b, "click", () => {
        const pressed = b.getAttribute("aria-pressed") !== "true";
        b.setAttribute("aria-pressed", String(pressed));
        actions.set("value", pressed);
      });
      row.append(b);
      return {
        apply(state, skip) {
          nameButton(state, b);
          b.disabled = state.disabled === true;
          if (!skip.has("value")) b.setAttribute("aria-pressed", String(state.value === true));
        },
      };
    }
    case "Checkbox": {
      const box = el("input", "", doc);
      box.type = "checkbox";
      box.id = inputId;
      listen(box, "change", () => actions.set("value", box.checked));
      row.append(box, label);
      return {
        apply(state, skip) {
          name(state, box);
          box.disabled = state.disabled === true;
          if (!skip.has("value")) box.checked = state.value === true;
        },
      };
    }
    case "IntSlider":
    case "FloatSlider": {
      const range = el("input", "tsnb-w-slider", doc);
      range.type = "range";
      range.id = inputId;
      const readout = el("output", "tsnb-w-readout", doc);
      readout.htmlFor.add(inputId);
      listen(range, "input", () => {
        readout.textContent = range.value;
        actions.set("value", Number(range.value));
      });
      row.append(label, range, readout);
      return {
        apply(state, skip) {
          name(state, range);
          range.min = String(num(state.min, 0));
          range.max = String(num(state.max, 100));
          range.step = String(num(state.step, 1));
          range.disabled = state.disabled === true;
          if (!skip.has("value")) {
            range.value = String(num(state.value, 0));
            readout.textContent = String(num(state.value, 0));
          }
        },
      };
    }
    case "Progress": {
      const bar = el("progress", "tsnb-w-progress", doc);
      bar.id = inputId;
      row.append(label, bar);
      return {
        apply(state) {
          name(state, bar);
          const min = num(state.min, 0);
          const max = num(state.max, 100);
          const value = num(state.value, 0);
          bar.max = max - min;
          bar.value = value - min;
          // <progress> counts from 0; the widget's own range is what a screen reader should announce.
          bar.setAttribute("aria-valuemin", String(min));
          bar.setAttribute("aria-valuemax", String(max));
          bar.setAttribute("aria-valuenow", String(value));
          bar.textContent = String(state.value);
        },
      };
    }
    case "NumberInput": {
      const input = el("input", "tsnb-w-number", doc);
      input.type = "number";
      input.id = inputId;
      listen(input, "change", () => {
        if (input.value !== "" && Number.isFinite(Number(input.value))) actions.set("value", Number(input.value));
      });
      row.append(label, input);
      return {
        apply(state, skip) {
          name(state, input);
          if (typeof state.min === "number") input.min = String(state.min);
          else input.removeAttribute("min");
          if (typeof state.max === "number") input.max = String(state.max);
          else input.removeAttribute("max");
          input.step = String(num(state.step, 1));
          input.disabled = state.disabled === true;
          if (!skip.has("value")) input.value = String(num(state.value, 0));
        },
      };
    }
    case "Text":
    case "Textarea": {
      const input = kind === "Text" ? el("input", "tsnb-w-text-input", doc) : el("textarea", "tsnb-w-textarea", doc);
      if (input instanceof HTMLInputElement) input.type = "text";
      input.id = inputId;
      listen(input, "input", () => actions.set("value", input.value));
      row.append(label, input);
      return {
        apply(state, skip) {
          name(state, input);
          input.placeholder = text(state.placeholder);
          input.disabled = state.disabled === true;
          if (!skip.has("value") && input.value !== text(state.value)) input.value = text(state.value);
        },
      };
    }
    case "Dropdown":
    case "Select": {
      // Select is the same <select> shown as a list box, 2 to 8 rows tall.
      const select = el("select", kind === "Dropdown" ? "tsnb-w-select" : "tsnb-w-listbox", doc);
      select.id = inputId;
      listen(select, "change", () => actions.set("value", select.value));
      row.append(label, select);
      let shown = "";
      return {
        apply(state, skip) {
          name(state, select);
          select.disabled = state.disabled === true;
          const options = stringOptions(state);
          const key = JSON.stringify(options);
          if (key !== shown) {
            shown = key;
            if (kind === "Select") select.size = Math.min(8, Math.max(2, options.length));
            select.replaceChildren(...optionElements(options, doc));
          }
          if (!skip.has("value")) select.value = text(state.value);
        },
      };
    }
    case "Label": {
      const span = el("span", "tsnb-w-text", doc);
      row.append(span);
      return {
        apply(state) {
          span.textContent = text(state.value);
        },
      };
    }
    case "Output":
    case "HTML": {
      const div = el("div", kind === "HTML" ? "tsnb-w-html" : "tsnb-w-output", doc);
      if (kind === "Output") {
        div.setAttribute("role", "log");
        div.setAttribute("aria-label", KIND_NAMES[kind]);
      }
      row.append(div);
      return {
        apply(state) {
          // The program's own HTML, shown like any trusted display.html output.
          if (div.innerHTML !== text(state.value)) div.innerHTML = text(state.value);
        },
      };
    }
    case "RadioButtons": {
      // Native radios sharing a name: arrow keys move the choice within the group.
      const group = el("div", "tsnb-w-radios", doc);
      group.id = inputId;
      group.setAttribute("role", "radiogroup");
      row.append(label, group);
      let shown = "";
      return {
        apply(state, skip) {
          name(state, group);
          if (label.hidden) group.removeAttribute("aria-labelledby");
          else group.setAttribute("aria-labelledby", label.id);
          const options = stringOptions(state);
          const key = JSON.stringify(options);
          if (key !== shown) {
            shown = key;
            group.replaceChildren(
              ...options.map((o) => {
                const item = el("label", "tsnb-w-radio", doc);
                const radio = el("input", "", doc);
                radio.type = "radio";
                radio.name = inputId;
                radio.value = o;
                listen(radio, "change", () => radio.checked && actions.set("value", o));
                item.append(radio, ` ${o}`);
                return item;
              }),
            );
          }
          for (const radio of group.querySelectorAll("input")) {
            radio.disabled = state.disabled === true;
            if (!skip.has("value")) radio.checked = radio.value === state.value;
          }
        },
      };
    }
    case "ColorPicker": {
      const input = el("input", "tsnb-w-color", doc);
      input.type = "color";
      input.id = inputId;
      const code = el("code", "", doc);
      listen(input, "input", () => {
        code.textContent = input.value;
        actions.set("value", input.value);
      });
      row.append(label, input, code);
      return {
        apply(state, skip) {
          name(state, input);
          input.disabled = state.disabled === true;
          if (!skip.has("value")) {
            input.value = text(state.value);
            code.textContent = text(state.value);
          }
        },
      };
    }
    case "IntRangeSlider":
      return buildRangeSlider(row, label, ctx);
    case "Image": {
      const img = el("img", "tsnb-w-image", doc);
      row.append(img);
      return {
        apply(state) {
          if (img.getAttribute("src") !== text(state.src)) img.src = text(state.src);
          img.alt = text(state.description) || KIND_NAMES[kind];
          if (typeof state.width === "number") img.width = state.width;
          if (typeof state.height === "number") img.height = state.height;
        },
      };
    }
    case "FileUpload": {
      // A real file input (keyboard and screen readers know it), styled by its label as a button. Files go
      // to the program in chunks; a progress bar shows what the program has acknowledged.
      const input = el("input", "tsnb-w-file", doc);
      input.type = "file";
      input.id = inputId;
      const button = el("label", "tsnb-w-button", doc);
      button.htmlFor = inputId;
      const names = el("span", "tsnb-w-text", doc);
      const bar = el("progress", "tsnb-w-upload-progress", doc);
      bar.hidden = true;
      const status = el("span", "tsnb-w-upload-status", doc);
      status.setAttribute("role", "status");
      const cancel = el("button", "tsnb-w-button tsnb-w-upload-cancel", doc);
      cancel.type = "button";
      cancel.textContent = "Cancel";
      cancel.hidden = true;
      let controller: AbortController | null = null;
      listen(cancel, "click", () => controller?.abort());
      let settings = { chunkBytes: 2 * 1024 * 1024, window: 4 };
      let busy = false;
      let disabled = false;
      const sync = () => (input.disabled = disabled || busy);
      listen(input, "change", () => {
        const picked = [...(input.files ?? [])];
        if (picked.length === 0) return;
        busy = true;
        sync();
        const total = picked.reduce((n, f) => n + f.size, 0);
        bar.max = Math.max(1, total);
        bar.value = 0;
        bar.hidden = false;
        bar.setAttribute("aria-label", `uploading ${picked.map((f) => f.name).join(", ")}`);
        status.textContent = `0 / ${formatBytes(total)}`;
        delete status.dataset.state;
        controller = new AbortController();
        cancel.hidden = false;
        actions
          .upload(picked, { ...settings, signal: controller.signal }, (p) => {
            bar.value = p.uploadLoaded;
            status.textContent = `${formatBytes(p.uploadLoaded)} / ${formatBytes(p.uploadTotal)}`;
          })
          .then(
            () => {
              status.textContent = `${formatBytes(total)} uploaded`;
              status.dataset.state = "done";
            },
            (err: unknown) => {
              status.textContent = `upload failed: ${err instanceof Error ? err.message : String(err)}`;
              status.dataset.state = "error";
              console.error("tsnb widgets: upload failed", err);
            },
          )
          .finally(() => {
            busy = false;
            controller = null;
            cancel.hidden = true;
            bar.hidden = true;
            input.value = "";
            sync();
          });
      });
      row.append(input, button, names, bar, cancel, status);
      return {
        apply(state) {
          button.textContent = text(state.description) || "Upload";
          input.accept = text(state.accept);
          input.multiple = state.multiple === true;
          disabled = state.disabled === true;
          sync();
          settings = { chunkBytes: num(state.chunkBytes, settings.chunkBytes), window: num(state.window, settings.window) };
          names.textContent = Array.isArray(state.value) ? state.value.join(", ") : "";
        },
      };
    }
    default: {
      const unreachable: never = kind;
      throw new Error(`no view for widget kind ${String(unreachable)}`);
    }
  }
}

/** Where a key press moves a slider thumb, or null for a key the slider does not handle. */
export function keyTarget(key: string, opts: { value: number; min: number; max: number; step: number }): number | null {
  const { value, min, max, step } = opts;
  // PageUp/PageDown jump a tenth of the range (whole steps), as Chromium's native range input does.
  const page = Math.max(step, Math.round((max - min) / 10 / step) * step);
  switch (key) {
    case "ArrowRight":
    case "ArrowUp":
      return value + step;
    case "ArrowLeft":
    case "ArrowDown":
      return value - step;
    case "PageUp":
      return value + page;
    case "PageDown":
      return value - page;
    case "Home":
      return min;
    case "End":
      return max;
    default:
      return null;
  }
}

function snap(value: number, opts: { min: number; max: number; step: number }): number {
  const { min, max, step } = opts;
  const v = Math.min(max, Math.max(min, value));
  return step > 0 ? Math.min(max, min + Math.round((v - min) / step) * step) : v;
}

/**
 * One track with two thumbs (WAI-ARIA multi-thumb slider): each thumb is a focusable `slider` whose
 * range stops at the other thumb, moved by arrow keys, PageUp/PageDown, Home/End, or by dragging; a
 * press on the track moves the nearer thumb there.
 */
function buildRangeSlider(row: HTMLElement, label: HTMLLabelElement, ctx: LeafContext): Controls {
  const { doc, actions, inputId, listen } = ctx;
  const track = el("div", "tsnb-w-range", doc);
  track.id = inputId;
  track.setAttribute("role", "group");
  const rail = el("div", "tsnb-w-range-track", doc);
  const fill = el("div", "tsnb-w-range-fill", doc);
  const low = el("div", "tsnb-w-thumb", doc);
  const high = el("div", "tsnb-w-thumb", doc);
  const readout = el("output", "tsnb-w-readout", doc);
  track.append(rail, fill, low, high);
  row.append(label, track, readout);
  let opts = { min: 0, max: 100, step: 1 };
  let pair: [number, number] = [0, 0];
  let disabled = false;
  let dragging: HTMLElement | null = null;
  const thumbs = [low, high] as const;
  for (const t of thumbs) {
    t.setAttribute("role", "slider");
    t.setAttribute("aria-orientation", "horizontal");
  }
  const render = (): void => {
    const [lo, hi] = pair;
    const span = opts.max - opts.min || 1;
    const pct = (v: number) => `${((v - opts.min) / span) * 100}%`;
    low.style.left = pct(lo);
    high.style.left = pct(hi);
    fill.style.left = pct(lo);
    fill.style.width = `${((hi - lo) / span) * 100}%`;
    // Each thumb's own range ends at the other thumb, so a screen reader says how far it can go.
    low.setAttribute("aria-valuemin", String(opts.min));
    low.setAttribute("aria-valuemax", String(hi));
    low.setAttribute("aria-valuenow", String(lo));
    high.setAttribute("aria-valuemin", String(lo));
    high.setAttribute("aria-valuemax", String(opts.max));
    high.setAttribute("aria-valuenow", String(hi));
    readout.textContent = `${lo} – ${hi}`;
  };
  const move = (thumb: HTMLElement, to: number): void => {
    const [lo, hi] = pair;
    const next: [number, number] = thumb === low ? [Math.min(snap(to, opts), hi), hi] : [lo, Math.max(snap(to, opts), lo)];
    if (next[0] === lo && next[1] === hi) return;
    pair = next;
    render();
    actions.set("value", [...pair]);
  };
  for (const thumb of thumbs) {
    listen(thumb, "keydown", (e) => {
      if (disabled) return;
      const to = keyTarget(e.key, { value: thumb === low ? pair[0] : pair[1], ...opts });
      if (to === null) return;
      e.preventDefault();
      move(thumb, thumb === low && e.key === "End" ? pair[1] : thumb === high && e.key === "Home" ? pair[0] : to);
    });
  }
  const valueAt = (clientX: number): number => {
    const box = track.getBoundingClientRect();
    return opts.min + ((clientX - box.left) / (box.width || 1)) * (opts.max - opts.min);
  };
  listen(track, "pointerdown", (e) => {
    if (disabled || e.button !== 0) return;
    const at = valueAt(e.clientX);
    // The thumb pressed, else the nearer one (the upper one when both sit together and the press is above them).
    const hit = thumbs.find((t) => t === e.target);
    dragging = hit ?? (Math.abs(at - pair[0]) < Math.abs(at - pair[1]) || (pair[0] === pair[1] && at < pair[0]) ? low : high);
    e.preventDefault();
    dragging.focus();
    track.setPointerCapture(e.pointerId);
    if (!hit) move(dragging, at);
  });
  listen(track, "pointermove", (e) => {
    if (dragging) move(dragging, valueAt(e.clientX));
  });
  const stop = (): void => {
    dragging = null;
  };
  listen(track, "pointerup", stop);
  listen(track, "pointercancel", stop);
  return {
    apply(state, skip) {
      const description = text(state.description);
      label.textContent = description;
      label.hidden = description === "";
      if (description === "") {
        track.removeAttribute("aria-labelledby");
        track.setAttribute("aria-label", KIND_NAMES.IntRangeSlider);
      } else {
        track.removeAttribute("aria-label");
        track.setAttribute("aria-labelledby", label.id);
      }
      low.setAttribute("aria-label", description ? `${description} low` : "low");
      high.setAttribute("aria-label", description ? `${description} high` : "high");
      opts = { min: num(state.min, 0), max: num(state.max, 100), step: num(state.step, 1) };
      disabled = state.disabled === true;
      track.setAttribute("aria-disabled", String(disabled));
      for (const t of thumbs) {
        t.tabIndex = disabled ? -1 : 0;
        t.setAttribute("aria-disabled", String(disabled));
      }
      if (!skip.has("value") && !dragging) {
        const v = Array.isArray(state.value) ? (state.value as readonly number[]) : [];
        pair = [num(v[0], opts.min), num(v[1], opts.max)];
      }
      render();
    },
  };
}
