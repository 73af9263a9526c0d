#!/usr/bin/env node
// `npm run bench`: measures tsnb against ipykernel and Deno's kernel through the
// same jupyter_client code (bench/kernel.py), prints every figure, the tsnb/ipykernel ratios and the issue's
// targets, and saves the raw figures to bench/results/ (gitignored). Not a test: `npm test` never runs it.
//
// Deno comes from PATH, or else from the npm package `deno` (a prebuilt binary in the registry), installed once
// into bench/.deps (gitignored); --no-deno skips it.
//
// Options: --rounds N (default 300), --lines N (default 10000), --no-deno.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values: opts } = parseArgs({
  options: {
    rounds: { type: "string", default: "300" },
    lines: { type: "string", default: "10000" },
    "no-deno": { type: "boolean", default: false },
  },
});

function which(cmd) {
  const res = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return res.status === 0 ? res.stdout.trim() : null;
}

/** Deno on PATH, or the npm package's binary under bench/.deps (installed here on first use). */
function findDeno() {
  const onPath = which("deno");
  if (onPath !== null) return onPath;
  const deps = join(root, "bench", ".deps");
  const local = join(deps, "node_modules", ".bin", "deno");
  if (!existsSync(local)) {
    console.log("deno: not on PATH; installing the npm package `deno` into bench/.deps ...");
    mkdirSync(deps, { recursive: true });
    const res = spawnSync("npm", ["install", "--prefix", deps, "--no-save", "--no-audit", "--no-fund", "deno"], { encoding: "utf8" });
    if (res.status !== 0) {
      console.log(`deno: npm install failed (exit ${res.status}), Deno skipped:\n${res.stderr}`);
      return null;
    }
  }
  const version = spawnSync(local, ["--version"], { encoding: "utf8" });
  if (version.status !== 0) {
    console.log(`deno: ${local} does not run (exit ${version.status}), Deno skipped:\n${version.stderr}`);
    return null;
  }
  console.log(`deno: ${version.stdout.split("\n")[0]} (${local})`);
  return local;
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), "tsnb-bench-"));
  const prefix = join(work, "prefix");
  const jupyterPath = join(prefix, "share", "jupyter");
  const env = {
    ...process.env,
    JUPYTER_PATH: jupyterPath,
    JUPYTER_RUNTIME_DIR: join(work, "runtime"),
    JUPYTER_DATA_DIR: join(work, "data"),
    JUPYTER_CONFIG_DIR: join(work, "config"),
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
  };

  let child;
  const cleanup = () => {
    if (child !== undefined && child.exitCode === null) child.kill("SIGTERM");
    rmSync(work, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });

  try {
    // Kernels to measure, in report order.
    const kernels = [{ name: "python3", label: "ipykernel" }];

    if (!existsSync(join(root, "dist", "cli.js"))) throw new Error("dist/cli.js is missing: run `npm run build` first");
    const install = spawnSync(process.execPath, [join(root, "bin", "tsnb.mjs"), "install", "--prefix", prefix, "--name", "tsnb-bench"], {
      env,
      encoding: "utf8",
    });
    if (install.status !== 0) throw new Error(`tsnb install failed:\n${install.stdout}${install.stderr}`);
    kernels.push({ name: "tsnb-bench", label: "tsnb" });

    const deno = opts["no-deno"] ? null : findDeno();
    if (deno !== null) {
      const dir = join(jupyterPath, "kernels", "deno-bench");
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        join(dir, "kernel.json"),
        JSON.stringify({ argv: [deno, "jupyter", "--kernel", "--conn", "{connection_file}"], display_name: "Deno", language: "typescript" }),
      );
      kernels.push({ name: "deno-bench", label: "deno" });
    }

    console.log(`measuring ${kernels.map((k) => k.label).join(", ")}: ${opts.rounds} round trips, ${opts.lines}-line burst ...`);
    const results = await new Promise((resolve, reject) => {
      child = spawn("/usr/bin/python3", [join(root, "bench", "kernel.py"), "--rounds", opts.rounds, "--lines", opts.lines, ...kernels.map((k) => k.name)], {
        env,
        stdio: ["ignore", "pipe", "inherit"],
      });
      let out = "";
      child.stdout.on("data", (c) => (out += c));
      child.on("error", reject);
      child.on("close", () => {
        try {
          resolve(out.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l)));
        } catch (err) {
          reject(new Error(`could not read bench/kernel.py output: ${err}\n${out}`));
        }
      });
    });

    const byLabel = {};
    for (const k of kernels) byLabel[k.label] = results.find((r) => r.kernel === k.name) ?? { error: "no result" };
    for (const [label, r] of Object.entries(byLabel)) if (r.error !== undefined) console.log(`${label}: FAILED: ${r.error}`);

    const rows = [
      ["start -> first kernel_info_reply (ms)", "start_ms"],
      ["start -> IOPub ready (ms)", "ready_ms"],
      ["first cell executed (ms)", "first_cell_ms"],
      [`trivial execute median (ms, ${opts.rounds} runs)`, "rtt_median_ms"],
      ["trivial execute p99 (ms)", "rtt_p99_ms"],
      [`${opts.lines}-line cell: request -> idle (ms)`, "burst_ms"],
      ["  lines delivered by idle", "burst_lines_at_idle"],
      ["  lines delivered in total", "burst_lines_total"],
      ["memory, kernel + children (MB RSS)", "rss_mb"],
      ["memory, kernel + children (MB PSS, shared pages split)", "pss_mb"],
      ["memory, kernel + children (MB, each resident page once; root)", "unique_mb"],
      ["memory after the burst (MB RSS)", "rss_after_burst_mb"],
      ["memory after a typed cell (MB RSS; tsnb: esbuild's service runs)", "rss_after_typed_mb"],
    ];
    const labels = Object.keys(byLabel);
    const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : "-");
    const ratio = (a, b) => (typeof a === "number" && typeof b === "number" && b !== 0 ? `${(a / b).toFixed(2)}x` : "-");
    const table = [["", ...labels, "tsnb/ipykernel"]];
    for (const [title, key] of rows) {
      table.push([title, ...labels.map((l) => fmt(byLabel[l][key])), ratio(byLabel.tsnb?.[key], byLabel.ipykernel?.[key])]);
    }
    const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
    console.log();
    for (const r of table) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "));

    for (const [label, r] of Object.entries(byLabel)) {
      if (!Array.isArray(r.rss_by_process) || r.rss_by_process.length < 2) continue;
      console.log(`\n${label} memory by process:`);
      for (const p of r.rss_by_process) console.log(`  ${String(p.rss_mb.toFixed(1)).padStart(7)} MB  ${p.command}`);
    }

    // The targets.
    const t = byLabel.tsnb ?? {};
    const py = byLabel.ipykernel ?? {};
    const dn = byLabel.deno;
    const check = (ok, text) => console.log(`  [${ok === undefined ? "n/a" : ok ? "met" : "MISSED"}] ${text}`);
    const known = (...vs) => vs.every((v) => typeof v === "number");
    console.log("\ntargets:");
    check(known(t.rtt_median_ms, py.rtt_median_ms) ? t.rtt_median_ms <= 0.5 * py.rtt_median_ms : undefined, "trivial execute median <= 0.5x ipykernel");
    check(dn && known(t.rtt_median_ms, dn.rtt_median_ms) ? t.rtt_median_ms <= dn.rtt_median_ms : undefined, "trivial execute median <= Deno's");
    check(dn && known(t.rtt_p99_ms, dn.rtt_p99_ms) ? t.rtt_p99_ms < 2 * dn.rtt_p99_ms : undefined, "trivial execute p99 < 2x Deno's");
    check(known(t.start_ms, py.start_ms) ? t.start_ms <= 0.5 * py.start_ms : undefined, "start -> kernel_info_reply <= 0.5x ipykernel");
    check(known(t.burst_lines_at_idle) ? t.burst_lines_at_idle === t.burst_lines_expected : undefined, `all ${opts.lines} lines delivered before idle`);
    check(known(t.burst_ms, py.burst_ms) ? t.burst_ms < py.burst_ms : undefined, "burst faster than ipykernel");
    check(known(t.rss_mb, py.rss_mb) ? t.rss_mb <= 1.5 * py.rss_mb : undefined, "memory <= 1.5x ipykernel");

    const resultsDir = join(root, "bench", "results");
    mkdirSync(resultsDir, { recursive: true });
    const file = join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), rounds: Number(opts.rounds), lines: Number(opts.lines), results: byLabel }, null, 2));
    console.log(`\nraw figures: ${file}`);
    if (Object.values(byLabel).some((r) => r.error !== undefined)) process.exitCode = 1;
  } finally {
    cleanup();
  }
}

await main();
