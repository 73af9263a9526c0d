// complete / inspect answered by the live runtime, magics and shell lines, and a clean exit.
import { mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ProgramToKernel } from "../protocol/program.js";
import { spawn } from "node:child_process";
import { PROGRAM, ProgramHarness, resultText } from "./helpers/program-harness.js";

type Op<K extends ProgramToKernel["op"]> = Extract<ProgramToKernel, { op: K }>;

describe("runtime: complete, inspect, magics", () => {
  let program: ProgramHarness;
  let nextId = 0;

  beforeAll(async () => {
    program = await ProgramHarness.start({ prepare: (dir) => mkdirSync(join(dir, "sub")) });
    await program.execute(
      "const inventory = { apples: 3, apricots: 5, bananas: 1 }\nlet greeting = 'hi'\nfunction addNumbers(first: number, second: number) { return first + second }\nclass Basket { constructor(public size: number) {} }",
    );
  });
  afterAll(() => program?.close());

  async function complete(code: string, cursor = code.length): Promise<Op<"complete_reply">> {
    const id = `c${++nextId}`;
    const from = program.received.length;
    program.send({ op: "complete", id, code, cursor_pos: cursor });
    return program.waitFor<Op<"complete_reply">>((op) => op.op === "complete_reply" && op.id === id, { from });
  }

  async function inspect(code: string, cursor = code.length, detail: 0 | 1 = 0): Promise<Op<"inspect_reply">> {
    const id = `i${++nextId}`;
    const from = program.received.length;
    program.send({ op: "inspect", id, code, cursor_pos: cursor, detail_level: detail });
    return program.waitFor<Op<"inspect_reply">>((op) => op.op === "inspect_reply" && op.id === id, { from });
  }

  it("completes names declared in earlier cells and globals", async () => {
    const reply = await complete("const x = inv");
    expect(reply.matches).toContain("inventory");
    expect(reply).toMatchObject({ cursor_start: 10, cursor_end: 13 });
    expect((await complete("gree")).matches).toEqual(["greeting"]);
    expect((await complete("addN")).matches).toContain("addNumbers");
    expect((await complete("Mat")).matches).toContain("Math");
    expect((await complete("disp")).matches).toContain("display");
  });

  it("completes properties of objects, including inherited ones", async () => {
    const reply = await complete("inventory.ap");
    expect(reply.matches).toEqual(["apples", "apricots"]);
    expect(reply).toMatchObject({ cursor_start: 10, cursor_end: 12 });
    expect((await complete("greeting.toUp")).matches).toEqual(["toUpperCase"]);
    expect((await complete("Math.fl")).matches).toEqual(["floor"]);
    // The cursor may sit in the middle of the code.
    expect((await complete("inventory.ban + 1", "inventory.ban".length)).matches).toEqual(["bananas"]);
  });

  it("never runs code with side effects to complete", async () => {
    await program.execute("let calls = 0\nfunction sideEffect() { calls++; return { secret: 1 } }");
    const reply = await complete("sideEffect().sec");
    expect(reply.matches).toEqual([]);
    expect(resultText(await program.execute("calls"))).toBe("0");
  });

  it("inspects functions (signature), values and unknown names", async () => {
    const fn = await inspect("addNumbers");
    expect(fn.found).toBe(true);
    expect(fn.data["text/plain"]).toContain("addNumbers(first, second)");
    const inCall = await inspect("addNumbers(1, ", "addNumbers(1, ".length);
    expect(inCall.data["text/plain"]).toContain("addNumbers(first, second)");
    const value = await inspect("inventory");
    expect(value.data["text/plain"]).toContain("apples: 3");
    const cls = await inspect("Basket", 3, 1);
    expect(cls.data["text/plain"]).toContain("class Basket");
    expect((await inspect("doesNotExist")).found).toBe(false);
  });

  it("survives malformed and unknown ops from the kernel, answering what it can", async () => {
    const from = program.received.length;
    program.send({ op: "bogus" } as never);
    program.send({ op: "complete", id: "no-code", cursor_pos: 3 } as never);
    program.send({ op: "inspect", id: "no-cursor", code: "x" } as never);
    program.send({ op: "input_reply", id: "never-asked", status: "ok", value: "stray" });
    program.send({ op: "execute", code: "1" } as never);
    expect(await program.waitFor((op) => op.op === "complete_reply" && op.id === "no-code", { from })).toMatchObject({ matches: [] });
    expect(await program.waitFor((op) => op.op === "inspect_reply" && op.id === "no-cursor", { from })).toMatchObject({ found: false });
    expect(resultText(await program.execute("'still fine'"))).toBe("'still fine'");
    expect(program.rawStderr).toContain('unknown op "bogus" ignored');
  });

  it("%cd changes directory (imports and require follow), %env lists and sets, %help explains", async () => {
    const cd = await program.execute("%cd sub");
    expect(cd.stdout).toBe(`${join(program.cwd, "sub")}\n`);
    expect(resultText(await program.execute("process.cwd()"))).toBe(`'${join(program.cwd, "sub")}'`);
    await program.execute("%cd ..");
    const set = await program.execute("%env TSNB_TEST_VAR=some value");
    expect(set.stdout).toContain("TSNB_TEST_VAR=some value");
    expect(resultText(await program.execute("process.env.TSNB_TEST_VAR"))).toBe("'some value'");
    expect((await program.execute("%env")).stdout).toContain("TSNB_TEST_VAR=some value\n");
    expect((await program.execute("%env TSNB_TEST_VAR")).stdout).toBe("some value\n");
    const help = await program.execute("%help");
    expect(help.stdout).toContain("%cd");
    expect(help.stdout).toContain("display.html");
    const unknown = await program.execute("%nope");
    expect(unknown.done).toMatchObject({ status: "error", ename: "MagicError" });
  });

  it("runs !commands with live output, the cell's env and cwd, and reports failing exit codes", async () => {
    const run = await program.execute("!echo hello from $TSNB_TEST_VAR; pwd\nconst afterShell = 1\n!echo second >&2; exit 3\nafterShell + 1");
    expect(run.stdout).toBe(`hello from some value\n${program.cwd}\n`);
    expect(run.stderr).toBe("second\n[exit code 3]\n");
    expect(resultText(run)).toBe("2");
    // Lines that merely start with "!" as TypeScript are not shell commands.
    expect(resultText(await program.execute("!!afterShell"))).toBe("true");
  });

  it("streams shell output line by line while the command runs", async () => {
    const started = program.startExecute("!echo first; while [ ! -e go-on ]; do sleep 0.01; done; echo second");
    await program.waitFor((op) => op.op === "stream" && op.text === "first\n", { from: started.from, what: "first line" });
    // The command is still waiting for the file: the line arrived live.
    expect(program.received.slice(started.from).some((op) => op.op === "execute_done")).toBe(false);
    writeFileSync(join(program.cwd, "go-on"), "");
    const run = await program.finish(started);
    expect(run.stdout).toBe("first\nsecond\n");
  });
});

