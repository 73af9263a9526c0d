// Black-box protocol tests: the real kernel process (bin/tsnb.mjs) over real zeromq sockets, with bad input
// on every layer. Each test checks the kernel keeps answering afterwards.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DELIMITER, encodeFrames } from "../protocol/wire.js";
import { KernelClient, parentId, REPO_ROOT, startKernel, writeConnectionFile, type RunningKernel } from "./helpers/kernel-client.js";

const enc = new TextEncoder();

describe("kernel over zeromq", () => {
  let kernel: RunningKernel;

  beforeAll(async () => {
    kernel = await startKernel();
  });

  afterAll(async () => {
    await kernel?.kill();
  });

  /** The kernel still answers a normal request. */
  async function stillAlive(): Promise<void> {
    const { reply } = await kernel.client.request("shell", "kernel_info_request", {}, { deadlineMs: 5000 });
    expect(reply.content.status).toBe("ok");
  }

  it("answers kernel_info with the TypeScript language info, wrapped in busy/idle", async () => {
    const { reply, iopub, request } = await kernel.client.request("shell", "kernel_info_request", {});
    expect(reply.header.msg_type).toBe("kernel_info_reply");
    expect(reply.content).toMatchObject({
      status: "ok",
      protocol_version: "5.3",
      implementation: "tsnb",
      language_info: { name: "typescript", mimetype: "text/typescript", file_extension: ".ts", pygments_lexer: "typescript" },
    });
    expect(typeof reply.content.banner).toBe("string");
    expect(Array.isArray(reply.content.help_links)).toBe(true);
    expect(reply.header.session).toMatch(/^[0-9a-f-]{36}$/);
    // Dates are ISO 8601 in UTC, as toISOString writes them, and read the current clock.
    for (const m of [reply, ...iopub]) {
      expect(m.header.date).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(Math.abs(Date.parse(m.header.date) - Date.now())).toBeLessThan(60_000);
    }
    expect(iopub.map((m) => [m.header.msg_type, m.content.execution_state])).toEqual([
      ["status", "busy"],
      ["status", "idle"],
    ]);
    expect(parentId(iopub[0]!)).toBe(request.msg_id);
  });

  it("answers on control too, and echoes heartbeats byte for byte", async () => {
    const { reply } = await kernel.client.request("control", "kernel_info_request", {});
    expect(reply.content.implementation).toBe("tsnb");
    expect(await kernel.client.heartbeat("beat-\u00e9")).toBe("beat-\u00e9");
  });

  it("drops a message with a bad signature without acting on it, and logs it", async () => {
    const header = kernel.client.header("execute_request");
    const frames = encodeFrames(
      { identities: [], header, parent_header: {}, metadata: {}, content: { code: "globalThis.hacked = 1", silent: false }, buffers: [] },
      kernel.client.signer,
    );
    frames[1] = enc.encode("0".repeat(64)); // the signature frame
    await kernel.client.sendRaw("shell", frames);
    await kernel.waitForStderr(/dropped a message on shell: bad HMAC signature/);
    // Same socket, so by the time this is answered the forged one was processed (and dropped).
    await stillAlive();
    expect(kernel.client.replies.shell.items.some((m) => parentId(m) === header.msg_id)).toBe(false);
    expect(kernel.client.iopub.items.some((m) => parentId(m) === header.msg_id)).toBe(false);
    const check = await kernel.client.execute("typeof (globalThis as any).hacked");
    expect(check.iopub.find((m) => m.header.msg_type === "execute_result")?.content.data).toMatchObject({ "text/plain": "'undefined'" });
  });

  it("drops a truncated multipart message and keeps working", async () => {
    await kernel.client.sendRaw("shell", [DELIMITER, "", "{}"]);
    await kernel.waitForStderr(/dropped a message on shell: truncated message/);
    await stillAlive();
  });

  it("drops a message without the delimiter frame", async () => {
    await kernel.client.sendRaw("control", ["just", "garbage"]);
    await kernel.waitForStderr(/dropped a message on control: no "<IDS\|MSG>" delimiter/);
    await stillAlive();
  });

  it("drops a correctly signed frame with invalid JSON", async () => {
    const header = enc.encode(JSON.stringify(kernel.client.header("kernel_info_request")));
    const parts = [header, enc.encode("{}"), enc.encode("{}"), enc.encode("{not json")];
    await kernel.client.sendRaw("shell", [DELIMITER, kernel.client.signer.sign(parts), ...parts]);
    await kernel.waitForStderr(/invalid JSON in the content frame/);
    await stillAlive();
  });

  it("answers an unknown *_request with an error reply, wrapped in busy/idle", async () => {
    const { reply, iopub } = await kernel.client.request("shell", "frobnicate_request", {});
    expect(reply.header.msg_type).toBe("frobnicate_reply");
    expect(reply.content).toMatchObject({ status: "error", ename: "UnknownMessageType" });
    expect(String(reply.content.evalue)).toContain("frobnicate_request");
    expect(iopub.map((m) => m.content.execution_state)).toEqual(["busy", "idle"]);
    await kernel.waitForStderr(/unknown message type "frobnicate_request"/);
  });

  it("publishes busy/idle for an unknown message type that has no reply", async () => {
    const request = kernel.client.send("shell", "something_else", {});
    const idle = await kernel.client.idle(request);
    expect(idle.content.execution_state).toBe("idle");
    await stillAlive();
    expect(kernel.client.replies.shell.items.some((m) => parentId(m) === request.msg_id)).toBe(false);
  });

  it("answers execute with non-string code with a clear error reply", async () => {
    const { reply, iopub } = await kernel.client.request("shell", "execute_request", { code: 42, silent: false });
    expect(reply.content).toMatchObject({ status: "error", ename: "InvalidRequest" });
    expect(String(reply.content.evalue)).toMatch(/"code" must be a string/);
    expect(iopub.map((m) => m.content.execution_state)).toEqual(["busy", "idle"]);
    await stillAlive();
  });

  it("refuses a comm_open for an unknown target with comm_close", async () => {
    const { iopub } = await kernel.client.notify("comm_open", { comm_id: "c1", target_name: "nobody", data: {} });
    const close = iopub.find((m) => m.header.msg_type === "comm_close");
    expect(close?.content).toMatchObject({ comm_id: "c1" });
    const info = await kernel.client.request("shell", "comm_info_request", {});
    expect(info.reply.content).toEqual({ status: "ok", comms: {} });
  });

  it("answers is_complete and history", async () => {
    const a = await kernel.client.request("shell", "is_complete_request", { code: "function f() {" });
    expect(a.reply.content).toEqual({ status: "incomplete", indent: "  " });
    const b = await kernel.client.request("shell", "is_complete_request", { code: "const x = 1" });
    expect(b.reply.content).toEqual({ status: "complete" });
    const c = await kernel.client.request("shell", "is_complete_request", { code: "x)" });
    expect(c.reply.content).toEqual({ status: "invalid" });
    const h = await kernel.client.request("shell", "history_request", { hist_access_type: "tail", n: 10, output: false, raw: true });
    // What history holds is tested in kernel-history.test.ts; here: the reply has the protocol's shape.
    expect(h.reply.content.status).toBe("ok");
    expect(Array.isArray(h.reply.content.history)).toBe(true);
    for (const entry of h.reply.content.history as unknown[]) {
      expect(entry).toEqual([expect.any(Number), expect.any(Number), expect.any(String)]);
    }
  });

  it("accepts an unsigned message only when the key is empty: wrong client key is dropped", async () => {
    const stranger = KernelClient.connect({ ...kernel.connection, key: "not-the-key" });
    try {
      const header = stranger.send("shell", "kernel_info_request", {});
      await kernel.waitForStderr(/bad HMAC signature[\s\S]*bad HMAC signature/);
      await stillAlive();
      expect(stranger.replies.shell.items.some((m) => parentId(m) === header.msg_id)).toBe(false);
    } finally {
      stranger.close();
    }
  });
});

