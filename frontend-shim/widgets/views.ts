// Widget views in the browser (issue 4), as Lumino widgets. The shim attaches a view (`Widget.attach`) to
// every `[data-tsnb-widget]` placeholder of the page: at load, and whenever outputs appear
// (MutationObserver), so a saved notebook's outputs come alive as soon as the shim is back after a
// reload. When an output is cleared or replaced, its views are disposed, which unsubscribes everything
// they held (comm subscriptions, status callbacks, DOM listeners) and disposes their child views.
//
// A view follows the program's state on the widget's state address and sends user actions on its input
// address. While its own edit of a key is unanswered, it ignores that key in incoming states (echo
// suppression, as ipywidgets' echo_update), then takes the program's answer (which may be clamped).
//
// Each view (WidgetView) holds one content widget for its kind: leaf kinds are plain DOM built by
// controls.ts; boxes lay their children out with a PanelLayout (flex or grid by CSS: Lumino's BoxLayout
// and StackedLayout position children absolutely, which an auto-sized notebook output cannot host);
// Tabs use Lumino's TabBar (tablist/tab roles, arrow keys, Enter/Space) over a panel of children.

import { MessageLoop } from "@lumino/messaging";
import { Panel, PanelLayout, TabBar, Widget } from "@lumino/widgets";
import {
  inputAddress,
  parseWidgetState,
  stateAddress,
  type WidgetInput,
  type WidgetKind,
  type WidgetState,
  type WidgetStateMessage,
} from "../../protocol/widgets.js";
import { buildLeaf, el, isContainer, num, type Actions, type ContainerKind, type Controls, type LeafKind, type Listen } from "./controls.js";
import { WIDGET_CSS } from "./style.js";
import { uploadMethod } from "../../protocol/upload.js";
import { sendFiles } from "./upload.js";

export interface WidgetComm {
  send(address: string, value: unknown): void;
  subscribe(address: string, callback: (value: unknown, address: string) => void): number;
  unsubscribe(id: number): void;
  onStatus?(callback: (status: string) => void): number;
  offStatus?(id: number): void;
  /** RPC into the program (FileUpload sends its chunks this way). */
  call?(method: string, args: unknown[], kwargs?: { [key: string]: unknown }, options?: { timeout?: number }): Promise<unknown>;
  /** This page's front-end id while connected. */
  readonly id?: string | null;
}

export interface Disposable {
  dispose(): void;
}

/** What a content widget needs from the view that holds it. */
interface ViewHost {
  readonly actions: Actions;
  newElementId(): string;
  /** A new view of the widget `id`, for a container to lay out. */
  child(id: string): WidgetView;
}

/** The kind-specific part of a view. Its DOM listeners go away with it. */
abstract class Content extends Widget {
  private readonly aborter = new AbortController();
  protected readonly listen: Listen = (target, type, fn) => target.addEventListener(type, fn as EventListener, { signal: this.aborter.signal });

  constructor(kind: WidgetKind) {
    super();
    this.addClass("tsnb-w");
    // Not `tsnb-w-<kind>`: "tsnb-w-button" and "tsnb-w-label" already style the controls themselves.
    this.addClass(`tsnb-w-kind-${kind.toLowerCase()}`);
  }

  abstract apply(state: WidgetState, skip: ReadonlySet<string>): void;

  override dispose(): void {
    if (this.isDisposed) return;
    this.aborter.abort();
    super.dispose();
  }
}

class LeafContent extends Content {
  private readonly controls: Controls;

  constructor(kind: LeafKind, host: ViewHost) {
    super(kind);
    this.controls = buildLeaf(kind, this.node, { doc: this.node.ownerDocument, actions: host.actions, inputId: host.newElementId(), listen: this.listen });
  }

  apply(state: WidgetState, skip: ReadonlySet<string>): void {
    this.controls.apply(state, skip);
  }
}

function childIds(state: WidgetState): readonly string[] {
  return Array.isArray(state.children) ? (state.children as readonly string[]) : [];
}

function titlesOf(state: WidgetState): readonly string[] {
  return Array.isArray(state.titles) ? (state.titles as readonly string[]) : [];
}

