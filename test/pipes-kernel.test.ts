// Named pipes for !commands, for real: a real `!/usr/bin/python3` program talks to the real kernel over the
// FIFOs named by TSNB_PIPE / TSNB_PIPE_BACK with the Python client (notebooks/tsnb_pipe.py), while this
// test client plays a browser tab on the real zeromq sockets.

import { copyFileSync, mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JupyterMessage } from "../protocol/jupyter.js";
import { parentId, REPO_ROOT, startKernel, type RunningKernel } from "./helpers/kernel-client.js";
import { KernelTab } from "./helpers/kernel-tab.js";

let kernel: RunningKernel;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tsnb-pipes-test-"));
  copyFileSync(join(REPO_ROOT, "notebooks", "tsnb_pipe.py"), join(dir, "tsnb_pipe.py"));
  kernel = await startKernel({ cwd: dir });
}, 30_000);

afterAll(async () => {
  await kernel?.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const newTab = () => new KernelTab(kernel, { idPrefix: "pipe-tab", waitMs: 15_000 });

/** A tab whose comm is open and which listens on `address` (the kernel has handled the listen), holding `value` if given. */
async function tabListeningOn(address: string, options: { value?: unknown } = {}): Promise<KernelTab> {
  const tab = newTab();
  await tab.open();
  if ("value" in options) tab.answers.set(address, options.value);
  await kernel.client.idle(tab.listen(address));
  return tab;
}

function script(name: string, source: string): string {
  const path = join(dir, name);
  writeFileSync(path, `import os, sys, struct, json\nsys.path.insert(0, ${JSON.stringify(dir)})\n${source}\n`);
  return path;
}

function outputsOf(iopub: JupyterMessage[]) {
  const streams = (name: string) =>
    iopub
      .filter((m) => m.header.msg_type === "stream" && m.content.name === name)
      .map((m) => String(m.content.text))
      .join("");
  return {
    stdout: streams("stdout"),
    stderr: streams("stderr"),
    errors: iopub.filter((m) => m.header.msg_type === "error").map((m) => `${m.content.ename}: ${m.content.evalue}`),
    displays: iopub.filter((m) => m.header.msg_type === "display_data").map((m) => m.content.data as Record<string, unknown>),
  };
}

async function expectKernelAlive(): Promise<void> {
  const next = await kernel.client.execute("40 + 2");
  expect(next.reply.content.status).toBe("ok");
  const result = next.iopub.find((m) => m.header.msg_type === "execute_result");
  expect((result?.content.data as Record<string, string>)["text/plain"]).toBe("42");
}

describe("named pipes for !commands", () => {
  // Must stay the first !command of this kernel's program: the sweep runs on its first use of pipes.
  it("removes pipe directories left by a program that was killed (no process with their pid)", async () => {
    const stale = mkdtempSync(join(tmpdir(), "tsnb-pipe-999999999-"));
    writeFileSync(join(stale, "up"), "");
    const result = await kernel.client.execute("!true");
    expect(result.reply.content.status).toBe("ok");
    expect(existsSync(stale)).toBe(false);
  });

  it("gives the command a private 0700 directory with 0600 FIFOs and a token, and removes it after the command", async () => {
    const path = script(
      "modes.py",
      `import stat
for name in ("TSNB_PIPE", "TSNB_PIPE_BACK"):
    st = os.stat(os.environ[name])
    print(name, "fifo" if stat.S_ISFIFO(st.st_mode) else "not-fifo", oct(st.st_mode & 0o777))
print("dir", oct(os.stat(os.path.dirname(os.environ["TSNB_PIPE"])).st_mode & 0o777), os.path.dirname(os.environ["TSNB_PIPE"]))
print("token", len(os.environ["TSNB_PIPE_TOKEN"]))`,
    );
    const result = await kernel.client.execute(`!/usr/bin/python3 ${path}`);
    const out = outputsOf(result.iopub);
    expect(out.stdout).toContain("TSNB_PIPE fifo 0o600");
    expect(out.stdout).toContain("TSNB_PIPE_BACK fifo 0o600");
    expect(out.stdout).toMatch(/dir 0o700 /);
    expect(Number(/token (\d+)/.exec(out.stdout)![1])).toBeGreaterThanOrEqual(32);
    const pipeDir = /dir 0o700 (\S+)/.exec(out.stdout)![1]!;
    expect(existsSync(pipeDir)).toBe(false);
  });

  it("delivers a Python program's values to a listening tab in order, falsy values and binary parts included, and shows its display output", async () => {
    const tab = await tabListeningOn("py/vals");
    const path = script(
      "send.py",
      `from array import array
from tsnb_pipe import Pipe
with Pipe() as pipe:
    print("before")
    for v in [0, "", False, None, {"nested": [1, "two"]}]:
        pipe.send("py/vals", v)
    pipe.send("py/vals", memoryview(array("f", [1.5, 2.5])))
    pipe.send("py/vals", {"raw": b"\\x00\\x01\\xff", "ints": array("i", [-7, 8])})
    pipe.display({"text/markdown": "**from python**", "text/plain": "from python"})
    pipe.sync()
    print("after")`,
    );
    const result = await kernel.client.execute(`!/usr/bin/python3 ${path}`);
    const out = outputsOf(result.iopub);
    expect(out.errors).toEqual([]);
    expect(out.stderr).toBe("");
    expect(out.stdout).toBe("before\nafter\n");
    expect(out.displays.some((d) => d["text/markdown"] === "**from python**")).toBe(true);
    await tab.waitFor("7 values", () => tab.valuesOf("py/vals").length >= 7);
    const values = tab.valuesOf("py/vals");
    expect(values.slice(0, 5)).toEqual([0, "", false, null, { nested: [1, "two"] }]);
    expect(values[5]).toBeInstanceOf(Float32Array);
    expect(Array.from(values[5] as Float32Array)).toEqual([1.5, 2.5]);
    const last = values[6] as { raw: Uint8Array; ints: Int32Array };
    expect(last.raw).toBeInstanceOf(Uint8Array);
    expect(Array.from(last.raw)).toEqual([0, 1, 255]);
    expect(last.ints).toBeInstanceOf(Int32Array);
    expect(Array.from(last.ints)).toEqual([-7, 8]);
  });

  it("delivers values a tab sends on a subscribed address to the Python program", async () => {
    const tab = await tabListeningOn("py/ready");
    const path = script(
      "receive.py",
      `from tsnb_pipe import Pipe
with Pipe() as pipe:
    pipe.subscribe("py/in")
    pipe.sync()
    pipe.send("py/ready", True)
    for _ in range(2):
        address, value = pipe.receive(timeout=15)
        if isinstance(value, memoryview):
            value = ("memoryview", value.format, value.tolist())
        print("got", address, json.dumps(value))`,
    );
    const request = kernel.client.send("shell", "execute_request", {
      code: `!/usr/bin/python3 ${path}`,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: false,
      stop_on_error: true,
    });
    await tab.waitFor("the program's ready signal", () => tab.valuesOf("py/ready").length > 0);
    tab.sendValue("py/in", { n: 0, s: "", ok: false });
    tab.sendValue("py/in", new Float64Array([0.25, -1]));
    await kernel.client.idle(request, 20_000);
    const out = outputsOf(kernel.client.iopubFor(request));
    expect(out.stderr).toBe("");
    expect(out.stdout).toBe('got py/in {"n": 0, "s": "", "ok": false}\ngot py/in ["memoryview", "d", [0.25, -1.0]]\n');
  });

  it("answers a Python program's read with the value the tab holds, and tells it clearly when no tab answers", async () => {
    const tab = await tabListeningOn("py/slider", { value: 37 });
    const path = script(
      "read.py",
      `from tsnb_pipe import Pipe, PipeTimeout
with Pipe() as pipe:
    print("slider", pipe.read("py/slider", timeout=15))
    try:
        pipe.read("py/nobody", timeout=0.5)
    except PipeTimeout as e:
        print("nobody:", e)`,
    );
    const request = kernel.client.send("shell", "execute_request", {
      code: `!/usr/bin/python3 ${path}`,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: false,
      stop_on_error: true,
    });
    // The tab must keep answering the kernel's read (and pings) while the cell runs.
    await tab.waitFor("the cell's end", () => kernel.client.iopubFor(request).some((m) => m.header.msg_type === "status" && m.content.execution_state === "idle"), 25_000);
    const out = outputsOf(kernel.client.iopubFor(request));
    expect(out.stdout).toMatch(/^slider 37\nnobody: read of 'py\/nobody' failed: .*py\/nobody/);
  }, 30_000);

  it("updates a display by its id and clears the cell's output for a Python program", async () => {
    const path = script(
      "displays.py",
      `from tsnb_pipe import Pipe
with Pipe() as pipe:
    pipe.display({"text/plain": "step 1"}, display_id="progress")
    pipe.update_display("progress", {"text/plain": "step 2"})
    pipe.clear_output(wait=True)
    pipe.display({"text/plain": "fresh"})
    pipe.sync()`,
    );
    const result = await kernel.client.execute(`!/usr/bin/python3 ${path}`);
    const shown = result.iopub
      .filter((m) => ["display_data", "update_display_data", "clear_output"].includes(m.header.msg_type))
      .map((m) => [m.header.msg_type, (m.content.data as Record<string, string> | undefined)?.["text/plain"] ?? m.content.wait, (m.content.transient as { display_id?: string } | undefined)?.display_id]);
    expect(shown).toEqual([
      ["display_data", "step 1", "progress"],
      ["update_display_data", "step 2", "progress"],
      ["clear_output", true, undefined],
      ["display_data", "fresh", undefined],
    ]);
  });

  const garbage: { name: string; source: string; error: RegExp }[] = [
    {
      name: "a wrong token",
      source: `def frame(h):
    d = json.dumps(h).encode()
    return struct.pack(">I", len(d)) + d
out = os.open(os.environ["TSNB_PIPE"], os.O_WRONLY)
os.write(out, frame({"v": 1, "op": "hello", "token": "not-the-token"}))`,
      error: /the pipe of !\/usr\/bin\/python3 .*bad_token\.py was closed: the hello frame does not carry the TSNB_PIPE_TOKEN/,
    },
    {
      name: "text instead of a length (garbage length)",
      source: `out = os.open(os.environ["TSNB_PIPE"], os.O_WRONLY)
os.write(out, b"hello world, this is not a frame\\n")`,
      error: /was closed: frame header of \d+ bytes exceeds the 67108864-byte limit/,
    },
    {
      name: "bad JSON",
      source: `out = os.open(os.environ["TSNB_PIPE"], os.O_WRONLY)
os.write(out, struct.pack(">I", 9) + b"{not json")`,
      error: /was closed: frame header is not valid JSON/,
    },
    {
      name: "an unknown op after a good hello",
      source: `from tsnb_pipe import Pipe
pipe = Pipe()
pipe._write({"op": "launch_rockets"})
try:
    pipe.sync(timeout=5)
except Exception as e:
    print("client saw:", e)`,
      error: /was closed: unknown op "launch_rockets"/,
    },
    {
      name: "binary parts over the size limit",
      source: `def frame(h):
    d = json.dumps(h).encode()
    return struct.pack(">I", len(d)) + d
out = os.open(os.environ["TSNB_PIPE"], os.O_WRONLY)
os.write(out, frame({"v": 1, "op": "hello", "token": os.environ["TSNB_PIPE_TOKEN"]}))
os.write(out, frame({"v": 1, "op": "comm_send", "items": [{"address": "x", "value": 1, "nbuf": 1}], "buffers": [2**40]}))`,
      error: /was closed: frame binary parts of 1099511627776 bytes exceed the 268435456-byte limit/,
    },
    {
      name: "a malformed comm op",
      source: `from tsnb_pipe import Pipe
pipe = Pipe()
pipe._write({"op": "comm_send", "items": [{"address": "", "value": 1}]})
try:
    pipe.sync(timeout=5)
except Exception as e:
    print("client saw:", e)`,
      error: /was closed: "comm_send" op: /,
    },
    {
      name: "a malformed input_request",
      source: `from tsnb_pipe import Pipe
pipe = Pipe()
pipe._write({"op": "input_request", "id": "q1", "prompt": "x", "password": "yes"})
try:
    pipe.sync(timeout=5)
except Exception as e:
    print("client saw:", e)`,
      error: /was closed: "input_request" op: "password" must be true or false/,
    },
  ];

  for (const [index, bad] of garbage.entries()) {
    it(`closes the pipe of a program that sends ${bad.name} with a clear error in the cell; the kernel and the cell's other output survive`, async () => {
      const file = index === 0 ? "bad_token.py" : `bad_${index}.py`;
      const path = script(file, `print("before", flush=True)\n${bad.source}\nprint("after", flush=True)`);
      const result = await kernel.client.execute(`!/usr/bin/python3 ${path}\nconsole.log("cell continues")`);
      const out = outputsOf(result.iopub);
      expect(out.stderr).toMatch(bad.error);
      expect(out.stdout).toContain("before\n");
      expect(out.stdout).toContain("after\n");
      expect(out.stdout).toContain("cell continues\n");
      expect(result.reply.content.status).toBe("ok");
      if (bad.source.includes("client saw")) expect(out.stdout).toMatch(/client saw: the kernel closed the pipe: /);
      await expectKernelAlive();
    });
  }

  it("serves a Node program the same way: a `!node script.mjs` speaking the framing by hand sends a typed array and receives a subscribed value", async () => {
    const tab = await tabListeningOn("node/out");
    const path = join(dir, "client.mjs");
    writeFileSync(
      path,
      // The back pipe is read through a non-blocking net.Socket: a blocking fs read on a FIFO holds a libuv
      // thread-pool thread, and Node waits for it at exit, so process.exit() would hang.
      `import { openSync, writeSync, constants } from "node:fs";
import { Socket } from "node:net";
const out = openSync(process.env.TSNB_PIPE, "w");
const frame = (header, buffers = []) => {
  const json = Buffer.from(JSON.stringify({ v: 1, ...header, ...(buffers.length ? { buffers: buffers.map((b) => b.byteLength) } : {}) }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  writeSync(out, Buffer.concat([len, json, ...buffers.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))]));
};
frame({ op: "hello", token: process.env.TSNB_PIPE_TOKEN });
frame({ op: "comm_subscribe", address: "node/in" });
frame({ op: "comm_send", items: [{ address: "node/out", value: { $tsnb_buffer: 0, kind: "Float64Array" }, nbuf: 1 }] }, [new Float64Array([3.5, -1])]);
let data = Buffer.alloc(0);
const back = new Socket({ fd: openSync(process.env.TSNB_PIPE_BACK, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
for await (const chunk of back) {
  data = Buffer.concat([data, chunk]);
  while (data.length >= 4 && data.length >= 4 + data.readUInt32BE(0)) {
    const n = data.readUInt32BE(0);
    const header = JSON.parse(data.subarray(4, 4 + n).toString());
    const total = 4 + n + (header.buffers ?? []).reduce((a, b) => a + b, 0);
    if (data.length < total) break;
    data = data.subarray(total);
    if (header.op === "comm_deliver") {
      console.log("node got", JSON.stringify(header.items));
      process.exit(0);
    }
  }
}
`,
    );
    const request = kernel.client.send("shell", "execute_request", {
      code: `!${process.execPath} ${path}`,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: false,
      stop_on_error: true,
    });
    await tab.waitFor("the Node program's value", () => tab.valuesOf("node/out").length > 0);
    const sent = tab.valuesOf("node/out")[0];
    expect(sent).toBeInstanceOf(Float64Array);
    expect(Array.from(sent as Float64Array)).toEqual([3.5, -1]);
    tab.sendValue("node/in", { answer: 42 });
    await kernel.client.idle(request, 20_000);
    const out = outputsOf(kernel.client.iopubFor(request));
    expect(out.stderr).toBe("");
    expect(out.stdout).toBe('node got [{"address":"node/in","value":{"answer":42}}]\n');
  });
});

describe("input() over pipes", () => {
  const run = (code: string, allowStdin: boolean) =>
    kernel.client.send("shell", "execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: allowStdin, stop_on_error: true });

  it("asks the notebook user for a line and a hidden password on behalf of a Python program, under its cell", async () => {
    const path = script(
      "ask.py",
      `from tsnb_pipe import Pipe
with Pipe() as pipe:
    name = pipe.input("Name? ")
    secret = pipe.getpass("Secret: ")
    print("hello", name.upper(), len(secret), flush=True)`,
    );
    const request = run(`!/usr/bin/python3 ${path}`, true);
    const asked = (prompt: string) =>
      kernel.client.replies.stdin.wait((m) => parentId(m) === request.msg_id && m.content.prompt === prompt, 15_000, `input_request ${prompt}`);
    const name = await asked("Name? ");
    expect(name.header.msg_type).toBe("input_request");
    expect(name.content).toEqual({ prompt: "Name? ", password: false });
    kernel.client.send("stdin", "input_reply", { value: "ada" }, { parent: name.header });
    const secret = await asked("Secret: ");
    expect(secret.content).toEqual({ prompt: "Secret: ", password: true });
    kernel.client.send("stdin", "input_reply", { value: "hunter2" }, { parent: secret.header });
    const reply = await kernel.client.reply("shell", request, 15_000);
    await kernel.client.idle(request, 5_000);
    expect(reply.content.status).toBe("ok");
    const out = outputsOf(kernel.client.iopubFor(request));
    expect(out.stdout).toBe("hello ADA 7\n");
    expect(out.stderr).toBe("");
  });

  it("answers a clear error instead of hanging when the front-end takes no input (nbclient), and the pipe stays usable", async () => {
    const path = script(
      "ask_nobody.py",
      `from tsnb_pipe import Pipe, InputNotAvailable
with Pipe() as pipe:
    try:
        pipe.input("Name? ", timeout=20)
        print("got a line?!")
    except InputNotAvailable as err:
        print("no input:", err, flush=True)
    pipe.send("after-input", 1)
    pipe.sync(timeout=5)
    print("pipe still open", flush=True)`,
    );
    const request = run(`!/usr/bin/python3 ${path}`, false);
    const reply = await kernel.client.reply("shell", request, 15_000);
    await kernel.client.idle(request, 5_000);
    expect(reply.content.status).toBe("ok");
    const out = outputsOf(kernel.client.iopubFor(request));
    expect(out.stdout).toBe(
      "no input: InputError: input() is not available: this front-end does not accept input (allow_stdin is false)\npipe still open\n",
    );
    expect(out.stderr).toBe("");
    expect(kernel.client.replies.stdin.items.filter((m) => parentId(m) === request.msg_id)).toEqual([]);
  });
});

describe("a !command when no FIFOs can be made", () => {
  let bare: RunningKernel | undefined;

  afterAll(async () => {
    await bare?.kill();
  });

  it("still runs the command, without TSNB_PIPE, and says why", async () => {
    // No mkfifo on PATH: creating the pipes fails, which must not cost the user the command.
    bare = await startKernel({ cwd: dir, env: { ...process.env, PATH: "/nonexistent" } });
    const result = await bare.client.execute(`!/usr/bin/python3 -c 'import os; print("pipe:", os.environ.get("TSNB_PIPE"))'`);
    const out = outputsOf(result.iopub);
    expect(out.stdout).toBe("pipe: None\n");
    expect(out.stderr).toMatch(/tsnb: no TSNB_PIPE for this command: mkfifo failed: /);
    expect(result.reply.content.status).toBe("ok");
  });
});
