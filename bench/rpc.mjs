#!/usr/bin/env node
// `node bench/rpc.mjs`: the RPC benchmark of issue 5, from real Chromium through a default `jupyter notebook`
// server (Notebook 6) against the tsnb kernel: round trips of 1000 sequential and 1000 concurrent calls
// (median, p99), and 1 MB and 100 MB binary results and arguments (MB/s, peak RSS of kernel and program).
// The ipykernel comm baseline for the same payloads, measured in the same way, is `npm run bench:comms`.
// Saves the raw figures to bench/results/ (gitignored). Not a test: `npm test` never runs it.
//
// Options: --calls N (default 1000), --mb N (default 100).
// The helpers and page plumbing are those of bench/comms.mjs (test helpers bundled on the fly by esbuild).

import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values: opts } = parseArgs({
  options: {
    calls: { type: "string", default: "1000" },
    mb: { type: "string", default: "100" },
  },
});
const CALLS = Number(opts.calls);
const BIG_BYTES = Number(opts.mb) * 1e6;
const MB = 1e6;

// ---- helpers (as in bench/comms.mjs) -------------------------------------------------------------------

async function loadHelpers() {
  const out = join(root, "bench", ".build-rpc");
  await build({
    entryPoints: [join(root, "test", "helpers", "jupyter.ts"), join(root, "test", "helpers", "browser.ts")],
    outdir: out,
    bundle: true,
    format: "esm",
    platform: "node",
    packages: "external",
    logLevel: "error",
  });
  const jupyter = await import(pathToFileURL(join(out, "jupyter.js")).href);
  const browser = await import(pathToFileURL(join(out, "browser.js")).href);
  return { jupyter, browser, dispose: () => rmSync(out, { recursive: true, force: true }) };
}

/** Pid of the process whose command line names this kernel's connection file. */
function kernelPid(kernelId) {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let cmd;
    try {
      cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue; // the process exited while we were listing: not ours
    }
    if (cmd.includes(`kernel-${kernelId}.json`)) return Number(entry);
  }
  throw new Error(`no process found for kernel ${kernelId}`);
}

function childPids(pid) {
  const kids = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) kids.push(Number(entry));
    } catch {
      continue; // exited meanwhile
    }
  }
  return kids;
}

function statusKb(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Samples VmRSS of the pids every 5 ms until stopped; returns the peak (MB) of each. */
function sampleRss(pids) {
  const peaks = pids.map((pid) => statusKb(pid, "VmRSS"));
  const timer = setInterval(() => {
    pids.forEach((pid, i) => {
      peaks[i] = Math.max(peaks[i], statusKb(pid, "VmRSS"));
    });
  }, 5);
  const base = [...peaks];
  return {
    /** Peak RSS (MB) per pid; `.growth` holds peak minus the RSS when sampling started. */
    stop() {
      clearInterval(timer);
      const out = peaks.map((kb) => (kb * 1024) / MB);
      out.growth = peaks.map((kb, i) => ((kb - base[i]) * 1024) / MB);
      return out;
    },
  };
}

/** CPU seconds (user + system) used so far by a process. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Every descendant of this bench process (the Chromium it launched and its helpers). */
function descendants(pid) {
  const out = [];
  for (const kid of childPids(pid)) out.push(kid, ...descendants(kid));
  return out;
}

/** CPU seconds used by all of our Chromium's processes (gone ones stop counting, so it is a lower bound). */
function browserCpuSeconds() {
  let total = 0;
  for (const pid of descendants(process.pid)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("chromium")) total += cpuSeconds(pid);
    } catch {
      continue; // exited meanwhile
    }
  }
  return total;
}

/** CPU seconds each process spends from now until `stop()`: who is the bottleneck of a transfer. */
function cpuMeter(named) {
  const start = Object.fromEntries(Object.entries(named).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const browser0 = browserCpuSeconds();
  return {
    stop: () => ({
      ...Object.fromEntries(Object.entries(named).map(([k, pid]) => [k, cpuSeconds(pid) - start[k]])),
      browser: browserCpuSeconds() - browser0,
    }),
  };
}

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { n: s.length, median: at(0.5), p99: at(0.99), min: s[0], max: s[s.length - 1] };
}

