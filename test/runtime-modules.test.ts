// Imports in cells: node built-ins, CommonJS and ESM-only packages from the notebook's node_modules,
// relative files, require, JSON, and "tsnb" being the very instance behind the globals.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProgramHarness, resultText } from "./helpers/program-harness.js";

function writePackage(root: string, name: string, files: Record<string, string>): void {
  const dir = join(root, "node_modules", name);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
}

/** The notebook directory's packages and files, written before the program starts. */
function writeNotebookDir(dir: string): void {
  // CommonJS, with a named export the ESM loader cannot detect statically (assigned in a loop).
  writePackage(dir, "cjs-pkg", {
    "package.json": JSON.stringify({ name: "cjs-pkg", version: "1.0.0", main: "index.js" }),
    "index.js": "function greet(n) { return 'hello ' + n }\nmodule.exports = greet;\nfor (const k of ['shout']) module.exports[k] = (s) => s.toUpperCase();\nmodule.exports.version = 3;\n",
  });
  // ESM only: `exports` has only an "import" condition, so require() cannot load it.
  writePackage(dir, "esm-only", {
    "package.json": JSON.stringify({ name: "esm-only", version: "1.0.0", type: "module", exports: { ".": { import: "./index.js" } } }),
    "index.js": "export const triple = (n) => n * 3;\nexport default { kind: 'esm-default' };\n",
  });
  // CommonJS compiled from an ES module (tsc/babel style): its real default is under .default.
  writePackage(dir, "transpiled", {
    "package.json": JSON.stringify({ name: "transpiled", version: "1.0.0", main: "index.js" }),
    "index.js": "Object.defineProperty(exports, '__esModule', { value: true });\nexports.default = function main() { return 'transpiled default' };\nexports.helper = 7;\n",
  });
  writeFileSync(join(dir, "local.mjs"), "export const fromLocal = 'local value';\n");
  writeFileSync(join(dir, "data.json"), JSON.stringify({ answer: 42 }));
  writeFileSync(join(dir, "util.ts"), "export enum Level { Low = 1, High = 5 }\nexport function double(n: number): number { return n * 2 }\n");
  writeFileSync(join(dir, "shows.ts"), "import { display } from 'tsnb'\nexport const sameDisplay = (d: unknown) => d === display\n");
  writeFileSync(join(dir, "uses-util.ts"), "import { double } from './util.js'\nexport const quadruple = (n: number): number => double(double(n))\n");
}

describe("runtime: modules", () => {
  let program: ProgramHarness;

  beforeAll(async () => {
    program = await ProgramHarness.start({ prepare: writeNotebookDir });
  });
  afterAll(() => program?.close());

  it("imports node built-ins with and without the node: prefix", async () => {
    const run = await program.execute("import { join } from 'node:path'\nimport * as os from 'os'\nimport fs from 'fs'\n[join('a', 'b'), typeof os.cpus, typeof fs.readFileSync]");
    expect(resultText(run)).toBe("[ 'a/b', 'function', 'function' ]");
    // Imported bindings stay visible in later cells.
    expect(resultText(await program.execute("join('x', 'y')"))).toBe("'x/y'");
  });

  it("imports a CommonJS package: default is module.exports, named falls back to its properties", async () => {
    const run = await program.execute("import greet, { shout, version } from 'cjs-pkg'\n[greet('ts'), shout('hi'), version]");
    expect(resultText(run)).toBe("[ 'hello ts', 'HI', 3 ]");
    expect(resultText(await program.execute("import * as ns from 'cjs-pkg'\ntypeof ns.default"))).toBe("'function'");
  });

  it("imports an ESM-only package, statically and with import()", async () => {
    const run = await program.execute("import def, { triple } from 'esm-only'\n[triple(2), def.kind]");
    expect(resultText(run)).toBe("[ 6, 'esm-default' ]");
    const dynamic = await program.execute("const m = await import('esm-only')\nm.triple(5)");
    expect(resultText(dynamic)).toBe("15");
  });

  it("unwraps the default export of a transpiled CommonJS module", async () => {
    expect(resultText(await program.execute("import main, { helper } from 'transpiled'\n[main(), helper]"))).toBe("[ 'transpiled default', 7 ]");
  });

  it("imports relative files and JSON from the notebook directory", async () => {
    expect(resultText(await program.execute("import { fromLocal } from './local.mjs'\nfromLocal"))).toBe("'local value'");
    expect(resultText(await program.execute("import data from './data.json' with { type: 'json' }\ndata.answer"))).toBe("42");
  });

  it("imports TypeScript files, also through .js-suffixed and extensionless specifiers", async () => {
    expect(resultText(await program.execute("import { double, Level } from './util.ts'\n[double(21), Level.High]"))).toBe("[ 42, 5 ]");
    expect(resultText(await program.execute("import { quadruple } from './uses-util.js'\nquadruple(3)"))).toBe("12");
    expect(resultText(await program.execute("(await import('./util')).double(4)"))).toBe("8");
    // A file next to the notebook that imports "tsnb" gets the runtime's instance too.
    expect(resultText(await program.execute("import { sameDisplay } from './shows.ts'\nsameDisplay(display)"))).toBe("true");
  });

  it("provides require resolved from the notebook directory", async () => {
    expect(resultText(await program.execute("const g = require('cjs-pkg');\n[g('r'), require('node:path').sep]"))).toBe("[ 'hello r', '/' ]");
    const failed = await program.execute("require('esm-only')");
    expect(failed.done.status).toBe("error");
  });

  it("reports a missing module clearly", async () => {
    const run = await program.execute("import nothing from 'no-such-package'");
    expect(run.done).toMatchObject({ status: "error", ename: "ModuleResolutionError" });
    if (run.done.status === "error") expect(run.done.evalue).toContain('Cannot find module "no-such-package"');
  });

  it("import from 'tsnb' gives the same instances as the globals", async () => {
    const run = await program.execute(
      "import tsnbDefault, { display as d, input as i, clearOutput as c } from 'tsnb'\n[d === display, i === input, c === clearOutput, tsnbDefault.display === display]",
    );
    expect(resultText(run)).toBe("[ true, true, true, true ]");
    expect(resultText(await program.execute("(await import('tsnb')).display === display"))).toBe("true");
  });

  it("supports import.meta and keeps export keywords harmless", async () => {
    const run = await program.execute("export const exported = 1\nexport function exportedFn() { return 2 }\n[exported, exportedFn(), import.meta.dirname]");
    expect(resultText(run)).toBe(`[ 1, 2, '${program.cwd}' ]`);
  });
});
