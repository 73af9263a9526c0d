// The dispatcher through MemoryTransport with a scripted Execution: status ordering, a reply for every
// request, validation at the edge, the execution lane and stop_on_error, without sockets or processes.

import { History } from "../kernel/core/history.js";
import { randomUUID } from "node:crypto";
import { describe, expect, it, onTestFinished } from "vitest";
import type { JsonObject, JupyterMessage, OutgoingMessage } from "../protocol/jupyter.js";
import { encodeFrames, DELIMITER } from "../protocol/wire.js";
import { NoComms, type Comms } from "../kernel/core/comms.js";
import { KernelComms } from "../kernel/comms/kernel-comms.js";
import { browserValues, commMsg, commOpen, programSend } from "./helpers/comms-fakes.js";
import type { ExecuteContext, Execution } from "../kernel/core/execution.js";
import { KernelIO } from "../kernel/core/io.js";
import { isComplete } from "../kernel/core/is-complete.js";
import { KernelCore } from "../kernel/core/kernel.js";
import { OutputPublisher } from "../kernel/execution/output.js";
import { memoryLog, type Log } from "../kernel/log.js";
import { MemoryTransport } from "../kernel/transport/memory.js";
import { HmacSigner } from "../kernel/transport/signer.js";

/** An Execution whose cells finish when the test says so. */
class ScriptedExecution implements Execution {
  readonly started: Array<{ ctx: ExecuteContext; finish(reply: JsonObject): void }> = [];
  interrupts = 0;
  private waiters: Array<() => void> = [];

  execute(ctx: ExecuteContext): Promise<JsonObject> {
    return new Promise((resolve) => {
      this.started.push({ ctx, finish: resolve });
      for (const w of this.waiters.splice(0)) w();
    });
  }
  async complete(): Promise<JsonObject> {
    throw new TypeError("completion exploded");
  }
  async inspect(): Promise<JsonObject> {
    return { status: "ok", found: false, data: {}, metadata: {} };
  }
  interrupt(): void {
    this.interrupts++;
  }
  inputReply(): void {}
  async dispose(): Promise<void> {}

