// The transient output that installs the browser shim (dist/shim.js) in the page, and the state machine
// that decides when to (re)inject it: the first time a program uses comms, and again only when no live
// shim is connected, so a notebook does not fill with copies of the script.

import { existsSync, readFileSync } from "node:fs";
import type { JsonObject } from "../../protocol/jupyter.js";

export interface ShimBoot {
  /** The kernel id Jupyter assigned (from the connection file name `kernel-<id>.json`). */
  kernelId: string;
  /**
   * The bundled shim (dist/shim.js), read each time it is injected (a few times a session at most) instead of
   * once at start: held as a string it was 290 KB of the kernel's heap all session, comms used or not.
   * Throws when the file cannot be read.
   */
  source: () => string;
}

/** A reader of dist/shim.js beside the running kernel bundle; null when it was not built. */
export function shimSourceReader(url: URL = new URL("./shim.js", import.meta.url)): (() => string) | null {
  return existsSync(url) ? () => readFileSync(url, "utf8") : null;
}

/** The kernel id from a connection file path, as Jupyter names them (`kernel-<id>.json`). */
export function kernelIdFromConnectionFile(path: string): string | null {
  const match = /kernel-([A-Za-z0-9._-]+)\.json$/.exec(path);
  return match ? match[1]! : null;
}

/**
 * The display_data content that boots the shim. Both `application/javascript` (classic Notebook runs it;
 * JupyterLab with its javascript extension) and `text/html` with a script are given; the front-end
 * picks the one it renders. The config is JSON-encoded into the script, and `</` is escaped so the
 * HTML variant cannot be closed early by a value in it.
 */
export function shimDisplayContent(boot: { kernelId: string; source: string }, displayId: string): JsonObject {
  const config = JSON.stringify({ kernelId: boot.kernelId }).replace(/</g, "\\u003c");
  const script = `${boot.source}\n;globalThis.tsnbShimBoot(${config});\n`;
  const htmlScript = script.replace(/<\/(script)/gi, "<\\/$1");
  return {
    data: {
      "application/javascript": script,
      "text/html": `<div class="tsnb-shim"></div><script>${htmlScript}</script>`,
      "text/plain": "",
    },
    metadata: {},
    transient: { display_id: displayId },
  };
}

/** Blank content that replaces the shim output once it connected, so the script is never saved. */
export function blankDisplayContent(displayId: string): JsonObject {
  return { data: { "text/plain": "" }, metadata: {}, transient: { display_id: displayId } };
}

export type InjectionState =
  | { state: "none" }
  /** `blanked`: a cell ended with no front-end connected and its script was already blanked (see "cell_done"). */
  | { state: "injected"; displayId: string; at: number; blanked?: boolean }
  /** A shim is connected; `lastUse` is the latest cell that used comms, in case the shim turns out dead. */
  | {
      state: "connected";
      displayId: string | null;
      lastUse: { cell: string | null; at: number; displayId: string } | null;
      /** The cell whose first use of comms already probed the shims (probe once per cell, not per send). */
      probedCell: string | null | undefined;
    };

export type InjectionEvent =
  /** A program used comms; `displayId` is used if the shim must be injected now. */
  | { type: "used"; now: number; displayId: string; cell: string | null }
  /**
   * The number of open comms changed; `heartbeat` when the kernel closed one because it did not answer
   * (as opposed to the page closing it as it went away).
   */
  | { type: "frontends"; now: number; count: number; heartbeat: boolean }
  | { type: "tick"; now: number }
  /**
   * A cell finished (before its idle is published). With no front-end connected, the injected script is
   * blanked now: a headless client (nbclient stops reading a cell's output at its idle) or a front-end
   * that never runs scripts would otherwise save the ~190 KB shim in the notebook. A browser that renders
   * the output runs the script on arrival, before this update reaches it, so blanking early is harmless.
   */
  | { type: "cell_done"; cell: string };

export type InjectionEffect =
  | { type: "inject"; displayId: string; cell: string | null }
  /** `cell`: the cell whose output carries the update (null: the most recent cell). */
  | { type: "blank"; displayId: string; cell: string | null }
  /** Check that the connected shims are alive (heartbeat ping to those silent for a while). */
  | { type: "probe" }
  | { type: "wake_at"; at: number };

export interface InjectionConfig {
  /** Re-inject on a later use when no shim connected within this time. */
  retryMs: number;
  /** After a use, how long a drop to zero front-ends still counts as "the heartbeat found no live shim". */
  probeWindowMs: number;
}

export function stepInjection(
  current: InjectionState,
  event: InjectionEvent,
  config: InjectionConfig,
): { state: InjectionState; effects: InjectionEffect[] } {
  const stay = { state: current, effects: [] as InjectionEffect[] };
  switch (current.state) {
    case "none":
      switch (event.type) {
        case "used":
          return {
            state: { state: "injected", displayId: event.displayId, at: event.now },
            effects: [
              { type: "inject", displayId: event.displayId, cell: event.cell },
              { type: "wake_at", at: event.now + config.retryMs },
            ],
          };
        case "frontends":
          // A page that still has a shim from before (a kernel restart) reconnected by itself.
          return event.count > 0 ? { state: { state: "connected", displayId: null, lastUse: null, probedCell: undefined }, effects: [] } : stay;
        case "tick":
        case "cell_done":
          return stay;
        default:
          return unreachable(event);
      }
    case "injected":
      switch (event.type) {
        case "used":
          return stay;
        case "frontends":
          if (event.count === 0) return stay;
          return {
            state: { state: "connected", displayId: current.displayId, lastUse: null, probedCell: undefined },
            effects: [{ type: "blank", displayId: current.displayId, cell: null }],
          };
        case "tick":
          // No shim answered (no browser: nbclient, nbconvert): allow one more injection on a later use.
          return event.now - current.at >= config.retryMs ? { state: { state: "none" }, effects: [] } : stay;
        case "cell_done":
          if (current.blanked === true) return stay;
          return { state: { ...current, blanked: true }, effects: [{ type: "blank", displayId: current.displayId, cell: event.cell }] };
        default:
          return unreachable(event);
      }
    case "connected":
      switch (event.type) {
        case "used": {
          // The page may have been reloaded: the first use in each cell makes the heartbeat check every
          // shim, and the use is remembered as where to inject if none answers.
          const lastUse = { cell: event.cell, at: event.now, displayId: event.displayId };
          if (current.probedCell === event.cell) return { state: { ...current, lastUse }, effects: [] };
          return { state: { ...current, lastUse, probedCell: event.cell }, effects: [{ type: "probe" }] };
        }
        case "tick":
        case "cell_done":
          return stay;
        case "frontends": {
          if (event.count > 0) return stay;
          // Only a shim found dead by the probe of a cell that is using comms right now means "inject here";
          // a page that closed its comm as it went away may have taken that cell's output with it.
          const use = current.lastUse;
          if (event.heartbeat && use !== null && event.now - use.at <= config.probeWindowMs) {
            return {
              state: { state: "injected", displayId: use.displayId, at: event.now },
              effects: [
                { type: "inject", displayId: use.displayId, cell: use.cell },
                { type: "wake_at", at: event.now + config.retryMs },
              ],
            };
          }
          return { state: { state: "none" }, effects: [] };
        }
        default:
          return unreachable(event);
      }
    default:
      return unreachable(current);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled injection case ${JSON.stringify(value)}`);
}
