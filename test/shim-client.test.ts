// The browser client (frontend-shim/client.ts) against the real kernel hub, in memory: comm messages go
// through JSON like on the wire, timers are real. Chromium and the real server are covered elsewhere.

import { afterEach, describe, expect, it } from "vitest";
import { CommsBridge, type BridgeHost, type PublishRequest } from "../kernel/comms/bridge.js";
import { TsnbComm, type CommPortHandlers, type ConnectionStatus } from "../frontend-shim/client.js";
import { joinItems, itemOf, splitItems, valueOf } from "../protocol/bridge.js";
import type { JsonObject } from "../protocol/jupyter.js";
import { commClose, commMsg, commOpen, Conditions, RealTimers } from "./helpers/comms-fakes.js";

function rig(options: { chunkBytes?: number; heartbeat?: { silenceMs: number; pongTimeoutMs: number }; idleProbeMs?: number } = {}) {
  /** The op of every message a client sent, in order. */
  const sentOps: string[] = [];
  /** Listener counts per address, as the kernel tells the program. */
  const listeners = new Map<string, number>();
  const ports = new Map<string, CommPortHandlers>();
  const timers = new RealTimers();
  const programValues: { address: string; value: unknown }[] = [];
  const conditions = new Conditions();
  const { notify, until } = conditions;
  const host: BridgeHost = {
    now: timers.now,
    setTimer: timers.setTimer,
    publish: (m: PublishRequest) => {
      const id = String(m.content.comm_id);
      const handlers = ports.get(id);
      if (!handlers) return;
      // Through JSON like the wire; delivered on a later turn like a websocket.
      const data: unknown = JSON.parse(JSON.stringify(m.content.data ?? {}));
      const buffers = m.buffers.map((b) => b.slice());
      setImmediate(() => {
        if (m.msg_type === "comm_msg") handlers.onMessage(data, buffers);
        else if (m.msg_type === "comm_close") {
          ports.delete(id);
          handlers.onClose(String((data as { reason?: string }).reason));
        }
        notify();
      });
    },
    toProgram: (op, buffers) => {
      if (op.op === "comm_listeners") listeners.set(op.address, op.count);
      if (op.op === "comm_deliver") {
        for (const item of splitItems(op.items, buffers)) programValues.push({ address: item.address, value: valueOf(item) });
      }
      notify();
    },
    parentForCell: () => ({}),
    newId: () => Math.random().toString(36).slice(2),
    log: { warn: () => {} },
  };
  const bridge = new CommsBridge(host, { heartbeat: options.heartbeat ?? { silenceMs: 60_000, pongTimeoutMs: 500 } });
  let n = 0;
  const clients: TsnbComm[] = [];
  const client = () => {
    const c = new TsnbComm({
      kernelId: "k1",
      retryMs: 20,
      chunkBytes: options.chunkBytes,
      idleProbeMs: options.idleProbeMs,
      open: async (openData, handlers) => {
        const id = `comm-${++n}`;
        ports.set(id, handlers);
        setImmediate(() => bridge.commOpen(commOpen(id, "tsnb_comm", openData)));
        return {
          send: (data: JsonObject, buffers: Uint8Array[]) => {
            sentOps.push(String(data.op));
            const json: unknown = JSON.parse(JSON.stringify(data));
            const copies = buffers.map((b) => b.slice());
            setImmediate(() => {
              bridge.commMsg(commMsg(id, json, copies));
              notify();
            });
          },
          close: () => {
            ports.delete(id);
            setImmediate(() => {
              bridge.commClose(commClose(id));
              notify();
            });
          },
        };
      },
    });
    clients.push(c);
    return c;
  };
  const programSend = (address: string, value: unknown) => {
    const batch = joinItems([itemOf(address, value)]);
    bridge.programOp({ op: "comm_send", cell: null, items: batch.items }, batch.buffers);
  };
  const dispose = () => {
    for (const c of clients) c.close();
    bridge.dispose();
    timers.dispose();
    conditions.dispose();
  };
  return { bridge, client, programValues, programSend, until, dispose, notify, sentOps, listeners };
}