  async nextStarted(count: number): Promise<void> {
    while (this.started.length < count) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

function message(msgType: string, content: JsonObject): JupyterMessage {
  return {
    identities: [new TextEncoder().encode("client")],
    header: { msg_id: `req-${randomUUID()}`, session: "client-session", username: "u", date: "", msg_type: msgType, version: "5.3" },
    parent_header: {},
    metadata: {},
    content,
    buffers: [],
  };
}

function setup(
  options: { holdMs?: number; maxHoldMs?: number; now?: () => number; comms?: (io: KernelIO, log: Log) => Comms } = {},
) {
  const log = memoryLog();
  const signer = new HmacSigner("k");
  const transport = new MemoryTransport({ log, signer });
  const { comms: makeComms, maxHoldMs, now, ...rest } = options;
  const io = new KernelIO(transport, { ...(maxHoldMs === undefined ? {} : { maxHoldMs }), ...(now === undefined ? {} : { now }) });
  const execution = new ScriptedExecution();
  const shutdowns: boolean[] = [];
  const comms = makeComms ? makeComms(io, log) : new NoComms(log);
  const core = new KernelCore({ transport, execution, comms, history: new History({ file: null, log }), log, io, onShutdown: (r) => shutdowns.push(r), ...rest });
  core.start();
  onTestFinished(() => {
    core.stop();
    void comms.dispose();
    io.dispose();
  });
  return { log, signer, transport, io, execution, core, shutdowns };
}

/** Resolves when a message matching `pred` has been sent. Event-driven: no polling. */
function sent(t: MemoryTransport, pred: (m: OutgoingMessage) => boolean): Promise<OutgoingMessage> {
  const found = t.sent.find(pred);
  if (found) return Promise.resolve(found);
  return new Promise((resolve) => {
    const sub = t.watch((m) => {
      if (pred(m)) {
        sub.dispose();
        resolve(m);
      }
    });
  });
}

const parentOf = (m: OutgoingMessage) => ("msg_id" in m.parent_header ? m.parent_header.msg_id : undefined);
const idleFor = (id: string) => (m: OutgoingMessage) => parentOf(m) === id && m.header.msg_type === "status" && m.content.execution_state === "idle";
const summary = (t: MemoryTransport, id: string) =>
  t.sent.filter((m) => parentOf(m) === id).map((m) => (m.header.msg_type === "status" ? `${m.channel}:${m.content.execution_state}` : `${m.channel}:${m.header.msg_type}`));

describe("KernelCore", () => {
  it("publishes starting once, then busy, reply, idle around a request with the request as parent", async () => {
    const s = setup();
    expect(s.transport.sent.map((m) => [m.header.msg_type, m.content.execution_state])).toEqual([["status", "starting"]]);
    const req = message("kernel_info_request", {});
    s.transport.deliver("shell", req);
    await sent(s.transport, idleFor(req.header.msg_id));
    expect(summary(s.transport, req.header.msg_id)).toEqual(["iopub:busy", "shell:kernel_info_reply", "iopub:idle"]);
    const reply = s.transport.sent.find((m) => m.header.msg_type === "kernel_info_reply")!;
    expect(reply.identities).toEqual(req.identities);
    expect(reply.header.session).toBe(s.io.session);
    expect(s.transport.sent.filter((m) => m.content.execution_state === "starting")).toHaveLength(1);
  });

  it("sends a quick cell's busy, outputs, reply and idle together in one burst", async () => {
    // A long hold makes "nothing left before the handler finished" deterministic.
    let now = 0;
    const s = setup({ holdMs: 60_000, now: () => now });
    // IOPub has been quiet (since `starting`) for a second: the cell is not back to back with anything.
    now = 1000;
    const cell = message("execute_request", { code: "1" });
    s.transport.deliver("shell", cell);
    await s.execution.nextStarted(1);
    s.execution.started[0]!.ctx.publish("execute_input", { code: "1", execution_count: 1 });
    s.execution.started[0]!.ctx.publish("execute_result", { data: { "text/plain": "1" }, execution_count: 1 });
    expect(s.transport.sent.filter((m) => parentOf(m) === cell.header.msg_id)).toEqual([]);
    s.execution.started[0]!.finish({ status: "ok", execution_count: 1 });
    await sent(s.transport, idleFor(cell.header.msg_id));
    expect(summary(s.transport, cell.header.msg_id)).toEqual(["iopub:busy", "iopub:execute_input", "iopub:execute_result", "shell:execute_reply", "iopub:idle"]);
  });

  it("does not hold an execute that comes back to back with IOPub's last message, and holds the next one after a pause", async () => {
    let now = 0;
    const s = setup({ holdMs: 60_000, now: () => now });
    now = 1000;
    const first = message("execute_request", { code: "1" });
    s.transport.deliver("shell", first);
    await s.execution.nextStarted(1);
    s.execution.started[0]!.finish({ status: "ok", execution_count: 1 });
    await sent(s.transport, idleFor(first.header.msg_id));
    // 1 ms after that idle (a client sending its next cell as soon as it has it): busy and execute_input go out
    // while the cell runs, so the client can decode them meanwhile.
    now += 1;
    const second = message("execute_request", { code: "2" });
    s.transport.deliver("shell", second);
    await s.execution.nextStarted(2);
    s.execution.started[1]!.ctx.publish("execute_input", { code: "2", execution_count: 2 });
    expect(summary(s.transport, second.header.msg_id)).toEqual(["iopub:busy", "iopub:execute_input"]);
    s.execution.started[1]!.finish({ status: "ok", execution_count: 2 });
    await sent(s.transport, idleFor(second.header.msg_id));
    // After a pause the hold is back: nothing of the third cell leaves before it finishes.
    now += 50;
    const third = message("execute_request", { code: "3" });
    s.transport.deliver("shell", third);
    await s.execution.nextStarted(3);
    s.execution.started[2]!.ctx.publish("execute_input", { code: "3", execution_count: 3 });
    expect(summary(s.transport, third.header.msg_id)).toEqual([]);
    s.execution.started[2]!.finish({ status: "ok", execution_count: 3 });
    await sent(s.transport, idleFor(third.header.msg_id));
    expect(summary(s.transport, third.header.msg_id)).toEqual(["iopub:busy", "iopub:execute_input", "shell:execute_reply", "iopub:idle"]);
  });

  it("publishes busy and output of a long cell after the short hold, while it still runs", async () => {
    const s = setup({ holdMs: 5 });
    const cell = message("execute_request", { code: "slow()" });
    s.transport.deliver("shell", cell);
    await s.execution.nextStarted(1);
    s.execution.started[0]!.ctx.publish("execute_input", { code: "slow()", execution_count: 1 });
    await sent(s.transport, (m) => parentOf(m) === cell.header.msg_id && m.header.msg_type === "execute_input");
    expect(summary(s.transport, cell.header.msg_id)).toEqual(["iopub:busy", "iopub:execute_input"]);
    s.execution.started[0]!.finish({ status: "ok", execution_count: 1 });
    await sent(s.transport, idleFor(cell.header.msg_id));
  });

  it("answers with an error reply when a handler throws, and still publishes idle", async () => {
    const s = setup();
    const req = message("complete_request", { code: "x", cursor_pos: 1 });
    s.transport.deliver("shell", req);
    await sent(s.transport, idleFor(req.header.msg_id));
    const reply = s.transport.sent.find((m) => m.header.msg_type === "complete_reply")!;
    expect(reply.content).toEqual({ status: "error", ename: "TypeError", evalue: "completion exploded", traceback: [] });
    expect(s.log.lines.some((l) => l.includes("complete_request handler failed"))).toBe(true);
  });

  it("validates content at the edge: non-string code gets a clear error reply", async () => {
    const s = setup();
    const req = message("execute_request", { code: ["not", "a", "string"] });
    s.transport.deliver("shell", req);
    await sent(s.transport, idleFor(req.header.msg_id));
    const reply = s.transport.sent.find((m) => m.header.msg_type === "execute_reply")!;
    expect(reply.content.status).toBe("error");
    expect(reply.content.evalue).toBe('invalid execute_request: "code" must be a string of TypeScript code, got an array');
    expect(s.execution.started).toHaveLength(0);
  });

  it("answers unknown requests with an error reply and logs them", async () => {
    const s = setup();
    const req = message("mystery_request", {});
    s.transport.deliver("control", req);
    await sent(s.transport, idleFor(req.header.msg_id));
    expect(summary(s.transport, req.header.msg_id)).toEqual(["iopub:busy", "control:mystery_reply", "iopub:idle"]);
    expect(s.log.lines).toContain('warn: unknown message type "mystery_request" on control');
  });

  it("treats Object.prototype names as unknown types without a reply", async () => {
    const s = setup();
    for (const msgType of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      const req = message(msgType, {});
      s.transport.deliver("shell", req);
      await sent(s.transport, idleFor(req.header.msg_id));
      expect(summary(s.transport, req.header.msg_id)).toEqual(["iopub:busy", "iopub:idle"]);
    }
    for (const m of s.transport.sent) expect(typeof m.header.msg_type).toBe("string");
  });

  it("keeps control responsive while a cell runs, and routes interrupt_request to the execution", async () => {
    const s = setup();
    const cell = message("execute_request", { code: "while (true) {}" });
    s.transport.deliver("shell", cell);
    await s.execution.nextStarted(1);
    const info = message("kernel_info_request", {});
    s.transport.deliver("control", info);
    await sent(s.transport, idleFor(info.header.msg_id));
    const interrupt = message("interrupt_request", {});
    s.transport.deliver("control", interrupt);
    await sent(s.transport, idleFor(interrupt.header.msg_id));
    expect(s.execution.interrupts).toBe(1);
    s.execution.started[0]!.finish({ status: "error", ename: "Interrupted", evalue: "", traceback: [] });
    await sent(s.transport, idleFor(cell.header.msg_id));
  });

  it("runs executes one at a time in order; after an error with stop_on_error, aborts only what was queued", async () => {
    const s = setup();
    const [a, b, c] = [message("execute_request", { code: "a" }), message("execute_request", { code: "b" }), message("execute_request", { code: "c" })];
    for (const m of [a, b, c]) s.transport.deliver("shell", m);
    await s.execution.nextStarted(1);
    expect(s.execution.started).toHaveLength(1);
    s.execution.started[0]!.finish({ status: "error", ename: "E", evalue: "", traceback: [] });
    await sent(s.transport, idleFor(c.header.msg_id));
    expect(s.execution.started).toHaveLength(1);
    for (const m of [b, c]) {
      expect(summary(s.transport, m.header.msg_id)).toEqual(["iopub:busy", "shell:execute_reply", "iopub:idle"]);
      expect(s.transport.sent.find((o) => parentOf(o) === m.header.msg_id && o.header.msg_type === "execute_reply")!.content).toEqual({ status: "aborted" });
    }
    const d = message("execute_request", { code: "d" });
    s.transport.deliver("shell", d);
    await s.execution.nextStarted(2);
    expect(s.execution.started[1]!.ctx.request.content.code).toBe("d");
    s.execution.started[1]!.finish({ status: "ok", execution_count: 1 });
    await sent(s.transport, idleFor(d.header.msg_id));
  });

  it("does not abort queued cells when stop_on_error is false", async () => {
    const s = setup();
    const a = message("execute_request", { code: "a", stop_on_error: false });
    const b = message("execute_request", { code: "b" });
    s.transport.deliver("shell", a);
    s.transport.deliver("shell", b);
    await s.execution.nextStarted(1);
    s.execution.started[0]!.finish({ status: "error", ename: "E", evalue: "", traceback: [] });
    await s.execution.nextStarted(2);
    expect(s.execution.started[1]!.ctx.request.content.code).toBe("b");
    s.execution.started[1]!.finish({ status: "ok" });
    await sent(s.transport, idleFor(b.header.msg_id));
  });

  it("fills protocol defaults for missing execute fields", async () => {
    const s = setup();
    s.transport.deliver("shell", message("execute_request", { code: "x", silent: true }));
    await s.execution.nextStarted(1);
    expect(s.execution.started[0]!.ctx.request.content).toEqual({
      code: "x",
      silent: true,
      store_history: false,
      user_expressions: {},
      allow_stdin: true,
      stop_on_error: true,
    });
    s.execution.started[0]!.finish({ status: "ok" });
  });

  it("replies to shutdown_request on control before calling onShutdown, and refuses later requests", async () => {
    const s = setup();
    const req = message("shutdown_request", { restart: true });
    s.transport.deliver("control", req);
    await sent(s.transport, idleFor(req.header.msg_id));
    await Promise.resolve();
    expect(s.shutdowns).toEqual([true]);
    expect(s.transport.sent.find((m) => m.header.msg_type === "shutdown_reply")?.content).toEqual({ status: "ok", restart: true });
    const late = message("kernel_info_request", {});
    s.transport.deliver("shell", late);
    await sent(s.transport, idleFor(late.header.msg_id));
    expect(s.transport.sent.find((m) => parentOf(m) === late.header.msg_id && m.channel === "shell")?.content.status).toBe("error");
  });

  it("refuses a comm_open for an unknown target, and one with bad content, with comm_close", async () => {
    const s = setup();
    const open = message("comm_open", { comm_id: "abc", target_name: "jupyter.widget", data: {} });
    s.transport.deliver("shell", open);
    await sent(s.transport, idleFor(open.header.msg_id));
    expect(summary(s.transport, open.header.msg_id)).toEqual(["iopub:busy", "iopub:comm_close", "iopub:idle"]);
    const bad = message("comm_open", { comm_id: "def", target_name: 7 });
    s.transport.deliver("shell", bad);
    await sent(s.transport, idleFor(bad.header.msg_id));
    expect(summary(s.transport, bad.header.msg_id)).toEqual(["iopub:busy", "iopub:comm_close", "iopub:idle"]);
  });

  it("acts on nothing that fails signature verification", async () => {
    const s = setup();
    const m = message("kernel_info_request", {});
    const frames = encodeFrames({ ...m, identities: [] }, new HmacSigner("wrong-key"));
    s.transport.deliverFrames("shell", frames);
    s.transport.deliverFrames("shell", [new TextEncoder().encode(DELIMITER)]);
    expect(s.transport.sent).toHaveLength(1); // only `starting`
    expect(s.log.lines).toEqual(["warn: dropped a message on shell: bad HMAC signature", "warn: dropped a message on shell: truncated message: 0 frames after the delimiter, need at least 5"]);
    const good = encodeFrames({ ...m, identities: [] }, s.signer);
    s.transport.deliverFrames("shell", good);
    await sent(s.transport, idleFor(m.header.msg_id));
  });
});

describe("KernelIO holds", () => {
  it("never delays a message past maxHoldMs, even while holds keep overlapping", async () => {
    const log = memoryLog();
    const transport = new MemoryTransport({ log, signer: new HmacSigner("") });
    const io = new KernelIO(transport, { maxHoldMs: 5 });
    onTestFinished(() => io.dispose());
    // Requests arriving back to back (comm bursts) keep at least one hold open all the time.
    const first = io.hold(60_000);
    io.publish({ msgType: "stream", content: { name: "stdout", text: "a" }, parent: {} });
    const second = io.hold(60_000);
    first.dispose();
    expect(transport.sent).toEqual([]);
    const out = await sent(transport, (m) => m.header.msg_type === "stream");
    expect(out.content.text).toBe("a");
    second.dispose();
  });

  it("sends held messages in order as soon as the last hold ends", () => {
    const log = memoryLog();
    const transport = new MemoryTransport({ log, signer: new HmacSigner("") });
    const io = new KernelIO(transport, { maxHoldMs: 60_000 });
    onTestFinished(() => io.dispose());
    const hold = io.hold(60_000);
    for (const text of ["1", "2", "3"]) io.publish({ msgType: "stream", content: { name: "stdout", text }, parent: {} });
    expect(transport.sent).toEqual([]);
    hold.dispose();
    expect(transport.sent.map((m) => m.content.text)).toEqual(["1", "2", "3"]);
  });

  it("has the transport encode held messages after the turn that published them, each once, and sends them as held", async () => {
    const log = memoryLog();
    const prepared: OutgoingMessage[] = [];
    // MemoryTransport with the optional prepare(): records what was prepared ahead of its send.
    const transport = Object.assign(new MemoryTransport({ log, signer: new HmacSigner("") }), {
      prepare: (m: OutgoingMessage) => void prepared.push(m),
    });
    const io = new KernelIO(transport, { maxHoldMs: 60_000 });
    onTestFinished(() => io.dispose());
    const hold = io.hold(60_000);
    io.status("busy", {});
    io.publish({ msgType: "execute_input", content: { code: "1+1", execution_count: 1 }, parent: {} });
    // Not in the publishing turn: that turn (an execute's) is the one that writes the cell to the program.
    expect(prepared).toEqual([]);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(prepared.map((m) => m.header.msg_type)).toEqual(["status", "execute_input"]);
    io.publish({ msgType: "execute_result", content: { execution_count: 1, data: { "text/plain": "2" }, metadata: {} }, parent: {} });
    hold.dispose();
    // The prepared objects themselves go out, in publish order, with what was published after them.
    expect(transport.sent.map((m) => m.header.msg_type)).toEqual(["status", "execute_input", "execute_result"]);
    expect(transport.sent.slice(0, 2)).toEqual(prepared);
    expect(transport.sent[0]).toBe(prepared[0]);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(prepared).toHaveLength(2);
  });
});

describe("comms echo through the dispatcher", () => {
  it("publishes the program's answer to a browser value ahead of that request's busy and idle", async () => {
    let comms: KernelComms | null = null;
    // Long holds and answer wait: the order below depends on events, not on timing.
    const s = setup({ holdMs: 60_000, maxHoldMs: 60_000, comms: (io, log) => (comms = new KernelComms({ io, log, answerWaitMs: 60_000 })) });
    const bridge = comms!;
    bridge.attach({
      sendToProgram: (op) => {
        // The program answers each delivered value from its subscription callback, as an echo cell does.
        if (op.op === "comm_deliver") {
          setImmediate(() => {
            const frame = programSend([{ address: "pong", value: 1 }]);
            bridge.onOp(frame.header as JsonObject & { op: string }, frame.buffers);
          });
        }
        return true;
      },
      parentForCell: () => ({}),
      holdReading: () => {},
    });
    bridge.programStarted();
    expect(bridge.onOp({ op: "comm_subscribe", cell: null, address: "ping" }, [])).toBeNull();
    const open = commOpen("tab");
    s.transport.deliver("shell", open);
    await sent(s.transport, idleFor(open.header.msg_id));
    const listen = commMsg("tab", { op: "listen", address: "pong", latest_only: false });
    s.transport.deliver("shell", listen);
    await sent(s.transport, idleFor(listen.header.msg_id));

    const ping = browserValues("tab", [{ address: "ping", value: 1 }]);
    const from = s.transport.sent.length;
    s.transport.deliver("shell", ping);
    await sent(s.transport, idleFor(ping.header.msg_id));
    const after = s.transport.sent.slice(from).map((m) =>
      m.header.msg_type === "status" ? `status:${String(m.content.execution_state)}` : `${m.header.msg_type}:${String((m.content.data as { op?: string }).op)}`,
    );
    // The Notebook server writes the first of these at once and the rest after the browser's ACK: the answer
    // must be the first.
    expect(after).toEqual(["comm_msg:values", "status:busy", "status:idle"]);
  });
});

describe("KernelIO: an answer overtakes held status messages, nothing else", () => {
  it("sends an overtakeStatus message at once past a held busy, and holds it behind any held output", () => {
    const transport = new MemoryTransport({ log: memoryLog(), signer: new HmacSigner("") });
    const io = new KernelIO(transport, { maxHoldMs: 60_000 });
    onTestFinished(() => io.dispose());
    const hold = io.hold(60_000);
    io.status("busy", {});
    io.publish({ msgType: "comm_msg", content: { data: "answer" }, parent: {}, overtakeStatus: true });
    expect(transport.sent.map((m) => m.header.msg_type)).toEqual(["comm_msg"]);
    io.publish({ msgType: "stream", content: { name: "stdout", text: "printed" }, parent: {} });
    io.publish({ msgType: "comm_msg", content: { data: "after the stream" }, parent: {}, overtakeStatus: true });
    io.status("idle", {});
    hold.dispose();
    expect(transport.sent.map((m) => `${m.header.msg_type}:${String(m.content.data ?? m.content.text ?? m.content.execution_state)}`)).toEqual([
      "comm_msg:answer",
      "status:busy",
      "stream:printed",
      "comm_msg:after the stream",
      "status:idle",
    ]);
  });
});

describe("is_complete scanner", () => {
  it.each([
    ["const x = 1", { status: "complete" }],
    ["function f() {", { status: "incomplete", indent: "  " }],
    ["if (a) {\n  g([1,", { status: "incomplete", indent: "      " }],
    ["const s = `a ${b", { status: "incomplete", indent: "  " }],
    ["const s = `multi\nline", { status: "incomplete", indent: "" }],
    ["/* open comment", { status: "incomplete", indent: "  " }],
    ["const s = '{'; // }", { status: "complete" }],
    ["const t = `${'}'}`", { status: "complete" }],
    ["f(x))", { status: "invalid" }],
    ["[1, 2}", { status: "invalid" }],
    ["const s = 'unterminated\nnext", { status: "invalid" }],
  ])("%j -> %j", (code, expected) => {
    expect(isComplete(code)).toEqual(expected);
  });
});

describe("OutputPublisher", () => {
  function publisher(limits = { flushMs: 5, maxChars: 10 }) {
    const log = memoryLog();
    const transport = new MemoryTransport({ log, signer: new HmacSigner("") });
    const io = new KernelIO(transport);
    return { transport, out: new OutputPublisher({ io, limits }) };
  }
  const parent = { msg_id: "p", session: "s", username: "u", date: "", msg_type: "execute_request", version: "5.3" };

  it("coalesces consecutive chunks of one stream, and flushes on a timer", async () => {
    const { transport, out } = publisher({ flushMs: 5, maxChars: 1000 });
    for (const t of ["a", "b", "c"]) out.stream({ cellKey: "c1", parent, name: "stdout", text: t });
    expect(transport.sent).toHaveLength(0);
    const m = await sent(transport, (o) => o.header.msg_type === "stream");
    expect(m.content).toEqual({ name: "stdout", text: "abc" });
    expect(transport.sent).toHaveLength(1);
  });

  it("keeps order across streams and other output, and splits at the size limit", () => {
    const { transport, out } = publisher();
    out.stream({ cellKey: "c1", parent, name: "stdout", text: "12345678901234" });
    out.stream({ cellKey: "c1", parent, name: "stderr", text: "err" });
    out.stream({ cellKey: "c1", parent, name: "stdout", text: "x" });
    out.publish({ parent, msgType: "display_data", content: { data: {} } });
    out.flush();
    expect(transport.sent.map((m) => (m.header.msg_type === "stream" ? `${m.content.name}:${m.content.text}` : m.header.msg_type))).toEqual([
      "stdout:1234567890",
      "stdout:1234",
      "stderr:err",
      "stdout:x",
      "display_data",
    ]);
  });
});
