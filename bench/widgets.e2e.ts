// Benchmarks of issue 4 in real Chromium against the real Notebook 6 server: the round trip from a slider
// key press to the program's change callback and back to the page, and 1000 widgets on one page (time
// until all are live, page memory). Prints the numbers. Run by `npm run bench:widgets` (vitest with
// bench/vitest.config.ts, for the shared browser and server helpers); never by `npm test`.

import { describe, expect, it } from "vitest";
import { useBrowserFixture } from "../test/helpers/browser-fixture.js";
import { createNotebook, TSNB_KERNEL_NAME } from "../test/helpers/jupyter.js";
import { openNotebook, runCell } from "../test/helpers/notebook-page.js";


function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

describe("widgets benchmark (real Chromium, real Notebook 6 server)", () => {
  const setup = useBrowserFixture({ label: "widgets-bench", server: {} });

  it("slider key press -> program callback -> page, and 1000 widgets on one page", async () => {
    const { browser, server } = setup();
    const path = await createNotebook(server, { path: "bench.ipynb", kernelName: TSNB_KERNEL_NAME, cells: ["", ""] });
    const page = await browser.newPage();
    try {
      await openNotebook(page, server, path);
      await runCell(page, 0, `
import { IntSlider, Label, HBox, VBox } from "tsnb";
const s = new IntSlider({ value: 0, min: 0, max: 1000 });
const echo = new Label({ value: "v0" });
s.on("change", (e) => { echo.value = "v" + e.value; });
new HBox({ children: [s, echo] })`);
      const cell0 = page.locator("#notebook-container .cell").nth(0);
      const range = cell0.locator('[data-tsnb-mounted][data-tsnb-kind="IntSlider"] input[type=range]');
      await cell0.locator('[data-tsnb-mounted][data-tsnb-kind="Label"] .tsnb-w-text', { hasText: "v0" }).waitFor({ timeout: 60_000 });
      // Timed in the page: key down, until the label the program's callback set shows the value.
      await page.evaluate(() => {
        const w = window as unknown as { downAt: number[]; echoAt: Record<string, number> };
        w.downAt = [];
        w.echoAt = {};
        addEventListener("keydown", () => w.downAt.push(performance.now()), { capture: true });
        const label = document.querySelector('#notebook-container .cell [data-tsnb-kind="Label"] .tsnb-w-text')!;
        new MutationObserver(() => void (w.echoAt[label.textContent ?? ""] ??= performance.now())).observe(label, { childList: true, characterData: true, subtree: true });
      });
      await range.focus();
      const N = 100;
      for (let i = 1; i <= N; i++) {
        await page.keyboard.press("ArrowRight");
        await page.waitForFunction((i) => (window as unknown as { echoAt: Record<string, number> }).echoAt[`v${i}`] !== undefined, i, { timeout: 10_000 });
      }
      const { downAt, echoAt } = await page.evaluate(() => {
        const w = window as unknown as { downAt: number[]; echoAt: Record<string, number> };
        return { downAt: w.downAt, echoAt: w.echoAt };
      });
      const rtt = downAt.map((t, i) => echoAt[`v${i + 1}`]! - t).sort((a, b) => a - b);
      console.info(`slider -> program callback -> page round trip over ${N} key presses: median ${percentile(rtt, 50).toFixed(1)} ms, p99 ${percentile(rtt, 99).toFixed(1)} ms`);
      expect(rtt).toHaveLength(N);

      // 1000 sliders in one VBox.
      const cdp = await page.context().newCDPSession(page);
      await cdp.send("Performance.enable");
      const metric = async (name: string) => ((await cdp.send("Performance.getMetrics")).metrics.find((m) => m.name === name)?.value ?? Number.NaN);
      await cdp.send("HeapProfiler.collectGarbage");
      const heapBefore = await metric("JSHeapUsedSize");
      const nodesBefore = await metric("Nodes");
      const startedAt = await runCell(page, 1, `
const many = Array.from({ length: 1000 }, (_, i) => new IntSlider({ description: "s" + i, value: i % 100 }));
new VBox({ children: many })`);
      const liveAt = await page.waitForFunction(
        () => {
          const cell = document.querySelectorAll("#notebook-container .cell")[1]!;
          const live = cell.querySelectorAll('[data-tsnb-kind="IntSlider"][data-tsnb-mounted]:not([data-tsnb-disconnected])').length;
          return live === 1000 ? Date.now() : false;
        },
        undefined,
        { timeout: 120_000, polling: 50 },
      );
      const ms = Number(await liveAt.jsonValue()) - startedAt;
      await cdp.send("HeapProfiler.collectGarbage");
      const heapAfter = await metric("JSHeapUsedSize");
      const nodesAfter = await metric("Nodes");
      console.info(
        `1000 sliders: all live ${ms} ms after the cell was run; page JS heap +${((heapAfter - heapBefore) / 1048576).toFixed(1)} MiB (${(heapAfter / 1048576).toFixed(1)} MiB total), DOM nodes +${nodesAfter - nodesBefore}`,
      );
      // The last one responds: a key press reaches the program, which clamps nothing and echoes the value.
      const last = page.locator("#notebook-container .cell").nth(1).locator('[data-tsnb-kind="IntSlider"] input[type=range]').last();
      await last.focus();
      await page.keyboard.press("ArrowRight");
      await page.waitForFunction(
        () => [...document.querySelectorAll("#notebook-container .cell")[1]!.querySelectorAll<HTMLInputElement>('[data-tsnb-kind="IntSlider"] input[type=range]')].at(-1)?.value === "100",
        undefined,
        { timeout: 10_000 },
      );
    } finally {
      await page.close();
    }
  }, 300_000);
});
