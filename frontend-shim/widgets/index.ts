// Installs the widget views in the page once per page: `window.tsnbWidgets.scan()` is what a widget
// output's bootstrap script calls when the shim is already there.

import { snapshotOutputs, type ClassicNotebook } from "./snapshot.js";
import { WidgetManager, type WidgetComm } from "./views.js";

interface ClassicEvents {
  on(names: string, handler: () => void): void;
}

type Global = typeof globalThis & {
  tsnb_comm?: WidgetComm;
  tsnbWidgets?: WidgetManager;
  Jupyter?: { notebook?: ClassicNotebook & { events?: ClassicEvents } };
};

export function installWidgets(): void {
  const g = globalThis as Global;
  if (g.tsnbWidgets || typeof document === "undefined" || !document.body) return;
  const manager = new WidgetManager(document, () => g.tsnb_comm);
  g.tsnbWidgets = manager;
  // Classic Notebook says at once when its kernel restarts or dies; the comm would only find out later
  // (a restart started from this page keeps the websocket, and the new kernel never knew our comm).
  const notebook = g.Jupyter?.notebook;
  notebook?.events?.on("kernel_restarting.Kernel kernel_dead.Kernel kernel_killed.Kernel", () => manager.markDisconnected());
  // A saved notebook shows each widget's last value, not the one it had when it was displayed.
  notebook?.events?.on("before_save.Notebook", () => void snapshotOutputs(notebook));
}

installWidgets();
