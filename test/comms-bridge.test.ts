// The kernel's comms hub driven in memory: a manual clock, a recording host, Jupyter comm messages as a
// browser would send them and comm ops as the program would.

import { describe, expect, it } from "vitest";
import { CommsBridge, type BridgeOptions } from "../kernel/comms/bridge.js";
import { BROWSER_CHUNK_BYTES, parseKernelMessage, splitItems, valueOf, type KernelToBrowser } from "../protocol/bridge.js";
import { FrameDecoder, encodeFrameHeader } from "../protocol/framing.js";
import { ManualClock, RecordingHost, browserValues, commClose, commMsg, commOpen, framed, programSend } from "./helpers/comms-fakes.js";

function setup(options: Partial<BridgeOptions> = {}) {
  const clock = new ManualClock();
  const host = new RecordingHost(clock);
  const bridge = new CommsBridge(host, options);
  /** Opens a comm and consumes its ack. */
  const open = (id: string) => {
    bridge.commOpen(commOpen(id));
    const acks = host.takeFor(id);
    expect(acks.map((a) => a.data)).toEqual([{ op: "open_ack", comm_id: id, version: 1 }]);
  };
  const listen = (id: string, address: string, latestOnly = false) =>
    bridge.commMsg(commMsg(id, { op: "listen", address, latest_only: latestOnly }));
  const send = (values: { address: string; value: unknown }[]) => {
    const frame = programSend(values);
    expect(bridge.programOp(frame.header, frame.buffers)).toBeNull();
  };
  /** Acks everything a comm received so far, as the shim does. */
  const ackAll = (id: string, seqs: number[]) => {
    if (seqs.length > 0) bridge.commMsg(commMsg(id, { op: "ack", seq: Math.max(...seqs) }));
  };
  return { clock, host, bridge, open, listen, send, ackAll };
}

describe("comm lifecycle", () => {
  it("refuses other targets with comm_close and acknowledges tsnb_comm opens", () => {
    const { host, bridge, open } = setup();
    bridge.commOpen(commOpen("x", "jupyter.widget"));
    expect(host.closes()).toEqual(["x"]);
    open("a");
    expect(bridge.commInfo()).toEqual({ a: { target_name: "tsnb_comm" } });
    expect(bridge.commInfo("tsnb_comm")).toEqual({ a: { target_name: "tsnb_comm" } });
    expect(bridge.commInfo("other")).toEqual({});
  });

  it("refuses an open with an unknown bridge version", () => {
    const { host, bridge } = setup();
    bridge.commOpen(commOpen("v", "tsnb_comm", { version: 99 }));
    const close = host.published.find((p) => p.msg_type === "comm_close");
    expect(close?.content).toMatchObject({ comm_id: "v", data: { reason: expect.stringContaining("version") } });
    expect(bridge.commInfo()).toEqual({});
  });

  it("tells the program how many front-ends and listeners there are", () => {
    const { host, bridge, open, listen } = setup();
    open("a");
    open("b");
    listen("a", "x");
    listen("b", "x");
    bridge.commMsg(commMsg("a", { op: "unlisten", address: "x" }));
    bridge.commClose(commClose("b"));
    expect(host.program.map((m) => m.op)).toEqual([
      { op: "comm_frontends", count: 1, ids: ["a"] },
      { op: "comm_frontends", count: 2, ids: ["a", "b"] },
      { op: "comm_listeners", address: "x", count: 1 },
      { op: "comm_listeners", address: "x", count: 2 },
      { op: "comm_listeners", address: "x", count: 1 },
      { op: "comm_listeners", address: "x", count: 0 },
      { op: "comm_frontends", count: 1, ids: ["a"] },
    ]);
    expect(bridge.commInfo()).toEqual({ a: { target_name: "tsnb_comm" } });
  });

  it("answers a message on a comm it does not know with comm_close, so the shim reconnects", () => {
    const { host, bridge } = setup();
    bridge.commMsg(commMsg("ghost", { op: "listen", address: "x" }));
    expect(host.closes()).toEqual(["ghost"]);
  });

  it("restates front-ends and listeners to a freshly started program", () => {
    const { host, bridge, open, listen } = setup();
    open("a");
    listen("a", "x");
    host.program = [];
    bridge.programStarted();
    expect(host.program.map((m) => m.op)).toEqual([
      { op: "comm_frontends", count: 1, ids: ["a"] },
      { op: "comm_listeners", address: "x", count: 1 },
    ]);
  });
});

