#!/usr/bin/env node
// `node bench/rpc.mjs`: the RPC benchmark of issue 5, from real Chromium through a default `jupyter notebook`
// server (Notebook 6) against the tsnb kernel: round trips of 1000 sequential and 1000 concurrent calls
// (median, p99), and 1 MB and 100 MB binary results and arguments (MB/s, peak RSS of kernel and program).
// The ipykernel comm baseline for the same payloads, measured in the same way, is `npm run bench:comms`.
// Saves the raw figures to bench/results/ (gitignored). Not a test: `npm test` never runs it.
//
// Options: --calls N (default 1000), --mb N (default 100).
// The helpers and page plumbing are those of bench/comms.mjs (test helpers bundled on the fly by esbuild).

import { parseArgs } from "node:util";
import { runBrowserBench, saveResults, kernelPid, sampleRss, stats, fmt, openNotebook, MB, startCommsCell, programPid } from "./lib.mjs";

const { values: opts } = parseArgs({
  options: {
    // cdp (default): Chromium as its user has it; playwright: as the tests drive it (bench/cdp-browser.mjs).
    driver: { type: "string", default: "cdp" },
    calls: { type: "string", default: "1000" },
    mb: { type: "string", default: "100" },
  },
});
const CALLS = Number(opts.calls);
const BIG_BYTES = Number(opts.mb) * 1e6;

// ---- tsnb RPC -----------------------------------------------------------------------------------------

const CELL = `
comms.register("bench.square", ([x]) => x * x);
comms.register("bench.bytes", ([n]) => { const a = new Uint8Array(n); a[n - 1] = 7; return a; });
comms.register("bench.take", ([a]) => a.byteLength + ":" + a[a.byteLength - 1]);
console.log("rpc bench ready");`;

async function bench({ page, server, kernelId, results }) {
  await startCommsCell(page, { code: CELL, ready: /rpc bench ready/ });
  const kpid = kernelPid(kernelId);
  const ppid = programPid(kpid);
  if (ppid === undefined) throw new Error("no program process under the kernel");
  const r = (results.tsnb = {});

  r.sequential = stats(
    await page.evaluate(async (n) => {
      const comm = window.tsnb_comm;
      const times = [];
      for (let i = 0; i < n + 20; i++) {
        const t0 = performance.now();
        const got = await comm.call("bench.square", [i], {}, { timeout: 10_000 });
        if (got !== i * i) throw new Error(`call ${i} answered ${got}`);
        if (i >= 20) times.push(performance.now() - t0);
      }
      return times;
    }, CALLS),
  );
  r.concurrent = await page.evaluate(async (n) => {
    const comm = window.tsnb_comm;
    const t0 = performance.now();
    const times = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const s = performance.now();
        return comm.call("bench.square", [i], {}, { timeout: 60_000 }).then((v) => {
          if (v !== i * i) throw new Error(`call ${i} answered ${v}`);
          return performance.now() - s;
        });
      }),
    );
    return { totalMs: performance.now() - t0, times };
  }, CALLS);
  r.concurrent = { totalMs: r.concurrent.totalMs, ...stats(r.concurrent.times) };

  for (const [name, bytes] of [["1MB", 1e6], ["big", BIG_BYTES]]) {
    let sampler = sampleRss([kpid, ppid]);
    const down = await page.evaluate(async (n) => {
      const t0 = performance.now();
      const a = await window.tsnb_comm.call("bench.bytes", [n], {}, { timeout: 300_000 });
      return { ms: performance.now() - t0, ok: a instanceof Uint8Array && a.length === n && a[n - 1] === 7 };
    }, bytes);
    [down.kernelPeakMB, down.programPeakMB] = sampler.stop();
    sampler = sampleRss([kpid, ppid]);
    const up = await page.evaluate(async (n) => {
      const a = new Uint8Array(n);
      a[n - 1] = 9;
      const t0 = performance.now();
      const got = await window.tsnb_comm.call("bench.take", [a], {}, { timeout: 300_000 });
      return { ms: performance.now() - t0, ok: got === `${n}:9` };
    }, bytes);
    [up.kernelPeakMB, up.programPeakMB] = sampler.stop();
    r[name] = { bytes, down, up };
  }
}

function report(results) {
  const t = results.tsnb;
  const lines = [];
  const mbps = (bytes, ms) => bytes / MB / (ms / 1000);
  lines.push(`[tsnb RPC from Chromium through Notebook 6]`);
  lines.push(`  ${t.sequential.n} sequential calls: median ${fmt(t.sequential.median)} ms, p99 ${fmt(t.sequential.p99)} ms`);
  lines.push(`  ${t.concurrent.n} concurrent calls: all done in ${fmt(t.concurrent.totalMs, 0)} ms; per call median ${fmt(t.concurrent.median)} ms, p99 ${fmt(t.concurrent.p99)} ms`);
  for (const name of ["1MB", "big"]) {
    const b = t[name];
    for (const dir of ["down", "up"]) {
      const x = b[dir];
      lines.push(
        `  ${fmt(b.bytes / MB, 0)} MB ${dir === "down" ? "result (program -> page)" : "argument (page -> program)"}: ${fmt(x.ms, 0)} ms, ${fmt(mbps(b.bytes, x.ms), 1)} MB/s, ok ${x.ok}; peak RSS kernel ${fmt(x.kernelPeakMB, 0)} MB, program ${fmt(x.programPeakMB, 0)} MB`,
      );
    }
  }
  return lines.join("\n");
}

async function main() {
  const results = { calls: CALLS, bigBytes: BIG_BYTES };
  await runBrowserBench({ label: "rpc", buildDir: ".build-rpc", driver: opts.driver }, async ({ jupyter, server, browser }) => {
    const path = await jupyter.createNotebook(server, { path: "bench-rpc.ipynb", kernelName: jupyter.TSNB_KERNEL_NAME, cells: [""] });
    const page = await browser.newPage();
    await openNotebook(page, server, path, "tsnb");
    const kernelId = await page.evaluate(() => window.Jupyter.notebook.kernel.id);
    await bench({ page, server, kernelId, results });
    await page.close();
    console.log(report(results));
    saveResults("rpc", results);
  });
}

await main();