/** HBox, VBox, Grid: the children in order, laid out by CSS flex or grid. */
class BoxContent extends Content {
  private shown = "";
  private readonly items = new PanelLayout();

  constructor(
    private readonly kind: "HBox" | "VBox" | "Grid",
    private readonly host: ViewHost,
  ) {
    super(kind);
    this.layout = this.items;
    this.node.setAttribute("role", "group");
  }

  apply(state: WidgetState): void {
    if (this.kind === "Grid") this.node.style.gridTemplateColumns = `repeat(${num(state.columns, 2)}, auto)`;
    const ids = childIds(state);
    const key = ids.join(",");
    if (key === this.shown) return;
    this.shown = key;
    for (const w of [...this.items.widgets]) w.dispose();
    for (const id of ids) this.items.addWidget(this.host.child(id));
  }
}

/** Tabs: Lumino's TabBar over a panel showing the selected child only. */
class TabsContent extends Content {
  private shown = "";
  private readonly bar = new TabBar<Widget>({ tabsMovable: false, allowDeselect: false, insertBehavior: "none", removeBehavior: "none" });
  private readonly stack = new Panel();
  /** Set while the program's state, not the user, changes the current tab. */
  private applying = false;

  constructor(private readonly host: ViewHost) {
    super("Tabs");
    const layout = new PanelLayout();
    this.layout = layout;
    layout.addWidget(this.bar);
    layout.addWidget(this.stack);
    this.bar.currentChanged.connect((_, args) => {
      this.reveal(args.currentIndex);
      if (!this.applying && args.currentIndex >= 0) this.host.actions.set("selected", args.currentIndex);
    });
  }

  private reveal(index: number): void {
    this.stack.widgets.forEach((w, i) => {
      w.setHidden(i !== index);
      // Also for the static snapshot of a saved notebook, where Lumino's classes have no stylesheet.
      w.node.hidden = i !== index;
    });
  }

  apply(state: WidgetState, skip: ReadonlySet<string>): void {
    const ids = childIds(state);
    const titles = titlesOf(state);
    const key = JSON.stringify([ids, titles]);
    this.applying = true;
    try {
      if (key !== this.shown) {
        this.shown = key;
        this.bar.clearTabs();
        for (const w of [...this.stack.widgets]) w.dispose();
        ids.forEach((id, i) => {
          const view = this.host.child(id);
          const title = titles[i] ?? String(i + 1);
          view.title.label = title;
          view.addClass("tsnb-w-panel");
          view.node.setAttribute("role", "tabpanel");
          // Named by its tab: the id Lumino's renderer gives the title's tab (stable per title).
          view.node.setAttribute("aria-labelledby", TabBar.defaultRenderer.createTabKey({ title: view.title, current: false, zIndex: 0 }));
          this.stack.addWidget(view);
          this.bar.addTab(view.title);
        });
      }
      if (!skip.has("selected")) this.bar.currentIndex = Math.min(ids.length - 1, Math.max(0, num(state.selected, 0)));
    } finally {
      this.applying = false;
    }
    this.reveal(this.bar.currentIndex);
  }
}

/** Accordion: a header button per child (aria-expanded), the selected child's region open. */
class AccordionContent extends Content {
  private shown = "";
  private readonly items = new PanelLayout();
  private headers: HTMLButtonElement[] = [];
  private views: WidgetView[] = [];

  constructor(private readonly host: ViewHost) {
    super("Accordion");
    this.layout = this.items;
  }

  private reveal(index: number): void {
    this.headers.forEach((h, i) => h.setAttribute("aria-expanded", String(i === index)));
    this.views.forEach((v, i) => {
      v.setHidden(i !== index);
      v.node.hidden = i !== index;
    });
  }