describe("kernel lifecycle", () => {
  const kernels: RunningKernel[] = [];
  afterAll(async () => {
    await Promise.all(kernels.map((k) => k.kill()));
  });

  it("shuts down on shutdown_request: replies on control, stops the user program, then exits with code 0", async () => {
    const kernel = await startKernel();
    kernels.push(kernel);
    const pidReply = await kernel.client.execute("process.pid");
    const programPid = Number((pidReply.iopub.find((m) => m.header.msg_type === "execute_result")?.content.data as Record<string, string>)["text/plain"]);
    expect(programPid).toBeGreaterThan(0);
    const { reply } = await kernel.client.request("control", "shutdown_request", { restart: false });
    expect(reply.content).toEqual({ status: "ok", restart: false });
    expect(await kernel.exited(10_000)).toBe(0);
    // The kernel waits for its program before exiting, so it is gone (and reaped) by now.
    expect(() => process.kill(programPid, 0)).toThrow(/ESRCH/);
  });

  it("has a new session id after a restart", async () => {
    const first = await startKernel();
    kernels.push(first);
    const before = (await first.client.request("shell", "kernel_info_request", {})).reply.header.session;
    const { reply } = await first.client.request("control", "shutdown_request", { restart: true });
    expect(reply.content).toEqual({ status: "ok", restart: true });
    expect(await first.exited(10_000)).toBe(0);
    // What a kernel manager does on restart: start the kernelspec again.
    const second = await startKernel();
    kernels.push(second);
    const after = (await second.client.request("shell", "kernel_info_request", {})).reply.header.session;
    expect(after).not.toBe(before);
    expect(after).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("works with an empty key (signing disabled)", async () => {
    const kernel = await startKernel({ key: "" });
    kernels.push(kernel);
    const { reply } = await kernel.client.request("shell", "kernel_info_request", {});
    expect(reply.content.status).toBe("ok");
  });
});

describe("orphaned kernel", () => {
  it("exits when the Jupyter process that started it (JPY_PARENT_PID) dies", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsnb-orphan-"));
    const { path } = await writeConnectionFile(dir);
    // A stand-in for the Jupyter server: starts the kernel as its child, reports the pid, then waits.
    const parentCode = `
      const { spawn } = require("node:child_process");
      const kernel = spawn(process.execPath, [${JSON.stringify(join(REPO_ROOT, "bin", "tsnb.mjs"))}, "kernel", "--connection-file", ${JSON.stringify(path)}],
        { env: { ...process.env, JPY_PARENT_PID: String(process.pid) }, stdio: "ignore", detached: true });
      console.log(kernel.pid);
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ["-e", parentCode], { stdio: ["ignore", "pipe", "inherit"] });
    let kernelPid = 0;
    try {
      kernelPid = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("the stand-in parent did not report the kernel pid")), 10_000);
        parent.stdout!.once("data", (d: Buffer) => {
          clearTimeout(timer);
          resolve(Number(d.toString().trim()));
        });
      });
      const client = KernelClient.connect(path);
      try {
        await client.waitForReady(15_000);
      } finally {
        client.close();
      }
      parent.kill("SIGKILL");
      // The kernel is not our child, so its exit cannot be awaited: poll for it, with a deadline.
      const deadline = Date.now() + 5000;
      while (processAlive(kernelPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(processAlive(kernelPid)).toBe(false);
    } finally {
      parent.kill("SIGKILL");
      if (kernelPid > 0 && processAlive(kernelPid)) process.kill(-kernelPid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000);
});

function processAlive(pid: number): boolean {
  try {
    // A zombie still answers signal 0; it has exited for our purposes.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
