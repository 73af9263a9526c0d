// Driving a classic Notebook 6 page from playwright: open a notebook until its tsnb kernel is connected, put
// code into a cell and run it, wait for text in a cell's output. Shared by the browser tests and benchmarks.

import type { Locator, Page } from "playwright-core";
import type { NotebookServer } from "./jupyter.js";

/** The parts of classic Notebook's page globals these helpers touch. */
interface ClassicWindow {
  Jupyter?: {
    notebook?: {
      get_cell(index: number): { set_text(text: string): void } | null;
      execute_cells(indices: number[]): void;
      kernel: { is_connected(): boolean; info_reply?: { implementation?: string } } | null;
    };
  };
}

/** Opens `notebooks/<path>` and waits until the page's kernel is connected and is tsnb. */
export async function openNotebook(page: Page, server: NotebookServer, path: string, timeoutMs = 60_000): Promise<void> {
  await page.goto(server.pageUrl(`notebooks/${path}`), { timeout: timeoutMs });
  await page.waitForFunction(
    () => {
      const k = (window as unknown as ClassicWindow).Jupyter?.notebook?.kernel;
      return k != null && k.is_connected() && k.info_reply?.implementation === "tsnb";
    },
    undefined,
    { timeout: timeoutMs },
  );
}

/**
 * Sets the text of cell `index` (set_text, not typing: CodeMirror would auto-indent) and runs it. Returns the
 * page's clock (Date.now()) at the moment it was run, for latency measurements against other page times.
 */
export async function runCell(page: Page, index: number, code: string): Promise<number> {
  return page.evaluate(
    ({ index, code }) => {
      const nb = (window as unknown as ClassicWindow).Jupyter!.notebook!;
      nb.get_cell(index)!.set_text(code);
      const runAt = Date.now();
      nb.execute_cells([index]);
      return runAt;
    },
    { index, code },
  );
}

/** The output area of cell `index`. */
export function cellOutput(page: Page, index: number): Locator {
  return page.locator("#notebook-container .cell").nth(index).locator(".output_area");
}

/** Waits until cell `index` shows output matching `pattern`; returns all of that cell's output text. */
export async function cellText(page: Page, index: number, pattern: RegExp, timeoutMs = 60_000): Promise<string> {
  const out = cellOutput(page, index);
  await out.filter({ hasText: pattern }).first().waitFor({ state: "visible", timeout: timeoutMs });
  return out.allInnerTexts().then((t) => t.join("\n"));
}
