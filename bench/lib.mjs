// Shared by the browser benchmarks (comms.mjs, rpc.mjs): the test helpers bundled for plain Node, /proc
// sampling of memory and CPU, statistics, and driving cells in a classic Notebook page.

import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { launchCdpBrowser } from "./cdp-browser.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const MB = 1e6;

/** buildDir: a folder two levels below the repository root, so the bundled helpers' repoRoot still resolves. */
export async function loadHelpers(buildDir = ".build") {
  const out = join(root, "bench", buildDir);
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

/**
 * What every browser benchmark sets up: the test helpers (bundled into bench/<buildDir>), a private Jupyter
 * env (`prepareEnv(env)` may adjust it), one Notebook 6 server on a temp notebook directory and Chromium,
 * driven through DevTools' Runtime domain only (bench/cdp-browser.mjs says why), or by playwright-core as
 * the tests drive it when `driver` is "playwright".
 * `measure({ jupyter, server, browser })` runs with them; everything is torn down afterwards, also after a
 * failure and on Ctrl+C, and a failure prints the browser console and the server log and sets the exit code.
 */
export async function runBrowserBench({ label, buildDir, prepareEnv, driver = "cdp" }, measure) {
  if (driver !== "cdp" && driver !== "playwright") throw new Error(`--driver must be cdp or playwright, not ${driver}`);
  const { jupyter, browser: browserHelpers, dispose: disposeHelpers } = await loadHelpers(buildDir);
  const notebookDir = mkdtempSync(join(tmpdir(), `tsnb-bench-${label}-`));
  let env;
  let server;
  let browser;
  const cleanup = () =>
    teardown([
      () => browser?.dispose(),
      () => server?.dispose(),
      () => env?.dispose(),
      () => rmSync(notebookDir, { recursive: true, force: true }),
      disposeHelpers,
    ]);
  process.once("SIGINT", () => {
    void cleanup().finally(() => process.exit(130));
  });
  try {
    env = await jupyter.makeJupyterEnv();
    prepareEnv?.(env);
    server = await jupyter.startNotebookServer({ env, notebookDir });
    browser = driver === "cdp" ? await launchCdpBrowser({ executablePath: browserHelpers.CHROMIUM, args: browserHelpers.CHROMIUM_ARGS }) : await browserHelpers.launchBrowser({ captureConsole: true });
    console.error(`browser driver: ${driver}`);
    await measure({ jupyter, server, browser });
  } catch (err) {
    console.error(err);
    if (browser) console.error(`--- browser console (tail) ---\n${browser.consoleLog().slice(-4000)}`);
    if (server) console.error(`--- server output (tail) ---\n${server.log().slice(-4000)}`);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

/**
 * Runs every teardown step even when an earlier one fails, then reports the failures and sets the exit code: a
 * Chromium teardown that threw (its profile still being written) used to skip the server's, leaving the Jupyter
 * server and its kernels running after the benchmark exited.
 */
export async function teardown(steps) {
  const failures = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      failures.push(err);
    }
  }
  for (const err of failures) console.error(`teardown step failed: ${err instanceof Error ? err.message : String(err)}`);
  if (failures.length > 0) process.exitCode = 1;
}

/**
 * Rewrites the installed tsnb kernelspec's V8 flags (argv: node, FLAGS, bin/tsnb.mjs, kernel, ...) to
 * `edit(currentFlags)`, for experiments and profiling. Call it from runBrowserBench's prepareEnv.
 */
export function setKernelFlags(env, edit) {
  const file = join(env.jupyterPath, "kernels", "tsnb", "kernel.json");
  const spec = JSON.parse(readFileSync(file, "utf8"));
  const bin = spec.argv.findIndex((a) => a.endsWith("tsnb.mjs"));
  if (bin < 1) throw new Error(`unexpected kernelspec argv: ${JSON.stringify(spec.argv)}`);
  spec.argv = [spec.argv[0], ...edit(spec.argv.slice(1, bin)), ...spec.argv.slice(bin)];
  writeFileSync(file, JSON.stringify(spec, null, 2));
  console.error(`tsnb kernelspec argv: ${spec.argv.join(" ")}`);
}

/** Saves a benchmark's raw figures as bench/results/<name>-<time>.json (gitignored) and prints where. */
export function saveResults(name, results) {
  const dir = join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2));
  console.log(`\nraw figures: ${file}`);
}

/** Pid of the process whose command line names this kernel's connection file. */
export function kernelPid(kernelId) {
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

export function childPids(pid) {
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

export function statusKb(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Samples VmRSS of the pids every 5 ms until stopped; returns the peak (MB) of each. */
export function sampleRss(pids) {
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
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Every descendant of this bench process (the Chromium it launched and its helpers). */
export function descendants(pid) {
  const out = [];
  for (const kid of childPids(pid)) out.push(kid, ...descendants(kid));
  return out;
}

/** CPU seconds used by all of our Chromium's processes (gone ones stop counting, so it is a lower bound). */
export function browserCpuSeconds() {
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
export function cpuMeter(named) {
  const start = Object.fromEntries(Object.entries(named).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const browser0 = browserCpuSeconds();
  return {
    stop: () => ({
      ...Object.fromEntries(Object.entries(named).map(([k, pid]) => [k, cpuSeconds(pid) - start[k]])),
      browser: browserCpuSeconds() - browser0,
    }),
  };
}

export function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { n: s.length, median: at(0.5), p99: at(0.99), min: s[0], max: s[s.length - 1] };
}

export const fmt = (x, d = 2) => (x === undefined || x === null || Number.isNaN(x) ? "n/a" : x.toFixed(d));

// ---- page side ----------------------------------------------------------------------------------------

// Installed in each page once: a deadline wrapper every in-page wait goes through.
export const PAGE_PRELUDE = `
window.benchDeadline = (promise, ms, what) => Promise.race([promise, new Promise((_, reject) =>
  setTimeout(() => reject(new Error(what + ": no answer within " + ms + " ms")), ms))]);
`;

export async function openNotebook(page, server, path, implementation) {
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

export async function runCell(page, index, code) {
  await page.evaluate(
    ({ index, code }) => {
      const nb = window.Jupyter.notebook;
      nb.get_cell(index).set_text(code);
      nb.execute_cells([index]);
    },
    { index, code },
  );
}

/**
 * Runs a tsnb cell that sets up the page's counterpart and logs `ready` when done, then waits for the page's
 * tsnb_comm to connect (deadlines on every wait).
 */
export async function startCommsCell(page, { code, ready }) {
  await runCell(page, 0, code);
  await waitCellText(page, 0, ready);
  await page.waitForFunction(() => window.tsnb_comm !== undefined, undefined, { timeout: 60_000 });
  await page.evaluate(() => window.benchDeadline(window.tsnb_comm.ready, 30_000, "tsnb_comm ready"));
}

/** The user-program process under a tsnb kernel (undefined if it is not running). */
export function programPid(kernelPid) {
  return childPids(kernelPid).find((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("program.js"));
}

export async function waitCellText(page, index, pattern, timeout = 120_000) {
  await page.waitForFunction(
    ({ index, source, flags }) => {
      const cell = document.querySelectorAll("#notebook-container .cell")[index];
      const pattern = new RegExp(source, flags);
      return [...(cell?.querySelectorAll(".output_area") ?? [])].some((out) => pattern.test(out.textContent ?? ""));
    },
    { index, source: pattern.source, flags: pattern.flags },
    { timeout },
  );
}
