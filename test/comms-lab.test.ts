// The shim through JupyterLab's own output rendering (issue 3, "Tests"): a page built from
// @jupyterlab/services, @jupyterlab/outputarea, @jupyterlab/rendermime and @jupyterlab/javascript-extension
// (test/lab-page/main.ts, bundled here by esbuild) executes cells against the real Notebook 6 server and the
// real tsnb kernel in real Chromium. The shim must boot from the application/javascript output as JupyterLab
// renders it, find the server in <script id="jupyter-config-data">, and carry values both ways.

import { createServer, type Server } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useBrowserFixture } from "./helpers/browser-fixture.js";
import { freePort, repoRoot, TSNB_KERNEL_NAME } from "./helpers/jupyter.js";
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

/** Serves the page and its bundle from 127.0.0.1; another origin than the Jupyter server, as under a proxy. */
async function servePage(files: Record<string, { type: string; body: string }>): Promise<{ url: string; close(): Promise<void> }> {
  const port = await freePort();
  const server: Server = createServer((req, res) => {
    const file = files[new URL(req.url ?? "/", "http://127.0.0.1").pathname];
    if (file === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": file.type, "cache-control": "no-store" }).end(file.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => (closed ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    })),
  };
}

describe("comms through JupyterLab's OutputArea and javascript renderer", () => {
  // The page lives on another origin, so the server must accept its requests and websockets.
  const setup = useBrowserFixture({ label: "comms-lab", server: { extraArgs: ["--NotebookApp.allow_origin=*"] } });
  let page: { url: string; close(): Promise<void> } | undefined;
  let bundleDir = "";

  beforeAll(async () => {
    bundleDir = mkdtempSync(join(tmpdir(), "tsnb-lab-page-"));
    await build({
      entryPoints: [join(repoRoot, "test", "lab-page", "main.ts")],
      bundle: true,
      platform: "browser",
      format: "iife",
      outfile: join(bundleDir, "main.js"),
      // JupyterLab's packages import their CSS and icons for webpack; this page needs neither.
      loader: { ".css": "empty", ".svg": "text" },
      define: { "process.env.NODE_ENV": '"production"' },
      logLevel: "error",
    });
    const { server: jupyter, onDispose } = setup();
    const config = JSON.stringify({ baseUrl: jupyter.url, wsUrl: jupyter.wsUrl, token: jupyter.token, kernelName: TSNB_KERNEL_NAME });
    page = await servePage({
      "/": {
        type: "text/html",
        body: `<!doctype html><html><head><meta charset="utf-8"><title>tsnb lab page</title>
<script id="jupyter-config-data" type="application/json">${config.replace(/</g, "\\u003c")}</script>
</head><body><script src="main.js"></script></body></html>`,
      },
      "/main.js": { type: "text/javascript", body: readFileSync(join(bundleDir, "main.js"), "utf8") },
    });
    const served = page;
    onDispose(() => served.close());
  }, 120_000);

  afterAll(() => {
    if (bundleDir !== "") rmSync(bundleDir, { recursive: true, force: true });
  });

  it("the shim boots from the rendered javascript output and values flow both ways, Float32Array typed", async () => {
    const { browser, server, diagnose } = setup();
    const tab = await browser.newPage();
    await diagnose(tab, server, async () => {
      await tab.goto(page!.url, { timeout: 60_000 });
      await tab.waitForFunction(() => {
        const w = window as unknown as TestWindow;
        return w.labKernelId !== undefined || w.labError !== undefined;
      }, undefined, { timeout: 60_000 });
      expect(await tab.evaluate(() => (window as unknown as TestWindow).labError)).toBeUndefined();

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
