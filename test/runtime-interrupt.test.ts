// Interrupts through the interrupt channel (fd 4), exactly as the kernel sends them, and the kernel's forcer
// for busy code (the program's inspector port).
import { get } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withoutInspectorNotices } from "../kernel/execution/interrupt-forcer.js";
import type { ProgramToKernel } from "../protocol/program.js";
import { ProgramHarness, resultText, type CellRun } from "./helpers/program-harness.js";

type Op<K extends ProgramToKernel["op"]> = Extract<ProgramToKernel, { op: K }>;

describe("runtime: interrupt", () => {
  let program: ProgramHarness;

  beforeAll(async () => {
    program = await ProgramHarness.start();
    expect(resultText(await program.execute("const kept = { value: 'still here' }\nlet counter = 0\n'ready'"))).toBe("'ready'");
  });
  afterAll(() => program?.close());

  /** Starts `code`, waits until it reports it is running, interrupts, and returns the run and the latency. */
  async function interruptWhileRunning(code: string): Promise<{ run: CellRun; ms: number }> {
    // The marker is larger than the output batch, so it is written at once, before `code` can block.
    const started = program.startExecute(`console.log('running' + ' '.repeat(70_000))\n${code}`);
    await program.waitFor((op) => op.op === "stream" && op.text.startsWith("running"), { from: started.from, what: "running marker" });
    const t0 = performance.now();
    program.interrupt();
    const run = await program.finish(started, 5_000);
    return { run, ms: performance.now() - t0 };
  }

  async function expectStateIntact(): Promise<void> {
    expect(resultText(await program.execute("kept.value"))).toBe("'still here'");
  }

  it("interrupts while (true) {} within 1 s and keeps earlier variables", async () => {
    const { run, ms } = await interruptWhileRunning("while (true) { counter++ }");
    expect(run.done).toMatchObject({ status: "error", ename: "Interrupted" });
    expect(ms).toBeLessThan(1000);
    await expectStateIntact();
    expect(resultText(await program.execute("counter > 0"))).toBe("true");
  });

  it("interrupts an await that never settles within 1 s", async () => {
    const { run, ms } = await interruptWhileRunning("await new Promise(() => {})");
    expect(run.done).toMatchObject({ status: "error", ename: "Interrupted" });
    expect(ms).toBeLessThan(1000);
    await expectStateIntact();
  });

  it("interrupts a busy loop after an await (code running in a microtask)", async () => {
    const { run, ms } = await interruptWhileRunning("await Promise.resolve()\nconsole.log('spinning' + ' '.repeat(70_000))\nwhile (true) {}");
    expect(run.done).toMatchObject({ status: "error", ename: "Interrupted" });
    expect(ms).toBeLessThan(1000);
    await expectStateIntact();
  });

  it("an interrupted input() stops the rest of the cell", async () => {
    const started = program.startExecute(
      "await input('go on?')\nconsole.log('after the await')\ncounter = -1000",
      { allowStdin: true },
    );
    await program.waitFor((op) => op.op === "input_request" && op.prompt === "go on?", { from: started.from });
    program.interrupt();
    expect((await program.finish(started, 5_000)).done).toMatchObject({ status: "error", ename: "Interrupted" });
    // The rejected input() resumes the cell's code; it must not run. A later cell proves it did not.
    const check = await program.execute("await new Promise((r) => setTimeout(r, 20))\ncounter >= 0");
    expect(resultText(check)).toBe("true");
    expect(program.received.some((op) => op.op === "stream" && op.text.includes("after the await"))).toBe(false);
  });

  it("interrupts a busy callback scheduled by a cell (a timer), and the program survives", async () => {
    const started = program.startExecute("setTimeout(() => { console.log('callback spinning' + ' '.repeat(70_000)); for (;;) {} }, 0)\n'scheduled'");
    expect(resultText(await program.finish(started))).toBe("'scheduled'");
    await program.waitFor((op) => op.op === "stream" && op.text.startsWith("callback spinning"), { from: started.from, what: "callback marker" });
    program.interrupt();
    // No cell is running, so nothing reports "Interrupted"; the proof is that the program answers again.
    expect(resultText(await program.execute("'responsive again'", { timeoutMs: 5_000 }))).toBe("'responsive again'");
    await expectStateIntact();
  });

  it("interrupts a cell stuck printing into a full pipe without corrupting the channel", async () => {
    const { run } = await interruptWhileRunning("for (;;) console.log('x'.repeat(10_000))");
    expect(run.done).toMatchObject({ status: "error", ename: "Interrupted" });
    expect(resultText(await program.execute("'frames intact'"))).toBe("'frames intact'");
  });

  it("interrupts a pending input() and a running shell command", async () => {
    const started = program.startExecute("await input('never answered')", { allowStdin: true });
    await program.waitFor<Op<"input_request">>((op) => op.op === "input_request" && op.prompt === "never answered", { from: started.from });
    program.interrupt();
    expect((await program.finish(started, 5_000)).done).toMatchObject({ status: "error", ename: "Interrupted" });

    const { run, ms } = await interruptWhileRunning("!sleep 30");
    expect(run.done).toMatchObject({ status: "error", ename: "Interrupted" });
    expect(ms).toBeLessThan(1000);
  });

  it("its inspector port is loopback-only and unlisted: the secret path is the key, /json/list answers 404", async () => {
    // A forced interrupt first: Node prints the URL again when the kernel's connection ends.
    await interruptWhileRunning("while (true) {}");
    const hello = program.received.find((op): op is Op<"hello"> => op.op === "hello");
    const url = new URL(String(hello?.inspector));
    expect(url.protocol).toBe("ws:");
    expect(url.hostname).toBe("127.0.0.1");
    expect(url.pathname).toMatch(/^\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const status = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const request = get({ host: url.hostname, port: Number(url.port), path, timeout: 5_000 }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        request.on("timeout", () => request.destroy(new Error(`GET ${path} timed out`)));
        request.on("error", reject);
      });
    expect(await status("/json/list")).toBe(404);
    expect(await status("/json")).toBe(404);
    // Node prints the URL on the program's stderr; the kernel (and this harness, the same way) drops it.
    expect(program.rawStderr).not.toContain(url.pathname);
  });

  it("drops exactly Node's inspector notices from the program's stderr", () => {
    const notices =
      "Debugger listening on ws://127.0.0.1:40957/ffd4f9a6-7c36-4cb3-ba9a-53b9829c2a50\nFor help, see: https://nodejs.org/en/docs/inspector\n";
    const ending = notices.replace("listening", "ending");
    expect(withoutInspectorNotices(`${notices}user text\nDebugger attached.\nmore\n${ending}`)).toBe("user text\nmore\n");
    expect(withoutInspectorNotices("I said: Debugger attached.\n")).toBe("I said: Debugger attached.\n");
    expect(withoutInspectorNotices(`no newline yet${ending}`)).toBe("no newline yet");
  });

  it("an interrupt while idle harms nothing: pending callbacks still run and state is intact", async () => {
    const scheduled = await program.execute("setTimeout(() => console.log('timer survived'), 150)\n'scheduled'");
    expect(resultText(scheduled)).toBe("'scheduled'");
    // Nothing runs now; the interrupt must not terminate the timer callback that runs next.
    program.interrupt();
    const late = await program.waitFor((op) => op.op === "stream" && op.text === "timer survived\n", { what: "the timer's output" });
    expect(late).toMatchObject({ cell: scheduled.done.id });
    for (let i = 0; i < 3; i++) expect(resultText(await program.execute(`${i} + 1`))).toBe(String(i + 1));
    await expectStateIntact();
  });
});