  apply(state: WidgetState, skip: ReadonlySet<string>): void {
    const ids = childIds(state);
    const titles = titlesOf(state);
    const key = JSON.stringify([ids, titles]);
    if (key !== this.shown) {
      this.shown = key;
      for (const w of [...this.items.widgets]) w.dispose();
      this.headers = [];
      this.views = [];
      const doc = this.node.ownerDocument;
      ids.forEach((id, i) => {
        const base = this.host.newElementId();
        const button = el("button", "tsnb-w-button tsnb-w-tab", doc);
        button.type = "button";
        button.id = `${base}-h`;
        button.textContent = titles[i] ?? String(i + 1);
        const view = this.host.child(id);
        view.addClass("tsnb-w-panel");
        view.id = `${base}-p`;
        view.node.setAttribute("role", "region");
        view.node.setAttribute("aria-labelledby", button.id);
        button.setAttribute("aria-controls", view.id);
        this.listen(button, "click", () => {
          this.reveal(i);
          this.host.actions.set("selected", i);
        });
        this.items.addWidget(new Widget({ node: button }));
        this.items.addWidget(view);
        this.headers.push(button);
        this.views.push(view);
      });
    }
    if (!skip.has("selected")) this.reveal(num(state.selected, 0));
  }
}

function makeContent(kind: WidgetKind, host: ViewHost): Content {
  if (!isContainer(kind)) return new LeafContent(kind, host);
  const container: ContainerKind = kind;
  switch (container) {
    case "HBox":
    case "VBox":
    case "Grid":
      return new BoxContent(container, host);
    case "Tabs":
      return new TabsContent(host);
    case "Accordion":
      return new AccordionContent(host);
    default: {
      const unreachable: never = container;
      throw new Error(`no view for widget kind ${String(unreachable)}`);
    }
  }
}

export interface WidgetViewOptions {
  id: string;
  comm: WidgetComm;
  manager: WidgetManager;
  /** The output placeholder this view is attached to, whose static HTML it replaces once it has state. */
  placeholder: HTMLElement | null;
}

/** One live view of one widget. */
export class WidgetView extends Widget {
  private readonly client: string;
  private seq = 0;
  /** Keys the user changed here whose answer from the program has not arrived, with the latest seq. */
  private readonly pending = new Map<string, number>();
  private readonly subscription: number;
  private readonly statusSubscription: number | null;
  private readonly slot = new PanelLayout();
  private content: Content | null = null;
  private kind: WidgetKind | null = null;

  constructor(private readonly options: WidgetViewOptions) {
    super();
    const { id, comm, manager } = options;
    this.addClass("tsnb-w-view");
    this.layout = this.slot;
    this.client = manager.newClientId();
    this.node.dataset.tsnbMounted = "true";
    this.node.dataset.tsnbId = id;
    // Until the program's state arrives (and again from a lost connection until the state is replayed),
    // the view says it is disconnected and takes no input: after a kernel restart no state ever comes,
    // because the new kernel knows nothing of this widget.
    this.setDisconnected(true);
    this.statusSubscription =
      comm.onStatus?.((status) => {
        if (status !== "open") this.setDisconnected(true);
      }) ?? null;
    this.subscription = comm.subscribe(stateAddress(id), (raw) => this.onState(raw));
    manager.track(this);
  }

  /** The kernel went away (restart, death): nothing will answer this view until a state arrives. */
  markDisconnected(): void {
    if (!this.isDisposed) this.setDisconnected(true);
  }

  private setDisconnected(flag: boolean): void {
    const node = this.node;
    if (flag) {
      node.dataset.tsnbDisconnected = "true";
      node.setAttribute("aria-disabled", "true");
      node.title = "not connected to the kernel";
    } else if (node.dataset.tsnbDisconnected !== undefined) {
      delete node.dataset.tsnbDisconnected;
      node.removeAttribute("aria-disabled");
      node.removeAttribute("title");
    }
  }

  private onState(raw: unknown): void {
    if (this.isDisposed) return;
    const parsed = parseWidgetState(raw);
    if (!parsed.ok) {
      console.error(`tsnb widgets: ${parsed.error}`, raw);
      return;
    }
    this.showState(parsed.value);
  }

  private showState(message: WidgetStateMessage): void {
    if (message.ack && message.ack.client === this.client) {
      for (const [key, seq] of [...this.pending]) if (seq <= message.ack.seq) this.pending.delete(key);
    }
    if (this.content === null || this.kind !== message.kind) {
      this.content?.dispose();
      this.kind = message.kind;
      this.content = makeContent(message.kind, this.host);
      this.slot.addWidget(this.content);
      // The live view replaces the output's static HTML (kept until now so the page showed something).
      const placeholder = this.options.placeholder;
      if (placeholder) for (const n of [...placeholder.childNodes]) if (n !== this.node) n.remove();
    }
    this.node.dataset.tsnbKind = message.kind;
    this.setDisconnected(false);
    this.content.apply(message.state, new Set(this.pending.keys()));
  }

