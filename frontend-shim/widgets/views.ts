// Widget views in the browser (issue 4). The shim mounts a view on every `[data-tsnb-widget]` placeholder
// of the page: at load, and whenever outputs appear (MutationObserver), so a saved notebook's outputs
// come alive as soon as the shim is back after a reload. A view follows the program's state on the
// widget's state address and sends user actions on its input address. While its own edit of a key is
// unanswered, it ignores that key in incoming states (echo suppression, as ipywidgets' echo_update), then
// takes the program's answer (which may be clamped).

import {
  inputAddress,
  parseWidgetState,
  stateAddress,
  type StateValue,
  type WidgetInput,
  type WidgetKind,
  type WidgetState,
  type WidgetStateMessage,
} from "../../protocol/widgets.js";

export interface WidgetComm {
  send(address: string, value: unknown): void;
  subscribe(address: string, callback: (value: unknown, address: string) => void): number;
  unsubscribe(id: number): void;
  onStatus?(callback: (status: string) => void): number;
  offStatus?(id: number): void;
}

export interface Disposable {
  dispose(): void;
}

interface Controls {
  /** Shows `state`, leaving alone the keys in `skip` (the user's own unanswered edits). */
  apply(state: WidgetState, skip: ReadonlySet<string>): void;
  dispose(): void;
}

interface Actions {
  set(key: string, value: StateValue): void;
  click(): void;
  mountChild(el: HTMLElement, id: string): Disposable;
}

function num(v: StateValue | undefined, fallback: number): number {
  return typeof v === "number" ? v : fallback;
}

