#!/usr/bin/env node
// `node bench/profile-transfer.mjs`: where the time of a large transfer goes, hop by hop. Runs the four big
// transfers of bench/comms.mjs and bench/rpc.mjs (a value browser -> program and program -> browser, an RPC
// result and an RPC argument) once each from real Chromium through a default Notebook 6 server, and for each
// prints the wall time, the CPU seconds of every process on the path (Chromium split by process type, the
// server, the kernel, the program) and the page's hottest JavaScript functions (CDP Profiler, self time).
// Not a test. Options: --mb N (default 100), --top N (default 12), --only TEXT (the transfers whose name holds
// TEXT), --chrome-trace (also a Chromium trace: time per event name on each busy thread), --node-prof DIR
// (the kernel runs with --cpu-prof into DIR; open the .cpuprofile file in Chromium's DevTools. Node 20 refuses
// --cpu-prof in NODE_OPTIONS, and the program's node flags are fixed by the kernel, so the program is not profiled).

import { mkdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { runBrowserBench, setKernelFlags, kernelPid, cpuSeconds, descendants, sampleRss, fmt, openNotebook, MB, startCommsCell, programPid } from "./lib.mjs";

const { values: opts } = parseArgs({
  options: {
    mb: { type: "string", default: "100" },
    top: { type: "string", default: "12" },
    "node-prof": { type: "string" },
    only: { type: "string" },
    "chrome-trace": { type: "boolean", default: false },
  },
});
const BYTES = Math.floor((Number(opts.mb) * 1e6) / 4) * 4;
const TOP = Number(opts.top);

const CELL = `
comms.subscribe<Float32Array>("prof-up", (a) => comms.send("prof-up-done", a.length + ":" + a[a.length - 1]));
comms.subscribe<number>("prof-go-down", (n) => { const a = new Float32Array(n); a[n - 1] = 7.5; comms.send("prof-down", a); });
comms.register("prof.bytes", ([n]) => { const a = new Uint8Array(n); a[n - 1] = 7; return a; });
comms.register("prof.take", ([a]) => a.byteLength + ":" + a[a.byteLength - 1]);
console.log("profile ready");`;

/** CPU seconds of our Chromium's processes, by process type (renderer, utility = network service, gpu, browser). */
function chromiumCpu() {
  const out = {};
  for (const pid of descendants(process.pid)) {
    let cmd;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    if (!cmd.includes("chromium")) continue;
    const type = /--type=([a-z-]+)/.exec(cmd)?.[1] ?? "browser";
    try {
      out[type] = (out[type] ?? 0) + cpuSeconds(pid);
    } catch {
      continue;
    }
  }
  return out;
}

function diff(a, b) {
  const out = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) out[k] = (b[k] ?? 0) - (a[k] ?? 0);
  return out;
}

/** Self time per function of a CDP profile, hottest first. */
function hottest(profile, top) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const f = node.callFrame;
    const url = f.url ? f.url.replace(/^.*\//, "") : "";
    const key = `${f.functionName || "(anonymous)"} ${url}${url ? `:${f.lineNumber + 1}` : ""}`;
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return {
    totalMs: total / 1000,
    top: [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => ({ fn: k, ms: us / 1000 })),
  };
}

const TRANSFERS = {
  "value up (browser -> program)": async (page) =>
    page.evaluate(async (bytes) => {
      const comm = window.tsnb_comm;
      const a = new Float32Array(bytes / 4);
      a[a.length - 1] = 3.25;
      const done = new Promise((res) => comm.subscribe("prof-up-done", (v) => res(v)));
      const t0 = performance.now();
      comm.send("prof-up", a);
      const got = await window.benchDeadline(done, 300_000, "value up");
      return { ms: performance.now() - t0, ok: got === `${a.length}:3.25` };
    }, BYTES),
  "value down (program -> browser)": async (page) =>
    page.evaluate(async (bytes) => {
      const comm = window.tsnb_comm;
      const done = new Promise((res) => comm.subscribe("prof-down", (v) => res(v)));
      const t0 = performance.now();
      comm.send("prof-go-down", bytes / 4);
      const a = await window.benchDeadline(done, 300_000, "value down");
      return { ms: performance.now() - t0, ok: a instanceof Float32Array && a.length === bytes / 4 && a[a.length - 1] === 7.5 };
    }, BYTES),
  "rpc result (program -> browser)": async (page) =>
    page.evaluate(async (n) => {
      const t0 = performance.now();
      const a = await window.benchDeadline(window.tsnb_comm.call("prof.bytes", [n], {}, { timeout: 300_000 }), 300_000, "rpc result");
      return { ms: performance.now() - t0, ok: a instanceof Uint8Array && a.length === n && a[n - 1] === 7 };
    }, BYTES),
  "rpc argument (browser -> program)": async (page) =>
    page.evaluate(async (n) => {
      const a = new Uint8Array(n);
      a[n - 1] = 9;
      const t0 = performance.now();
      const got = await window.benchDeadline(window.tsnb_comm.call("prof.take", [a], {}, { timeout: 300_000 }), 300_000, "rpc argument");
      return { ms: performance.now() - t0, ok: got === `${n}:9` };
    }, BYTES),
};

