// Cell semantics of the real user program (dist/program.js spawned as the kernel spawns it).
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProgramHarness, resultText, type CellRun } from "./helpers/program-harness.js";

const strip = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, "");

function errorOf(run: CellRun) {
  if (run.done.status !== "error") throw new Error(`expected an error, got ${JSON.stringify(run.done)}`);
  return { ename: run.done.ename, evalue: run.done.evalue, traceback: run.done.traceback.map(strip) };
}

describe("runtime: cells", () => {
  let program: ProgramHarness;

  beforeAll(async () => {
    program = await ProgramHarness.start();
  });
  afterAll(() => program?.close());

  it("redeclares const, let and class when a cell is re-run", async () => {
    const cell = "const k: number = 1\nlet l = 'a'\nclass A { v = 1 }\nk";
    expect(resultText(await program.execute(cell))).toBe("1");
    expect(resultText(await program.execute(cell.replace("= 1\n", "= 2\n")))).toBe("2");
    expect(resultText(await program.execute("new A().v + l"))).toBe("'1a'");
  });

  it("mixes cells evaluated as scripts with REPL-mode declarations", async () => {
    // `mixed + 1` and `mixed = 5` need no REPL mode and run as plain scripts; they must see (and assign) the
    // let that REPL-mode cells declared and redeclared.
    await program.execute("let mixed = 1");
    expect(resultText(await program.execute("mixed + 1"))).toBe("2");
    await program.execute("let mixed = 10");
    expect(resultText(await program.execute("mixed + 1"))).toBe("11");
    await program.execute("mixed = 5");
    expect(resultText(await program.execute("mixed"))).toBe("5");
    // var and function declarations of script cells are globals, redeclarable by re-running, as in REPL mode.
    await program.execute("var scriptVar = 3; function scriptFn() { return scriptVar * 2 }");
    await program.execute("var scriptVar = 4; function scriptFn() { return scriptVar * 3 }");
    expect(resultText(await program.execute("scriptFn()"))).toBe("12");
    // A promise as the last value shows what it settles to, from a script cell as from a REPL-mode one.
    expect(resultText(await program.execute("Promise.resolve(7)"))).toBe("7");
    expect(resultText(await program.execute("const settles = Promise.resolve(8); settles"))).toBe("8");
    // Errors thrown by a script cell are mapped to its own line.
    const run = await program.execute("1 + 1\nnull.boom");
    const error = errorOf(run);
    expect(error.ename).toBe("TypeError");
    expect(error.traceback.join("\n")).toMatch(/cell\[\d+\]\.ts:2:6/);
  });

  it("keeps functions and variables for later cells", async () => {
    await program.execute("function twice(n: number): number { return n * 2 }\nvar total = 10");
    expect(resultText(await program.execute("twice(total)"))).toBe("20");
  });

  it("supports top-level await and returns the last expression", async () => {
    const run = await program.execute("const v = await new Promise<number>((r) => setTimeout(() => r(41), 5))\nv + 1");
    expect(resultText(run)).toBe("42");
  });

  it("gives no result for undefined and formats values like util.inspect", async () => {
    expect((await program.execute("let nothing = undefined; nothing")).done).toMatchObject({ status: "ok", result: null });
    expect(resultText(await program.execute("({ a: 1, b: [1, 2], s: 'x' })"))).toBe("{ a: 1, b: [ 1, 2 ], s: 'x' }");
    expect(resultText(await program.execute("new Map([[1, 'one']])"))).toBe("Map(1) { 1 => 'one' }");
    expect(resultText(await program.execute("10n ** 20n"))).toBe("100000000000000000000n");
    expect(resultText(await program.execute("-0"))).toBe("-0");
  });

  it("keeps last expressions that esbuild considers pure, across lines and before comments", async () => {
    expect(resultText(await program.execute("-1"))).toBe("-1");
    expect(resultText(await program.execute("NaN"))).toBe("NaN");
    expect(resultText(await program.execute("'a' + 'b';"))).toBe("'ab'");
    expect(resultText(await program.execute("const base: number = 2;\n[\n  base,\n  base * 2,\n]\n// trailing comment\n"))).toBe("[ 2, 4 ]");
    expect(resultText(await program.execute("{ a: 1 }"))).toBe("{ a: 1 }");
    // JavaScript's semicolon rules hold, also for the last line: `(`/`[` continue an unterminated line.
    expect(resultText(await program.execute("const arr = [[10, 20]]\nconst pick = arr\n[0]\npick"))).toBe("[ 10, 20 ]");
    expect(resultText(await program.execute("const typed: number[] = [1]\nconst again = typed\n[0]"))).toBe(null);
    expect(resultText(await program.execute("let t: number = 5\n;(t + 1)"))).toBe("6");
    // A trailing declaration is a statement: it is declared and there is no result.
    expect((await program.execute("function declaredLast() { return 5 }")).done).toMatchObject({ status: "ok", result: null });
    expect(resultText(await program.execute("declaredLast()"))).toBe("5");
  });

  it("points at the right column when the failing expression is the cell's last line", async () => {
    const error = errorOf(await program.execute("const empty: any = null\nconst n = 1; empty.field"));
    expect(error.ename).toBe("TypeError");
    expect(error.traceback.join("\n")).toMatch(/cell\[\d+\]\.ts:2:20/);
  });

  it("silent cells run but produce no result", async () => {
    const run = await program.execute("const silentValue = 7; silentValue", { silent: true });
    expect(run.done).toMatchObject({ status: "ok", result: null });
    expect(resultText(await program.execute("silentValue"))).toBe("7");
  });

  it("supports enums, namespaces and (standard) decorators", async () => {
    expect(resultText(await program.execute("enum Color { Red, Green = 'g' }\n[Color.Red, Color.Green]"))).toBe("[ 0, 'g' ]");
    const decorated = [
      "const seen: string[] = []",
      "function logged(value: any, context: ClassMethodDecoratorContext) {",
      "  seen.push(String(context.name))",
      "  return function (this: any, ...args: any[]) { return value.call(this, ...args) * 10 }",
      "}",
      "class Calc { @logged add(a: number, b: number) { return a + b } }",
      "[new Calc().add(1, 2), seen]",
    ].join("\n");
    expect(resultText(await program.execute(decorated))).toBe("[ 30, [ 'add' ] ]");
  });

  it("uses legacy decorators when the notebook's tsconfig.json enables experimentalDecorators", async () => {
    writeFileSync(join(program.cwd, "tsconfig.json"), '{\n  // comments are allowed here\n  "compilerOptions": { "experimentalDecorators": true }\n}\n');
    try {
      const legacy = [
        "const targets: string[] = []",
        "function mark(target: any, key: string, descriptor: PropertyDescriptor) { targets.push(`${typeof target}:${key}`) }",
        "class Legacy { @mark run() {} }",
        "targets",
      ].join("\n");
      expect(resultText(await program.execute(legacy))).toBe("[ 'object:run' ]");
      // The file is checked before every cell: turning the flag off applies to the next cell.
      writeFileSync(join(program.cwd, "tsconfig.json"), '{ "compilerOptions": { "experimentalDecorators": false } }\n');
      expect(resultText(await program.execute(legacy))).toBe("[ 'function:[object Object]' ]");
    } finally {
      rmSync(join(program.cwd, "tsconfig.json"));
    }
  });

  it("renders objects with Symbol.for('Jupyter.display') richly", async () => {
    const run = await program.execute(
      "({ [Symbol.for('Jupyter.display')]() { return { 'text/html': '<b>rich</b>' } } })",
    );
    expect(run.done.status).toBe("ok");
    if (run.done.status !== "ok") return;
    expect(run.done.result?.data["text/html"]).toBe("<b>rich</b>");
    expect(typeof run.done.result?.data["text/plain"]).toBe("string");
  });

  it("maps a runtime error to the TypeScript line and column, without tsnb frames", async () => {
    const code = [
      "type Point = { x: number; y: number }",
      "const origin: Point = { x: 0, y: 0 }",
      "function explode(p: Point): never { throw new RangeError(`bad ${p.x}`) }",
      "explode(origin)",
    ].join("\n");
    const error = errorOf(await program.execute(code));
    expect(error.ename).toBe("RangeError");
    expect(error.evalue).toBe("bad 0");
    const text = error.traceback.join("\n");
    expect(text).toMatch(/at explode \(cell\[\d+\]\.ts:3:43\)/);
    expect(text).toMatch(/cell\[\d+\]\.ts:4:1/);
    expect(text).not.toMatch(/dist\/|node:internal|node:inspector|program\.js/);
    // The excerpt shows the offending TypeScript line with a caret under the column.
    const lines = error.traceback;
    const at = lines.findIndex((l) => l.startsWith("3 |"));
    expect(lines[at]).toContain("throw new RangeError");
    expect(lines[at + 1]!.indexOf("^")).toBe(lines[at]!.indexOf("new RangeError"));
  });

  it("maps an older cell's frames after other cells' errors, through two cells", async () => {
    const first = await program.execute(
      ["type Msg = { text: string }", "function laterBoom(m: Msg): never { throw new TypeError(`late ${m.text}`) }", "0"].join("\n"),
    );
    expect(first.done.status).toBe("ok");
    // More failing TypeScript cells than the mapper keeps decoded, so laterBoom's map is decoded again.
    for (let i = 0; i < 6; i++) {
      const other = errorOf(await program.execute(`const n${i}: number = ${i}\nthrow new Error("other ${i}")`));
      expect(other.traceback.join("\n")).toMatch(/cell\[\d+\]\.ts:2:7/);
    }
    const error = errorOf(await program.execute(["const msg: Msg = { text: 'x' }", "", "laterBoom(msg)"].join("\n")));
    expect(error.evalue).toBe("late x");
    const text = error.traceback.join("\n");
    expect(text).toMatch(/at laterBoom \(cell\[\d+\]\.ts:2:43\)/);
    expect(text).toMatch(/cell\[\d+\]\.ts:3:1/);
  });

  it("keeps what it stores per TypeScript cell small: 150 cells of 28 KB", async () => {
    // Source maps used to stay decoded (an array per mapping) with a copy of the source inside: 300 such
    // cells held 145 MB of heap after a full GC; about 0.5 MB per cell.
    for (let c = 0; c < 150; c++) {
      const lines: string[] = [];
      for (let i = 0; i < 220; i++) {
        lines.push(`interface Row${c}_${i} { id: number; name: string }`);
        lines.push(`function f${c}_${i}(r: Row${c}_${i}): number { return r.id * ${i} + r.name.length }`);
      }
      lines.push(`f${c}_1({ id: 1, name: "x" })`);
      const run = await program.execute(lines.join("\n"));
      expect(run.done.status).toBe("ok");
    }
    expect(await program.heapUsedMbAfterGc()).toBeLessThan(50);
  }, 120_000);

  it("reports syntax errors with line, column and a caret", async () => {
    const error = errorOf(await program.execute("const ok = 1\nconst broken: number = ;\n"));
    expect(error.ename).toBe("SyntaxError");
    expect(error.evalue).toMatch(/cell\[\d+\]\.ts:2:24/);
    expect(error.traceback).toContain("2 | const broken: number = ;");
    expect(error.traceback).toContain("  |                        ^");
  });

  it("reports thrown non-Errors", async () => {
    expect(errorOf(await program.execute("throw null"))).toMatchObject({ ename: "Uncaught", evalue: "null" });
    expect(errorOf(await program.execute("throw 42"))).toMatchObject({ ename: "Uncaught", evalue: "42" });
    expect(errorOf(await program.execute("await Promise.reject('nope')"))).toMatchObject({ ename: "Uncaught", evalue: "'nope'" });
  });

  it("reports unhandled rejections and throwing callbacks as error_output of their cell, and survives", async () => {
    const run = await program.execute(
      "Promise.reject(new TypeError('late rejection'))\nsetTimeout(() => { throw new Error('from a timer') }, 1)\n'started'",
    );
    expect(resultText(run)).toBe("'started'");
    const rejection = await program.waitFor((op) => op.op === "error_output" && op.evalue === "late rejection", { what: "rejection report" });
    const thrown = await program.waitFor((op) => op.op === "error_output" && op.evalue === "from a timer", { what: "timer error report" });
    expect(rejection).toMatchObject({ cell: run.done.id, ename: "TypeError" });
    expect(thrown).toMatchObject({ cell: run.done.id, ename: "Error" });
    if (thrown.op === "error_output") expect(thrown.traceback.map(strip).join("\n")).toMatch(/cell\[\d+\]\.ts:2:/);
    expect(resultText(await program.execute("1 + 1"))).toBe("2");
  });

  it("rejects an execute with non-string code with a clear error and keeps going", async () => {
    const from = program.received.length;
    program.send({ op: "execute", id: "bad-code", code: 42 as unknown as string, silent: false, store_history: true, allow_stdin: false, execution_count: 99 });
    const done = await program.waitFor((op) => op.op === "execute_done" && op.id === "bad-code", { from });
    expect(done).toMatchObject({ status: "error", ename: "TypeError" });
    expect(resultText(await program.execute("'alive'"))).toBe("'alive'");
  });
});