  private readonly host: ViewHost = {
    actions: {
      set: (key, value) => {
        const seq = ++this.seq;
        this.pending.set(key, seq);
        this.send({ type: "set", key, value, client: this.client, seq });
      },
      click: () => this.send({ type: "click", client: this.client, seq: ++this.seq }),
      upload: (files, settings, onProgress) => {
        const { comm, id } = this.options;
        if (!comm.call) return Promise.reject(new Error("this page's tsnb_comm cannot call the program"));
        const call = comm.call.bind(comm);
        return sendFiles({
          files,
          method: uploadMethod(id),
          call: (method, op, options) => call(method, [op], {}, options),
          upload: `${this.client}-${++this.seq}`,
          frontend: comm.id ?? null,
          chunkBytes: settings.chunkBytes,
          window: settings.window,
          signal: settings.signal,
          onProgress,
        });
      },
    },
    newElementId: () => this.options.manager.newElementId(),
    child: (id) => new WidgetView({ id, comm: this.options.comm, manager: this.options.manager, placeholder: null }),
  };

  private send(input: WidgetInput): void {
    this.options.comm.send(inputAddress(this.options.id), input);
  }

  override dispose(): void {
    if (this.isDisposed) return;
    const { comm, manager } = this.options;
    comm.unsubscribe(this.subscription);
    if (this.statusSubscription !== null) comm.offStatus?.(this.statusSubscription);
    manager.untrack(this);
    if (!this.parent && this.isAttached && !this.node.isConnected) {
      // The page removed the output under us (cleared, replaced). Lumino's detach needs the node in the
      // document, so the widget tree is told it is detached here, and Widget.dispose has nothing to detach.
      MessageLoop.sendMessage(this, Widget.Msg.BeforeDetach);
      MessageLoop.sendMessage(this, Widget.Msg.AfterDetach);
    }
    super.dispose();
    this.content = null;
  }
}

/** Mounts views on the page's placeholders, now and as outputs appear. */
export class WidgetManager implements Disposable {
  private readonly views = new Set<{ view: WidgetView; node: HTMLElement }>();
  private readonly observer: MutationObserver | null;
  private scheduled = false;
  private ids = 0;
  /** Element ids stay unique even if a second manager ever runs in the page. */
  private readonly prefix = Math.random().toString(36).slice(2, 8);
  private disposed = false;
  /** Every live view, box children included. */
  private readonly all = new Set<WidgetView>();

  constructor(
    private readonly doc: Document,
    private readonly comm: () => WidgetComm | undefined,
  ) {
    if (!doc.getElementById("tsnb-widget-style")) {
      const style = doc.createElement("style");
      style.id = "tsnb-widget-style";
      style.textContent = WIDGET_CSS;
      doc.head.append(style);
    }
    this.observer = typeof MutationObserver === "function" ? new MutationObserver(() => this.scheduleScan()) : null;
    this.observer?.observe(doc.body, { childList: true, subtree: true });
    this.scheduleScan();
  }

  track(view: WidgetView): void {
    this.all.add(view);
  }

  untrack(view: WidgetView): void {
    this.all.delete(view);
  }

  /** How many views are live (box children included): what a cleared output should bring down. */
  get liveViews(): number {
    return this.all.size;
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

  /** Attaches a view to every top-level placeholder not mounted yet; disposes views whose output left the page. */
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
      // A saved notebook's static HTML nests its boxes' children's placeholders; the box's view builds its own.
      if (node.parentElement?.closest("[data-tsnb-widget]")) continue;
      const id = node.dataset.tsnbWidget;
      if (!id) continue;
      const view = new WidgetView({ id, comm, manager: this, placeholder: node });
      node.dataset.tsnbMounted = "true";
      Widget.attach(view, node);
      this.views.add({ view, node });
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.observer?.disconnect();
    for (const entry of this.views) {
      entry.view.dispose();
      delete entry.node.dataset.tsnbMounted;
    }
    this.views.clear();
  }
}