async function main() {
  const profDir = opts["node-prof"] === undefined ? undefined : resolve(opts["node-prof"]);
  if (profDir) mkdirSync(profDir, { recursive: true });
  const prepareEnv = profDir ? (env) => setKernelFlags(env, (flags) => [...flags, "--cpu-prof", `--cpu-prof-dir=${profDir}`]) : undefined;
  // Driven through DevTools' Runtime and Profiler only (page.cdp): bench/cdp-browser.mjs says why not playwright.
  await runBrowserBench({ label: "prof", buildDir: ".build-prof", prepareEnv, driver: "cdp" }, async ({ jupyter, server, browser }) => {
    const path = await jupyter.createNotebook(server, { path: "prof.ipynb", kernelName: jupyter.TSNB_KERNEL_NAME, cells: [""] });
    const page = await browser.newPage();
    await openNotebook(page, server, path, "tsnb");
    const kernelId = await page.evaluate(() => window.Jupyter.notebook.kernel.id);
    await startCommsCell(page, { code: CELL, ready: /profile ready/ });
    const kpid = kernelPid(kernelId);
    const ppid = programPid(kpid);
    const procs = { server: server.process.pid, kernel: kpid, program: ppid };
    const { cdp } = page;
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 250 });
    for (const [name, run] of Object.entries(TRANSFERS)) {
      if (opts.only && !name.includes(opts.only)) continue;
      const cpu0 = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuSeconds(pid)]));
      const chrome0 = chromiumCpu();
      const rss = sampleRss([kpid, ppid]);
      if (opts["chrome-trace"]) await cdp.send("Tracing.start", { transferMode: "ReturnAsStream", traceConfig: { includedCategories: ["toplevel", "blink", "v8", "ipc", "mojom", "net", "disabled-by-default-devtools.timeline", "devtools.timeline", "loading"] } });
      await cdp.send("Profiler.start");
      const r = await run(page);
      const { profile } = await cdp.send("Profiler.stop");
      if (opts["chrome-trace"]) {
        const complete = new Promise((res) => cdp.once("Tracing.tracingComplete", res));
        await cdp.send("Tracing.end");
        const { stream } = await complete;
        let text = "";
        for (;;) {
          const chunk = await cdp.send("IO.read", { handle: stream, size: 1 << 20 });
          text += chunk.base64Encoded ? Buffer.from(chunk.data, "base64").toString() : chunk.data;
          if (chunk.eof) break;
        }
        await cdp.send("IO.close", { handle: stream });
        const events = JSON.parse(text.startsWith("[") ? text : `{"x":${text}}`);
        const list = Array.isArray(events) ? events : (events.traceEvents ?? events.x?.traceEvents ?? []);
        const threads = new Map();
        for (const e of list) if (e.ph === "M" && e.name === "thread_name") threads.set(`${e.pid}:${e.tid}`, e.args.name);
        const byThread = new Map();
        for (const e of list) {
          if (e.ph !== "X" || typeof e.dur !== "number") continue;
          const t = threads.get(`${e.pid}:${e.tid}`) ?? `${e.pid}:${e.tid}`;
          const m = byThread.get(t) ?? new Map();
          byThread.set(t, m);
          m.set(e.name, (m.get(e.name) ?? 0) + e.dur);
        }
        for (const [t, m] of byThread) {
          const top = [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
          if (top[0][1] < 50_000) continue;
          console.log(`   trace ${t}: ${top.map(([n, us]) => `${n} ${fmt(us / 1000, 0)}`).join(", ")}`);
        }
      }
      const [kernelPeak, programPeak] = rss.stop();
      const cpu = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuSeconds(pid) - cpu0[k]]));
      const chrome = diff(chrome0, chromiumCpu());
      const hot = hottest(profile, TOP);
      console.log(`\n== ${name}: ${fmt(BYTES / MB, 0)} MB in ${fmt(r.ms, 0)} ms = ${fmt(BYTES / MB / (r.ms / 1000), 1)} MB/s, ok ${r.ok}`);
      console.log(`   peak RSS kernel ${fmt(kernelPeak, 0)} MB, program ${fmt(programPeak, 0)} MB`);
      console.log(`   CPU s: ${Object.entries({ ...cpu, ...Object.fromEntries(Object.entries(chrome).map(([k, v]) => [`chromium-${k}`, v])) }).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}`);
      console.log(`   page JS (sampled ${fmt(hot.totalMs, 0)} ms, self time):`);
      for (const { fn, ms } of hot.top) console.log(`     ${fmt(ms, 1).padStart(8)} ms  ${fn}`);
    }
    await page.close();
  });
}

await main();
