// End to end in the real classic Notebook 6 UI: a real `jupyter notebook` server with the tsnb kernelspec,
// Debian Chromium through playwright-core, a notebook opened in a tab, cells run through the UI's own
// machinery, and what the user sees checked in the page: printed text, rendered HTML, an input() prompt
// answered in the page, and an error with its traceback.

import { describe, expect, it } from "vitest";
import { useBrowserFixture, type BrowserFixture } from "./helpers/browser-fixture.js";
import { createNotebook, TSNB_KERNEL_NAME, type NotebookServer } from "./helpers/jupyter.js";

// The Notebook 6 page's globals, as far as this test touches them.
interface NotebookCell {
  set_text(text: string): void;
}
interface Notebook6Page {
  Jupyter?: {
    notebook?: {
      get_cell(i: number): NotebookCell | null;
      execute_cells(indices: number[]): void;
      kernel?: { name: string; is_connected(): boolean; info_reply?: { implementation?: string } } | null;
    };
  };
}

const CELLS = [
  'const who: string = "the UI";\nconsole.log(`hello from ${who}`);',
  'display.html(\'<b id="tsnb-rich">rich <i>html</i></b>\');',
  'const name: string = await input("Your name? ");\nconsole.log(`Hello, ${name}!`);',
  'function fail(): never {\n  throw new TypeError("ui boom");\n}\nfail();',
];

describe("classic Notebook UI", () => {
  const setup = useBrowserFixture({ label: "notebook-ui", server: {} });

  it("runs TypeScript cells and shows text, rich HTML, an input prompt and an error with its traceback", async () => {
    const fixture = setup();
    await runScenario(fixture, fixture.server);
  }, 180_000);

  // JupyterHub-style deployments: a URL prefix and https. Kernel websockets must follow both.
  it("works the same under a base_url over https", async () => {
    const fixture = setup();
    const hubLike = await fixture.startServer({ baseUrl: "/user/alice/", https: true });
    try {
      expect(hubLike.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/user\/alice\/$/);
      await runScenario(fixture, hubLike, "hub.ipynb");
    } finally {
      await hubLike.dispose();
    }
    // dispose() leaves nothing behind: the server's process group (server + the tsnb kernel + its program) is gone.
    const pgid = hubLike.process.pid;
    expect(pgid).toBeTypeOf("number");
    expect(() => process.kill(-(pgid ?? 0), 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
  }, 180_000);
});

async function runScenario(fixture: BrowserFixture, server: NotebookServer, file = "ui.ipynb"): Promise<void> {
  const path = await createNotebook(server, { path: file, kernelName: TSNB_KERNEL_NAME, cells: CELLS.map(() => "") });
  const page = await fixture.browser.newPage();
  try {
    await fixture.diagnose(page, server, async () => {
      await page.goto(server.pageUrl(`notebooks/${path}`), { timeout: 60_000 });
      // The kernel is ready once the page's kernel object is connected and has its kernel_info reply.
      await page.waitForFunction(
        () => {
          const k = (window as unknown as Notebook6Page).Jupyter?.notebook?.kernel;
          return k != null && k.is_connected() && k.info_reply?.implementation !== undefined;
        },
        undefined,
        { timeout: 60_000 },
      );
      const kernel = await page.evaluate(() => {
        const k = (window as unknown as Notebook6Page).Jupyter?.notebook?.kernel;
        return { name: k?.name, implementation: k?.info_reply?.implementation };
      });
      expect(kernel).toEqual({ name: TSNB_KERNEL_NAME, implementation: "tsnb" });

      // set_text instead of typing: CodeMirror auto-indents and auto-closes brackets while typing.
      await page.evaluate((cells) => {
        const nb = (window as unknown as Notebook6Page).Jupyter?.notebook;
        if (nb == null) throw new Error("Jupyter.notebook is missing");
        cells.forEach((text, i) => nb.get_cell(i)?.set_text(text));
        nb.execute_cells(cells.map((_, i) => i));
      }, CELLS);

      const cell = (i: number) => page.locator("#notebook-container .cell").nth(i);

      // 1. printed text
      const stdout = cell(0).locator(".output_stdout");
      await stdout.filter({ hasText: "hello from the UI" }).first().waitFor({ state: "visible", timeout: 60_000 });

      // 2. rich display: rendered as HTML (an element), not shown as escaped text
      const rich = cell(1).locator("#tsnb-rich");
      await rich.waitFor({ state: "visible", timeout: 30_000 });
      expect(await rich.locator("i").innerText()).toBe("html");

      // 3. input(): the notebook shows a prompt box; the answer reaches the cell
      const box = cell(2).locator("input.raw_input");
      await box.waitFor({ state: "visible", timeout: 30_000 });
      expect(await cell(2).locator(".raw_input_prompt").innerText()).toContain("Your name?");
      await box.fill("Ada");
      await box.press("Enter");
      await cell(2).locator(".output_stdout").filter({ hasText: "Hello, Ada!" }).first().waitFor({ state: "visible", timeout: 30_000 });

      // 4. the error: name, message and a traceback pointing at the cell's line 2
      const error = cell(3).locator(".output_error");
      await error.first().waitFor({ state: "visible", timeout: 30_000 });
      const errorText = await error.first().innerText();
      expect(errorText).toContain("TypeError");
      expect(errorText).toContain("ui boom");
      expect(errorText).toMatch(/:2:\d+/);

      // Each cell got an execution count in its prompt, like any kernel's.
      for (let i = 0; i < CELLS.length; i++) {
        await expect.poll(async () => (await cell(i).locator(".input_prompt").innerText()).trim(), { timeout: 10_000 }).toMatch(/^In\s*\[\d+\]:$/);
      }
    });
  } finally {
    await page.close();
  }
}
