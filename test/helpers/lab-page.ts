// The JupyterLab output-area test page (test/lab-page/main.ts), bundled by esbuild and served from 127.0.0.1 on
// another origin than the Jupyter server, as under a proxy. The server must be started with
// `--NotebookApp.allow_origin=*` so it accepts the page's requests and websockets.
//
//   const lab = await serveLabPage(jupyter);
//   await tab.goto(lab.url());                 // starts a session with a new tsnb kernel
//   await tab.goto(lab.url({ kernel: id }));   // connects to a running kernel (second page, reload)
//   ...
//   await lab.close();                          // in afterAll

import { createServer, type Server } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import type { Page } from "playwright-core";
import { freePort, repoRoot, TSNB_KERNEL_NAME, type NotebookServer } from "./jupyter.js";
import type { LabPageGlobals } from "../lab-page/main.js";

export interface LabPage {
  /** The page's URL; with `kernel`, the page connects to that running kernel instead of starting one. */
  url(options?: { kernel?: string }): string;
  /** Stops serving. Idempotent. */
  close(): Promise<void>;
}

async function bundle(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "tsnb-lab-page-"));
  try {
    await build({
      entryPoints: [join(repoRoot, "test", "lab-page", "main.ts")],
      bundle: true,
      platform: "browser",
      format: "iife",
      outfile: join(dir, "main.js"),
      // JupyterLab's packages import their CSS and icons for webpack; this page needs neither.
      loader: { ".css": "empty", ".svg": "text" },
      define: { "process.env.NODE_ENV": '"production"' },
      logLevel: "error",
    });
    return readFileSync(join(dir, "main.js"), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function serveLabPage(jupyter: NotebookServer): Promise<LabPage> {
  const script = await bundle();
  const config = JSON.stringify({ baseUrl: jupyter.url, wsUrl: jupyter.wsUrl, token: jupyter.token, kernelName: TSNB_KERNEL_NAME });
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>tsnb lab page</title>
<script id="jupyter-config-data" type="application/json">${config.replace(/</g, "\\u003c")}</script>
</head><body><script src="main.js"></script></body></html>`;
  const files: Record<string, { type: string; body: string }> = {
    "/": { type: "text/html", body: html },
    "/main.js": { type: "text/javascript", body: script },
  };
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
    url: (options = {}) => `http://127.0.0.1:${port}/${options.kernel !== undefined ? `?kernel=${encodeURIComponent(options.kernel)}` : ""}`,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })),
  };
}

/** Opens the page and waits until its kernel is connected; throws what the page reported if it failed. */
export async function openLabPage(tab: Page, url: string, timeoutMs = 60_000): Promise<string> {
  await tab.goto(url, { timeout: timeoutMs });
  await tab.waitForFunction(
    () => {
      const w = window as unknown as LabPageGlobals;
      return w.labKernelId !== undefined || w.labError !== undefined;
    },
    undefined,
    { timeout: timeoutMs },
  );
  const { id, error } = await tab.evaluate(() => {
    const w = window as unknown as LabPageGlobals;
    return { id: w.labKernelId, error: w.labError };
  });
  if (error !== undefined || id === undefined) throw new Error(`the lab page failed to boot: ${error ?? "no kernel id"}`);
  return id;
}