function text(v: StateValue | undefined): string {
  return typeof v === "string" ? v : "";
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, doc: Document): HTMLElementTagNameMap[K] {
  const e = doc.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

/** Builds the DOM of one widget kind inside `root`. */
function build(kind: WidgetKind, root: HTMLElement, actions: Actions, nextId: () => string): Controls {
  const doc = root.ownerDocument;
  const row = el("div", `tsnb-w tsnb-w-${kind.toLowerCase()}`, doc);
  root.replaceChildren(row);
  const label = el("label", "tsnb-w-label", doc);
  const inputId = nextId();
  label.htmlFor = inputId;
  const setLabel = (state: WidgetState) => {
    label.textContent = text(state.description);
    label.hidden = label.textContent === "";
  };
  const none = { dispose() {} };
  switch (kind) {
    case "Button": {
      const b = el("button", "tsnb-w-button", doc);
      b.type = "button";
      b.addEventListener("click", () => actions.click());
      row.append(b);
      return {
        apply(state) {
          b.textContent = text(state.description);
          b.disabled = state.disabled === true;
          b.dataset.style = text(state.buttonStyle);
        },
        ...none,
      };
    }
    case "ToggleButton": {
      const b = el("button", "tsnb-w-button tsnb-w-toggle", doc);
      b.type = "button";
      b.addEventListener("click", () => {
        const pressed = b.getAttribute("aria-pressed") !== "true";
        b.setAttribute("aria-pressed", String(pressed));
        actions.set("value", pressed);
      });
      row.append(b);
      return {
        apply(state, skip) {
          b.textContent = text(state.description);
          b.disabled = state.disabled === true;
          if (!skip.has("value")) b.setAttribute("aria-pressed", String(state.value === true));
        },
        ...none,
      };
    }
    case "Checkbox": {
      const box = el("input", "", doc);
      box.type = "checkbox";
      box.id = inputId;
      box.addEventListener("change", () => actions.set("value", box.checked));
      row.append(box, label);
      return {
        apply(state, skip) {
          setLabel(state);
          label.hidden = false;
          box.disabled = state.disabled === true;
          if (!skip.has("value")) box.checked = state.value === true;
        },
        ...none,
      };
    }
    case "IntSlider":
    case "FloatSlider": {
      const range = el("input", "tsnb-w-slider", doc);
      range.type = "range";
      range.id = inputId;
      const readout = el("output", "tsnb-w-readout", doc);
      readout.htmlFor.add(inputId);
      range.addEventListener("input", () => {
        readout.textContent = range.value;
        actions.set("value", Number(range.value));
      });
      row.append(label, range, readout);
      return {
        apply(state, skip) {
          setLabel(state);
          range.min = String(num(state.min, 0));
          range.max = String(num(state.max, 100));
          range.step = String(num(state.step, 1));
          range.disabled = state.disabled === true;
          if (!skip.has("value")) {
            range.value = String(num(state.value, 0));
            readout.textContent = String(num(state.value, 0));
          }
        },
        ...none,
      };
    }
    case "Progress": {
      const bar = el("progress", "tsnb-w-progress", doc);
      bar.id = inputId;
      row.append(label, bar);
      return {
        apply(state) {
          setLabel(state);
          const min = num(state.min, 0);
          bar.max = num(state.max, 100) - min;
          bar.value = num(state.value, 0) - min;
          bar.textContent = String(state.value);
        },
        ...none,
      };
    }
    case "NumberInput": {
      const input = el("input", "tsnb-w-number", doc);
      input.type = "number";
      input.id = inputId;
      input.addEventListener("change", () => {
        if (input.value !== "" && Number.isFinite(Number(input.value))) actions.set("value", Number(input.value));
      });
      row.append(label, input);
      return {
        apply(state, skip) {
          setLabel(state);
          if (typeof state.min === "number") input.min = String(state.min);
          else input.removeAttribute("min");
          if (typeof state.max === "number") input.max = String(state.max);
          else input.removeAttribute("max");
          input.step = String(num(state.step, 1));
          input.disabled = state.disabled === true;
          if (!skip.has("value")) input.value = String(num(state.value, 0));
        },
        ...none,
      };
    }
    case "Text":
    case "Textarea": {
      const input = kind === "Text" ? el("input", "tsnb-w-text-input", doc) : el("textarea", "tsnb-w-textarea", doc);
      if (input instanceof HTMLInputElement) input.type = "text";
      input.id = inputId;
      input.addEventListener("input", () => actions.set("value", input.value));
      row.append(label, input);
      return {
        apply(state, skip) {
          setLabel(state);
          input.placeholder = text(state.placeholder);
          input.disabled = state.disabled === true;
          if (!skip.has("value") && input.value !== text(state.value)) input.value = text(state.value);
        },
        ...none,
      };
    }
    case "Dropdown": {
      const select = el("select", "tsnb-w-select", doc);
      select.id = inputId;
      select.addEventListener("change", () => actions.set("value", select.value));
      row.append(label, select);
      let shown = "";
      return {
        apply(state, skip) {
          setLabel(state);
          select.disabled = state.disabled === true;
          const options = Array.isArray(state.options) ? (state.options as readonly string[]) : [];
          const key = JSON.stringify(options);
          if (key !== shown) {
            shown = key;
            select.replaceChildren(
              ...options.map((o) => {
                const option = el("option", "", doc);
                option.value = o;
                option.textContent = o;
                return option;
              }),
            );
          }
          if (!skip.has("value")) select.value = text(state.value);
        },
        ...none,
      };
    }
    case "Label": {
      const span = el("span", "tsnb-w-text", doc);
      row.append(span);
      return {
        apply(state) {
          span.textContent = text(state.value);
        },
        ...none,
      };
    }
    case "Output":
    case "HTML": {
      const div = el("div", kind === "HTML" ? "tsnb-w-html" : "tsnb-w-output", doc);
      if (kind === "Output") div.setAttribute("role", "log");
      row.append(div);
      return {
        apply(state) {
          // The program's own HTML, shown like any trusted display.html output.
          if (div.innerHTML !== text(state.value)) div.innerHTML = text(state.value);
        },
        ...none,
      };
    }
    case "Select":
    case "RadioButtons": {
      let shown = "";
      const group = kind === "Select" ? el("select", "tsnb-w-listbox", doc) : el("div", "tsnb-w-radios", doc);
      group.id = inputId;
      if (group instanceof HTMLSelectElement) group.addEventListener("change", () => actions.set("value", group.value));
      else {
        group.setAttribute("role", "radiogroup");
        group.setAttribute("aria-labelledby", `${inputId}-label`);
        label.id = `${inputId}-label`;
      }
      row.append(label, group);
      return {
        apply(state, skip) {
          setLabel(state);
          const options = Array.isArray(state.options) ? (state.options as readonly string[]) : [];
          const key = JSON.stringify(options);
          if (key !== shown) {
            shown = key;
            if (group instanceof HTMLSelectElement) {
              group.size = Math.min(8, Math.max(2, options.length));
              group.replaceChildren(
                ...options.map((o) => {
                  const option = el("option", "", doc);
                  option.value = o;
                  option.textContent = o;
                  return option;
                }),
              );
            } else {
              group.replaceChildren(
                ...options.map((o) => {
                  const item = el("label", "tsnb-w-radio", doc);
                  const radio = el("input", "", doc);
                  radio.type = "radio";
                  radio.name = inputId;
                  radio.value = o;
                  radio.addEventListener("change", () => radio.checked && actions.set("value", o));
                  item.append(radio, ` ${o}`);
                  return item;
                }),
              );
            }
          }
          if (group instanceof HTMLSelectElement) {
            group.disabled = state.disabled === true;
            if (!skip.has("value")) group.value = text(state.value);
          } else {
            for (const radio of group.querySelectorAll("input")) {
              radio.disabled = state.disabled === true;
              if (!skip.has("value")) radio.checked = radio.value === state.value;
            }
          }
        },
        ...none,
      };
    }
    case "ColorPicker": {
      const input = el("input", "tsnb-w-color", doc);
      input.type = "color";
      input.id = inputId;
      const code = el("code", "", doc);
      input.addEventListener("input", () => {
        code.textContent = input.value;
        actions.set("value", input.value);
      });
      row.append(label, input, code);
      return {
        apply(state, skip) {
          setLabel(state);
          input.disabled = state.disabled === true;
          if (!skip.has("value")) {
            input.value = text(state.value);
            code.textContent = text(state.value);
          }
        },
        ...none,
      };
    }
    case "IntRangeSlider": {
      const low = el("input", "tsnb-w-slider", doc);
      const high = el("input", "tsnb-w-slider", doc);
      low.type = high.type = "range";
      low.id = inputId;
      low.setAttribute("aria-label", "low");
      high.setAttribute("aria-label", "high");
      const readout = el("output", "tsnb-w-readout", doc);
      const send = () => {
        readout.textContent = `${low.value} – ${high.value}`;
        actions.set("value", [Number(low.value), Number(high.value)]);
      };
      low.addEventListener("input", send);
      high.addEventListener("input", send);
      row.append(label, low, high, readout);
      return {
        apply(state, skip) {
          setLabel(state);
          for (const r of [low, high]) {
            r.min = String(num(state.min, 0));
            r.max = String(num(state.max, 100));
            r.step = String(num(state.step, 1));
            r.disabled = state.disabled === true;
          }
          const pair = Array.isArray(state.value) ? (state.value as readonly number[]) : [0, 0];
          if (!skip.has("value")) {
            low.value = String(pair[0] ?? 0);
            high.value = String(pair[1] ?? 0);
            readout.textContent = `${low.value} – ${high.value}`;
          }
        },
        ...none,
      };
    }
    case "Image": {
      const img = el("img", "tsnb-w-image", doc);
      row.append(img);
      return {
        apply(state) {
          if (img.getAttribute("src") !== text(state.src)) img.src = text(state.src);
          img.alt = text(state.description);
          if (typeof state.width === "number") img.width = state.width;
          if (typeof state.height === "number") img.height = state.height;
        },
        ...none,
      };
    }
    case "FileUpload": {
      // A real file input (keyboard and screen readers know it), styled by its label as a button.
      const input = el("input", "tsnb-w-file", doc);
      input.type = "file";
      input.id = inputId;
      const button = el("label", "tsnb-w-button", doc);
      button.htmlFor = inputId;
      const names = el("span", "tsnb-w-text", doc);
      input.addEventListener("change", () => {
        const picked = [...(input.files ?? [])];
        void Promise.all(picked.map(async (f) => ({ name: f.name, type: f.type, data: new Uint8Array(await f.arrayBuffer()) }))).then(
          (files) => {
            actions.set("value", files as never);
            input.value = "";
          },
          (err: unknown) => console.error("tsnb widgets: reading the picked files failed", err),
        );
      });
      row.append(input, button, names);
      return {
        apply(state) {
          button.textContent = text(state.description) || "Upload";
          input.accept = text(state.accept);
          input.multiple = state.multiple === true;
          input.disabled = state.disabled === true;
          names.textContent = Array.isArray(state.value) ? state.value.join(", ") : "";
        },
        ...none,
      };
    }
    case "Tabs":
    case "Accordion": {
      let shown = "";
      let children: Disposable[] = [];
      let headers: HTMLButtonElement[] = [];
      let panels: HTMLElement[] = [];
      const strip = el("div", "tsnb-w-tabstrip", doc);
      if (kind === "Tabs") strip.setAttribute("role", "tablist");
      row.append(strip);
      const clear = () => {
        for (const c of children) c.dispose();
        children = [];
      };
      const select = (index: number) => {
        headers.forEach((h, i) => {
          h.setAttribute(kind === "Tabs" ? "aria-selected" : "aria-expanded", String(i === index));
          h.tabIndex = kind === "Tabs" && i !== index ? -1 : 0;
        });
        panels.forEach((p, i) => (p.hidden = i !== index));
      };
      return {
        apply(state, skip) {
          const ids = Array.isArray(state.children) ? (state.children as readonly string[]) : [];
          const titles = Array.isArray(state.titles) ? (state.titles as readonly string[]) : [];
          const key = JSON.stringify([ids, titles]);
          if (key !== shown) {
            shown = key;
            clear();
            strip.replaceChildren();
            row.replaceChildren(...(kind === "Tabs" ? [strip] : []));
            headers = [];
            panels = [];
            ids.forEach((id, i) => {
              const header = el("button", "tsnb-w-button tsnb-w-tab", doc);
              header.type = "button";
              header.textContent = titles[i] ?? String(i + 1);
              header.id = `${inputId}-h${i}`;
              const panel = el("div", "tsnb-w-panel", doc);
              panel.id = `${inputId}-p${i}`;
              panel.setAttribute("role", kind === "Tabs" ? "tabpanel" : "region");
              panel.setAttribute("aria-labelledby", header.id);
              header.setAttribute("aria-controls", panel.id);
              if (kind === "Tabs") header.setAttribute("role", "tab");
              header.addEventListener("click", () => {
                select(i);
                actions.set("selected", i);
              });
              header.addEventListener("keydown", (e) => {
                if (kind !== "Tabs" || (e.key !== "ArrowRight" && e.key !== "ArrowLeft")) return;
                const next = (i + (e.key === "ArrowRight" ? 1 : ids.length - 1)) % ids.length;
                headers[next]?.focus();
                headers[next]?.click();
              });
              const slot = el("div", "tsnb-widget", doc);
              slot.dataset.tsnbWidget = id;
              panel.append(slot);
              headers.push(header);
              panels.push(panel);
              if (kind === "Tabs") {
                strip.append(header);
                row.append(panel);
              } else row.append(header, panel);
              children.push(actions.mountChild(slot, id));
            });
          }
          if (!skip.has("selected")) select(num(state.selected, 0));
        },
        dispose: clear,
      };
    }
    case "Grid":
    case "HBox":
    case "VBox": {
      row.setAttribute("role", "group");
      if (kind === "Grid") row.style.display = "grid";
      let shown = "";
      let children: Disposable[] = [];
      const clear = () => {
        for (const c of children) c.dispose();
        children = [];
      };
      return {
        apply(state) {
          const ids = Array.isArray(state.children) ? (state.children as readonly string[]) : [];
          if (kind === "Grid") row.style.gridTemplateColumns = `repeat(${num(state.columns, 2)}, auto)`;
          const key = ids.join(",");
          if (key === shown) return;
          shown = key;
          clear();
          row.replaceChildren();
          for (const id of ids) {
            const slot = el("div", "tsnb-widget", doc);
            slot.dataset.tsnbWidget = id;
            row.append(slot);
            children.push(actions.mountChild(slot, id));
          }
        },
        dispose: clear,
      };
    }
    default: {
      const unreachable: never = kind;
      throw new Error(`no view for widget kind ${String(unreachable)}`);
    }
  }
}

/** One mounted view of one widget. */
class WidgetView implements Disposable {
  private readonly client: string;
  private seq = 0;
  /** Keys the user changed here whose answer from the program has not arrived, with the latest seq. */
  private readonly pending = new Map<string, number>();
  private readonly subscription: number;
  private readonly statusSubscription: number | null;
  private controls: Controls | null = null;
  private kind: WidgetKind | null = null;
  private disposed = false;

  constructor(
    private readonly root: HTMLElement,
    private readonly id: string,
    private readonly comm: WidgetComm,
    private readonly manager: WidgetManager,
  ) {
    this.client = manager.newClientId();
    root.dataset.tsnbMounted = "true";
    // Until the program's state arrives (and again from a lost connection until the state is replayed),
    // the view says it is disconnected and takes no input: after a kernel restart no state ever comes,
    // because the new kernel knows nothing of this widget.
    this.setDisconnected(true);
    this.statusSubscription = comm.onStatus?.((status) => {
      if (status !== "open") this.setDisconnected(true);
    }) ?? null;
    this.subscription = comm.subscribe(stateAddress(id), (raw) => this.onState(raw));
    manager.track(this);
  }

  /** The kernel went away (restart, death): nothing will answer this view until a state arrives. */
  markDisconnected(): void {
    if (!this.disposed) this.setDisconnected(true);
  }

  private setDisconnected(flag: boolean): void {
    if (flag) {
      this.root.dataset.tsnbDisconnected = "true";
      this.root.setAttribute("aria-disabled", "true");
      this.root.title = "not connected to the kernel";
    } else if (this.root.dataset.tsnbDisconnected !== undefined) {
      delete this.root.dataset.tsnbDisconnected;
      this.root.removeAttribute("aria-disabled");
      this.root.removeAttribute("title");
    }
  }

  private onState(raw: unknown): void {
    if (this.disposed) return;
    if (!this.root.isConnected) {
      this.dispose();
      return;
    }
    const parsed = parseWidgetState(raw);
    if (!parsed.ok) {
      console.error(`tsnb widgets: ${parsed.error}`, raw);
      return;
    }
    this.show(parsed.value);
  }

  private show(message: WidgetStateMessage): void {
    if (message.ack && message.ack.client === this.client) {
      for (const [key, seq] of [...this.pending]) if (seq <= message.ack.seq) this.pending.delete(key);
    }
    if (this.controls === null || this.kind !== message.kind) {
      this.controls?.dispose();
      this.kind = message.kind;
      this.controls = build(message.kind, this.root, this.actions, () => this.manager.newElementId());
    }
    this.root.dataset.tsnbKind = message.kind;
    this.setDisconnected(false);
    this.controls.apply(message.state, new Set(this.pending.keys()));
  }

  private readonly actions: Actions = {
    set: (key, value) => {
      const seq = ++this.seq;
      this.pending.set(key, seq);
      this.send({ type: "set", key, value, client: this.client, seq });
    },
    click: () => this.send({ type: "click", client: this.client, seq: ++this.seq }),
    mountChild: (slot, id) => new WidgetView(slot, id, this.comm, this.manager),
  };

  private send(input: WidgetInput): void {
    this.comm.send(inputAddress(this.id), input);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.comm.unsubscribe(this.subscription);
    if (this.statusSubscription !== null) this.comm.offStatus?.(this.statusSubscription);
    this.controls?.dispose();
    this.manager.untrack(this);
    delete this.root.dataset.tsnbMounted;
  }
}

const STYLE = `
.tsnb-w { display: flex; align-items: center; gap: 8px; margin: 2px 0; font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: var(--jp-widgets-font-size, 13px); color: var(--jp-ui-font-color1, #212121); }
.tsnb-w-label { min-width: 0; color: var(--jp-ui-font-color1, #212121); }
.tsnb-w-label[hidden] { display: none; }
.tsnb-w-button { padding: 4px 12px; border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 2px; background: var(--jp-layout-color2, #eeeeee); color: var(--jp-ui-font-color1, #212121); cursor: pointer; }
.tsnb-w-button:focus-visible, .tsnb-w input:focus-visible, .tsnb-w select:focus-visible, .tsnb-w textarea:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px; }
.tsnb-w-button[aria-pressed="true"] { background: var(--jp-brand-color1, #1976d2); color: var(--jp-ui-inverse-font-color1, #fff); }
.tsnb-w-button[data-style="primary"] { background: var(--jp-brand-color1, #1976d2); color: #fff; }
.tsnb-w-button[data-style="danger"] { background: var(--jp-error-color1, #d32f2f); color: #fff; }
.tsnb-w-button:disabled { opacity: 0.6; cursor: default; }
.tsnb-w-slider { width: 200px; accent-color: var(--jp-brand-color1, #1976d2); }
.tsnb-w-readout { min-width: 3em; font-variant-numeric: tabular-nums; }
.tsnb-w input[type=text], .tsnb-w input[type=number], .tsnb-w textarea, .tsnb-w select { border: 1px solid var(--jp-border-color1, #bdbdbd); background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #212121); padding: 2px 4px; }
[data-tsnb-disconnected] > .tsnb-w { opacity: 0.55; pointer-events: none; }
.tsnb-w-tabs, .tsnb-w-accordion { flex-direction: column; align-items: stretch; }
.tsnb-w-tabstrip { display: flex; gap: 2px; border-bottom: 1px solid var(--jp-border-color1, #bdbdbd); }
.tsnb-w-tab[aria-selected="true"], .tsnb-w-tab[aria-expanded="true"] { background: var(--jp-layout-color1, #fff); border-bottom-color: transparent; font-weight: 600; }
.tsnb-w-accordion > .tsnb-w-tab { text-align: left; }
.tsnb-w-panel { padding: 4px; }
.tsnb-w-panel[hidden] { display: none; }
.tsnb-w-grid { gap: 4px; }
.tsnb-w-file { position: absolute; width: 1px; height: 1px; opacity: 0; }
.tsnb-w-file:focus-visible + .tsnb-w-button { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.tsnb-w-output { display: block; width: 100%; }
.tsnb-w-output pre, .tsnb-w-out { margin: 0; font-family: var(--jp-code-font-family, monospace); white-space: pre-wrap; }
.tsnb-w-radios { display: flex; flex-direction: column; }
.tsnb-w-hbox { flex-direction: row; flex-wrap: wrap; }
.tsnb-w-vbox { flex-direction: column; align-items: stretch; }
`;

/** Mounts views on the page's placeholders, now and as outputs appear. */
export class WidgetManager implements Disposable {
  private readonly views = new Set<{ view: WidgetView; node: HTMLElement }>();
  private readonly observer: MutationObserver | null;
  private scheduled = false;
  private ids = 0;
  /** Element ids stay unique even if a second manager ever runs in the page. */
  private readonly prefix = Math.random().toString(36).slice(2, 8);
  private disposed = false;

  constructor(
    private readonly doc: Document,
    private readonly comm: () => WidgetComm | undefined,
  ) {
    if (!doc.getElementById("tsnb-widget-style")) {
      const style = doc.createElement("style");
      style.id = "tsnb-widget-style";
      style.textContent = STYLE;
      doc.head.append(style);
    }
    this.observer = typeof MutationObserver === "function" ? new MutationObserver(() => this.scheduleScan()) : null;
    this.observer?.observe(doc.body, { childList: true, subtree: true });
    this.scheduleScan();
  }

  /** Every live view, box children included. */
  private readonly all = new Set<WidgetView>();

  track(view: WidgetView): void {
    this.all.add(view);
  }

  untrack(view: WidgetView): void {
    this.all.delete(view);
  }

  /** Called when the page learns the kernel restarted or died (the comm may not notice for a while). */
  markDisconnected(): void {
    for (const view of [...this.all]) view.markDisconnected();
  }

  newClientId(): string {
    return `${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  }

  newElementId(): string {
    return `tsnb-w-${this.prefix}-${++this.ids}`;
  }

  scheduleScan(): void {
    if (this.scheduled || this.disposed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.scan();
    });
  }

  /** Mounts every top-level placeholder not mounted yet; drops views whose element left the page. */
  scan(): void {
    if (this.disposed) return;
    const comm = this.comm();
    if (!comm) return;
    for (const entry of [...this.views]) {
      if (entry.node.isConnected) continue;
      this.views.delete(entry);
      entry.view.dispose();
    }
    for (const node of this.doc.querySelectorAll<HTMLElement>("[data-tsnb-widget]:not([data-tsnb-mounted])")) {
      // Boxes mount their own children.
      if (node.parentElement?.closest("[data-tsnb-widget]")) continue;
      const id = node.dataset.tsnbWidget;
      if (!id) continue;
      this.views.add({ view: new WidgetView(node, id, comm, this), node });
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.observer?.disconnect();
    for (const entry of this.views) entry.view.dispose();
    this.views.clear();
  }
}
