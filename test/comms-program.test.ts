// The program-side comms API wired to the real kernel hub in one process: ops go through the real pipe
// framing in both directions, timers are real, and a scripted browser answers on the Jupyter side.

import { afterEach, describe, expect, it } from "vitest";
import { CommsBridge, type BridgeHost, type PublishRequest } from "../kernel/comms/bridge.js";
import { encodeFrame, FrameDecoder } from "../protocol/framing.js";
import type { JsonObject } from "../protocol/jupyter.js";
import { itemOf, joinItems, parseKernelMessage, splitItems, valueOf, type KernelToBrowser } from "../protocol/bridge.js";
import { CommsClosedError, CommsTimeoutError, ProgramComms, SyncedVariable } from "../runtime/tsnb/comms/comms.js";
import { browserValues, commMsg, commOpen, Conditions, RealTimers } from "./helpers/comms-fakes.js";

interface Received {
  data: KernelToBrowser;
  buffers: Uint8Array[];
}

/** Frames through the real codec, as over the program channel. */
function throughFraming(header: JsonObject & { op: string }, buffers: Uint8Array[]) {
  const decoder = new FrameDecoder();
  const chunks = encodeFrame(header, buffers);
  const frames = chunks.flatMap((c) => decoder.push(c.slice()).frames);
  if (frames.length !== 1 || decoder.error) throw new Error("framing round trip failed");
  return frames[0]!;
}

function rig() {
  const published: PublishRequest[] = [];
  const conditions = new Conditions();
  const { notify, until } = conditions;
  const errors: unknown[] = [];
  const framesToKernel: string[] = [];
  const timers = new RealTimers();
  let comms: ProgramComms;
  const host: BridgeHost = {
    now: timers.now,
    setTimer: timers.setTimer,
    publish: (m) => {
      published.push(m);
      notify();
    },
    toProgram: (op, buffers) => {
      const frame = throughFraming(op as unknown as JsonObject & { op: string }, buffers);
      // The program reads its channel asynchronously, like a socket.
      setImmediate(() => {
        const problem = comms.handleKernelOp(frame.header, frame.buffers);
        if (problem) errors.push(new Error(problem));
        notify();
      });
    },
    parentForCell: () => ({}),
    newId: () => Math.random().toString(36).slice(2),
    log: { warn: (m) => errors.push(new Error(`kernel warning: ${m}`)) },
  };
  const bridge = new CommsBridge(host, { heartbeat: { silenceMs: 60_000, pongTimeoutMs: 500 } });
  comms = new ProgramComms({
    send: (op, buffers) => {
      framesToKernel.push(op.op);
      const frame = throughFraming(op as unknown as JsonObject & { op: string }, buffers);
      const problem = bridge.programOp(frame.header, frame.buffers);
      if (problem) throw new Error(problem);
    },
    currentCell: () => "cell-1",
    reportError: (err) => {
      errors.push(err);
      notify();
    },
  });

  /** Everything the kernel sent to a comm so far (decoded), consumed. */
  const take = (commId: string): Received[] => {
    const out: Received[] = [];
    for (let i = 0; i < published.length; ) {
      const p = published[i]!;
      if (p.msg_type === "comm_msg" && p.content.comm_id === commId) {
        const parsed = parseKernelMessage(p.content.data, p.buffers.length);
        if (!parsed.ok) throw new Error(parsed.error);
        out.push({ data: parsed.message, buffers: p.buffers });
        published.splice(i, 1);
      } else i++;
    }
    return out;
  };

  /** A scripted browser: opens a comm, listens, collects values and acks them. */
  const browser = (commId: string, listens: string[]) => {
    bridge.commOpen(commOpen(commId));
    for (const address of listens) bridge.commMsg(commMsg(commId, { op: "listen", address, latest_only: false }));
    const values: { address: string; value: unknown }[] = [];
    const reads: string[] = [];
    const pump = () => {
      for (const m of take(commId)) {
        if (m.data.op === "values") {
          for (const item of splitItems(m.data.items, m.buffers)) values.push({ address: item.address, value: valueOf(item) });
          bridge.commMsg(commMsg(commId, { op: "ack", seq: m.data.seq }));
        } else if (m.data.op === "read") reads.push(m.data.address);
      }
    };
    conditions.onNotify(pump);
    pump();
    return {
      values,
      reads,
      send: (address: string, value: unknown) => bridge.commMsg(browserValues(commId, [{ address, value }])),
    };
  };

  const dispose = () => {
    comms.dispose();
    bridge.dispose();
    timers.dispose();
    conditions.dispose();
  };
  return { bridge, comms, errors, framesToKernel, until, browser, dispose };
}

