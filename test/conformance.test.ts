// Jupyter's own kernel conformance suite (Debian python3-jupyter-kernel-test, driven by jupyter_client)
// against the tsnb kernelspec, with the TypeScript snippets of test/conformance/test_tsnb.py.

import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeJupyterEnv, PYTHON, repoRoot, runProcess, type JupyterEnv, type RunningProcess } from "./helpers/jupyter.js";

const conformanceDir = join(repoRoot, "test", "conformance");

// Any skip fails this test: tsnb provides a snippet for every test the installed suite offers.
const EXPECTED_SKIPS: string[] = [];

interface UnittestReport {
  ran: number;
  ok: boolean;
  skipped: string[];
  failed: string[];
}

/** Reads `python -m unittest -v` output: per-test result lines, "Ran N tests", and the OK/FAILED summary. */
function parseUnittest(output: string): UnittestReport {
  const skipped: string[] = [];
  const failed: string[] = [];
  // "test_x (mod.Class.test_x) ... ok" and subtests "  test_x (mod.Class.test_x) (key='v') ... skipped ''"
  const line = /^\s*(test_\w+) \([\w.]+\)(?: (\(.*\)))? \.\.\. (ok|skipped.*|FAIL|ERROR|expected failure|unexpected success)$/;
  for (const l of output.split("\n")) {
    const m = line.exec(l);
    if (m === null) continue;
    const name = m[2] === undefined ? `${m[1]}` : `${m[1]} ${m[2]}`;
    const status = m[3] ?? "";
    if (status.startsWith("skipped")) skipped.push(name);
    else if (status !== "ok") failed.push(name);
  }
  // Failures inside subtests are reported in the FAIL: blocks only.
  // (also class-level errors such as "ERROR: setUpClass (test_tsnb.TsnbKernelTests)" when the kernel won't start).
  for (const m of output.matchAll(/^(?:FAIL|ERROR): (\w+) \([\w.]+\)(?: (\(.*\)))?$/gm)) {
    failed.push(m[2] === undefined ? `${m[1]}` : `${m[1]} ${m[2]}`);
  }
  const ran = Number(/^Ran (\d+) tests? in/m.exec(output)?.[1] ?? "-1");
  const ok = /^OK( \(.*\))?$/m.test(output);
  return { ran, ok, skipped: [...new Set(skipped)].sort(), failed: [...new Set(failed)].sort() };
}

describe("jupyter_kernel_test conformance suite", () => {
  let env: JupyterEnv | undefined;
  const running: RunningProcess[] = [];

  beforeAll(async () => {
    env = await makeJupyterEnv();
  });

  afterAll(async () => {
    for (const p of running) p.dispose();
    await env?.dispose();
  });

  it("passes every test the installed suite offers, with TypeScript snippets", async () => {
    if (env === undefined) throw new Error("beforeAll did not create the Jupyter env");
    const pyEnv = { ...env.vars, TSNB_KERNEL_NAME: "tsnb", PYTHONDONTWRITEBYTECODE: "1" };

    // How many tests this version of jupyter_kernel_test defines: every one must run.
    const count = runProcess(
      PYTHON,
      ["-c", "import unittest, test_tsnb; print(len(unittest.TestLoader().getTestCaseNames(test_tsnb.TsnbKernelTests)))"],
      { cwd: conformanceDir, env: pyEnv, deadlineMs: 30_000 },
    );
    running.push(count);
    const counted = await count.result;
    expect(counted.code, counted.stderr).toBe(0);
    const expectedTests = Number(counted.stdout.trim());
    expect(expectedTests).toBeGreaterThanOrEqual(12);

    const suite = runProcess(PYTHON, ["-m", "unittest", "-v", "test_tsnb"], {
      cwd: conformanceDir,
      env: pyEnv,
      deadlineMs: 240_000,
    });
    running.push(suite);
    const res = await suite.result;
    const output = `${res.stdout}\n${res.stderr}`;
    const report = parseUnittest(output);
    const context = `kernelspec: ${env.tsnbSpec}\n--- unittest output ---\n${output}`;

    expect(report.failed, context).toEqual([]);
    expect(report.ran, context).toBe(expectedTests);
    expect(report.skipped, context).toEqual([...EXPECTED_SKIPS].sort());
    expect(report.ok, context).toBe(true);
    expect(res.code, context).toBe(0);
  }, 300_000);
});