describe("values", () => {
  it("stores values sent with no front-end and replays the last one to a late listener", () => {
    const { clock, host, bridge, open, listen, send } = setup();
    send([{ address: "x", value: 1 }, { address: "x", value: 2 }, { address: "y", value: "why" }]);
    open("a");
    listen("a", "x");
    clock.advance(10);
    expect(host.valuesFor("a")).toEqual([{ address: "x", value: 2 }]);
    expect(bridge.lastValue("y")?.value).toBe("why");
  });

  it("keeps no copy of a large value the program holds: a late listener gets it replayed by the program, to it alone", () => {
    const { clock, host, bridge, open, listen, send } = setup({ heldValueBytes: 1000 });
    open("a");
    listen("a", "big");
    const big = new Uint8Array(5000).fill(9);
    send([{ address: "big", value: big }, { address: "small", value: new Uint8Array(10) }]);
    clock.advance(10);
    expect(host.valuesFor("a").map((v) => v.address)).toEqual(["big"]);
    expect(bridge.lastValue("big")).toBeUndefined();
    expect(bridge.heldByProgram("big")).toBe(true);
    expect(bridge.storedBinaryBytes).toBe(10);
    // A second tab listens: the kernel asks the program, whose answer goes to that tab only.
    open("b");
    listen("b", "big");
    expect(host.program.filter((m) => m.op.op === "comm_replay").map((m) => m.op)).toEqual([{ op: "comm_replay", address: "big", frontend: "b" }]);
    const replay = { op: "comm_send", cell: null, frontend: "b", items: [{ address: "big", value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 }] };
    expect(bridge.programOp(replay, [big])).toBeNull();
    clock.advance(10);
    const replayed = host.valuesFor("b");
    expect(replayed).toHaveLength(1);
    expect((replayed[0]!.value as Uint8Array)[4999]).toBe(9);
    expect(host.valuesFor("a")).toEqual([]);
    expect(bridge.lastValue("big")).toBeUndefined();
    // A replay for a tab that is gone or no longer listens goes nowhere.
    expect(bridge.programOp({ ...replay, frontend: "gone" }, [big])).toBeNull();
    clock.advance(10);
    expect(host.valuesFor("a")).toEqual([]);
    // A smaller value replaces it in the store; a large one from a browser stays here unless the program subscribed.
    send([{ address: "big", value: "small now" }]);
    expect(bridge.heldByProgram("big")).toBe(false);
    expect(bridge.lastValue("big")?.value).toBe("small now");
    bridge.commMsg(browserValues("a", [{ address: "up", value: big }]));
    expect(bridge.heldByProgram("up")).toBe(false);
    expect(bridge.lastValue("up")).toBeDefined();
    bridge.programOp({ op: "comm_subscribe", cell: null, address: "up" }, []);
    bridge.commMsg(browserValues("a", [{ address: "up", value: big }]));
    expect(bridge.heldByProgram("up")).toBe(true);
    expect(bridge.lastValue("up")).toBeUndefined();
    // The values a program held go with it.
    bridge.programStopped();
    expect(bridge.heldByProgram("up")).toBe(false);
    open("c");
    listen("c", "up");
    expect(host.program.filter((m) => m.op.op === "comm_replay")).toHaveLength(1);
  });

  it("delivers falsy values and typed arrays to every listening tab, in order, with binary parts as buffers", () => {
    const { clock, host, open, listen, send } = setup();
    open("a");
    open("b");
    listen("a", "x");
    listen("b", "x");
    const floats = new Float32Array([1.5, -2, 3.25]);
    const values = [0, "", false, null, { data: floats, n: 0 }, [new Uint8Array([7]), new Int16Array([-3])]];
    send(values.map((value) => ({ address: "x", value })));
    clock.advance(10);
    const published = host.published.filter((p) => p.msg_type === "comm_msg");
    expect(published.every((p) => p.buffers.every((b) => b instanceof Uint8Array))).toBe(true);
    for (const id of ["a", "b"]) {
      const got = host.valuesFor(id).map((v) => v.value);
      expect(got.slice(0, 4)).toEqual([0, "", false, null]);
      const obj = got[4] as { data: Float32Array; n: number };
      expect(obj.data).toBeInstanceOf(Float32Array);
      expect(Array.from(obj.data)).toEqual([1.5, -2, 3.25]);
      expect(obj.n).toBe(0);
      const arr = got[5] as [Uint8Array, Int16Array];
      expect(arr[0]).toBeInstanceOf(Uint8Array);
      expect(arr[1]).toBeInstanceOf(Int16Array);
      expect(Array.from(arr[1])).toEqual([-3]);
    }
  });

  it("sends to a comm only the addresses it listens to", () => {
    const { clock, host, open, listen, send } = setup();
    open("a");
    listen("a", "x");
    send([{ address: "y", value: 1 }, { address: "x", value: 2 }]);
    clock.advance(10);
    expect(host.valuesFor("a")).toEqual([{ address: "x", value: 2 }]);
  });

  it("forwards browser values to the program only for subscribed addresses, and echoes them to other tabs", () => {
    const { clock, host, bridge, open, listen } = setup();
    open("a");
    open("b");
    listen("a", "x");
    listen("b", "x");
    expect(bridge.programOp({ op: "comm_subscribe", cell: "c1", address: "x" }, [])).toBeNull();
    bridge.commMsg(browserValues("a", [
      { address: "x", value: 0 },
      { address: "nobody", value: 5 },
      { address: "x", value: new Float64Array([2.5]) },
    ]));
    clock.advance(10);
    const got = host.programValues();
    expect(got.map((v) => v.address)).toEqual(["x", "x"]);
    expect(got[0]!.value).toBe(0);
    expect(got[1]!.value).toBeInstanceOf(Float64Array);
    expect(host.valuesFor("a")).toEqual([]);
    expect(host.valuesFor("b").map((v) => v.address)).toEqual(["x", "x"]);
    // Unsubscribed: the next value is stored but does not reach the program.
    bridge.programOp({ op: "comm_unsubscribe", address: "x" }, []);
    bridge.commMsg(browserValues("a", [{ address: "x", value: 9 }]));
    expect(host.programValues()).toEqual([]);
    expect(bridge.lastValue("x")?.value).toBe(9);
  });

  it("coalesces latest-only addresses to their newest value and keeps every value elsewhere", () => {
    const { clock, host, open, listen, send } = setup();
    open("a");
    listen("a", "fast", true);
    listen("a", "all", false);
    const values: { address: string; value: unknown }[] = [];
    for (let i = 0; i < 1000; i++) values.push({ address: "fast", value: i }, { address: "all", value: i });
    send(values);
    clock.advance(10);
    const got = host.valuesFor("a");
    expect(got.filter((v) => v.address === "fast")).toEqual([{ address: "fast", value: 999 }]);
    expect(got.filter((v) => v.address === "all").map((v) => v.value)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it("asks listening browsers for their value when the program reads", () => {
    const { host, bridge, open, listen } = setup();
    open("a");
    open("b");
    listen("a", "x");
    expect(bridge.programOp({ op: "comm_read", cell: "c1", address: "x" }, [])).toBeNull();
    expect(host.takeFor("a").map((m) => m.data)).toEqual([{ op: "read", address: "x" }]);
    expect(host.takeFor("b")).toEqual([]);
  });
});

describe("reads", () => {
  it("asks a browser that starts listening after the read was made", () => {
    const { host, bridge, open, listen } = setup();
    open("a");
    bridge.programOp({ op: "comm_subscribe", cell: "c1", address: "slider" }, []);
    bridge.programOp({ op: "comm_read", cell: "c1", address: "slider" }, []);
    expect(host.takeFor("a")).toEqual([]);
    listen("a", "slider");
    expect(host.takeFor("a").map((m) => m.data)).toEqual([{ op: "read", address: "slider" }]);
    bridge.commMsg(browserValues("a", [{ address: "slider", value: 50 }]));
    expect(host.programValues()).toEqual([{ address: "slider", value: 50 }]);
    // Answered: a later listener is not asked again.
    open("b");
    listen("b", "slider");
    expect(host.takeFor("b").filter((m) => m.data.op === "read")).toEqual([]);
  });
});

describe("batching, rate budget and flow control", () => {
  it("delivers 100,000 values in order in few messages, never over the IOPub budget", () => {
    const { clock, host, open, listen, send, ackAll } = setup();
    open("a");
    open("b");
    listen("a", "n");
    listen("b", "n");
    const N = 100_000;
    for (let start = 0; start < N; start += 10_000) {
      send(Array.from({ length: 10_000 }, (_, i) => ({ address: "n", value: start + i })));
    }
    const received: Record<string, number[]> = { a: [], b: [] };
    const sendTimes: number[] = [];
    for (let step = 0; step < 2000 && (received.a!.length < N || received.b!.length < N); step++) {
      clock.advance(5);
      for (const id of ["a", "b"]) {
        const messages = host.takeFor(id);
        for (const m of messages) sendTimes.push(clock.time);
        const seqs: number[] = [];
        for (const m of messages) {
          if (m.data.op !== "values") continue;
          seqs.push(m.data.seq);
          for (const item of m.data.items) received[id]!.push(item.value as number);
        }
        ackAll(id, seqs);
      }
    }
    const expected = Array.from({ length: N }, (_, i) => i);
    expect(received.a).toEqual(expected);
    expect(received.b).toEqual(expected);
    expect(sendTimes.length).toBeLessThan(100);
    // No 1-second window holds more comm messages than the budget.
    for (const t of sendTimes) {
      expect(sendTimes.filter((u) => u >= t && u < t + 1000).length).toBeLessThanOrEqual(300);
    }
  });

  it("holds the sustained message rate to the budget when values trickle in", () => {
    const { clock, host, open, listen, send, ackAll } = setup({ messagesPerSecond: 100, burstMessages: 10 });
    open("a");
    listen("a", "t");
    let sent = 0;
    for (let ms = 0; ms < 3000; ms++) {
      send([{ address: "t", value: ms }]);
      clock.advance(1);
      const messages = host.takeFor("a");
      sent += messages.length;
      ackAll("a", messages.flatMap((m) => (m.data.op === "values" ? [m.data.seq] : [])));
    }
    // 3 s at 100/s plus the burst, never one message per value.
    expect(sent).toBeLessThanOrEqual(3 * 100 + 10 + 1);
    clock.advance(1000);
    const rest = host.takeFor("a").flatMap((m) => (m.data.op === "values" ? m.data.items.map((i) => i.value) : []));
    expect(rest.at(-1)).toBe(2999);
  });

  it("keeps each batch under the size limit, a single larger value going alone", () => {
    const { clock, host, open, listen, send } = setup({ maxBatchBytes: 100_000 });
    open("a");
    listen("a", "big");
    send([
      { address: "big", value: new Uint8Array(60_000) },
      { address: "big", value: new Uint8Array(60_000) },
      { address: "big", value: new Uint8Array(250_000) },
    ]);
    clock.advance(10);
    const messages = host.takeFor("a").filter((m) => m.data.op === "values");
    expect(messages.map((m) => m.buffers.map((b) => b.byteLength))).toEqual([[60_000], [60_000], [250_000]]);
  });

  it("stops sending to a stalled browser, answers sync late, and resumes on acks without losing a value", () => {
    const { clock, host, bridge, open, listen, send } = setup({ ackWindowBytes: 200_000, highWaterBytes: 1_000_000 });
    open("a");
    listen("a", "blob");
    const congestion: boolean[] = [];
    bridge.onCongestion((c) => congestion.push(c));
    for (let i = 0; i < 30; i++) send([{ address: "blob", value: { i, bytes: new Uint8Array(50_000) } }]);
    clock.advance(10);
    const first = host.takeFor("a");
    // Only about one ack window went out.
    expect(first.length).toBeLessThanOrEqual(5);
    expect(bridge.congested).toBe(true);
    expect(bridge.queuedBytes).toBeGreaterThan(1_000_000);
    bridge.programOp({ op: "comm_sync", id: "s1" }, []);
    expect(host.program.some((m) => m.op.op === "comm_sync_ack")).toBe(false);
    // The browser heartbeats back (it is alive, just slow) and then acks: everything flows.
    const got: number[] = [];
    let batches = first;
    for (let step = 0; step < 100 && got.length < 30; step++) {
      for (const m of batches) {
        if (m.data.op === "ping") bridge.commMsg(commMsg("a", { op: "pong", nonce: m.data.nonce }));
        if (m.data.op !== "values") continue;
        for (const item of m.data.items) got.push((item.value as { i: number }).i);
        bridge.commMsg(commMsg("a", { op: "ack", seq: m.data.seq }));
      }
      clock.advance(5);
      batches = host.takeFor("a");
    }
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(host.program.filter((m) => m.op.op === "comm_sync_ack").map((m) => m.op)).toEqual([{ op: "comm_sync_ack", id: "s1" }]);
    expect(congestion).toEqual([true, false]);
    expect(bridge.congested).toBe(false);
  });

  it("takes an ack piggybacked on the browser's own values, so echoes need no separate ack message", () => {
    const { clock, host, bridge, open, listen, send } = setup({ ackWindowBytes: 100_000 });
    open("a");
    listen("a", "blob");
    for (let i = 0; i < 3; i++) send([{ address: "blob", value: new Uint8Array(90_000) }]);
    clock.advance(10);
    const first = host.takeFor("a").filter((m) => m.data.op === "values");
    expect(first).toHaveLength(1);
    const seq = first[0]!.data.op === "values" ? first[0]!.data.seq : -1;
    const reply = browserValues("a", [{ address: "answer", value: 1 }]);
    bridge.commMsg({ ...reply, content: { ...reply.content, data: { ...(reply.content.data as object), ack: seq } } });
    clock.advance(10);
    expect(host.takeFor("a").filter((m) => m.data.op === "values")).toHaveLength(1);
  });

  it("schedules the program's answer when it arrives, not on a timer armed by the ack that came before it", () => {
    // The kernel runs a 0 ms timer as setImmediate only while a browser message waits for its answer; a timer
    // armed earlier (by the ack riding on that message) is a 1 ms setTimeout that would hold the answer.
    const { clock, host, bridge, open, listen, send } = setup();
    open("a");
    listen("a", "pong");
    send([{ address: "pong", value: 0 }]);
    clock.advance(0);
    const first = host.takeFor("a").filter((m) => m.data.op === "values");
    const seq = first[0]?.data.op === "values" ? first[0].data.seq : -1;
    const armed: number[] = [];
    const setTimer = host.setTimer;
    host.setTimer = (ms, fn) => {
      armed.push(ms);
      return setTimer(ms, fn);
    };
    const ping = browserValues("a", [{ address: "ping", value: 1 }]);
    bridge.commMsg({ ...ping, content: { ...ping.content, data: { ...(ping.content.data as object), ack: seq } } });
    const armedByAck = armed.length;
    send([{ address: "pong", value: 1 }]);
    expect(armed.slice(armedByAck)).toEqual([0]);
    clock.advance(0);
    expect(host.takeFor("a").flatMap((m) => (m.data.op === "values" ? m.data.items.map((i) => i.address) : []))).toEqual(["pong"]);
  });

  it("answers sync at once when nothing is queued", () => {
    const { host, bridge } = setup();
    bridge.programOp({ op: "comm_sync", id: "now" }, []);
    expect(host.program.map((m) => m.op)).toEqual([{ op: "comm_sync_ack", id: "now" }]);
  });

  it("closes a comm that falls behind the hard limit instead of growing memory", () => {
    const { clock, host, bridge, open, listen, send } = setup({ ackWindowBytes: 10_000, highWaterBytes: 50_000, hardLimitBytes: 100_000 });
    open("a");
    listen("a", "blob");
    for (let i = 0; i < 20; i++) send([{ address: "blob", value: new Uint8Array(10_000) }]);
    clock.advance(10);
    expect(host.closes()).toEqual(["a"]);
    expect(bridge.commInfo()).toEqual({});
    expect(bridge.queuedBytes).toBe(0);
    // The value is still in the store for when the tab reconnects.
    expect(bridge.lastValue("blob")).toBeDefined();
  });
});

describe("heartbeat", () => {
  it("pings a silent front-end when a value must go out, and closes it when no pong comes", () => {
    const { clock, host, bridge, open, listen, send } = setup();
    open("a");
    listen("a", "x");
    clock.advance(1500);
    send([{ address: "x", value: 1 }]);
    const ping = host.takeFor("a").find((m) => m.data.op === "ping");
    expect(ping).toBeDefined();
    clock.advance(499);
    expect(host.closes()).toEqual([]);
    clock.advance(2);
    expect(host.closes()).toEqual(["a"]);
    expect(bridge.commInfo()).toEqual({});
    expect(host.program.at(-1)?.op).toEqual({ op: "comm_frontends", count: 0, ids: [] });
  });

  it("pings a page that went silent before the program answered its call, so a closed page is found", () => {
    // An upload's chunk held by a slow program, while the page is closed: the answer finds the page gone.
    const { clock, host, bridge, open } = setup();
    open("a");
    bridge.commMsg(commMsg("a", { op: "call", id: "c1", method: "m", value: [[], {}] }));
    const call = host.program.find((m) => m.op.op === "comm_rpc_call");
    if (call?.op.op !== "comm_rpc_call") throw new Error("the call did not reach the program");
    clock.advance(1500);
    expect(bridge.programOp({ v: 1, op: "comm_rpc_reply", id: call.op.id, value: 1 }, [])).toBeNull();
    clock.advance(1);
    expect(host.takeFor("a").map((m) => m.data.op)).toContain("ping");
    clock.advance(500);
    expect(host.closes()).toEqual(["a"]);
    expect(host.program.at(-1)?.op).toEqual({ op: "comm_frontends", count: 0, ids: [] });
  });

  it("keeps a front-end that answers the ping", () => {
    const { clock, host, bridge, open, listen, send } = setup();
    open("a");
    listen("a", "x");
    clock.advance(1500);
    send([{ address: "x", value: 1 }]);
    const ping = host.takeFor("a").find((m) => m.data.op === "ping");
    if (ping?.data.op !== "ping") throw new Error("no ping");
    clock.advance(100);
    bridge.commMsg(commMsg("a", { op: "pong", nonce: ping.data.nonce }));
    clock.advance(2000);
    expect(host.closes()).toEqual([]);
    expect(Object.keys(bridge.commInfo())).toEqual(["a"]);
  });

  it("does not ping a front-end that was heard recently", () => {
    const { clock, host, open, listen, send } = setup();
    open("a");
    listen("a", "x");
    clock.advance(900);
    send([{ address: "x", value: 1 }]);
    clock.advance(10);
    expect(host.takeFor("a").map((m) => m.data.op)).toEqual(["values"]);
  });

  it("uses the configured thresholds", () => {
    const { clock, host, open, listen, send } = setup({ heartbeat: { silenceMs: 50, pongTimeoutMs: 20 } });
    open("a");
    listen("a", "x");
    clock.advance(60);
    send([{ address: "x", value: 1 }]);
    clock.advance(25);
    expect(host.closes()).toEqual(["a"]);
  });
});

describe("bad input from the browser", () => {
  const cases: [string, unknown, number][] = [
    ["not an object", "hello", 0],
    ["no op", { address: "x" }, 0],
    ["unknown op", { op: "explode" }, 0],
    ["listen without address", { op: "listen" }, 0],
    ["listen with a numeric address", { op: "listen", address: 5 }, 0],
    ["latest_only not boolean", { op: "listen", address: "x", latest_only: "yes" }, 0],
    ["values without items", { op: "values" }, 0],
    ["item without value", { op: "values", items: [{ address: "x" }] }, 0],
    ["item with an empty address", { op: "values", items: [{ address: "", value: 1 }] }, 0],
    ["more buffers than items use", { op: "values", items: [{ address: "x", value: 1 }] }, 2],
    ["fewer buffers than items use", { op: "values", items: [{ address: "x", value: 1, nbuf: 3 }] }, 1],
    ["negative nbuf", { op: "values", items: [{ address: "x", value: 1, nbuf: -1 }] }, 0],
    ["pong without nonce", { op: "pong" }, 0],
    ["ack with a string seq", { op: "ack", seq: "1" }, 0],
    ["chunk without a buffer", { op: "chunk", id: "c", index: 0, last: true }, 0],
    ["a huge address", { op: "listen", address: "x".repeat(5000) }, 0],
  ];
  for (const [name, data, bufferCount] of cases) {
    it(`refuses ${name} with a clear error and passes nothing on`, () => {
      const { host, bridge, open } = setup();
      open("a");
      bridge.programOp({ op: "comm_subscribe", cell: null, address: "x" }, []);
      host.program = [];
      const buffers = Array.from({ length: bufferCount }, () => new Uint8Array(4));
      bridge.commMsg(commMsg("a", data, buffers));
      const replies = host.takeFor("a").map((m) => m.data);
      expect(replies).toHaveLength(1);
      expect(replies[0]).toMatchObject({ op: "error", message: expect.any(String) });
      expect(host.warnings).toHaveLength(1);
      expect(host.program).toEqual([]);
      // The comm still works afterwards.
      bridge.commMsg(browserValues("a", [{ address: "x", value: "still fine" }]));
      expect(host.programValues()).toEqual([{ address: "x", value: "still fine" }]);
    });
  }

  it("passes a typed-array placeholder with its binary part through to the program", () => {
    const { host, bridge, open } = setup();
    open("a");
    bridge.programOp({ op: "comm_subscribe", cell: null, address: "x" }, []);
    host.program = [];
    bridge.commMsg(commMsg("a", { op: "values", items: [{ address: "x", value: { $tsnb_buffer: 0, kind: "Float32Array" }, nbuf: 1 }] }, [new Uint8Array(8)]));
    const got = host.programValues();
    expect(got[0]!.value).toBeInstanceOf(Float32Array);
  });
});

describe("bad input from the program", () => {
  it("reports malformed comm ops and keeps working", () => {
    const { bridge } = setup();
    expect(bridge.programOp({ op: "comm_send", cell: null, items: "nope" }, [])).toMatch(/items/);
    expect(bridge.programOp({ op: "comm_send", cell: 5, items: [] }, [])).toMatch(/cell/);
    expect(bridge.programOp({ op: "comm_subscribe", cell: null }, [])).toMatch(/address/);
    expect(bridge.programOp({ op: "comm_sync" }, [])).toMatch(/id/);
    expect(bridge.programOp({ op: "comm_frobnicate" }, [])).toMatch(/unknown comm op/);
    expect(bridge.programOp({ op: "comm_subscribe", cell: null, address: "x" }, [new Uint8Array(1)])).toMatch(/binary/);
    expect(bridge.programOp({ op: "comm_sync", id: "ok" }, [])).toBeNull();
  });
});

describe("chunked browser messages", () => {
  function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < bytes.byteLength; i += size) out.push(bytes.subarray(i, i + size));
    return out;
  }

  it("reassembles a large message sent in chunks below the websocket limit", () => {
    const { host, bridge, open } = setup();
    open("a");
    bridge.programOp({ op: "comm_subscribe", cell: null, address: "big" }, []);
    const floats = new Float32Array(3 * 1024 * 1024).map((_, i) => i);
    const whole = framed({ op: "values", items: [{ address: "big", value: { $tsnb_buffer: 0, kind: "Float32Array" }, nbuf: 1 }] }, [
      new Uint8Array(floats.buffer),
    ]);
    const parts = chunks(whole, BROWSER_CHUNK_BYTES);
    expect(parts.length).toBe(2);
    parts.forEach((part, index) => bridge.commMsg(commMsg("a", { op: "chunk", id: "k1", index, last: index === parts.length - 1 }, [part])));
    const got = host.programValues();
    expect(got).toHaveLength(1);
    const value = got[0]!.value as Float32Array;
    expect(value).toBeInstanceOf(Float32Array);
    expect(value.length).toBe(floats.length);
    expect(value[12345]).toBe(12345);
    expect(host.takeFor("a")).toEqual([]);
  });

  it("passes a large value for the subscribed program on as its chunks arrive, and gives up cleanly on a bad or closed one", () => {
    const { host, bridge, open } = setup({ heldValueBytes: 1000 });
    open("a");
    bridge.programOp({ op: "comm_subscribe", cell: null, address: "big" }, []);
    const data = new Uint8Array(6000).map((_, i) => i % 250);
    const whole = framed({ op: "values", items: [{ address: "big", value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 }] }, [data]);
    const parts = chunks(whole, 2000);
    const piecesSeen = () => host.program.filter((m) => m.op.op === "comm_chunk");
    // Each chunk is with the program before the next one comes.
    parts.slice(0, -1).forEach((part, index) => bridge.commMsg(commMsg("a", { op: "chunk", id: "k1", index, last: false }, [part])));
    expect(piecesSeen().length).toBe(parts.length); // the new header, then the data of each chunk
    bridge.commMsg(commMsg("a", { op: "chunk", id: "k1", index: parts.length - 1, last: true }, [parts.at(-1)!]));
    const decoder = new FrameDecoder();
    let frames: ReturnType<FrameDecoder["push"]>["frames"] = [];
    for (const m of piecesSeen()) frames = frames.concat(decoder.push(m.buffers[0]!).frames);
    expect(piecesSeen().at(-1)!.op).toMatchObject({ last: true });
    expect(frames).toHaveLength(1);
    expect(frames[0]!.header).toMatchObject({ op: "comm_deliver", items: [{ address: "big" }] });
    expect(Buffer.compare(frames[0]!.buffers[0]!, data)).toBe(0);
    expect(bridge.heldByProgram("big")).toBe(true);
    expect(host.takeFor("a").filter((m) => m.data.op === "error")).toEqual([]);
    // Out of order: the program gets an empty last piece (it drops the message), the page an error.
    host.program = [];
    bridge.commMsg(commMsg("a", { op: "chunk", id: "k2", index: 0, last: false }, [parts[0]!]));
    bridge.commMsg(commMsg("a", { op: "chunk", id: "k2", index: 2, last: false }, [parts[2]!]));
    expect(piecesSeen().at(-1)!.op).toMatchObject({ last: true });
    expect(piecesSeen().at(-1)!.buffers[0]!.byteLength).toBe(0);
    expect(host.takeFor("a").filter((m) => m.data.op === "error").map((m) => (m.data as { message: string }).message)).toEqual([expect.stringMatching(/expected chunk 1, got 2/)]);
    // The page goes away mid-message: the same for the program.
    host.program = [];
    bridge.commMsg(commMsg("a", { op: "chunk", id: "k3", index: 0, last: false }, [parts[0]!]));
    bridge.commClose(commClose("a"));
    expect(piecesSeen().at(-1)!.op).toMatchObject({ last: true });
    expect(piecesSeen().at(-1)!.buffers[0]!.byteLength).toBe(0);
  });

  it("refuses chunks out of order, garbage, and a chunk set over the limit", () => {
    const { host, bridge, open } = setup({ maxChunkedBytes: 1000 });
    open("a");
    bridge.commMsg(commMsg("a", { op: "chunk", id: "k", index: 1, last: true }, [new Uint8Array(4)]));
    bridge.commMsg(commMsg("a", { op: "chunk", id: "g", index: 0, last: true }, [new Uint8Array([0, 0, 0, 3, 1, 2, 3])]));
    const first = new Uint8Array(600);
    new DataView(first.buffer).setUint32(0, 900, false);
    bridge.commMsg(commMsg("a", { op: "chunk", id: "h", index: 0, last: false }, [first]));
    bridge.commMsg(commMsg("a", { op: "chunk", id: "h", index: 1, last: true }, [new Uint8Array(600)]));
    const errors = host.takeFor("a").map((m) => (m.data.op === "error" ? m.data.message : m.data.op));
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/unknown chunked message/);
    expect(errors[1]).toMatch(/not valid JSON|invalid/);
    expect(errors[2]).toMatch(/exceeds/);
    expect(host.program.filter((m) => m.op.op === "comm_deliver")).toEqual([]);
  });
});

