// The execution layer on its own (no sockets): a program that cannot start or never says hello must turn
// into a clear cell error, and the next cell must try again rather than hang.

import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, watch } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import type { ExecuteRequestContent, JupyterMessage } from "../protocol/jupyter.js";
import { KernelIO } from "../kernel/core/io.js";
import { Executor } from "../kernel/execution/executor.js";
import { executorTransition, type ExecutorEvent, type ExecutorState } from "../kernel/execution/state.js";
import { memoryLog } from "../kernel/log.js";
import { MemoryTransport } from "../kernel/transport/memory.js";
import { HmacSigner } from "../kernel/transport/signer.js";
import { REPO_ROOT } from "./helpers/kernel-client.js";

function executeRequest(code: string): JupyterMessage<ExecuteRequestContent> {
  return {
    identities: [],
    header: { msg_id: randomUUID(), session: "s", username: "u", date: "", msg_type: "execute_request", version: "5.3" },
    parent_header: {},
    metadata: {},
    content: { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true },
    buffers: [],
  };
}

function executor(programPath: string, startTimeoutMs = 10_000, env: Record<string, string> = {}) {
  const log = memoryLog();
  const transport = new MemoryTransport({ log, signer: new HmacSigner("") });
  const io = new KernelIO(transport);
  const exec = new Executor({ io, log, programPath, cwd: REPO_ROOT, startTimeoutMs, shutdownGraceMs: 200, env: () => env });
  onTestFinished(() => exec.dispose());
  const run = (code: string) => {
    const request = executeRequest(code);
    return exec.execute({ request, publish: (msgType, content) => io.publish({ msgType, content, parent: request.header }) });
  };
  return { exec, transport, log, run };
}

describe("Executor start-up failures", () => {
  it("fails the cell clearly when the program cannot start, and tries again on the next cell", async () => {
    const { run, transport } = executor(join(REPO_ROOT, "test", "fixtures", "does-not-exist.mjs"));
    const first = await run("1");
    expect(first).toMatchObject({ status: "error", ename: "ProgramStartError" });
    expect(String(first.evalue)).toMatch(/^The TypeScript program could not start: the program exited \(code 1\)/);
    const error = transport.sent.find((m) => m.header.msg_type === "error");
    expect(error?.content.ename).toBe("ProgramStartError");
    const second = await run("2");
    expect(second).toMatchObject({ status: "error", ename: "ProgramStartError", execution_count: 2 });
  });

  it("fails the cell clearly when spawn itself throws (an environment value with a NUL byte), without an unhandled rejection", async () => {
    const { run } = executor(join(REPO_ROOT, "dist", "program.js"), 10_000, { TSNB_BROKEN: "a\0b" });
    const reply = await run("1");
    expect(reply).toMatchObject({ status: "error", ename: "ProgramStartError" });
    expect(String(reply.evalue)).toMatch(/^The TypeScript program could not start: the program could not be started \(.*TSNB_BROKEN.*\)/);
  });

  it("gives up on a program that never says hello, with the deadline in the message", async () => {
    const { run } = executor(join(REPO_ROOT, "test", "fixtures", "kernel-mute-program.mjs"), 300);
    const reply = await run("1");
    expect(reply).toMatchObject({ status: "error", ename: "ProgramStartError" });
    expect(String(reply.evalue)).toContain("did not start within 300 ms");
  });

  it("answers a cell waiting for the program with a shutdown error when disposed", async () => {
    const { exec, run } = executor(join(REPO_ROOT, "test", "fixtures", "kernel-mute-program.mjs"));
    const pending = run("1");
    await exec.dispose();
    expect(await pending).toMatchObject({ status: "error", ename: "KernelShuttingDown" });
  });
});

/** Resolves once `path` no longer exists (watched, not polled), or rejects after `ms`. */
function waitGone(path: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!existsSync(path)) return resolve();
    const watcher = watch(path);
    const done = (err?: Error) => {
      clearTimeout(timer);
      watcher.close();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error(`${path} still exists after ${ms} ms`)), ms);
    // Removing the directory's FIFOs and then the directory itself each wake the watcher.
    watcher.on("change", () => {
      if (!existsSync(path)) done();
    });
    watcher.on("error", (err) => done(existsSync(path) ? err : undefined));
    // It may have gone between the first check and the watch.
    if (!existsSync(path)) done();
  });
}

describe("Executor: a program that breaks the FIFO handshake", () => {
  const LIAR = join(REPO_ROOT, "test", "fixtures", "kernel-fifo-liar-program.mjs");
  const refusedToken = /was refused by the kernel: its hello did not carry the TSNB_PIPE_TOKEN it was given/;
  const cases: [string, RegExp][] = [
    ["wrong-token", refusedToken],
    ["no-token", refusedToken],
    ["not-hello", /was refused by the kernel: its first frame was "stream", not a hello carrying TSNB_PIPE_TOKEN/],
    ["garbage", /sent an unreadable message \(.+\) and was stopped/],
  ];
  for (const [mode, expected] of cases) {
    it(`ends a program whose first frame is ${mode} as a failed start, removes its FIFOs, and tries again on the next cell`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "tsnb-liar-"));
      onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
      const report = join(dir, "pipe");
      const { run, log } = executor(LIAR, 10_000, { TSNB_FAKE_HELLO: mode, TSNB_FAKE_REPORT: report });
      const first = await run("1");
      expect(first).toMatchObject({ status: "error", ename: "ProgramStartError" });
      expect(String(first.evalue)).toMatch(expected);
      expect(log.lines.join("\n")).toMatch(expected);
      await waitGone(dirname(readFileSync(report, "utf8")), 5_000);
      const second = await run("2");
      expect(second).toMatchObject({ status: "error", ename: "ProgramStartError", execution_count: 2 });
      expect(String(second.evalue)).toMatch(expected);
    });
  }
});

describe("executorTransition", () => {
  type S = ExecutorState<string, string>;
  const step = (state: S, ...events: ExecutorEvent<string, string>[]) => events.reduce((s, e) => executorTransition(s, e), state);

  it("walks no_program -> starting -> ready -> running -> ready", () => {
    const s = step({ type: "no_program" }, { type: "spawned", program: "p1" }, { type: "hello" }, { type: "cell_started", cell: "c1" });
    expect(s).toEqual({ type: "running", program: "p1", cell: "c1" });
    expect(step(s, { type: "cell_finished" })).toEqual({ type: "ready", program: "p1" });
  });

  it("goes back to no_program when the program exits from any live state", () => {
    for (const s of [
      step({ type: "no_program" }, { type: "spawned", program: "p" }),
      step({ type: "no_program" }, { type: "spawned", program: "p" }, { type: "hello" }),
      step({ type: "no_program" }, { type: "spawned", program: "p" }, { type: "hello" }, { type: "cell_started", cell: "c" }),
    ] as S[]) {
      expect(executorTransition(s, { type: "program_exited" })).toEqual({ type: "no_program" });
    }
  });

  it("ignores events that do not apply, and nothing leaves disposed", () => {
    const ready: S = { type: "ready", program: "p" };
    expect(executorTransition(ready, { type: "spawned", program: "q" })).toBe(ready);
    expect(executorTransition<string, string>({ type: "no_program" }, { type: "cell_started", cell: "c" })).toEqual({ type: "no_program" });
    const disposed = executorTransition<string, string>(ready, { type: "dispose" });
    expect(disposed).toEqual({ type: "disposed" });
    expect(step(disposed, { type: "spawned", program: "p" }, { type: "hello" })).toEqual({ type: "disposed" });
  });
});
