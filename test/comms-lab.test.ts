// The shim through JupyterLab's own output rendering (issue 3, "Tests"): a page built from
// @jupyterlab/services, @jupyterlab/outputarea, @jupyterlab/rendermime and @jupyterlab/javascript-extension
// (test/lab-page/main.ts, served by test/helpers/lab-page.ts) executes cells against the real Notebook 6 server
// and the real tsnb kernel in real Chromium. The shim must boot from the application/javascript output as JupyterLab
// renders it, find the server in <script id="jupyter-config-data">, and carry values both ways.

import { beforeAll, describe, expect, it } from "vitest";
import { useBrowserFixture } from "./helpers/browser-fixture.js";
import { openLabPage, serveLabPage, type LabPage } from "./helpers/lab-page.js";
import type { LabPageGlobals } from "./lab-page/main.js";

interface ShimGlobal {
  status: string;
  ready: Promise<void>;
  send(address: string, value: unknown): void;
  subscribe(address: string, cb: (value: unknown) => void): number;
}
type TestWindow = LabPageGlobals & { tsnb_comm?: ShimGlobal; received?: string[] };

const CELL = `
const describe = (v: unknown) => v instanceof Float32Array ? "Float32Array:" + Array.from(v).join(",") : JSON.stringify(v);
const fromPage = comms.listen("lab-b2k");
await comms.whenListening("lab-k2b", { timeout: 60000 });
comms.send("lab-k2b", { hello: "lab" });
comms.send("lab-k2b", new Float32Array([1.5, -2.25]));
const got: string[] = [];
for await (const v of fromPage) { got.push(describe(v)); if (got.length === 2) break; }
console.log("lab got: " + got.join("|"));`;

describe("comms through JupyterLab's OutputArea and javascript renderer", () => {
  // The page lives on another origin, so the server must accept its requests and websockets.
  const setup = useBrowserFixture({ label: "comms-lab", server: { extraArgs: ["--NotebookApp.allow_origin=*"] } });
  let page: LabPage | undefined;

  beforeAll(async () => {
    const { server: jupyter, onDispose } = setup();
    const served = await serveLabPage(jupyter);
    page = served;
    onDispose(() => served.close());
  }, 120_000);

  it("the shim boots from the rendered javascript output and values flow both ways, Float32Array typed", async () => {
    const { browser, server, diagnose } = setup();
    const tab = await browser.newPage();
    await diagnose(tab, server, async () => {
      await openLabPage(tab, page!.url());

      // The cell runs until the page has answered; the page side is set up while it waits.
      // Settled into a value so that, if an assertion below fails first, its failure is not an unhandled rejection.
      const reply = tab
        .evaluate((code) => (window as unknown as TestWindow).runCell(code), CELL)
        .then((status) => ({ status }), (err: unknown) => ({ status: `runCell failed: ${err instanceof Error ? err.message : String(err)}` }));
      await tab.waitForFunction(() => (window as unknown as TestWindow).tsnb_comm !== undefined, undefined, { timeout: 60_000 });
      await tab.evaluate(async () => {
        const w = window as unknown as TestWindow;
        const comm = w.tsnb_comm!;
        await Promise.race([
          comm.ready,
          new Promise((_, reject) => setTimeout(() => reject(new Error(`tsnb_comm not ready within 30 s (status ${comm.status})`)), 30_000)),
        ]);
        w.received = [];
        const list = w.received;
        comm.subscribe("lab-k2b", (v) => {
          list.push(v instanceof Float32Array ? "Float32Array:" + Array.from(v).join(",") : JSON.stringify(v));
        });
      });
      // The shim came in through the javascript extension's renderer, not some other path.
      expect(await tab.evaluate(() => (window as unknown as TestWindow).jsRenders)).toBeGreaterThanOrEqual(1);

      await tab.waitForFunction(() => ((window as unknown as TestWindow).received?.length ?? 0) >= 2, undefined, { timeout: 60_000 });
      expect(await tab.evaluate(() => (window as unknown as TestWindow).received)).toEqual(['{"hello":"lab"}', "Float32Array:1.5,-2.25"]);

      await tab.evaluate(() => {
        const comm = (window as unknown as TestWindow).tsnb_comm!;
        comm.send("lab-b2k", { from: "page" });
        comm.send("lab-b2k", new Float32Array([3.5, -0.5]));
      });
      expect(await reply).toEqual({ status: "ok" });
      expect(await tab.evaluate(() => (window as unknown as TestWindow).outputText())).toContain('lab got: {"from":"page"}|Float32Array:3.5,-0.5');
    });
  }, 240_000);
});