describe("RPC answers to the browser", () => {
  /** Three calls from the page in one message; returns the kernel's ids for them, in order. */
  function threeCalls(bridge: CommsBridge, host: RecordingHost): string[] {
    const call = (id: string) => ({ op: "call", id, method: "f", value: [[], {}] });
    bridge.commMsg(commMsg("a", { op: "rpc_batch", messages: [call("c1"), call("c2"), call("c3")] }));
    return host.program.filter((m) => m.op.op === "comm_rpc_call").map((m) => (m.op as { id: string }).id);
  }
  const answered = (host: RecordingHost) =>
    host.takeFor("a").flatMap((m) => (m.data.op === "rpc_batch" ? m.data.messages : [m.data])).map((m) => (m as { id: string }).id);

  it("sends the small answers of one turn together, at the end of the turn", () => {
    const { clock, host, bridge, open } = setup();
    open("a");
    const ids = threeCalls(bridge, host);
    for (const id of ids) expect(bridge.programOp({ op: "comm_rpc_reply", id, value: 1 }, [])).toBeNull();
    expect(host.takeFor("a")).toEqual([]);
    clock.advance(0);
    const messages = host.takeFor("a");
    expect(messages.map((m) => m.data.op)).toEqual(["rpc_batch"]);
    expect(messages.flatMap((m) => (m.data.op === "rpc_batch" ? m.data.messages.map((x) => x.id) : []))).toEqual(["c1", "c2", "c3"]);
  });

  it("sends an answer with a large binary result at once, with the answers batched before it and in order", () => {
    const { clock, host, bridge, open } = setup();
    open("a");
    const ids = threeCalls(bridge, host);
    const bytes = new Uint8Array(200_000).map((_, i) => i % 251);
    expect(bridge.programOp({ op: "comm_rpc_reply", id: ids[0]!, value: 1 }, [])).toBeNull();
    expect(bridge.programOp({ op: "comm_rpc_reply", id: ids[1]!, value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 }, [bytes])).toBeNull();
    // No timer has run: the page's caller is not kept waiting for the end of the turn (a 1 ms timer in the kernel).
    const first = host.takeFor("a");
    expect(first.flatMap((m) => (m.data.op === "rpc_batch" ? m.data.messages : [m.data])).map((m) => (m as { id: string }).id)).toEqual(["c1", "c2"]);
    expect(Buffer.compare(first.at(-1)!.buffers.at(-1)!, bytes)).toBe(0);
    expect(bridge.programOp({ op: "comm_rpc_reply", id: ids[2]!, value: 3 }, [])).toBeNull();
    expect(answered(host)).toEqual([]);
    clock.advance(0);
    expect(answered(host)).toEqual(["c3"]);
  });
});

