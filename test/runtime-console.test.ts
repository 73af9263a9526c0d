// The console's primitive fast path (runtime/console.ts) must print exactly what Node's own formatting prints,
// and the real program must show console output unchanged.
import { Console } from "node:console";
import { Writable } from "node:stream";
import { formatWithOptions } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPrimitives, installFastConsoleFormat } from "../runtime/console.js";
import { ProgramHarness, resultText } from "./helpers/program-harness.js";

const CASES: unknown[][] = [
  ["line", 1],
  [1, 2, 3],
  [-0, 0, NaN, Infinity, -Infinity, 1.5e300, 2 ** -1074],
  [10n, -3n, true, false, null, undefined],
  ["%s is %d", "x", 4],
  ["100%"],
  ["100%", "sure"],
  ["%%", 1],
  [""],
  [],
  ["a\nb", "tab\t", "quote'\""],
  [{ a: 1 }, [1, 2]],
  [Symbol("s")],
  ["x", new Error("boom")],
  [() => 1],
];

function capture(options: { colorMode: boolean } = { colorMode: false }): { console: Console; text: () => string } {
  let text = "";
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  return { console: new Console({ stdout: sink, stderr: sink, colorMode: options.colorMode }), text: () => text };
}

/** Every case through log, then a group and the other methods. */
function logSample(c: Console): void {
  for (const args of CASES) c.log(...args);
  c.group("group");
  c.log("inside", 1, "a\nb");
  c.error("err", 2);
  c.groupEnd();
  c.warn("warn", -0);
  c.info("info", 3n);
  c.debug("debug", 4);
}

describe("console fast path", () => {
  it("formats primitive arguments exactly as util.formatWithOptions, and declines everything else", () => {
    for (const args of CASES) {
      const fast = formatPrimitives(args);
      if (fast !== null) expect(fast, JSON.stringify(String(args))).toBe(formatWithOptions({}, ...args));
    }
    expect(formatPrimitives(["%s is %d", "x", 4])).toBe(null);
    expect(formatPrimitives([{ a: 1 }])).toBe(null);
    expect(formatPrimitives([Symbol("s")])).toBe(null);
    expect(formatPrimitives(["line", 7])).toBe("line 7");
  });

  it("leaves a console's output byte for byte the same, including groups, and restores it on dispose", async () => {
    const plain = capture();
    logSample(plain.console);
    const fast = capture();
    const installed = installFastConsoleFormat(fast.console);
    expect(installed).not.toBe(null);
    logSample(fast.console);
    await new Promise((resolve) => setImmediate(resolve));
    expect(fast.text()).toBe(plain.text());
    expect(fast.text()).toContain("  inside 1 a\n  b\n");

    installed!.dispose();
    installed!.dispose();
    const sym = Object.getOwnPropertySymbols(fast.console).filter((s) => s.description?.startsWith("kFormatFor"));
    expect(sym).toEqual([]);
  });

  it("writes straight to a trusted stream with the same bytes as Node, and yields to Node when the write changes", async () => {
    const plain = capture();
    logSample(plain.console);
    const fast = capture();
    const stream = (fast.console as unknown as { _stdout: Writable })._stdout;
    // Node's own path passes an error callback with every write; the direct path passes the text alone.
    let direct = 0;
    const trusted = function (this: Writable, chunk: string, callback?: unknown) {
      if (callback === undefined) direct++;
      return (Writable.prototype.write as (chunk: string) => boolean).call(this, chunk);
    };
    stream.write = trusted as typeof stream.write;
    const originalLog = fast.console.log;
    const installed = installFastConsoleFormat(fast.console, { directWrites: { stdout: trusted, stderr: trusted } });
    expect(installed).not.toBe(null);
    logSample(fast.console);
    await new Promise((resolve) => setImmediate(resolve));
    expect(fast.text()).toBe(plain.text());
    expect(direct).toBeGreaterThanOrEqual(10);

    // A write the fast path does not know (user code replaced it) gets Node's own path and its error handling.
    stream.write = (() => {
      throw new Error("broken stream");
    }) as typeof stream.write;
    expect(() => fast.console.log("line", 1)).not.toThrow();

    installed!.dispose();
    installed!.dispose();
    expect(fast.console.log).toBe(originalLog);
  });

  it("keeps colored consoles on Node's formatter (numbers are styled there)", () => {
    const colored = capture({ colorMode: true });
    installFastConsoleFormat(colored.console)!;
    colored.console.log("n", 5);
    expect(colored.text()).toBe(formatWithOptions({ colors: true }, "n", 5) + "\n");
    expect(colored.text()).toContain("\u001b[");
  });
});