describe("runtime: exit", () => {
  let program: ProgramHarness | null = null;

  afterEach(async () => {
    await program?.close();
    program = null;
  });

  const debuggerNoise = /Waiting for the debugger|Debugger/;

  it("exits cleanly on a shutdown op, without debugger noise", async () => {
    program = await ProgramHarness.start();
    await program.execute("console.log('x')");
    program.send({ op: "shutdown" });
    expect(await program.waitExit(5_000)).toMatchObject({ code: 0 });
    expect(program.rawStderr).not.toMatch(debuggerNoise);
  });

  it("flushes output and exits without debugger noise when a cell calls process.exit", async () => {
    program = await ProgramHarness.start();
    const started = program.startExecute("console.log('last words')\nprocess.exit(3)");
    expect(await program.waitExit(5_000)).toMatchObject({ code: 3 });
    expect(program.received.some((op) => op.op === "stream" && op.text === "last words\n" && op.cell === started.id)).toBe(true);
    expect(program.rawStderr).not.toMatch(debuggerNoise);
  });

  it("survives SIGINT (Ctrl+C reaching the process group) with its state", async () => {
    program = await ProgramHarness.start();
    await program.execute("const survivor = 'kept'");
    program.child.kill("SIGINT");
    expect(resultText(await program.execute("survivor"))).toBe("'kept'");
    expect(program.exit).toBe(null);
  });

  it("explains itself and exits 2 when started without the kernel's channels", async () => {
    const child = spawn(process.execPath, [PROGRAM], { cwd: tmpdir(), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (t: string) => (stderr += t));
    let timer: NodeJS.Timeout | undefined;
    try {
      const code = await Promise.race([
        new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c))),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("program did not exit within 5 s")), 5_000))),
      ]);
      expect(code).toBe(2);
      expect(stderr).toContain("its channel in TSNB_PIPE/TSNB_PIPE_BACK and interrupts on fd 4 (TSNB_PIPE, TSNB_PIPE_BACK, TSNB_PIPE_TOKEN not set)");
    } finally {
      clearTimeout(timer);
      child.kill("SIGKILL");
    }
  });

  it("exits when the kernel closes the channel", async () => {
    program = await ProgramHarness.start();
    program.closeChannel();
    expect((await program.waitExit(5_000)).code).toBe(0);
  });
});