describe("large messages to the browser", () => {
  /** Reads a comm's chunks as the shim does: acks each on arrival, reassembles, returns the whole messages. */
  function receiver(bridge: CommsBridge, host: RecordingHost, id: string) {
    const decoder = new FrameDecoder({ maxHeaderBytes: 1 << 30, maxBufferBytes: 1 << 30 });
    const whole: { data: KernelToBrowser; buffers: Uint8Array[]; call: string }[] = [];
    const chunkSizes: number[] = [];
    /** Every value received, in arrival order, from whole and reassembled messages. */
    const values: unknown[] = [];
    let inFlightPeak = 0;
    const pump = (ack: boolean): number => {
      const messages = host.takeFor(id);
      inFlightPeak = Math.max(inFlightPeak, messages.filter((m) => m.data.op === "chunk").reduce((n, m) => n + m.buffers[0]!.byteLength, 0));
      for (const m of messages) {
        if (m.data.op === "values") for (const item of splitItems(m.data.items, m.buffers)) values.push(valueOf(item));
        if (m.data.op !== "chunk") continue;
        expect(m.data.seq).toBeTypeOf("number");
        chunkSizes.push(m.buffers[0]!.byteLength);
        const out = decoder.push(m.buffers[0]!);
        expect(out.error).toBeNull();
        for (const f of out.frames) {
          const parsed = parseKernelMessage(f.header, f.buffers.length);
          if (!parsed.ok) throw new Error(parsed.error);
          whole.push({ data: parsed.message, buffers: f.buffers, call: m.data.call });
          if (parsed.message.op === "values") for (const item of splitItems(parsed.message.items, f.buffers)) values.push(valueOf(item));
        }
        if (ack) bridge.commMsg(commMsg(id, { op: "ack", seq: m.data.seq! }));
      }
      return messages.length;
    };
    return { pump, whole, chunkSizes, values, inFlightPeak: () => inFlightPeak };
  }

  it("sends a big RPC result in chunks a window at a time, behind the values sent before it, exact", () => {
    const { clock, host, bridge, open, listen, send } = setup({ chunkBytes: 10_000, chunkWindowBytes: 30_000 });
    open("a");
    listen("a", "v");
    bridge.commMsg(commMsg("a", { op: "call", id: "page-1", method: "bytes", value: [[], {}] }));
    const call = host.program.find((m) => m.op.op === "comm_rpc_call")!.op as { id: string };
    send([{ address: "v", value: "before" }]);
    const bytes = new Uint8Array(100_000).map((_, i) => i % 253);
    expect(bridge.programOp({ op: "comm_rpc_reply", id: call.id, value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 }, [bytes])).toBeNull();
    clock.advance(10);
    const r = receiver(bridge, host, "a");
    // A stalled page gets the value and what fits beside it in one window (two chunks), then nothing more.
    r.pump(false);
    expect(r.values).toEqual(["before"]);
    expect(r.chunkSizes.length).toBe(2);
    clock.advance(1000);
    expect(r.pump(false)).toBe(0);
    // Acks let the rest through; every chunk stays within the chunk size and the window.
    bridge.commMsg(commMsg("a", { op: "ack", seq: 1_000_000 }));
    for (let step = 0; step < 50 && r.whole.length === 0; step++) {
      clock.advance(5);
      r.pump(true);
    }
    expect(Math.max(...r.chunkSizes)).toBeLessThanOrEqual(10_000);
    expect(r.inFlightPeak()).toBeLessThanOrEqual(30_000);
    expect(r.whole).toHaveLength(1);
    expect(r.whole[0]!.call).toBe("page-1");
    expect(r.whole[0]!.data).toMatchObject({ op: "reply", id: "page-1" });
    expect(Buffer.compare(r.whole[0]!.buffers[0]!, bytes)).toBe(0);
  });

  it("sends a big value in chunks a window at a time, in order with the values around it, exact", () => {
    const { clock, host, bridge, open, listen } = setup({ chunkBytes: 10_000, chunkWindowBytes: 30_000, chunkedValueBytes: 20_000 });
    open("a");
    listen("a", "v");
    listen("a", "big");
    const floats = new Float32Array(25_000).map((_, i) => i * 0.5);
    const small = (v: string) => ({ address: "v", value: v });
    const big = { address: "big", value: { $tsnb_buffer: 0, kind: "Float32Array" }, nbuf: 1 };
    expect(bridge.programOp({ op: "comm_send", cell: null, items: [small("before"), big, small("after")] }, [new Uint8Array(floats.buffer)])).toBeNull();
    clock.advance(10);
    const r = receiver(bridge, host, "a");
    // A stalled page gets what was before the big value and what fits beside it in one window (two chunks),
    // then nothing more.
    r.pump(false);
    expect(r.values).toEqual(["before"]);
    expect(r.chunkSizes.length).toBe(2);
    clock.advance(1000);
    expect(r.pump(false)).toBe(0);
    bridge.commMsg(commMsg("a", { op: "ack", seq: 1_000_000 }));
    for (let step = 0; step < 50 && r.values.length < 3; step++) {
      clock.advance(5);
      r.pump(true);
    }
    expect(Math.max(...r.chunkSizes)).toBeLessThanOrEqual(10_000);
    expect(r.inFlightPeak()).toBeLessThanOrEqual(30_000);
    expect(r.values).toHaveLength(3);
    expect(r.values[0]).toBe("before");
    expect(r.values[1]).toEqual(floats);
    expect(r.values[2]).toBe("after");
    expect(r.whole.map((w) => w.call)).toEqual([""]);
  });

  it("drops a queued big value superseded on a latest-only address before any of it was sent", () => {
    const { clock, host, bridge, open } = setup({ chunkBytes: 10_000, chunkedValueBytes: 20_000 });
    open("a");
    bridge.commMsg(commMsg("a", { op: "listen", address: "big", latest_only: true }));
    const item = { address: "big", value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 };
    bridge.programOp({ op: "comm_send", cell: null, items: [item, item] }, [new Uint8Array(50_000).fill(1), new Uint8Array(50_000).fill(2)]);
    const r = receiver(bridge, host, "a");
    for (let step = 0; step < 50 && r.values.length < 1; step++) {
      clock.advance(5);
      r.pump(true);
    }
    clock.advance(100);
    r.pump(true);
    expect(r.values).toHaveLength(1);
    expect((r.values[0] as Uint8Array)[0]).toBe(2);
    expect(r.chunkSizes.reduce((a, b) => a + b, 0)).toBeLessThan(60_000);
  });

  /** A program message in comm_chunk pieces, as the runtime sends it: its header alone, then its data in pieces. */
  function pieces(header: { op: string; [key: string]: unknown }, data: Uint8Array, size: number) {
    const out = [encodeFrameHeader(header as never, [data.byteLength])];
    for (let at = 0; at < data.byteLength; at += size) out.push(data.subarray(at, at + size));
    return out.map((bytes, index) => ({ op: { op: "comm_chunk", id: "s1", index, last: index === out.length - 1 }, bytes }));
  }

  it("passes a value the program sends in pieces on to the page as each piece arrives, keeping none of it", () => {
    const { clock, host, bridge, open, listen, send } = setup({ chunkBytes: 10_000, chunkWindowBytes: 1_000_000 });
    open("a");
    listen("a", "big");
    listen("a", "v");
    send([{ address: "v", value: "before" }]);
    const data = new Uint8Array(new Float32Array(10_000).map((_, i) => i).buffer);
    const parts = pieces({ op: "comm_send", cell: null, items: [{ address: "big", value: { $tsnb_buffer: 0, kind: "Float32Array" }, nbuf: 1 }] }, data, 8_000);
    const r = receiver(bridge, host, "a");
    // All but the last piece: the page has them (as chunks no bigger than chunkBytes) before the program is done.
    for (const part of parts.slice(0, -1)) expect(bridge.programOp(part.op, [part.bytes])).toBeNull();
    clock.advance(10);
    r.pump(true);
    expect(r.values).toEqual(["before"]);
    expect(r.chunkSizes.reduce((a, b) => a + b, 0)).toBeGreaterThan(32_000);
    expect(bridge.queuedBytes).toBe(0);
    send([{ address: "v", value: "after" }]);
    const last = parts.at(-1)!;
    expect(bridge.programOp(last.op, [last.bytes])).toBeNull();
    for (let step = 0; step < 20 && r.values.length < 3; step++) {
      clock.advance(5);
      r.pump(true);
    }
    expect(r.values.length).toBe(3);
    expect(r.values[1]).toEqual(new Float32Array(data.buffer));
    expect(r.values[2]).toBe("after");
    expect(Math.max(...r.chunkSizes)).toBeLessThanOrEqual(10_000);
    // The program holds it; the kernel only knows so.
    expect(bridge.heldByProgram("big")).toBe(true);
    expect(bridge.lastValue("big")).toBeUndefined();
  });

  it("on a latest-only address, a streamed value waiting behind a slow page is replaced by the next one", () => {
    const { clock, host, bridge, open } = setup({ chunkBytes: 10_000, chunkWindowBytes: 10_000 });
    open("a");
    bridge.commMsg(commMsg("a", { op: "listen", address: "frame", latest_only: true }));
    const item = { address: "frame", value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 };
    for (const fill of [1, 2, 3]) {
      const parts = pieces({ op: "comm_send", cell: null, items: [item] }, new Uint8Array(20_000).fill(fill), 10_000).map((p) => ({ ...p, op: { ...p.op, id: `s${fill}` } }));
      for (const part of parts) expect(bridge.programOp(part.op, [part.bytes])).toBeNull();
      clock.advance(5); // the first starts out at once and fills the window; the others wait
    }
    const r = receiver(bridge, host, "a");
    for (let step = 0; step < 50; step++) {
      clock.advance(5);
      r.pump(true);
    }
    expect(r.values.map((v) => (v as Uint8Array)[0])).toEqual([1, 3]);
    expect(bridge.queuedBytes).toBe(0);
  });

  it("streams an RPC result in pieces to the page that called, and refuses pieces out of order or over the announced size", () => {
    const { clock, host, bridge, open } = setup({ chunkBytes: 10_000 });
    open("a");
    bridge.commMsg(commMsg("a", { op: "call", id: "page-1", method: "bytes", value: [[], {}] }));
    const call = host.program.find((m) => m.op.op === "comm_rpc_call")!.op as { id: string };
    const data = new Uint8Array(30_000).map((_, i) => i % 251);
    const parts = pieces({ op: "comm_rpc_reply", id: call.id, value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 }, data, 10_000);
    const r = receiver(bridge, host, "a");
    for (const part of parts) expect(bridge.programOp(part.op, [part.bytes])).toBeNull();
    for (let step = 0; step < 20 && r.whole.length === 0; step++) {
      clock.advance(5);
      r.pump(true);
    }
    expect(r.whole).toHaveLength(1);
    expect(r.whole[0]!.call).toBe("page-1");
    expect(r.whole[0]!.data).toMatchObject({ op: "reply", id: "page-1" });
    expect(Buffer.compare(r.whole[0]!.buffers[0]!, data)).toBe(0);
    expect(bridge.pendingCalls.toProgram).toBe(0);
    // Bad streams: a clear error, and nothing half-sent stays queued.
    expect(bridge.programOp({ op: "comm_chunk", id: "zz", index: 3, last: false }, [new Uint8Array(1)])).toMatch(/did not start/);
    const again = pieces({ op: "comm_send", cell: null, items: [{ address: "x", value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 }] }, new Uint8Array(100), 50);
    expect(bridge.programOp(again[0]!.op, [again[0]!.bytes])).toBeNull();
    expect(bridge.programOp({ ...again[2]!.op }, [again[2]!.bytes])).toMatch(/expected piece 1, got 2/);
    expect(bridge.programOp(again[0]!.op, [again[0]!.bytes])).toBeNull();
    expect(bridge.programOp(again[1]!.op, [new Uint8Array(150)])).toMatch(/more data than its header announced/);
    expect(bridge.programOp({ op: "comm_chunk", id: "h", index: 0, last: false }, [new Uint8Array([0, 0, 0, 2, 123, 125])])).toMatch(/version/);
    expect(bridge.queuedBytes).toBe(0);
  });

  it("cuts a streamed message short when the program stops: the page gets a last empty chunk and its call an error", () => {
    const { clock, host, bridge, open } = setup({ chunkBytes: 10_000 });
    open("a");
    bridge.commMsg(commMsg("a", { op: "call", id: "page-1", method: "bytes", value: [[], {}] }));
    const call = host.program.find((m) => m.op.op === "comm_rpc_call")!.op as { id: string };
    const parts = pieces({ op: "comm_rpc_reply", id: call.id, value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 }, new Uint8Array(30_000), 10_000);
    for (const part of parts.slice(0, 2)) bridge.programOp(part.op, [part.bytes]);
    clock.advance(5);
    bridge.programStopped();
    clock.advance(5);
    const got = host.takeFor("a").map((m) => m.data);
    const chunks = got.filter((d) => d.op === "chunk");
    expect(chunks.at(-1)).toMatchObject({ last: true });
    const replies = got.flatMap((d) => (d.op === "rpc_batch" ? d.messages : [d])).filter((d) => d.op === "reply");
    expect(replies).toMatchObject([{ op: "reply", id: "page-1", error: { code: -32003 } }]);
    expect(bridge.queuedBytes).toBe(0);
  });

  it("holds a big RPC result to the ack window and the high-water mark, so a slow page slows the program", () => {
    const { clock, host, bridge, open } = setup({ chunkBytes: 10_000, chunkWindowBytes: 20_000, highWaterBytes: 50_000 });
    open("a");
    bridge.commMsg(commMsg("a", { op: "call", id: "page-1", method: "bytes", value: [[], {}] }));
    const call = host.program.find((m) => m.op.op === "comm_rpc_call")!.op as { id: string };
    const result = new Uint8Array(100_000).map((_, i) => (i * 7) % 251);
    expect(bridge.programOp({ op: "comm_rpc_reply", id: call.id, value: { $tsnb_buffer: 0, kind: "Uint8Array" }, nbuf: 1 }, [result])).toBeNull();
    clock.advance(10);
    const r = receiver(bridge, host, "a");
    r.pump(false);
    expect(r.chunkSizes.length).toBe(2);
    // What waits is queued memory: the program's sync is answered only once the page caught up.
    expect(bridge.congested).toBe(true);
    bridge.programOp({ op: "comm_sync", id: "s1" }, []);
    expect(host.program.some((m) => m.op.op === "comm_sync_ack")).toBe(false);
    bridge.commMsg(commMsg("a", { op: "ack", seq: 1_000_000 }));
    for (let step = 0; step < 50 && r.whole.length === 0; step++) {
      clock.advance(5);
      r.pump(true);
    }
    expect(r.inFlightPeak()).toBeLessThanOrEqual(20_000);
    expect(r.whole).toHaveLength(1);
    expect(r.whole[0]!.call).toBe("page-1");
    expect(r.whole[0]!.data).toMatchObject({ op: "reply", id: "page-1" });
    expect(Buffer.compare(r.whole[0]!.buffers[0]!, result)).toBe(0);
    expect(bridge.congested).toBe(false);
    expect(host.program.filter((m) => m.op.op === "comm_sync_ack").map((m) => m.op)).toEqual([{ op: "comm_sync_ack", id: "s1" }]);
  });
});