let current: ReturnType<typeof rig> | null = null;
function setup() {
  current = rig();
  return current;
}
afterEach(() => {
  current?.dispose();
  current = null;
});

describe("program -> browser", () => {
  it("sends land in the last-value store with no front-end, and a browser that arrives later gets the last one", async () => {
    const { comms, browser, until, errors } = setup();
    comms.send("x", 1);
    comms.send("x", { answer: 42 });
    await comms.sync();
    const tab = browser("tab", ["x"]);
    await until("the replayed value", () => (tab.values.length > 0 ? true : undefined));
    expect(tab.values).toEqual([{ address: "x", value: { answer: 42 } }]);
    expect(errors).toEqual([]);
  });

  it("sends 100,000 values from a tight loop in a few frames, all arriving in order", async () => {
    const { comms, browser, until, framesToKernel } = setup();
    const tab = browser("tab", ["n"]);
    const N = 100_000;
    for (let i = 0; i < N; i++) comms.send("n", i);
    await comms.sync();
    await until("every value", () => (tab.values.length >= N ? true : undefined), 20_000);
    expect(tab.values.map((v) => v.value)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(framesToKernel.filter((f) => f === "comm_send").length).toBeLessThanOrEqual(20);
  });

  it("refuses values that cannot travel, at the call site", () => {
    const { comms } = setup();
    expect(() => comms.send("x", { f: () => 1 })).toThrow(/function/);
    expect(() => comms.send("", 1)).toThrow(/address/);
  });
});

describe("browser -> program", () => {
  it("delivers falsy values and typed arrays to subscribers in order, and only while subscribed", async () => {
    const { comms, browser, until } = setup();
    const tab = browser("tab", []);
    const got: unknown[] = [];
    const subscription = comms.subscribe("in", (v) => void got.push(v));
    await comms.sync();
    const values = [0, "", false, null, new Float32Array([0.5, 1.5])];
    for (const v of values) tab.send("in", v);
    await until("five values", () => (got.length >= 5 ? true : undefined));
    expect(got.slice(0, 4)).toEqual([0, "", false, null]);
    expect(got[4]).toBeInstanceOf(Float32Array);
    expect(Array.from(got[4] as Float32Array)).toEqual([0.5, 1.5]);
    subscription.dispose();
    subscription.dispose();
    await comms.sync();
    tab.send("in", "after");
    await comms.sync();
    expect(got).toHaveLength(5);
  });

  it("reports an error thrown in a callback and keeps delivering", async () => {
    const { comms, browser, until, errors } = setup();
    const tab = browser("tab", []);
    const got: number[] = [];
    comms.subscribe<number>("in", (v) => {
      if (v === 1) throw new Error("callback boom");
      got.push(v);
    });
    comms.subscribe<number>("in", async (v) => {
      if (v === 2) throw new Error("async boom");
    });
    await comms.sync();
    for (const v of [1, 2, 3]) tab.send("in", v);
    await until("value 3", () => (got.includes(3) ? true : undefined));
    await until("two reported errors", () => (errors.length >= 2 ? true : undefined));
    expect(errors.map((e) => (e as Error).message)).toEqual(["callback boom", "async boom"]);
    expect(got).toEqual([2, 3]);
  });

  it("iterates values with listen, and keeps only the newest with latestOnly", async () => {
    const { comms, browser } = setup();
    const tab = browser("tab", []);
    const all = comms.listen<number>("all");
    const latest = comms.listen<number>("latest", { latestOnly: true });
    await comms.sync();
    for (let i = 0; i < 5; i++) {
      tab.send("all", i);
      tab.send("latest", i);
    }
    const seen: number[] = [];
    for await (const v of all) {
      seen.push(v);
      if (v === 4) break;
    }
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    // Everything the kernel delivered before the sync ack has been seen by then.
    await comms.sync();
    expect((await latest.next()).value).toBe(4);
    latest.dispose();
    expect((await latest.next()).done).toBe(true);
  });

  it("echo: a browser answering every value plus one gives the program the exact sequence", async () => {
    const { comms, browser, until, bridge } = setup();
    const tab = browser("tab", ["ping"]);
    const answers: number[] = [];
    comms.subscribe<number>("pong", (v) => void answers.push(v));
    await comms.sync();
    // The scripted browser echoes each "ping" value + 1 on "pong".
    let echoed = 0;
    const echo = () => {
      while (echoed < tab.values.length) tab.send("pong", (tab.values[echoed++]!.value as number) + 1);
    };
    for (let i = 0; i < 200; i++) comms.send("ping", i);
    await until("200 answers", () => {
      echo();
      return answers.length >= 200 ? true : undefined;
    });
    expect(answers).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(bridge.commInfo()).toEqual({ tab: { target_name: "tsnb_comm" } });
  });
});

describe("answer latency", () => {
  it("writes what a callback sends while it handles the browser's values, before returning to the event loop", () => {
    const written: { op: string; items: unknown }[] = [];
    const program = new ProgramComms({
      send: (op) => void written.push({ op: op.op, items: "items" in op ? op.items : undefined }),
      currentCell: () => "cell-1",
      reportError: (err) => {
        throw err;
      },
    });
    try {
      program.subscribe<number>("ping", (v) => program.send("pong", v + 1));
      written.length = 0;
      const wire = joinItems([itemOf("ping", 1), itemOf("ping", 2)]);
      expect(program.handleKernelOp({ op: "comm_deliver", items: wire.items }, wire.buffers)).toBeNull();
      // Both answers, in one frame, with no setImmediate in between (the echo path waits on it).
      expect(written.map((w) => w.op)).toEqual(["comm_send"]);
      expect(splitItems(written[0]!.items as never, []).map(valueOf)).toEqual([2, 3]);
    } finally {
      program.dispose();
    }
  });
});

describe("read, listeners, sync", () => {
  it("read times out with a clear error when no front-end is connected", async () => {
    const { comms } = setup();
    const error = await comms.read("x", { timeout: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommsTimeoutError);
    expect((error as Error).message).toMatch(/no front-end is connected/);
  });

  it("read asks the browser and resolves with its answer", async () => {
    const { comms, browser, until } = setup();
    const tab = browser("tab", ["slider"]);
    const pending = comms.read<number>("slider", { timeout: 5000 });
    await until("the read request", () => (tab.reads.length > 0 ? true : undefined));
    tab.send("slider", 0);
    await expect(pending).resolves.toBe(0);
  });

  it("knows when browsers listen and is told when the first one arrives", async () => {
    const { comms, browser } = setup();
    expect(comms.hasListeners("x")).toBe(false);
    const first = comms.whenListening("x", { timeout: 5000 });
    browser("tab", ["x"]);
    await first;
    expect(comms.hasListeners("x")).toBe(true);
    expect(comms.frontends).toBe(1);
    await expect(comms.whenListening("nobody", { timeout: 50 })).rejects.toBeInstanceOf(CommsTimeoutError);
  });

  it("rejects pending reads and syncs with a typed error on dispose", async () => {
    const { comms } = setup();
    const read = comms.read("x", { timeout: 60_000 });
    const listened = comms.listen("y");
    const next = listened.next();
    comms.dispose();
    comms.dispose();
    await expect(read).rejects.toBeInstanceOf(CommsClosedError);
    await expect(next).rejects.toBeInstanceOf(CommsClosedError);
    expect(() => comms.send("x", 1)).toThrow(CommsClosedError);
  });
});

describe("SyncedVariable", () => {
  it("follows the browser and sends its own changes", async () => {
    const { comms, browser, until } = setup();
    const tab = browser("tab", ["v"]);
    const variable = new SyncedVariable("v", 10, { comms });
    const changes: [number, string][] = [];
    variable.onChange((value, from) => void changes.push([value, from]));
    await until("the initial value in the browser", () => (tab.values.some((v) => v.value === 10) ? true : undefined));
    tab.send("v", 0);
    await until("the browser's change", () => (variable.value === 0 ? true : undefined));
    variable.value = 7;
    await until("the program's change in the browser", () => (tab.values.some((v) => v.value === 7) ? true : undefined));
    expect(changes).toEqual([
      [0, "browser"],
      [7, "program"],
    ]);
    variable.dispose();
  });
});