const fmt = (x, d = 2) => (x === undefined || x === null || Number.isNaN(x) ? "n/a" : x.toFixed(d));

// ---- page side ----------------------------------------------------------------------------------------

// Installed in each page once: a deadline wrapper every in-page wait goes through.
const PAGE_PRELUDE = `
window.benchDeadline = (promise, ms, what) => Promise.race([promise, new Promise((_, reject) =>
  setTimeout(() => reject(new Error(what + ": no answer within " + ms + " ms")), ms))]);
`;

async function openNotebook(page, server, path, implementation) {
  await page.goto(server.pageUrl(`notebooks/${path}`), { timeout: 60_000 });
  await page.waitForFunction(
    (impl) => {
      const k = window.Jupyter?.notebook?.kernel;
      return k != null && k.is_connected() && k.info_reply?.implementation === impl;
    },
    implementation,
    { timeout: 60_000 },
  );
  await page.evaluate(PAGE_PRELUDE);
}

async function runCell(page, index, code) {
  await page.evaluate(
    ({ index, code }) => {
      const nb = window.Jupyter.notebook;
      nb.get_cell(index).set_text(code);
      nb.execute_cells([index]);
    },
    { index, code },
  );
}

async function waitCellText(page, index, pattern, timeout = 120_000) {
  const out = page.locator("#notebook-container .cell").nth(index).locator(".output_area");
  await out.filter({ hasText: pattern }).first().waitFor({ state: "visible", timeout });
}


// ---- tsnb RPC -----------------------------------------------------------------------------------------

const CELL = `
comms.register("bench.square", ([x]) => x * x);
comms.register("bench.bytes", ([n]) => { const a = new Uint8Array(n); a[n - 1] = 7; return a; });
comms.register("bench.take", ([a]) => a.byteLength + ":" + a[a.byteLength - 1]);
console.log("rpc bench ready");`;

async function bench({ page, server, kernelId, results }) {
  await runCell(page, 0, CELL);
  await waitCellText(page, 0, /rpc bench ready/);
  await page.waitForFunction(() => window.tsnb_comm !== undefined, undefined, { timeout: 60_000 });
  await page.evaluate(() => window.benchDeadline(window.tsnb_comm.ready, 30_000, "tsnb_comm ready"));
  const kpid = kernelPid(kernelId);
  const ppid = childPids(kpid).find((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("program.js"));
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
  const { jupyter, browser: browserHelpers, dispose: disposeHelpers } = await loadHelpers();
  const notebookDir = mkdtempSync(join(tmpdir(), "tsnb-bench-rpc-"));
  let env;
  let server;
  let browser;
  const cleanup = async () => {
    await browser?.dispose();
    await server?.dispose();
    await env?.dispose();
    rmSync(notebookDir, { recursive: true, force: true });
    disposeHelpers();
  };
  process.once("SIGINT", () => {
    void cleanup().finally(() => process.exit(130));
  });
  const results = { calls: CALLS, bigBytes: BIG_BYTES };
  try {
    env = await jupyter.makeJupyterEnv();
    server = await jupyter.startNotebookServer({ env, notebookDir });
    browser = await browserHelpers.launchBrowser({ captureConsole: true });
    const path = await jupyter.createNotebook(server, { path: "bench-rpc.ipynb", kernelName: jupyter.TSNB_KERNEL_NAME, cells: [""] });
    const page = await browser.newPage();
    await openNotebook(page, server, path, "tsnb");
    const kernelId = await page.evaluate(() => window.Jupyter.notebook.kernel.id);
    await bench({ page, server, kernelId, results });
    await page.close();
    console.log(report(results));
    const dir = join(root, "bench", "results");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `rpc-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, JSON.stringify(results, null, 2));
    console.log(`\nraw figures: ${file}`);
  } catch (err) {
    console.error(err);
    if (browser) console.error(`--- browser console (tail) ---\n${browser.consoleLog().slice(-4000)}`);
    if (server) console.error(`--- server output (tail) ---\n${server.log().slice(-4000)}`);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

await main();