describe("shim injection", () => {
  const shim = { kernelId: "k-123", source: () => "globalThis.tsnbShimBoot = function () {};" };

  it("injects the shim under the cell that first used comms, blanks it once connected, and re-injects only when none is live", () => {
    const { clock, host, bridge, open, send } = setup({ shim });
    send([{ address: "x", value: 1 }]);
    send([{ address: "x", value: 2 }]);
    const displays = host.published.filter((p) => p.msg_type === "display_data");
    expect(displays).toHaveLength(1);
    const display = displays[0]!;
    expect((display.parent as { msg_id: string }).msg_id).toBe("parent-c1");
    const data = display.content.data as Record<string, string>;
    expect(data["application/javascript"]).toContain('tsnbShimBoot({"kernelId":"k-123"})');
    expect(data["text/html"]).toContain("<script>");
    const displayId = (display.content.transient as { display_id: string }).display_id;
    open("a");
    const blank = host.published.find((p) => p.msg_type === "update_display_data");
    expect(blank?.content).toMatchObject({ data: { "text/plain": "" }, transient: { display_id: displayId } });
    send([{ address: "x", value: 3 }]);
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(1);
    bridge.commClose(commClose("a"));
    clock.advance(10);
    send([{ address: "x", value: 4 }]);
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(2);
  });

  it("after a reload, finds the old shim dead through the heartbeat and injects again under the cell that used comms", () => {
    const { clock, host, bridge, open, send } = setup({ shim });
    send([{ address: "x", value: 1 }]);
    open("old-page");
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(1);
    host.published = [];
    // The page reloads: its comm goes silent without closing. A later cell uses comms.
    clock.advance(5000);
    const frame = programSend([{ address: "y", value: 2 }], "c7");
    expect(bridge.programOp(frame.header, frame.buffers)).toBeNull();
    expect(host.takeFor("old-page").map((m) => m.data.op)).toEqual(["ping"]);
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(0);
    clock.advance(600);
    expect(host.closes()).toEqual(["old-page"]);
    const displays = host.published.filter((p) => p.msg_type === "display_data");
    expect(displays).toHaveLength(1);
    expect((displays[0]!.parent as { msg_id: string }).msg_id).toBe("parent-c7");
  });

  it("probes even a shim heard a moment ago (a page reloaded right after traffic), once per cell", () => {
    const { clock, host, bridge, open, send } = setup({ shim });
    send([{ address: "x", value: 1 }]);
    open("page");
    bridge.commMsg(commMsg("page", { op: "listen", address: "x", latest_only: false }));
    clock.advance(100);
    host.published = [];
    const first = programSend([{ address: "y", value: 1 }], "c9");
    bridge.programOp(first.header, first.buffers);
    const again = programSend([{ address: "y", value: 2 }], "c9");
    bridge.programOp(again.header, again.buffers);
    expect(host.takeFor("page").filter((m) => m.data.op === "ping")).toHaveLength(1);
    clock.advance(600);
    expect(host.closes()).toEqual(["page"]);
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(1);
  });

  it("after a page closed its comm as it went away, injects under the next cell that uses comms", () => {
    const { clock, host, bridge, open, send } = setup({ shim });
    send([{ address: "x", value: 1 }]);
    open("page");
    send([{ address: "x", value: 2 }]);
    bridge.commClose(commClose("page"));
    clock.advance(100);
    host.published = [];
    const next = programSend([{ address: "y", value: 1 }], "c11");
    bridge.programOp(next.header, next.buffers);
    const displays = host.published.filter((p) => p.msg_type === "display_data");
    expect(displays).toHaveLength(1);
    expect((displays[0]!.parent as { msg_id: string }).msg_id).toBe("parent-c11");
  });

  it("does not inject again when the connected shim answers the probe", () => {
    const { clock, host, bridge, open, send } = setup({ shim });
    send([{ address: "x", value: 1 }]);
    open("page");
    clock.advance(5000);
    host.published = [];
    send([{ address: "y", value: 2 }]);
    const ping = host.takeFor("page").find((m) => m.data.op === "ping");
    if (ping?.data.op !== "ping") throw new Error("no probe ping");
    bridge.commMsg(commMsg("page", { op: "pong", nonce: ping.data.nonce }));
    clock.advance(2000);
    expect(host.closes()).toEqual([]);
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(0);
  });

  it("reads the shim only when it injects it, and a failed read publishes nothing, is logged and is tried again later", () => {
    let reads = 0;
    let readable = false;
    const source = () => {
      reads++;
      if (!readable) throw new Error("ENOENT: no such file or directory, open 'dist/shim.js'");
      return "globalThis.tsnbShimBoot = function () {};";
    };
    const { clock, host, send } = setup({ shim: { kernelId: "k-1", source }, shimRetryMs: 1000 });
    expect(reads).toBe(0);
    send([{ address: "x", value: 1 }]);
    expect(reads).toBe(1);
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(0);
    expect(host.warnings.some((w) => w.includes("shim could not be read") && w.includes("ENOENT"))).toBe(true);
    readable = true;
    clock.advance(1100);
    send([{ address: "x", value: 2 }]);
    expect(reads).toBe(2);
    const displays = host.published.filter((p) => p.msg_type === "display_data");
    expect(displays).toHaveLength(1);
    expect((displays[0]!.content.data as Record<string, string>)["application/javascript"]).toContain('tsnbShimBoot({"kernelId":"k-1"})');
  });

  it("tries again later when no browser ever connected (nbclient), not on every use", () => {
    const { clock, host, send } = setup({ shim, shimRetryMs: 1000 });
    send([{ address: "x", value: 1 }]);
    clock.advance(500);
    send([{ address: "x", value: 2 }]);
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(1);
    clock.advance(600);
    send([{ address: "x", value: 3 }]);
    expect(host.published.filter((p) => p.msg_type === "display_data")).toHaveLength(2);
  });
});

describe("dispose", () => {
  it("cancels every timer and is idempotent", () => {
    const { clock, bridge, open, listen, send } = setup({ shim: { kernelId: "k", source: () => "" } });
    open("a");
    listen("a", "x");
    clock.advance(2000);
    send([{ address: "x", value: 1 }]);
    bridge.dispose();
    bridge.dispose();
    expect(clock.pending).toBe(0);
  });
});

describe("binary parts from sockets", () => {
  it("decodes a typed array whose bytes sit at a misaligned offset of a Node Buffer", async () => {
    const { decodeValue } = await import("../protocol/values.js");
    // Sockets hand out Buffers, whose slice() is a view: decoding must copy to align.
    const backing = Buffer.alloc(13);
    new Uint8Array(backing.buffer, backing.byteOffset + 1, 8).set(new Uint8Array(new Float32Array([0.25, -8]).buffer));
    const misaligned = backing.subarray(1, 9);
    const value = decodeValue({ $tsnb_buffer: 0, kind: "Float32Array" }, [misaligned]) as Float32Array;
    expect(value).toBeInstanceOf(Float32Array);
    expect(Array.from(value)).toEqual([0.25, -8]);
  });
});
