// Execution through the real kernel and the real user program (dist/program.js): what a notebook user sees.

import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import type { Header, JupyterMessage } from "../protocol/jupyter.js";
import { NUDGE_MSG_TYPE, NUDGE_PARENT } from "../protocol/bridge.js";
import { decodeFrames } from "../protocol/wire.js";
import { parentId, startKernel, type RunningKernel } from "./helpers/kernel-client.js";

const types = (msgs: JupyterMessage[]) => msgs.map((m) => m.header.msg_type);
const result = (msgs: JupyterMessage[]) => msgs.find((m) => m.header.msg_type === "execute_result")?.content;
const streamText = (msgs: JupyterMessage[], name = "stdout") =>
  msgs.filter((m) => m.header.msg_type === "stream" && m.content.name === name).map((m) => String(m.content.text)).join("");

describe("executing cells", () => {
  let kernel: RunningKernel;

  beforeAll(async () => {
    kernel = await startKernel();
  });

  afterAll(async () => {
    await kernel?.kill();
  });

  it("publishes busy, execute_input, stream, execute_result (with text/plain), idle in that order", async () => {
    const { reply, iopub } = await kernel.client.execute("console.log('hello'); 6 * 7");
    expect(reply.content).toMatchObject({ status: "ok", user_expressions: {} });
    expect(types(iopub)).toEqual(["status", "execute_input", "stream", "execute_result", "status"]);
    expect(iopub[0]!.content.execution_state).toBe("busy");
    expect(iopub[1]!.content).toMatchObject({ code: "console.log('hello'); 6 * 7", execution_count: reply.content.execution_count });
    expect(streamText(iopub)).toBe("hello\n");
    expect(result(iopub)).toMatchObject({ data: { "text/plain": "42" }, execution_count: reply.content.execution_count });
  });

  it("counts executions only with store_history, and silent publishes no execute_input or result", async () => {
    const a = await kernel.client.execute("1");
    const n = a.reply.content.execution_count as number;
    const b = await kernel.client.execute("2", { content: { store_history: false } });
    expect(b.reply.content.execution_count).toBe(n);
    const c = await kernel.client.execute("3", { content: { silent: true, store_history: false } });
    expect(c.reply.content.execution_count).toBe(n);
    expect(types(c.iopub)).toEqual(["status", "status"]);
    const d = await kernel.client.execute("4");
    expect(d.reply.content.execution_count).toBe(n + 1);
  });

  it("keeps state between cells and allows redeclaring const", async () => {
    await kernel.client.execute("const kept: number = 41");
    await kernel.client.execute("const kept: number = 42");
    const { iopub } = await kernel.client.execute("kept");
    expect(result(iopub)).toMatchObject({ data: { "text/plain": "42" } });
  });

  it("reports a syntax error with line and column", async () => {
    const { reply, iopub } = await kernel.client.execute("const ok = 1;\nlet = = 2;");
    expect(reply.content.status).toBe("error");
    const error = iopub.find((m) => m.header.msg_type === "error");
    expect(error).toBeDefined();
    expect((error!.content.traceback as string[]).join("\n")).toMatch(/2:\d+/);
  });

  it("reports throw null as an error", async () => {
    const { reply, iopub } = await kernel.client.execute("throw null");
    expect(reply.content.status).toBe("error");
    expect(iopub.some((m) => m.header.msg_type === "error")).toBe(true);
    expect(`${reply.content.ename} ${reply.content.evalue}`).toMatch(/null/);
  });

  it("aborts queued cells after an error with stop_on_error, and runs later ones", async () => {
    // The failing cell runs long enough that the second request is surely queued behind it.
    const failing = kernel.client.send("shell", "execute_request", { code: "await new Promise((r) => setTimeout(r, 300)); throw new Error('first fails')", silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
    const queued = kernel.client.send("shell", "execute_request", { code: "globalThis.ranQueued = true", silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
    const [r1, r2] = await Promise.all([kernel.client.reply("shell", failing), kernel.client.reply("shell", queued)]);
    await kernel.client.idle(queued);
    expect(r1.content.status).toBe("error");
    expect(r2.content.status).toBe("aborted");
    expect(types(kernel.client.iopubFor(queued))).toEqual(["status", "status"]);
    const after = await kernel.client.execute("(globalThis as any).ranQueued === true");
    expect(result(after.iopub)).toMatchObject({ data: { "text/plain": "false" } });
  });

  it("stays responsive on control while a cell spins, and interrupts it within 1 s keeping state", async () => {
    await kernel.client.execute("let survivor = 'still here'");
    const spinning = kernel.client.send("shell", "execute_request", { code: "while (true) {}", silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
    // The cell has started once its execute_input is out.
    await kernel.client.iopub.wait((m) => parentId(m) === spinning.msg_id && m.header.msg_type === "execute_input", 5000, "execute_input");
    const info = await kernel.client.request("control", "kernel_info_request", {}, { deadlineMs: 1000 });
    expect(info.reply.content.status).toBe("ok");
    const started = Date.now();
    const interrupt = await kernel.client.request("control", "interrupt_request", {}, { deadlineMs: 1000 });
    expect(interrupt.reply.content.status).toBe("ok");
    const reply = await kernel.client.reply("shell", spinning, 1000);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(reply.content.status).toBe("error");
    await kernel.client.idle(spinning);
    const { iopub } = await kernel.client.execute("survivor");
    expect(result(iopub)).toMatchObject({ data: { "text/plain": "'still here'" } });
    // The kernel stopped the loop through the program's inspector port; Node's notices about that port (one of
    // them carries its secret URL) never reach the notebook.
    const streamed = kernel.client.iopub.items.filter((m) => m.header.msg_type === "stream").map((m) => String(m.content.text));
    expect(streamed.join("")).not.toMatch(/Debugger|ws:\/\//);
  });

  it("interrupts the running cell on SIGINT to the kernel process, and the kernel survives it", async () => {
    const spinning = kernel.client.send("shell", "execute_request", { code: "await new Promise(() => {})", silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
    await kernel.client.iopub.wait((m) => parentId(m) === spinning.msg_id && m.header.msg_type === "execute_input", 5000, "execute_input");
    kernel.process.kill("SIGINT");
    const reply = await kernel.client.reply("shell", spinning, 1000);
    expect(reply.content.status).toBe("error");
    await kernel.client.idle(spinning);
    const { reply: info } = await kernel.client.request("shell", "kernel_info_request", {});
    expect(info.content.status).toBe("ok");
  });

  it("recovers when the program exits: the cell says so, state is lost, the next cell runs", async () => {
    await kernel.client.execute("let before = 1");
    const { reply, iopub } = await kernel.client.execute("console.log('bye'); process.exit(1)", { deadlineMs: 15_000 });
    expect(reply.content.status).toBe("error");
    expect(streamText(iopub)).toBe("bye\n");
    const error = iopub.find((m) => m.header.msg_type === "error");
    expect(String(error?.content.evalue)).toMatch(/^The TypeScript program exited \(code 1\)\. Variables and imports were lost; a fresh program has started\.$/);
    const next = await kernel.client.execute("typeof before", { deadlineMs: 15_000 });
    expect(next.reply.content.status).toBe("ok");
    expect(result(next.iopub)).toMatchObject({ data: { "text/plain": "'undefined'" } });
  });

  it("recovers when the program is killed from outside while a cell runs", async () => {
    const { reply, iopub } = await kernel.client.execute("process.kill(process.pid, 'SIGKILL'); await new Promise(() => {})", { deadlineMs: 15_000 });
    expect(reply.content.status).toBe("error");
    expect(reply.content.ename).toBe("ProgramExited");
    expect(String(iopub.find((m) => m.header.msg_type === "error")?.content.evalue)).toMatch(/was killed by SIGKILL\. Variables and imports were lost/);
    const next = await kernel.client.execute("1 + 1", { deadlineMs: 15_000 });
    expect(result(next.iopub)).toMatchObject({ data: { "text/plain": "2" } });
  });

  it("runs cells queued behind a crashing cell on the fresh program", async () => {
    const opts = { silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: false };
    const crashing = kernel.client.send("shell", "execute_request", { code: "process.exit(2)", ...opts });
    const queued = kernel.client.send("shell", "execute_request", { code: "'ran after the crash'", ...opts });
    const [r1, r2] = await Promise.all([kernel.client.reply("shell", crashing, 15_000), kernel.client.reply("shell", queued, 15_000)]);
    await kernel.client.idle(queued, 5000);
    expect(r1.content.status).toBe("error");
    expect(r2.content.status).toBe("ok");
    expect(result(kernel.client.iopubFor(queued))).toMatchObject({ data: { "text/plain": "'ran after the crash'" } });
  });

  it("treats a garbage frame from the program like a crash, with a clear message", async () => {
    // The runtime took TSNB_PIPE out of process.env; the environment it started with still names it.
    const code = [
      "import { openSync, readFileSync, writeSync } from 'node:fs';",
      "const up = readFileSync('/proc/self/environ', 'utf8').split('\\0').find((v) => v.startsWith('TSNB_PIPE='))!.slice('TSNB_PIPE='.length);",
      "writeSync(openSync(up, 'w'), Buffer.from([0, 0, 0, 5, 123, 33, 33, 33, 33])); await new Promise(() => {})",
    ].join("\n");
    const { reply, iopub } = await kernel.client.execute(code, { deadlineMs: 15_000 });
    expect(reply.content.status).toBe("error");
    expect(String(iopub.find((m) => m.header.msg_type === "error")?.content.evalue)).toMatch(
      /sent an unreadable message \(frame header is not valid JSON.*\) and was stopped\. Variables and imports were lost/,
    );
    const next = await kernel.client.execute("'fresh'", { deadlineMs: 15_000 });
    expect(result(next.iopub)).toMatchObject({ data: { "text/plain": "'fresh'" } });
  });

  it("tells the user under the last cell when the program dies between cells, and starts a fresh one", async () => {
    const { request, iopub } = await kernel.client.execute("process.pid");
    const pid = Number(result(iopub)?.data && (result(iopub)!.data as Record<string, string>)["text/plain"]);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, "SIGKILL");
    const notice = await kernel.client.iopub.wait(
      (m) => parentId(m) === request.msg_id && m.header.msg_type === "stream" && m.content.name === "stderr" && /program/.test(String(m.content.text)),
      5000,
      "crash notice",
    );
    expect(notice.content.text).toMatch(/The TypeScript program was killed by SIGKILL\. Variables and imports were lost; a fresh program has started\./);
    const next = await kernel.client.execute("process.pid", { deadlineMs: 15_000 });
    expect(Number((result(next.iopub)!.data as Record<string, string>)["text/plain"])).not.toBe(pid);
  });

  it("answers complete at once with no matches while a cell is running", async () => {
    const busy = kernel.client.send("shell", "execute_request", { code: "await new Promise((r) => setTimeout(r, 3000))", silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
    await kernel.client.iopub.wait((m) => parentId(m) === busy.msg_id && m.header.msg_type === "execute_input", 5000, "execute_input");
    const started = Date.now();
    const c = await kernel.client.request("control", "complete_request", { code: "Math.fl", cursor_pos: 7 }, { deadlineMs: 1000 });
    expect(Date.now() - started).toBeLessThan(500);
    expect(c.reply.content).toEqual({ status: "ok", matches: [], cursor_start: 7, cursor_end: 7, metadata: {} });
    await kernel.client.request("control", "interrupt_request", {});
    await kernel.client.idle(busy, 5000);
  });

  it("asks for input on stdin and returns the answer to the cell", async () => {
    const request = kernel.client.send("shell", "execute_request", { code: "const answer = await input('Name? '); answer.toUpperCase()", silent: false, store_history: true, user_expressions: {}, allow_stdin: true, stop_on_error: true });
    const inputRequest = await kernel.client.replies.stdin.wait((m) => parentId(m) === request.msg_id, 10_000, "input_request");
    expect(inputRequest.header.msg_type).toBe("input_request");
    expect(inputRequest.content).toMatchObject({ prompt: "Name? ", password: false });
    kernel.client.send("stdin", "input_reply", { value: "ada" }, { parent: inputRequest.header });
    const reply = await kernel.client.reply("shell", request);
    await kernel.client.idle(request);
    expect(reply.content.status).toBe("ok");
    expect(result(kernel.client.iopubFor(request))).toMatchObject({ data: { "text/plain": "'ADA'" } });
  });

  it("never takes the comms shim's stdin nudge for the answer to a pending input()", async () => {
    const request = kernel.client.send("shell", "execute_request", { code: "(await input('Name? ')).toUpperCase()", silent: false, store_history: true, user_expressions: {}, allow_stdin: true, stop_on_error: true });
    const inputRequest = await kernel.client.replies.stdin.wait((m) => parentId(m) === request.msg_id, 10_000, "input_request");
    // What @jupyterlab/services' sendInputReply sends for a nudge, and the classic page's bare nudge.
    const nudge = kernel.client.send("stdin", "input_reply", { status: "ok", value: "nudge" }, { parent: NUDGE_PARENT as unknown as Header });
    const bare = kernel.client.send("stdin", NUDGE_MSG_TYPE, {});
    kernel.client.send("stdin", "input_reply", { value: "ada" }, { parent: inputRequest.header });
    await kernel.client.idle(request);
    expect(result(kernel.client.iopubFor(request))).toMatchObject({ data: { "text/plain": "'ADA'" } });
    // Nudges publish nothing: no busy/idle that could start the server's Nagle stall again.
    expect(kernel.client.iopubFor(nudge)).toEqual([]);
    expect(kernel.client.iopubFor(bare)).toEqual([]);
  });

  it("marks password prompts as such on stdin", async () => {
    const request = kernel.client.send("shell", "execute_request", { code: "(await input.password('Secret: ')).length", silent: false, store_history: true, user_expressions: {}, allow_stdin: true, stop_on_error: true });
    const inputRequest = await kernel.client.replies.stdin.wait((m) => parentId(m) === request.msg_id, 10_000, "input_request");
    expect(inputRequest.content).toEqual({ prompt: "Secret: ", password: true });
    kernel.client.send("stdin", "input_reply", { value: "hunter2" }, { parent: inputRequest.header });
    await kernel.client.idle(request);
    expect(result(kernel.client.iopubFor(request))).toMatchObject({ data: { "text/plain": "7" } });
  });

  it("fails input() clearly when the front-end does not allow stdin", async () => {
    const { reply } = await kernel.client.execute("await input('x')", { content: { allow_stdin: false } });
    expect(reply.content.status).toBe("error");
    expect(`${reply.content.ename}: ${reply.content.evalue}`).toMatch(/StdinNotImplementedError|stdin/);
  });

  it("routes output of a timer that fires after its cell finished to that cell", async () => {
    const { request } = await kernel.client.execute("setTimeout(() => console.log('late'), 50); 'done'");
    const late = await kernel.client.iopub.wait(
      (m) => parentId(m) === request.msg_id && m.header.msg_type === "stream" && String(m.content.text).includes("late"),
      5000,
      "late stream",
    );
    expect(late.content).toMatchObject({ name: "stdout", text: "late\n" });
  });

  it("forwards raw output of a child process that inherits the program's stdout", async () => {
    const { request } = await kernel.client.execute("import { execSync } from 'node:child_process'; execSync('echo raw-from-child', { stdio: 'inherit' }); 1");
    const raw = await kernel.client.iopub.wait(
      (m) => parentId(m) === request.msg_id && m.header.msg_type === "stream" && String(m.content.text).includes("raw-from-child"),
      5000,
      "raw stream",
    );
    expect(raw.content.name).toBe("stdout");
  });

  it("answers complete and inspect (empty but well-formed when nothing is found)", async () => {
    const c = await kernel.client.request("shell", "complete_request", { code: "Math.fl", cursor_pos: 7 });
    expect(c.reply.content).toMatchObject({ status: "ok", cursor_end: 7 });
    expect(c.reply.content.matches).toContain("floor");
    const i = await kernel.client.request("shell", "inspect_request", { code: "nothingHere", cursor_pos: 5, detail_level: 0 });
    expect(i.reply.content).toMatchObject({ status: "ok", found: false });
  });

  it("delivers a 50 MB stdout burst complete and in order before idle, with bounded kernel memory", async () => {
    const lines = 51_200; // 1 KiB each
    const code = `for (let i = 0; i < ${lines}; i++) process.stdout.write(String(i).padStart(8, "0") + " " + "x".repeat(1014) + "\\n"); "end"`;
    const { reply, iopub } = await kernel.client.execute(code, { deadlineMs: 120_000 });
    expect(reply.content.status).toBe("ok");
    const streams = iopub.filter((m) => m.header.msg_type === "stream");
    // Coalesced: far fewer messages than writes, none of them huge.
    expect(streams.length).toBeLessThan(2000);
    for (const m of streams) expect(String(m.content.text).length).toBeLessThanOrEqual(1024 * 1024);
    const text = streamText(iopub);
    expect(text.length).toBe(lines * 1024);
    for (let i = 0; i < lines; i += 997) expect(text.slice(i * 1024, i * 1024 + 8)).toBe(String(i).padStart(8, "0"));
    expect(text.slice((lines - 1) * 1024, (lines - 1) * 1024 + 8)).toBe(String(lines - 1).padStart(8, "0"));
    // The last message before idle is the result: every line arrived before idle.
    expect(types(iopub).slice(-2)).toEqual(["execute_result", "status"]);
    const status = readFileSync(`/proc/${kernel.process.pid}/status`, "utf8");
    const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
    console.log(`kernel peak RSS during the 50 MB burst: ${(peakKb / 1024).toFixed(0)} MB, ${streams.length} stream messages`);
    expect(peakKb).toBeLessThan(200 * 1024);
  }, 180_000);
});

describe("output backpressure", () => {
  let kernel: RunningKernel;

  beforeAll(async () => {
    kernel = await startKernel();
  });

  afterAll(async () => {
    await kernel?.kill();
  });

  it("slows the program down for a slow IOPub subscriber: nothing lost, kernel memory bounded", { timeout: 120_000 }, async () => {
    const slow = new zmq.Subscriber({ receiveHighWaterMark: 4, linger: 0 });
    try {
      slow.connect(`tcp://127.0.0.1:${kernel.connection.iopub_port}`);
      slow.subscribe();
      const received: JupyterMessage[] = [];
      const signer = kernel.client.signer;
      const readOne = async () => {
        const decoded = decodeFrames(await slow.receive(), signer);
        if (!decoded.ok) throw new Error(`slow subscriber could not decode: ${decoded.error.type}`);
        received.push(decoded.message);
        return decoded.message;
      };
      // Probe until this subscriber provably receives (its subscription reaches the kernel asynchronously),
      // so the burst cannot start before it.
      slow.receiveTimeout = 300;
      const probeDeadline = Date.now() + 10_000;
      for (let subscribed = false; !subscribed; ) {
        if (Date.now() > probeDeadline) throw new Error("the slow subscriber never received a probe");
        const probe = kernel.client.send("shell", "kernel_info_request", {});
        try {
          for (let m = await readOne(); !subscribed; m = await readOne()) subscribed = parentId(m) === probe.msg_id;
        } catch (err) {
          if ((err as { code?: string }).code !== "EAGAIN") throw err;
        }
      }
      // From here on, each receive has a 10 s deadline (zeromq rejects with EAGAIN).
      slow.receiveTimeout = 10_000;

      // Without backpressure the kernel would hold most of this while the subscriber lags (measured: its
      // memory then grows with the output); with it, the program waits and the kernel stays flat.
      const lines = 204_800; // 200 MiB of 1 KiB lines
      // The cell's result is how long its writing loop took: with backpressure, as long as the slow reader.
      const code = `const t0 = Date.now(); for (let i = 0; i < ${lines}; i++) process.stdout.write(String(i).padStart(8, "0") + " " + "y".repeat(1014) + "\\n"); Date.now() - t0`;
      const cell = kernel.client.send("shell", "execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
      // A consumer that takes 10 ms per message (about 25 MB/s at the kernel's message size), far slower than the program writes.
      let done = false;
      const readingStarted = Date.now();
      while (!done) {
        const m = await readOne();
        done = parentId(m) === cell.msg_id && m.header.msg_type === "status" && m.content.execution_state === "idle";
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const readingMs = Date.now() - readingStarted;
      const text = received
        .filter((m) => parentId(m) === cell.msg_id && m.header.msg_type === "stream")
        .map((m) => String(m.content.text))
        .join("");
      expect(text.length).toBe(lines * 1024);
      for (let i = 0; i < lines; i += 1009) expect(text.slice(i * 1024, i * 1024 + 8)).toBe(String(i).padStart(8, "0"));
      const reply = await kernel.client.reply("shell", cell, 10_000);
      expect(reply.content.status).toBe("ok");
      const peakKb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${kernel.process.pid}/status`, "utf8"))?.[1]);
      const result = received.find((m) => parentId(m) === cell.msg_id && m.header.msg_type === "execute_result");
      const writingMs = Number((result?.content.data as Record<string, string>)["text/plain"]);
      console.log(
        `slow subscriber: program wrote 200 MB in ${writingMs} ms while the reader took ${readingMs} ms; kernel peak RSS ${(peakKb / 1024).toFixed(0)} MB`,
      );
      // The program was held back to the reader's pace (it alone writes 200 MB in about 2 s)...
      expect(writingMs).toBeGreaterThan(readingMs * 0.6);
      // ...so the kernel never held the output: its peak stays far below the 200 MB written (the rest is
      // freed-but-not-yet-collected message buffers, which V8 collects in ~64 MB steps).
      expect(peakKb).toBeLessThan(300 * 1024);
    } finally {
      slow.close();
    }
  });
});
