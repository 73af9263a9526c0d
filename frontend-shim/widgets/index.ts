// Installs the widget views in the page once per page: `window.tsnbWidgets.scan()` is what a widget
// output's bootstrap script calls when the shim is already there.

import { WidgetManager, type WidgetComm } from "./views.js";

type Global = typeof globalThis & { tsnb_comm?: WidgetComm; tsnbWidgets?: WidgetManager };

export function installWidgets(): void {
  const g = globalThis as Global;
  if (g.tsnbWidgets || typeof document === "undefined" || !document.body) return;
  g.tsnbWidgets = new WidgetManager(document, () => g.tsnb_comm);
}

installWidgets();
