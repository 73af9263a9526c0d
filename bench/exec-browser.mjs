#!/usr/bin/env node
// The trivial execute round trip as a browser user sees it: `1+1` sent by the classic Notebook page's own kernel
// object (Jupyter.notebook.kernel.execute) through a default Notebook 6 server, until both the reply and idle have
// reached the page; tsnb and ipykernel, interleaved in batches of 25. bench/run.mjs measures the same execute from
// a direct jupyter_client connection. Not a test: `npm test` never runs it.
//
// Options: --n N (default 200 per kernel), --gap MS (default 0: a pause before each execute; the page's TCP
// connection behaves differently when messages come back to back, see the README's speed notes),
// --only tsnb|ipykernel.

import { parseArgs } from "node:util";
import { fmt, openNotebook, runBrowserBench, saveResults, stats } from "./lib.mjs";

const { values: opts } = parseArgs({
  options: {
    n: { type: "string", default: "200" },
    gap: { type: "string", default: "0" },
    // All of a batch's executes sent at once (as Run All does); each sample is the batch's time per cell.
    queued: { type: "boolean", default: false },
    only: { type: "string" },
  },
});
const BATCH = 25;

await runBrowserBench({ label: "exec", buildDir: ".build-exec" }, async ({ jupyter, server, browser }) => {
  const kernels = [
    { name: "tsnb", kernelName: jupyter.TSNB_KERNEL_NAME, implementation: "tsnb" },
    { name: "ipykernel", kernelName: "python3", implementation: "ipython" },
  ].filter((k) => opts.only === undefined || opts.only === k.name);
  const sides = [];
  for (const k of kernels) {
    const path = await jupyter.createNotebook(server, { path: `exec-${k.name}.ipynb`, kernelName: k.kernelName, cells: [""] });
    const page = await browser.newPage();
    await openNotebook(page, server, path, k.implementation);
    sides.push({ ...k, page, times: [] });
  }
  // One warm-up batch per kernel, then measured batches, alternating kernels so load hits both alike.
  for (let done = -BATCH; done < Number(opts.n); done += BATCH) {
    for (const side of sides) {
      const times = await side.page.evaluate(
        async ({ n, gap, queued }) => {
          const kernel = window.Jupyter.notebook.kernel;
          const out = [];
          if (queued) {
            const t0 = performance.now();
            const ids = new Set();
            let replies = 0;
            await window.benchDeadline(
              new Promise((resolve) => {
                const finish = () => {
                  if (replies < n || ids.size > 0) return;
                  kernel.events.off("finished_iopub.Kernel", onIdle);
                  resolve();
                };
                const onIdle = (_event, data) => {
                  if (ids.delete(data.msg_id)) finish();
                };
                kernel.events.on("finished_iopub.Kernel", onIdle);
                for (let i = 0; i < n; i++) {
                  ids.add(kernel.execute("1+1", { shell: { reply: () => ((replies += 1), finish()) } }, { silent: false, store_history: false }));
                }
              }),
              30_000,
              `${n} queued executes`,
            );
            return [(performance.now() - t0) / n];
          }
          for (let i = 0; i < n; i++) {
            if (gap > 0) await new Promise((resolve) => setTimeout(resolve, gap));
            const t0 = performance.now();
            await window.benchDeadline(
              new Promise((resolve) => {
                let replied = false;
                let idle = false;
                let id = null;
                const finish = () => {
                  if (!replied || !idle) return;
                  kernel.events.off("finished_iopub.Kernel", onIdle);
                  resolve();
                };
                const onIdle = (_event, data) => {
                  if (data.msg_id !== id) return;
                  idle = true;
                  finish();
                };
                kernel.events.on("finished_iopub.Kernel", onIdle);
                id = kernel.execute("1+1", { shell: { reply: () => ((replied = true), finish()) } }, { silent: false, store_history: false });
              }),
              10_000,
              `execute ${i}`,
            );
            out.push(performance.now() - t0);
          }
          return out;
        },
        { n: BATCH, gap: Number(opts.gap), queued: opts.queued },
      );
      if (done >= 0) side.times.push(...times);
    }
  }
  const results = { n: Number(opts.n), gapMs: Number(opts.gap), queued: opts.queued };
  for (const side of sides) {
    const s = (results[side.name] = stats(side.times));
    console.log(`${side.name.padEnd(10)} execute 1+1 from the page (${opts.queued ? `${BATCH} queued, per cell` : `gap ${opts.gap} ms`}): median ${fmt(s.median)} ms, p99 ${fmt(s.p99)} ms, min ${fmt(s.min)} ms (n=${s.n})`);
    await side.page.close();
  }
  saveResults("exec-browser", results);
});
