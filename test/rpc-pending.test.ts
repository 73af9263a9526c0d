// PendingCalls (protocol/rpc.ts): the one table of calls awaiting an answer, used by the page's
// tsnb_comm.call and the program's comms.callFrontend. Deadlines run on vitest's fake clock; the two
// real users are covered end to end by rpc-memory, rpc-kernel and rpc-browser.

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DisposedError } from "../protocol/disposable.js";
import { encodeReply, PendingCalls, RpcCode, RpcError, runCall, type CallOutcome } from "../protocol/rpc.js";
import { encodeValue } from "../protocol/values.js";
import { rpcRejection } from "./helpers/comms-fakes.js";

function table() {
  return new PendingCalls<{ sent: boolean }>({ owner: "tsnb_comm", closedReason: "tsnb_comm was closed" });
}

describe("PendingCalls", () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it("resolves a call with its reply's decoded value, typed arrays included, and forgets it", async () => {
    const calls = table();
    const answer = calls.add("a", { label: 'call("sum")', timeoutMs: 1000, data: { sent: true } });
    expect(calls.size).toBe(1);
    expect(calls.get("a")).toEqual({ sent: true });
    const encoded = encodeValue({ total: 3, bytes: new Float32Array([1.5, 2.5]) });
    expect(calls.settle("a", { value: encoded.json }, encoded.buffers, "the program")).toBe(true);
    expect(await answer).toEqual({ total: 3, bytes: new Float32Array([1.5, 2.5]) });
    expect(calls.size).toBe(0);
    expect(calls.get("a")).toBeUndefined();
    // A second answer for the same id finds nothing.
    expect(calls.settle("a", { value: 1 }, [], "the program")).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("rejects with the reply's error as an RpcError carrying code and remote stack", async () => {
    const calls = table();
    const answer = calls.add("a", { label: 'call("boom")', timeoutMs: 1000, data: { sent: true } });
    calls.settle("a", { error: { code: RpcCode.EXCEPTION, message: "Error: boom", data: { stack: "at boom()" } } }, [], "the program");
    const e = await rpcRejection(answer);
    expect(e.code).toBe(RpcCode.EXCEPTION);
    expect(e.message).toBe("Error: boom");
    expect(e.remoteStack).toBe("at boom()");
  });

  it("rejects with -32602 when the reply's value does not decode", async () => {
    const calls = table();
    const answer = calls.add("a", { label: 'call("x")', timeoutMs: 1000, data: { sent: true } });
    // A placeholder for a binary part the reply does not carry.
    calls.settle("a", { value: { $tsnb_buffer: 0, kind: "Uint8Array" } }, [], "the program");
    const e = await rpcRejection(answer);
    expect(e.code).toBe(RpcCode.INVALID_PARAMS);
    expect(e.message).toMatch(/^the program's result could not be decoded/);
  });

  it("fails a call with -32005 at its deadline, runs onTimeout first, and drops a late answer", async () => {
    const calls = table();
    const order: string[] = [];
    const answer = calls.add("a", { label: 'call("slow")', timeoutMs: 500, onTimeout: () => order.push("timeout"), data: { sent: true } });
    answer.catch(() => order.push("rejected"));
    vi.advanceTimersByTime(499);
    expect(calls.size).toBe(1);
    vi.advanceTimersByTime(1);
    const e = await rpcRejection(answer);
    expect(e.code).toBe(RpcCode.TIMEOUT);
    expect(e.message).toBe('call("slow") got no answer within 500 ms');
    expect(order).toEqual(["timeout", "rejected"]);
    expect(calls.size).toBe(0);
    expect(calls.settle("a", { value: 1 }, [], "the program")).toBe(false);
  });

  it("clears the deadline of a call that was answered: no timer is left behind", async () => {
    const calls = table();
    const onTimeout = vi.fn();
    const answers = [1, 2, 3].map((n) => calls.add(`c${n}`, { label: "call", timeoutMs: 1000, onTimeout, data: { sent: true } }));
    expect(vi.getTimerCount()).toBe(3);
    for (const n of [1, 2, 3]) calls.settle(`c${n}`, { value: n }, [], "the program");
    expect(await Promise.all(answers)).toEqual([1, 2, 3]);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(onTimeout).not.toHaveBeenCalled();
  });

  it("rejectIf fails only the matching calls, with the owner's error, and keeps the others", async () => {
    const calls = table();
    const sent = calls.add("s", { label: 'call("sent")', timeoutMs: 1000, data: { sent: true } });
    const queued = calls.add("q", { label: 'call("queued")', timeoutMs: 1000, data: { sent: false } });
    const count = calls.rejectIf(
      (d) => d.sent,
      (label) => new RpcError({ code: RpcCode.DISCONNECTED, message: `${label}: the comm closed` }),
    );
    expect(count).toBe(1);
    const e = await rpcRejection(sent);
    expect(e.code).toBe(RpcCode.DISCONNECTED);
    expect(e.message).toBe('call("sent"): the comm closed');
    expect([...calls.entries()]).toEqual([["q", { sent: false }]]);
    calls.settle("q", { value: "still answered" }, [], "the program");
    expect(await queued).toBe("still answered");
  });

  it("lists pending calls oldest first, and the data is the owner's to update", () => {
    const calls = table();
    for (const id of ["z", "a", "m"]) void calls.add(id, { label: "call", timeoutMs: 1000, data: { sent: false } }).catch(() => undefined);
    for (const [, data] of calls.entries()) data.sent = true;
    expect([...calls.entries()]).toEqual([["z", { sent: true }], ["a", { sent: true }], ["m", { sent: true }]]);
    calls.dispose();
  });

  it("dispose fails every pending call with -32004 caused by a DisposedError, once, and refuses new calls", async () => {
    const calls = table();
    const a = calls.add("a", { label: 'tsnb_comm.call("a")', timeoutMs: 1000, data: { sent: true } });
    const b = calls.add("b", { label: 'tsnb_comm.call("b")', timeoutMs: 1000, data: { sent: false } });
    calls.dispose();
    calls.dispose();
    for (const [p, name] of [[a, "a"], [b, "b"]] as const) {
      const e = await rpcRejection(p);
      expect(e.code).toBe(RpcCode.DISCONNECTED);
      expect(e.message).toBe(`tsnb_comm.call("${name}"): tsnb_comm was closed`);
      expect(e.cause).toBeInstanceOf(DisposedError);
    }
    expect(calls.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    const late = await rpcRejection(calls.add("c", { label: 'tsnb_comm.call("c")', timeoutMs: 1000, data: { sent: false } }));
    expect(late.code).toBe(RpcCode.DISCONNECTED);
    expect(late.cause).toBeInstanceOf(DisposedError);
    expect(calls.size).toBe(0);
  });

  it("refuses a second call with an id that is still pending, and keeps the first", async () => {
    const calls = table();
    const first = calls.add("a", { label: "call", timeoutMs: 1000, data: { sent: true } });
    await expect(calls.add("a", { label: "call", timeoutMs: 1000, data: { sent: false } })).rejects.toThrow(/already pending/);
    calls.settle("a", { value: "first" }, [], "the program");
    expect(await first).toBe("first");
  });
});

describe("runCall and encodeReply", () => {
  async function run(options: { handler?: (...args: unknown[]) => unknown; value: unknown }): Promise<CallOutcome> {
    const encoded = encodeValue(options.value);
    return new Promise<CallOutcome>((resolve) => {
      let replies = 0;
      runCall({
        handler: options.handler,
        notFound: () => "nothing called that",
        value: encoded.json,
        buffers: encoded.buffers,
        invoke: (fn, args, kwargs) => fn(args, kwargs),
        reply: (outcome) => {
          replies++;
          expect(replies).toBe(1);
          resolve(outcome);
        },
      });
    });
  }

  it("answers with the function's result, given [args, kwargs] decoded with their typed arrays", async () => {
    const outcome = await run({ handler: (args, kwargs) => ({ args, kwargs }), value: [[1, new Uint8Array([7])], { k: "v" }] });
    expect(outcome).toEqual({ value: { args: [1, new Uint8Array([7])], kwargs: { k: "v" } } });
  });

  it("answers with what an async function resolves to", async () => {
    expect(await run({ handler: async () => "later", value: [[], {}] })).toEqual({ value: "later" });
  });

  it("answers -32601 when nothing is registered, with the side's message", async () => {
    expect(await run({ value: [[], {}] })).toEqual({ error: { code: RpcCode.METHOD_NOT_FOUND, message: "nothing called that" } });
  });

  it("answers -32602 when the parameters are not [args, kwargs] or do not decode", async () => {
    const shape = await run({ handler: () => 1, value: { not: "a list" } });
    expect(shape).toEqual({ error: { code: RpcCode.INVALID_PARAMS, message: "call parameters must be [args, kwargs]" } });
    const calls: unknown[] = [];
    let outcome: CallOutcome | undefined;
    runCall({
      handler: () => calls.push("ran"),
      notFound: () => "",
      value: [[{ $tsnb_buffer: 0, kind: "Uint8Array" }], {}],
      buffers: [],
      invoke: (fn) => fn(),
      reply: (o) => (outcome = o),
    });
    expect(outcome).toMatchObject({ error: { code: RpcCode.INVALID_PARAMS, message: expect.stringMatching(/^the arguments could not be decoded/) } });
    expect(calls).toEqual([]);
  });

  it("answers -32001 with the stack when the function throws or rejects", async () => {
    for (const handler of [() => { throw new TypeError("bad"); }, async () => { throw new TypeError("bad"); }]) {
      const outcome = await run({ handler, value: [[], {}] });
      if (!("error" in outcome)) throw new Error("expected an error outcome");
      expect(outcome.error.code).toBe(RpcCode.EXCEPTION);
      expect(outcome.error.message).toBe("TypeError: bad");
      expect(outcome.error.data?.stack).toMatch(/TypeError: bad\n\s+at /);
    }
  });

  it("encodeReply puts typed arrays in binary parts, makes undefined null, and turns an unsendable result into -32002", () => {
    const bytes = new Float64Array([0.5]);
    expect(encodeReply({ value: { bytes } })).toEqual({ payload: { value: { bytes: { $tsnb_buffer: 0, kind: "Float64Array" } }, nbuf: 1 }, buffers: [new Uint8Array(bytes.buffer)] });
    expect(encodeReply({ value: undefined })).toEqual({ payload: { value: null }, buffers: [] });
    const error = { code: RpcCode.EXCEPTION, message: "no" };
    expect(encodeReply({ error })).toEqual({ payload: { error }, buffers: [] });
    const bad = encodeReply({ value: { f: () => 1 } });
    expect(bad.buffers).toEqual([]);
    expect(bad.payload).toMatchObject({ error: { code: RpcCode.RESULT_NOT_SERIALIZABLE } });
  });
});
