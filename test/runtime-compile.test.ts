// Fast unit tests of the cell compiler (no program process): magic translation, module-syntax rewriting
// that keeps lines in place, last-expression preservation and syntax error formatting.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CellCompiler, compileCell, HELPERS, rewriteModuleSyntax, translateMagics } from "../runtime/evaluator/compile.js";

const strip = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, "");

describe("runtime compiler", () => {
  it("translates magic and shell lines in place, leaving TypeScript alone", () => {
    const out = translateMagics("%cd /tmp\nconst a = 1\n  !ls -l\n!!a\n!== 1\nx !== y");
    const lines = out.split("\n");
    expect(lines).toHaveLength(6);
    expect(lines[0]).toBe(`await ${HELPERS.magic}("cd", "/tmp");`);
    expect(lines[1]).toBe("const a = 1");
    expect(lines[2]).toBe(`  await ${HELPERS.shell}("ls -l");`);
    expect(lines.slice(3)).toEqual(["!!a", "!== 1", "x !== y"]);
  });

  it("rewrites imports into awaited runtime imports on the same lines", () => {
    const code = 'import a, { b as c, "d" as e } from "pkg";\nimport * as ns from "./x.js";\nimport "side";\nconst m = await import("dyn");\nimport.meta.url;\n';
    const result = rewriteModuleSyntax(code);
    if (result.type !== "ok") throw new Error(result.message);
    const lines = result.code.split("\n");
    expect(lines).toHaveLength(code.split("\n").length);
    expect(lines[0]).toBe(`const { default: a, "b": c, "d": e } = ${HELPERS.named}(await ${HELPERS.import}("pkg"), ["default","b","d"]);`);
    expect(lines[1]).toBe(`const ns = await ${HELPERS.import}("./x.js");`);
    expect(lines[2]).toBe(`await ${HELPERS.import}("side");`);
    expect(lines[3]).toBe(`const m = await ${HELPERS.import}("dyn");`);
    expect(lines[4]).toBe(`${HELPERS.meta}.url;`);
  });

  it("keeps line numbers when a multi-line import is rewritten and strips export keywords", () => {
    const code = 'import {\n  a,\n  b,\n} from "pkg";\nexport const after = 1;\nexport { after as other };\nexport default function named() {}\n';
    const result = rewriteModuleSyntax(code);
    if (result.type !== "ok") throw new Error(result.message);
    const lines = result.code.split("\n");
    expect(lines).toHaveLength(code.split("\n").length);
    expect(lines[4]).toBe("       const after = 1;");
    expect(lines[5]!.trim()).toBe("");
    expect(lines[6]!.trim()).toBe("function named() {}");
  });

  it("wraps the last expression so pure values survive esbuild, and only expressions", async () => {
    const negative = await compileCell({ code: "const a: number = 1;\n-1", fileName: "c.ts", experimentalDecorators: false });
    expect(negative.type === "ok" && negative.js).toContain(`${HELPERS.keep}(`);
    const declaration = await compileCell({ code: "function f() {}", fileName: "c.ts", experimentalDecorators: false });
    expect(declaration.type === "ok" && declaration.js).not.toContain(HELPERS.keep);
    const loop = await compileCell({ code: "for (const x of [1]) {\n  x\n}", fileName: "c.ts", experimentalDecorators: false });
    expect(loop.type === "ok" && loop.js).not.toContain(HELPERS.keep);
  });

  it("asks for REPL mode only for top-level let/const/class and top-level await (imports, magics included)", async () => {
    const mode = async (code: string) => {
      const compiled = await compileCell({ code, fileName: "m.ts", experimentalDecorators: false });
      if (compiled.type !== "ok") throw new Error(`${code}: ${compiled.evalue}`);
      return compiled.replMode;
    };
    const repl = [
      "const a = 1",
      "let b = 2; b",
      "class C {}",
      "const t: number = 1",
      "await 1",
      "for await (const x of []) {}",
      "(class { [await 1]() {} })",
      'import fs from "node:fs"',
      'export * from "node:fs"',
      "export const e = 1",
      "export default class D {}",
      "%cd .",
      "!true",
    ];
    for (const code of repl) expect(await mode(code), code).toBe(true);
    const script = [
      "1+1",
      "var v = 1",
      "function f() { const inner = 1; return inner }",
      "async function g() { await 1 }",
      "(async () => { const z = await 1; return z })()",
      "{ let blockScoped = 1 }",
      "for (let i = 0; i < 2; i++) {}",
      "enum E { A }",
      'import("node:fs")',
    ];
    for (const code of script) expect(await mode(code), code).toBe(false);
    // The same answer for a cell compiled earlier (the compile cache keeps it).
    const compiler = new CellCompiler();
    for (const name of ["a.ts", "b.ts"]) {
      const compiled = await compiler.compile({ code: "let cached = 1", fileName: name, experimentalDecorators: false });
      expect(compiled.type === "ok" && compiled.replMode).toBe(true);
    }
  });

  it("evaluates plain JavaScript as written, and sends anything TypeScript-like through esbuild", async () => {
    const plain = await compileCell({ code: "const a = [1, 2].map((x) => x * 2)\na", fileName: "p.ts", experimentalDecorators: false });
    expect(plain.type === "ok" && plain.map).toBe(null);
    expect(plain.type === "ok" && plain.js).toBe("const a = [1, 2].map((x) => x * 2)\na\n//# sourceURL=p.ts");
    // `f<number>(1)` is valid JavaScript (two comparisons) but a generic call in TypeScript.
    const generic = await compileCell({ code: "const f = <T>(x: T) => x\nf<number>(1)", fileName: "g.ts", experimentalDecorators: false });
    expect(generic.type === "ok" && generic.map).not.toBe(null);
    // Both an opening `<` and a closing `>`-like token could be type arguments: esbuild decides.
    for (const code of ["f<number>(1)", "f<Array<number>>(1)", "f<A, B>(x)", "a < b && c > d", "f<<T>() => T>(g)", "x << 1 >= y"]) {
      const ambiguous = await compileCell({ code, fileName: "a.ts", experimentalDecorators: false });
      expect(ambiguous.type === "ok" && ambiguous.map, code).not.toBe(null);
    }
    // A lone `<` (the usual loop) or only `>` cannot be a generic call: no esbuild.
    for (const code of ["for (let i = 0; i < 10; i++) console.log(i)", "1 < 2", "a >= b", "'<' + x + '>'", "x >>> 1"]) {
      const comparison = await compileCell({ code, fileName: "c.ts", experimentalDecorators: false });
      expect(comparison.type === "ok" && comparison.map, code).toBe(null);
    }
  });

  it("formats syntax errors with position, source line and caret", async () => {
    const result = await compileCell({ code: "let ok = 1\nlet bad = (;\n", fileName: "cell[7].ts", experimentalDecorators: false });
    expect(result.type).toBe("syntax_error");
    if (result.type !== "syntax_error") return;
    expect(result.ename).toBe("SyntaxError");
    expect(result.evalue).toContain("cell[7].ts:2:12");
    expect(result.traceback.map(strip)).toEqual([expect.stringContaining("SyntaxError"), "2 | let bad = (;", "  |            ^"]);
  });

  it("serves re-runs from the cache with the new file name", async () => {
    const compiler = new CellCompiler({ capacity: 2 });
    const first = await compiler.compile({ code: "1 + 1", fileName: "cell[1].ts", experimentalDecorators: false });
    const again = await compiler.compile({ code: "1 + 1", fileName: "cell[2].ts", experimentalDecorators: false });
    if (first.type !== "ok" || again.type !== "ok") throw new Error("compile failed");
    expect(again.js).toBe(first.js.replace("cell[1].ts", "cell[2].ts"));
    expect(again.fileName).toBe("cell[2].ts");
  });

  it("stops esbuild's service process after the idle time and starts it again for the next TypeScript cell", async () => {
    const compiler = new CellCompiler({ esbuildIdleMs: 200 });
    try {
      const first = await compiler.compile({ code: "const idle1: number = 1", fileName: "i1.ts", experimentalDecorators: false });
      expect(first.type === "ok" && first.map).not.toBe(null);
      expect(esbuildServices()).toHaveLength(1);
      await waitFor(() => esbuildServices().length === 0, 10_000, "esbuild's service to stop");
      const second = await compiler.compile({ code: "const idle2: number = 2", fileName: "i2.ts", experimentalDecorators: false });
      expect(second.type === "ok" && second.js).toContain("const idle2 = 2");
      expect(esbuildServices()).toHaveLength(1);
    } finally {
      compiler.dispose();
    }
    await waitFor(() => esbuildServices().length === 0, 10_000, "dispose to stop esbuild's service");
  });
});

/** Pids of esbuild service processes that are children of this test process. */
function esbuildServices(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    let cmdline: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue; // exited while we listed it
    }
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // A zombie (state Z) has exited; its parent has not reaped it yet.
    if (Number(fields[1]) === process.pid && fields[0] !== "Z" && cmdline.includes("esbuild") && cmdline.includes("--service")) found.push(Number(entry));
  }
  return found;
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
