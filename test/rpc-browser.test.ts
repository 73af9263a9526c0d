// RPC end to end in real Chromium against the real classic Notebook 6 server, the real tsnb kernel and the
// real user program: the kernel injects the shim into the page; the page calls functions the program
// registered and the program calls functions the page registered. Every call in the page has a timeout.

import { copyFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { useBrowserFixture, type BrowserFixture } from "./helpers/browser-fixture.js";
import { createNotebook, repoRoot, TSNB_KERNEL_NAME } from "./helpers/jupyter.js";
import { openNotebook, runCell, cellText } from "./helpers/notebook-page.js";

interface PageComm {
  ready: Promise<void>;
  status: string;
  call(method: string, args?: unknown[], kwargs?: object, options?: { timeout?: number; onProgress?: (p: { phase: string; bytes: number; total: number }) => void }): Promise<any>;
  register(method: string, fn: (...args: any[]) => unknown): () => void;
  close(): void;
}
interface TestWindow {
  Jupyter?: {
    notebook?: {
      get_cell(i: number): { set_text(t: string): void } | null;
      execute_cells(indices: number[]): void;
      kernel?: { is_connected(): boolean; info_reply?: { implementation?: string } } | null;
    };
  };
  tsnb_comm?: PageComm;
  pendingOutcome?: Promise<string>;
}

const REGISTER = `
function explodeInTile() { throw new Error("tile out of range"); }
comms.register("rpc.add", ([a, b], { scale = 1 }) => (a + b) * scale);
comms.register("rpc.square", async ([x]) => x * x);
comms.register("rpc.fail", () => explodeInTile());
comms.register("rpc.hang", () => new Promise(() => {}));
comms.register("rpc.stats", ([data]) => {
  let sum = 0; for (let i = 0; i < data.length; i++) sum += data[i];
  return { type: data.constructor.name, length: data.length, sum, back: data };
});
console.log("registered " + comms.register.length);`;

async function shimReady(page: Page): Promise<void> {
  await page.waitForFunction(() => (window as unknown as TestWindow).tsnb_comm !== undefined, undefined, { timeout: 60_000 });
  await page.evaluate(async () => {
    const comm = (window as unknown as TestWindow).tsnb_comm!;
    await Promise.race([comm.ready, new Promise((_, reject) => setTimeout(() => reject(new Error(`tsnb_comm not ready in 30 s (${comm.status})`)), 30_000))]);
  });
}

describe("RPC in real Chromium through the real Notebook 6 server", () => {
  const setup = useBrowserFixture({ label: "rpc-browser", server: {} });

  /** Runs `fn` on the fixture's server; a failure also reports the shim's status, its pending calls and the outputs. */
  function diagnose<T>(fixture: BrowserFixture, page: Page, fn: () => Promise<T>): Promise<T> {
    return fixture.diagnose(page, fixture.server, fn, {
      pageState: (p) =>
        p.evaluate(() => {
          const c = (window as unknown as TestWindow & { tsnb_comm?: { pendingCalls: number } }).tsnb_comm;
          return JSON.stringify({ status: c?.status, pendingCalls: c?.pendingCalls, outputs: [...document.querySelectorAll(".output_area")].map((e) => (e as HTMLElement).innerText.slice(0, 300)) });
        }),
    });
  }

  it("calls both ways: results, 100 concurrent, 20 MiB binary each way with progress, errors, timeout, program restart and close while pending", async () => {
    const fixture = setup();
    const { browser, server } = fixture;
    const path = await createNotebook(server, { path: "rpc.ipynb", kernelName: TSNB_KERNEL_NAME, cells: ["", "", "", "", ""] });
    const page = await browser.newPage();
    await diagnose(fixture, page, async () => {
      await openNotebook(page, server, path);
      await runCell(page, 0, REGISTER);
      await cellText(page, 0, /registered/);
      await shimReady(page);

      const basics = await page.evaluate(async () => {
        const comm = (window as unknown as TestWindow).tsnb_comm!;
        const opts = { timeout: 20_000 };
        const add = await comm.call("rpc.add", [2, 3], { scale: 10 }, opts);
        const xs = Array.from({ length: 100 }, (_, i) => i);
        const squares = await Promise.all(xs.map((x) => comm.call("rpc.square", [x], {}, opts)));
        const big = new Float32Array(5 * 1024 * 1024); // 20 MiB: chunked up (server limit 10 MiB) and down (16 MiB parts)
        for (let i = 0; i < big.length; i += 1024) big[i] = 1;
        big[big.length - 1] = 0.5;
        const t0 = performance.now();
        const progress: { phase: string; bytes: number; total: number }[] = [];
        const stats = await comm.call("rpc.stats", [big], {}, { timeout: 60_000, onProgress: (p: { phase: string; bytes: number; total: number }) => progress.push(p) });
        const lastOf = (phase: string) => progress.filter((p) => p.phase === phase).at(-1);
        const up = lastOf("upload");
        const down = lastOf("download");
        const progressSummary = {
          upload: progress.filter((p) => p.phase === "upload").length,
          download: progress.filter((p) => p.phase === "download").length,
          upComplete: up !== undefined && up.bytes === up.total,
          downComplete: down !== undefined && down.bytes === down.total,
        };
        const bigMs = performance.now() - t0;
        const back = stats.back as Float32Array;
        const errorOf = async (p: Promise<unknown>) =>
          p.then(
            () => null,
            (e: { name: string; code: number; message: string; remoteStack?: string }) => ({ name: e.name, code: e.code, message: e.message, stack: e.remoteStack ?? "" }),
          );
        const fail = await errorOf(comm.call("rpc.fail", [], {}, opts));
        const missing = await errorOf(comm.call("rpc.missing", [], {}, opts));
        const timeout = await errorOf(comm.call("rpc.hang", [], {}, { timeout: 300 }));
        // Latency: sequential round trips page -> server -> kernel -> program and back.
        const times: number[] = [];
        for (let i = 0; i < 200; i++) {
          const s = performance.now();
          await comm.call("rpc.square", [i], {}, opts);
          times.push(performance.now() - s);
        }
        times.sort((a, b) => a - b);
        return {
          add,
          squaresOk: squares.every((v, i) => v === i * i),
          stats: { type: stats.type, length: stats.length, sum: stats.sum, backType: back.constructor.name, backLast: back[back.length - 1], backLength: back.length },
          bigMs,
          progressSummary,
          fail,
          missing,
          timeout,
          median: times[100]!,
          p99: times[198]!,
        };
      });
      console.log(`rpc from Chromium: 200 sequential calls median ${basics.median.toFixed(1)} ms p99 ${basics.p99.toFixed(1)} ms; 20 MiB Float32Array round trip ${basics.bigMs.toFixed(0)} ms`);
      expect(basics.add).toBe(50);
      expect(basics.squaresOk).toBe(true);
      expect(basics.stats).toEqual({ type: "Float32Array", length: 5 * 1024 * 1024, sum: 5 * 1024 + 0.5, backType: "Float32Array", backLast: 0.5, backLength: 5 * 1024 * 1024 });
      // Download: the result reaches the kernel in pieces (its header, 16 MiB, 4 MiB), each passed on as a chunk.
      expect(basics.progressSummary).toEqual({ upload: 3, download: 3, upComplete: true, downComplete: true });
      expect(basics.fail).toMatchObject({ name: "RpcError", code: -32001 });
      expect(basics.fail!.message).toContain("tile out of range");
      expect(basics.fail!.stack).toContain("explodeInTile");
      expect(basics.missing).toMatchObject({ code: -32601 });
      expect(basics.timeout).toMatchObject({ code: -32005 });

      // Program restart while a call is pending: the kernel answers it when the program exits.
      await page.evaluate(() => {
        const w = window as unknown as TestWindow;
        w.pendingOutcome = w.tsnb_comm!.call("rpc.hang", [], {}, { timeout: 60_000 }).then(
          () => "resolved?!",
          (e: { code: number; message: string }) => `${e.code} ${e.message}`,
        );
      });
      await runCell(page, 1, "setTimeout(() => process.exit(1), 200); 'exiting'");
      const restarted = await page.evaluate(() => (window as unknown as TestWindow).pendingOutcome!);
      expect(restarted).toMatch(/^-32003 .*exited/);

      // The fresh program registers again; the same page calls it, and the program calls the page.
      await runCell(page, 2, `comms.register("rpc.hang", () => new Promise(() => {})); comms.register("rpc.ok", () => "fresh"); console.log("again")`);
      await cellText(page, 2, /again/);
      await page.evaluate(() => {
        const comm = (window as unknown as TestWindow).tsnb_comm!;
        comm.register("page.pixels", (w: number, h: number) => {
          const px = new Uint8ClampedArray(w * h * 4);
          px.fill(9);
          return { w, h, px, title: document.title.length > 0 };
        });
        comm.register("page.fail", () => {
          throw new Error("no canvas here");
        });
      });
      expect(await page.evaluate(() => (window as unknown as TestWindow).tsnb_comm!.call("rpc.ok", [], {}, { timeout: 20_000 }))).toBe("fresh");
      await runCell(
        page,
        3,
        `const r = await comms.callFrontend({ name: "page.pixels", args: [64, 32], timeout: 20000 });
let err = ""; try { await comms.callFrontend({ name: "page.fail", timeout: 20000 }); } catch (e) { err = e.code + " " + e.message; }
console.log("page said " + r.w + "x" + r.h + " " + r.px.constructor.name + " " + r.px.length + " " + r.px[5] + " / " + err);`,
      );
      const fromPage = await cellText(page, 3, /page said/);
      expect(fromPage).toContain("page said 64x32 Uint8ClampedArray 8192 9 / -32001 Error: no canvas here");

      // The page closes tsnb_comm while a call is pending: the call fails at once, nothing hangs.
      const closed = await page.evaluate(async () => {
        const comm = (window as unknown as TestWindow).tsnb_comm!;
        const p = comm.call("rpc.hang", [], {}, { timeout: 60_000 }).then(
          () => "resolved?!",
          (e: { code: number }) => String(e.code),
        );
        comm.close();
        return p;
      });
      expect(closed).toBe("-32004");
    });
    await page.close();
  }, 300_000);

  it("runs notebooks/rpc.ipynb: the canvas fills with tiles rendered by the program, zooming requests new ones, the program reads the view", async () => {
    const fixture = setup();
    const { browser, server, notebookDir } = fixture;
    copyFileSync(join(repoRoot, "notebooks", "rpc.ipynb"), join(notebookDir, "rpc-demo.ipynb"));
    const page = await browser.newPage();
    await diagnose(fixture, page, async () => {
      await openNotebook(page, server, "rpc-demo.ipynb");
      await page.evaluate(() => (window as unknown as { Jupyter: { notebook: { execute_all_cells(): void } } }).Jupyter.notebook.execute_all_cells());
      const viewer = page.locator("#mandelbrot-viewer");
      await viewer.locator(".status").filter({ hasText: /12 tiles in \d+ ms/ }).waitFor({ timeout: 60_000 });
      // The program asks the page where it looks (run again now that the page is up: under execute-all the
      // cell may run before the shim connected, and then says there is no page to ask).
      const last = await page.evaluate(() => {
        const nb = (window as unknown as { Jupyter: { notebook: { insert_cell_at_bottom(): unknown; ncells(): number } } }).Jupyter.notebook;
        nb.insert_cell_at_bottom();
        return nb.ncells() - 1;
      });
      await runCell(page, last, `const v = await comms.callFrontend({ name: "viewer.view", timeout: 20000 }); console.log("view " + v.cx + " " + v.cy + " " + v.width + "x" + v.height)`);
      expect(await cellText(page, last, /view /)).toContain("view -0.5 0 512x384");
      // Pixels came from the program: the set's interior is black, the outside is coloured.
      const painted = await page.evaluate(() => {
        const canvas = document.querySelector("#mandelbrot-viewer canvas") as HTMLCanvasElement;
        const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
        let black = 0, coloured = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i + 3] !== 255) continue;
          if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 0) black++;
          else coloured++;
        }
        return { black, coloured };
      });
      expect(painted.black).toBeGreaterThan(1000);
      expect(painted.coloured).toBeGreaterThan(1000);
      // Zooming asks the program for new tiles, and the canvas changes; the stats it publishes reach the page.
      const fingerprint = () => {
        const canvas = document.querySelector("#mandelbrot-viewer canvas") as HTMLCanvasElement;
        const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
        let h = 0;
        for (let i = 0; i < data.length; i += 4) h = (h * 31 + data[i]! + data[i + 1]! * 7 + data[i + 2]! * 13) >>> 0;
        return h;
      };
      const before = await page.evaluate(fingerprint);
      await viewer.locator("canvas").hover();
      await page.mouse.wheel(0, -100);
      await page.waitForFunction(
        ({ before, source }) => (0, eval)(source)() !== before && /12 tiles in \d+ ms.*program rendered \d+ tiles/.test(document.querySelector("#mandelbrot-viewer .status")!.textContent ?? ""),
        { before, source: `(${fingerprint.toString()})` },
        { timeout: 60_000 },
      );
    });
    await page.close();
  }, 300_000);
});
