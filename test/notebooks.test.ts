// Every notebook in notebooks/ executed headlessly with nbclient (Debian python3-nbclient) on the kernel its
// metadata names, then its outputs checked. Cells tagged `raises-exception` must fail; every other cell must
// succeed. Cells tagged `skip-execution` (nbclient's tag) are not run: for cells that need a person or a
// browser page on the other end. Notebooks listed in EXPECTATIONS also get their outputs checked cell by
// cell (by cell id).

import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeJupyterEnv, PYTHON, repoRoot, runProcess, type JupyterEnv, type RunningProcess } from "./helpers/jupyter.js";

const notebooksDir = join(repoRoot, "notebooks");
const runner = join(repoRoot, "test", "helpers", "run_notebook.py");

type JsonMap = { [key: string]: unknown };

interface Output {
  output_type: "stream" | "display_data" | "execute_result" | "error" | "update_display_data";
  name?: string;
  text?: string | string[];
  data?: { [mime: string]: string | string[] | JsonMap };
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

interface Cell {
  id?: string;
  cell_type: "code" | "markdown" | "raw";
  source: string | string[];
  metadata: { tags?: string[] };
  outputs?: Output[];
  execution_count?: number | null;
}

interface Notebook {
  metadata: { kernelspec?: { name?: string } };
  cells: Cell[];
}

const join_ = (v: string | string[] | undefined): string => (Array.isArray(v) ? v.join("") : (v ?? ""));
// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string): string => s.replace(/\u001b\[[0-9;]*m/g, "");

/** The concatenated text of a cell's stream outputs with that name. */
function streamText(cell: Cell, name: "stdout" | "stderr"): string {
  return (cell.outputs ?? [])
    .filter((o) => o.output_type === "stream" && o.name === name)
    .map((o) => join_(o.text))
    .join("");
}

/** The `mime` data of the cell's outputs of the given type (first match), as text. */
function mimeText(cell: Cell, type: "display_data" | "execute_result", mime: string): string | undefined {
  for (const o of cell.outputs ?? []) {
    if (o.output_type !== type || o.data === undefined) continue;
    const v = o.data[mime];
    if (v === undefined) continue;
    return typeof v === "string" || Array.isArray(v) ? join_(v) : JSON.stringify(v);
  }
  return undefined;
}

const result = (cell: Cell): string | undefined => mimeText(cell, "execute_result", "text/plain");

/** A `display.*(...);` cell shows its display and nothing else: the returned handle is not echoed as a result. */
function onlyDisplay(cell: Cell, mime: string): string {
  expect(cell.outputs?.map((o) => o.output_type)).toEqual(["display_data"]);
  return mimeText(cell, "display_data", mime) ?? "";
}

/** Per notebook, per cell id: what its outputs must show after a headless run. */
const EXPECTATIONS: { [notebook: string]: { [cellId: string]: (cell: Cell) => void } } = {
  "basics.ipynb": {
    variables: (c) => expect(c.outputs).toEqual([]),
    reuse: (c) => expect(result(c)).toBe("'HELLO! x3'"),
    redeclare: (c) => expect(result(c)).toBe("'Hi again'"),
    types: (c) => expect(streamText(c, "stdout")).toBe("Green { x: 0, y: 0 }\n"),
    await: (c) => expect(streamText(c, "stdout")).toBe("tick 1\ntick 2\ntick 3\n"),
    "node-import": (c) => expect(result(c)).toBe("'a4a524e4fb9f'"),
    "npm-import": (c) => expect(result(c)).toBe("'ExpressionStatement'"),
    html: (c) => expect(onlyDisplay(c, "text/html")).toBe("<b>Bold</b> and <i>italic</i> HTML"),
    markdown: (c) => expect(onlyDisplay(c, "text/markdown")).toContain("**Markdown** with a list"),
    svg: (c) => expect(onlyDisplay(c, "image/svg+xml")).toMatch(/^<svg[\s\S]*tsnb[\s\S]*<\/svg>$/),
    handle: (c) => {
      // nbclient applies update_display_data to the output with the same display id: the last update wins.
      const displays = (c.outputs ?? []).filter((o) => o.output_type === "display_data");
      expect(displays).toHaveLength(1);
      expect(mimeText(c, "display_data", "text/html")).toContain("step 3 of 3");
      expect(streamText(c, "stdout")).toBe("done\n");
    },
    "jupyter-display": (c) => {
      expect(mimeText(c, "execute_result", "text/html")).toBe('<span style="color: crimson">30 °C</span>');
      expect(result(c)).toBe("30 °C");
    },
    error: (c) => {
      const errors = (c.outputs ?? []).filter((o) => o.output_type === "error");
      expect(errors).toHaveLength(1);
      const err = errors[0];
      expect(err?.ename).toBe("RangeError");
      expect(err?.evalue).toBe("division by zero");
      const tb = stripAnsi((err?.traceback ?? []).join("\n"));
      // Points at the throw on line 2 of the cell and at the call on line 5, and hides tsnb's own frames.
      expect(tb).toMatch(/divide[\s\S]*:2:\d+/);
      expect(tb).toMatch(/:5:\d+/);
      expect(tb).not.toMatch(/dist\/(program|tsnb|chunks)|runtime\//);
    },
    "after-error": (c) => expect(streamText(c, "stdout")).toBe("still running, count = 3\n"),
    shell: (c) => expect(streamText(c, "stdout")).toBe("hello from the shell\n"),
    magics: (c) => {
      expect(streamText(c, "stdout")).toBe("env: TSNB_GREETING=hello from %env\n");
      expect(result(c)).toBe("'hello from %env'");
    },
    help: (c) => expect(streamText(c, "stdout")).toMatch(/%cd[\s\S]*%env[\s\S]*display/),
  },
  "comms.ipynb": {
    send: (c) => expect(streamText(c, "stdout")).toBe('front-ends connected: 0, listening to "greeting": 0\n'),
    counter: (c) => expect(result(c)).toBe("'counting to 20'"),
    read: (c) => {
      const errors = (c.outputs ?? []).filter((o) => o.output_type === "error");
      expect(errors.map((e) => e.ename)).toEqual(["CommsTimeoutError"]);
      expect(errors[0]?.evalue).toMatch(/no front-end is connected/);
    },
    burst: (c) => expect(streamText(c, "stdout")).toBe("sent 10000 values\n"),
  },
  "rpc.ipynb": {
    render: (c) => expect(streamText(c, "stdout")).toBe("rendered a 16384-byte sample tile; 701 pixels inside the set\n"),
    frontend: (c) => expect(streamText(c, "stdout")).toMatch(/^no page to ask: -32004 no front-end is connected/),
    errors: (c) => expect(streamText(c, "stdout")).toMatch(/^a 5000x5000 tile is refused: a tile must be 1\.\.1048576 pixels/),
  },
  "pipes.ipynb": {
    run: (c) => {
      expect(mimeText(c, "display_data", "text/markdown")).toBe("Python sent **200** float32 samples to `py/sine`.");
      expect(streamText(c, "stdout")).toMatch(/no browser connected/);
    },
    "by-hand": (c) => expect(streamText(c, "stdout")).toBe("the kernel acknowledged the sync\n"),
    input: (c) =>
      expect(streamText(c, "stdout")).toBe(
        "Nobody can answer here (InputError: input() is not available: this front-end does not accept input (allow_stdin is false)), so no greeting.\n",
      ),
    garbage: (c) => {
      expect(streamText(c, "stderr")).toMatch(/was closed: frame header of \d+ bytes exceeds the \d+-byte limit/);
      expect(streamText(c, "stdout")).toBe("the cell goes on\n");
    },
  },
};

const notebookFiles = readdirSync(notebooksDir)
  .filter((f) => f.endsWith(".ipynb"))
  .sort();

describe("notebooks/ executed headlessly with nbclient", () => {
  let env: JupyterEnv | undefined;
  let outDir = "";
  const running: RunningProcess[] = [];

  beforeAll(async () => {
    env = await makeJupyterEnv();
    outDir = mkdtempSync(join(tmpdir(), "tsnb-nbrun-"));
  });

  afterAll(async () => {
    for (const p of running) p.dispose();
    await env?.dispose();
    if (outDir !== "") rmSync(outDir, { recursive: true, force: true });
  });

  it("has notebooks to run, including the basics tour", () => {
    expect(notebookFiles).toContain("basics.ipynb");
  });

  it.each(notebookFiles)("%s runs top to bottom and shows the expected outputs", async (file) => {
    if (env === undefined) throw new Error("beforeAll did not create the Jupyter env");
    const src = join(notebooksDir, file);
    const nbIn = JSON.parse(readFileSync(src, "utf8")) as Notebook;
    const kernelName = nbIn.metadata.kernelspec?.name ?? "tsnb";
    const dst = join(outDir, file);
    const proc = runProcess(PYTHON, [runner, src, dst, kernelName, "60"], {
      cwd: notebooksDir,
      env: { ...env.vars, PYTHONDONTWRITEBYTECODE: "1" },
      deadlineMs: 240_000,
    });
    running.push(proc);
    const res = await proc.result;
    const log = `kernelspec: ${env.tsnbSpec}\n--- nbclient stdout ---\n${res.stdout}\n--- nbclient stderr ---\n${res.stderr}`;
    expect(res.code, log).toBe(0);

    const nb = JSON.parse(readFileSync(dst, "utf8")) as Notebook;
    const code = nb.cells.filter((c) => c.cell_type === "code");
    for (const cell of code) {
      if (cell.metadata.tags?.includes("skip-execution") ?? false) continue;
      const where = `${file} cell ${cell.id ?? "?"}:\n${join_(cell.source)}\noutputs: ${JSON.stringify(cell.outputs, null, 1)}`;
      expect(cell.execution_count, where).toBeTypeOf("number");
      const failed = (cell.outputs ?? []).some((o) => o.output_type === "error");
      expect(failed, where).toBe(cell.metadata.tags?.includes("raises-exception") ?? false);
    }

    // Every failing cell is reported at once, so one run shows everything that is wrong.
    const checks = EXPECTATIONS[file] ?? {};
    const problems: string[] = [];
    for (const [id, check] of Object.entries(checks)) {
      const cell = code.find((c) => c.id === id);
      if (cell === undefined) {
        problems.push(`${file} has no code cell with id "${id}"`);
        continue;
      }
      try {
        check(cell);
      } catch (err) {
        problems.push(
          `${file} cell "${id}":\n${join_(cell.source)}\noutputs: ${JSON.stringify(cell.outputs)}\n` +
            (err instanceof Error ? err.message : String(err)),
        );
      }
    }
    if (problems.length > 0) throw new Error(`${problems.length} cell(s) failed their checks:\n\n${problems.join("\n\n")}`);
  }, 300_000);
});
