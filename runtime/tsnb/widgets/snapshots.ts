// Keeps the saved form of widget outputs current (issue 4, "Saved notebook"). A widget output carries static
// HTML of the widget's state for readers without a live view: a notebook reopened without a kernel,
// nbconvert, nbclient. Without this, that HTML is the state at display time. Here every shown widget is
// remembered with its display handle, and after its state (or a descendant's) changed, its output is
// replaced (update_display_data) by a fresh snapshot: throttled while changes keep coming, and once more at
// the end of every cell, because a headless client stops reading a cell's messages at its idle.
//
// An output a front-end is showing live is never replaced: replacing it would rebuild the view under the
// user's mouse (losing focus mid-drag). A live view listens on the widget's state address, so "some
// front-end listens" is the test; such pages save their own snapshot (frontend-shim/widgets/snapshot.ts).

import type { Disposable } from "../../../protocol/disposable.js";
import type { MimeBundle } from "../../../protocol/jupyter.js";
import { JUPYTER_DISPLAY, type DisplayHandle } from "../api.js";

/** What the publisher needs of a widget. */
export interface Snapshotable {
  /** The output bundle of the current state (the same as the first display). */
  displayBundle(): MimeBundle;
  /** How many front-ends show this widget live now; null when unknown (then treated as none). */
  liveViews(): number | null;
}

export interface SnapshotPublisherOptions {
  /** Longest time a changed output waits for its refresh while changes keep coming. */
  throttleMs: number;
  setTimer(fn: () => void, ms: number): Disposable;
}

interface Shown {
  widget: Snapshotable;
  handle: DisplayHandle<unknown>;
  /** The text/html last sent for this output. */
  html: unknown;
}

export class SnapshotPublisher implements Disposable {
  private readonly shown = new Map<string, Shown>();
  private pending: Disposable | null = null;
  private dirty = false;
  private disposed = false;

  constructor(private readonly options: SnapshotPublisherOptions) {}

  /** `widget` was just displayed with `handle`, showing `bundle`. */
  displayed(widget: Snapshotable, handle: DisplayHandle<unknown>, bundle: MimeBundle): void {
    if (this.disposed) return;
    this.shown.set(handle.id, { widget, handle, html: bundle["text/html"] });
  }

  /** Forgets the outputs of a disposed widget (it cannot change any more). */
  forget(widget: Snapshotable): void {
    for (const [id, entry] of this.shown) if (entry.widget === widget) this.shown.delete(id);
  }

  /** Some widget's state changed: shown outputs may be stale (a box shows its children's state too). */
  changed(): void {
    if (this.disposed || this.shown.size === 0) return;
    this.dirty = true;
    // Throttle, not debounce: a loop advancing a progress bar still gets its output refreshed as it runs.
    this.pending ??= this.options.setTimer(() => {
      this.pending = null;
      this.flush();
    }, this.options.throttleMs);
  }

  /** Sends a fresh snapshot for every shown output that changed and that no front-end shows live. */
  flush(): void {
    this.pending?.dispose();
    this.pending = null;
    if (!this.dirty || this.disposed) return;
    this.dirty = false;
    for (const entry of this.shown.values()) {
      if ((entry.widget.liveViews() ?? 0) > 0) continue;
      const bundle = entry.widget.displayBundle();
      if (bundle["text/html"] === entry.html) continue;
      entry.html = bundle["text/html"];
      // The handle formats what it is given like display() does: a value that is this bundle.
      entry.handle.update({ [JUPYTER_DISPLAY]: () => bundle });
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pending?.dispose();
    this.pending = null;
    this.shown.clear();
  }
}
