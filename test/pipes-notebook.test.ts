// notebooks/pipes.ipynb executed headlessly with nbclient on the installed tsnb kernelspec: the Python client
// and hand-written frames reach the kernel through the real FIFOs, garbage is refused in the cell, and the
// saved notebook holds no copy of the injected browser shim.
//
// nbclient names the connection file tmpXXXX.json, so by default the kernel has no kernel id and injects no
// shim at all. A kernel started by a Jupyter server (kernel-<id>.json) does inject it, and a client with no
// browser behind it (a script on the server's API, an editor that does not run output scripts) used to save
// it. The second run names the connection file the way the server does to reproduce that.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeJupyterEnv, PYTHON, repoRoot, runProcess, type JupyterEnv, type RunningProcess } from "./helpers/jupyter.js";

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: { [mime: string]: unknown };
}
interface Cell {
  id?: string;
  cell_type: string;
  outputs?: Output[];
}

const text = (v: unknown): string => (Array.isArray(v) ? v.join("") : typeof v === "string" ? v : JSON.stringify(v));
const stream = (cell: Cell, name: string) =>
  (cell.outputs ?? [])
    .filter((o) => o.output_type === "stream" && o.name === name)
    .map((o) => text(o.text))
    .join("");

let env: JupyterEnv | undefined;
let outDir = "";
const running: RunningProcess[] = [];

beforeAll(async () => {
  env = await makeJupyterEnv();
  outDir = mkdtempSync(join(tmpdir(), "tsnb-pipes-nb-"));
});

afterAll(async () => {
  for (const p of running) p.dispose();
  await env?.dispose();
  if (outDir !== "") rmSync(outDir, { recursive: true, force: true });
});

// nbclient with a connection file named like the Jupyter server names them, so the kernel injects the shim.
const SERVER_LIKE_RUNNER = `
import asyncio, os, sys, uuid
import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

src, dst = sys.argv[1], sys.argv[2]
nb = nbformat.read(src, as_version=4)
conn = os.path.join(os.environ["JUPYTER_RUNTIME_DIR"], "kernel-%s.json" % uuid.uuid4())
km = AsyncKernelManager(kernel_name="tsnb", connection_file=conn)
client = NotebookClient(nb, km=km, timeout=60, startup_timeout=60,
                        resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}})
try:
    client.execute()
finally:
    nbformat.write(nb, dst)
`;

describe("notebooks/pipes.ipynb under nbclient", () => {
  it("runs the Python client and hand-written frames through the pipes, refuses garbage, and saves no shim source", async () => {
    if (env === undefined) throw new Error("beforeAll did not create the Jupyter env");
    const notebooks = join(repoRoot, "notebooks");
    const dst = join(outDir, "pipes.ipynb");
    const proc = runProcess(PYTHON, [join(repoRoot, "test", "helpers", "run_notebook.py"), join(notebooks, "pipes.ipynb"), dst, "tsnb", "60"], {
      cwd: notebooks,
      env: { ...env.vars, PYTHONDONTWRITEBYTECODE: "1" },
      deadlineMs: 120_000,
    });
    running.push(proc);
    const res = await proc.result;
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    const saved = readFileSync(dst, "utf8");
    const cells = (JSON.parse(saved) as { cells: Cell[] }).cells;
    const cell = (id: string) => {
      const c = cells.find((x) => x.id === id);
      if (c === undefined) throw new Error(`no cell ${id}`);
      return c;
    };

    const run = cell("run");
    expect(stream(run, "stderr")).toBe("");
    expect(stream(run, "stdout")).toContain("no browser connected");
    const shown = (run.outputs ?? []).find((o) => o.output_type === "display_data");
    expect(text(shown?.data?.["text/markdown"])).toBe("Python sent **200** float32 samples to `py/sine`.");

    expect(stream(cell("by-hand"), "stdout")).toBe("the kernel acknowledged the sync\n");

    const garbage = cell("garbage");
    expect(stream(garbage, "stderr")).toMatch(/tsnb: the pipe of !\/usr\/bin\/python3 .* was closed: frame header of \d+ bytes exceeds/);
    expect(stream(garbage, "stdout")).toBe("the cell goes on\n");

    // The shim is ~190 KB of JavaScript injected for the browser; a notebook run without one must not keep it.
    expect(saved).not.toContain("tsnbShimBoot");
    expect(saved.length).toBeLessThan(60_000);
  }, 180_000);

  it("a kernel that injected the shim with no browser connected blanks it before the cell's idle, so the saved notebook holds no shim source", async () => {
    if (env === undefined) throw new Error("beforeAll did not create the Jupyter env");
    const notebooks = join(repoRoot, "notebooks");
    const runner = join(outDir, "server_like_runner.py");
    writeFileSync(runner, SERVER_LIKE_RUNNER);
    const dst = join(outDir, "pipes-server-like.ipynb");
    const proc = runProcess(PYTHON, [runner, join(notebooks, "pipes.ipynb"), dst], {
      cwd: notebooks,
      env: { ...env.vars, PYTHONDONTWRITEBYTECODE: "1" },
      deadlineMs: 120_000,
    });
    running.push(proc);
    const res = await proc.result;
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    // The kernel did inject it (it had a kernel id), and the saved copy was blanked.
    expect(res.stderr).not.toContain("shim will not be injected");
    const saved = readFileSync(dst, "utf8");
    const page = (JSON.parse(saved) as { cells: Cell[] }).cells.find((c) => c.id === "page")!;
    // The page cell awaits comms.sync(), so the kernel injected the shim under it before its idle; what is
    // saved there is the blanked display.
    const displays = (page.outputs ?? []).filter((o) => o.output_type === "display_data");
    expect(displays).toHaveLength(2);
    expect(Object.keys(displays[1]!.data ?? {})).toEqual(["text/plain"]);
    expect(text(displays[1]!.data?.["text/plain"])).toBe("");
    expect(saved).not.toContain("tsnbShimBoot");
    expect(saved.length).toBeLessThan(60_000);
  }, 180_000);
});