let current: ReturnType<typeof rig> | null = null;
function setup(options?: Parameters<typeof rig>[0]) {
  current = rig(options);
  return current;
}
afterEach(() => {
  current?.dispose();
  current = null;
});

describe("browser client", () => {
  it("becomes ready on the kernel's ack and reports its status", async () => {
    const { client, bridge } = setup();
    const c = client();
    const statuses: ConnectionStatus[] = [];
    c.onStatus((s) => void statuses.push(s));
    expect(c.status).toBe("connecting");
    await c.ready;
    expect(c.status).toBe("open");
    expect(statuses).toEqual(["open"]);
    expect(Object.keys(bridge.commInfo())).toHaveLength(1);
  });

  it("receives the last value at once on subscribe, then every value in order, falsy ones and typed arrays included", async () => {
    const { client, programSend, until } = setup();
    programSend("x", "before");
    const c = client();
    const got: unknown[] = [];
    c.subscribe("x", (v) => void got.push(v));
    await c.ready;
    await until("the replayed value", () => (got.length > 0 ? true : undefined));
    for (const v of [0, "", false, null, new Float32Array([1.25, -1])]) programSend("x", v);
    await until("all values", () => (got.length >= 6 ? true : undefined));
    expect(got.slice(0, 5)).toEqual(["before", 0, "", false, null]);
    expect(got[5]).toBeInstanceOf(Float32Array);
    expect(Array.from(got[5] as Float32Array)).toEqual([1.25, -1]);
  });

  it("sends values to the program with typed arrays arriving as the same type", async () => {
    const { client, bridge, programValues, until } = setup();
    bridge.programOp({ op: "comm_subscribe", cell: null, address: "up" }, []);
    const c = client();
    c.send("up", 0);
    c.send("up", { samples: new Float32Array([3.5]), label: "" });
    await until("two values", () => (programValues.length >= 2 ? true : undefined));
    expect(programValues[0]!.value).toBe(0);
    const second = programValues[1]!.value as { samples: Float32Array; label: string };
    expect(second.samples).toBeInstanceOf(Float32Array);
    expect(Array.from(second.samples)).toEqual([3.5]);
    expect(second.label).toBe("");
  });

  it("chunks a message larger than the websocket limit and the kernel reassembles it", async () => {
    const { client, bridge, programValues, until } = setup({ chunkBytes: 64 * 1024 });
    bridge.programOp({ op: "comm_subscribe", cell: null, address: "big" }, []);
    const c = client();
    await c.ready;
    const big = new Float64Array(100_000).map((_, i) => i / 2);
    c.send("big", big);
    await until("the big value", () => (programValues.length >= 1 ? true : undefined));
    const got = programValues[0]!.value as Float64Array;
    expect(got).toBeInstanceOf(Float64Array);
    expect(got.length).toBe(100_000);
    expect(got[99_999]).toBe(99_999 / 2);
  });

  it("answers the heartbeat, so an idle but live tab is kept", async () => {
    const { client, bridge, programSend, until } = setup({ heartbeat: { silenceMs: 30, pongTimeoutMs: 200 } });
    const c = client();
    const got: unknown[] = [];
    c.subscribe("x", (v) => void got.push(v));
    await c.ready;
    for (let i = 0; i < 5; i++) {
      // Silent longer than the threshold: each send pings first.
      await new Promise<void>((resolve) => setTimeout(resolve, 50));
      programSend("x", i);
      await until(`value ${i}`, () => (got.includes(i) ? true : undefined));
    }
    expect(c.status).toBe("open");
    expect(Object.keys(bridge.commInfo())).toHaveLength(1);
  });

  it("reconnects when the kernel closes its comm, listens again and gets the last value", async () => {
    const { client, bridge, programSend, until } = setup();
    const c = client();
    const got: unknown[] = [];
    const statuses: ConnectionStatus[] = [];
    c.onStatus((s) => void statuses.push(s));
    c.subscribe("x", (v) => void got.push(v));
    await c.ready;
    const [first] = Object.keys(bridge.commInfo());
    // As after a kernel restart: the kernel forgets the comm; the next message is answered with comm_close.
    bridge.commClose(commClose(first!));
    programSend("x", "while away");
    c.probe();
    await until("the value after reconnecting", () => (got.includes("while away") ? true : undefined));
    const [second] = Object.keys(bridge.commInfo());
    expect(second).not.toBe(first);
    expect(statuses).toEqual(["open", "reconnecting", "open"]);
  });

  it("finds out that a restarted kernel forgot its comm although nothing told the page (it probes a silent kernel)", async () => {
    const { client, bridge, programSend, until, listeners } = setup({ idleProbeMs: 30 });
    const c = client();
    const got: unknown[] = [];
    const statuses: ConnectionStatus[] = [];
    c.onStatus((s) => void statuses.push(s));
    c.subscribe("x", (v) => void got.push(v));
    await c.ready;
    await until("the kernel to have the page's listen", () => (listeners.get("x") === 1 ? true : undefined));
    const [first] = Object.keys(bridge.commInfo());
    // What a restart asked for by another client looks like when the Jupyter server's IOPub subscription missed
    // the new kernel's first messages: the kernel no longer knows the comm and the page hears nothing at all.
    bridge.commClose(commClose(first!));
    programSend("x", "from the new kernel");
    await until("the page to reconnect and get the new kernel's value", () => (got.includes("from the new kernel") ? true : undefined));
    expect(statuses).toEqual(["open", "reconnecting", "open"]);
    expect(Object.keys(bridge.commInfo())).not.toContain(first);
  });

  it("probes a silent kernel that still knows the comm without disturbing the connection", async () => {
    const { client, bridge, until, sentOps } = setup({ idleProbeMs: 20 });
    const c = client();
    const statuses: ConnectionStatus[] = [];
    c.onStatus((s) => void statuses.push(s));
    await c.ready;
    const ids = Object.keys(bridge.commInfo());
    await until("three probes", () => (sentOps.filter((op) => op === "pong").length >= 3 ? true : undefined));
    expect(statuses).toEqual(["open"]);
    expect(c.status).toBe("open");
    expect(Object.keys(bridge.commInfo())).toEqual(ids);
  });

  it("answers a program read with its synced variable's value", async () => {
    const { client, bridge, programValues, until } = setup();
    bridge.programOp({ op: "comm_subscribe", cell: null, address: "v" }, []);
    const c = client();
    const v = c.newSyncedVariable("v", 5);
    await c.ready;
    v.set(6);
    await until("the set value", () => (programValues.some((p) => p.value === 6) ? true : undefined));
    programValues.length = 0;
    bridge.programOp({ op: "comm_read", cell: null, address: "v" }, []);
    await until("the read answer", () => (programValues.length > 0 ? true : undefined));
    expect(programValues).toEqual([{ address: "v", value: 6 }]);
    expect(v.get()).toBe(6);
  });

  it("keeps delivering when a page callback throws", async () => {
    const { client, programSend, until } = setup();
    const c = client();
    const got: unknown[] = [];
    const original = console.error;
    const logged: unknown[] = [];
    console.error = (...args: unknown[]) => void logged.push(args);
    try {
      c.subscribe("x", () => {
        throw new Error("page bug");
      });
      c.subscribe("x", (v) => void got.push(v));
      await c.ready;
      programSend("x", 1);
      await until("the value", () => (got.length > 0 ? true : undefined));
    } finally {
      console.error = original;
    }
    expect(got).toEqual([1]);
    expect(logged).toHaveLength(1);
  });

  it("close() stops everything and rejects nothing twice", async () => {
    const { client, bridge, until } = setup();
    const c = client();
    await c.ready;
    c.close();
    c.close();
    expect(c.status).toBe("closed");
    expect(() => c.send("x", 1)).toThrow(/closed/);
    await until("the kernel forgetting the comm", () => (Object.keys(bridge.commInfo()).length === 0 ? true : undefined));
  });
});