describe("console in the real program", () => {
  let program: ProgramHarness;

  beforeAll(async () => {
    program = await ProgramHarness.start();
  });
  afterAll(() => program?.close());

  it("prints primitives, format strings, objects and groups as Node does", async () => {
    const run = await program.execute(
      [
        'console.log("line", 1, -0, 2n, true, null, undefined)',
        'console.log("%s=%d", "x", 5)',
        "console.log({ a: [1, 2] })",
        'console.group("g")',
        'console.log("in", 1)',
        "console.groupEnd()",
        'console.info("info", 3)',
        'console.error("oops", 4)',
        "for (let i = 0; i < 3; i++) console.log('line', i)",
      ].join("\n"),
    );
    expect(run.done.status).toBe("ok");
    expect(run.stdout).toBe("line 1 -0 2n true null undefined\nx=5\n{ a: [ 1, 2 ] }\ng\n  in 1\ninfo 3\nline 0\nline 1\nline 2\n");
    expect(run.stderr).toBe("oops 4\n");
  });

  it("sends console output through a process.stdout.write that a cell installed", async () => {
    const run = await program.execute(
      [
        "const seen: string[] = []",
        "const original = process.stdout.write",
        "process.stdout.write = ((chunk: string) => (seen.push(chunk), true)) as typeof process.stdout.write",
        'console.log("hidden", 1)',
        "process.stdout.write = original",
        'console.log("shown", 2)',
        "seen.join('|')",
      ].join("\n"),
    );
    expect(run.done.status).toBe("ok");
    expect(run.stdout).toBe("shown 2\n");
    expect(resultText(run)).toBe("'hidden 1\\n'");
  });

  it("does not keep objects passed to console.log alive (V8's inspector console would hold ~1000 of them)", async () => {
    // 150 arrays of 100,000 numbers (~0.8 MB each, ~120 MB together); util.inspect prints 100 items of each.
    const run = await program.execute("for (let i = 0; i < 150; i++) console.log(new Array(100_000).fill(i))", { timeoutMs: 30_000 });
    expect(run.done.status).toBe("ok");
    expect(run.stdout.split("\n").filter((l) => l.startsWith("[")).length).toBe(150);
    expect(await program.heapUsedMbAfterGc()).toBeLessThan(40);
  });

  it("does not keep objects logged through node:console's own object alive either (libraries import it)", async () => {
    // Five arrays of 1,000,000 small objects (~40 MB each): before, V8's console storage held all 200 MB.
    const run = await program.execute(
      [
        "const nodeConsole = (await import('node:console')).default",
        "for (let i = 0; i < 5; i++) nodeConsole.log(new Array(1_000_000).fill(0).map((_, j) => ({ j })))",
        "nodeConsole.log('plain', 7)",
      ].join("\n"),
      { timeoutMs: 60_000 },
    );
    expect(run.done.status).toBe("ok");
    expect(run.stdout.split("\n").filter((l) => l.startsWith("[")).length).toBe(5);
    expect(run.stdout).toContain("plain 7\n");
    expect(await program.heapUsedMbAfterGc()).toBeLessThan(60);
  });
});
