// RPC through the three real pieces wired in memory: the browser client (frontend-shim/client.ts), the
// kernel hub (kernel/comms/bridge.ts) and the program's comms (runtime/tsnb/comms). Messages go through
// JSON and arrive on a later turn, like on the wire; timers are real. The real kernel process, the real
// server and Chromium are covered by rpc-kernel.test.ts and rpc-browser.test.ts.

import { afterEach, describe, expect, it } from "vitest";
import { CommsBridge, type BridgeHost } from "../kernel/comms/bridge.js";
import { TsnbComm, type CommPortHandlers } from "../frontend-shim/client.js";
import { ProgramComms } from "../runtime/tsnb/comms/comms.js";
import { parseBrowserMessage } from "../protocol/bridge.js";
import { parseProgramCommOp } from "../protocol/comms-ops.js";
import { RpcCode } from "../protocol/rpc.js";
import type { JsonObject } from "../protocol/jupyter.js";
import { commClose, commMsg, commOpen, RealTimers, rpcRejection } from "./helpers/comms-fakes.js";

const later = (fn: () => void) => setImmediate(fn);
const wire = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function rig(options: { chunkBytes?: number; chunkWindowBytes?: number; clientChunkBytes?: number; heldValueBytes?: number } = {}) {
  const ports = new Map<string, CommPortHandlers>();
  /** The ops of every comm message each way, to check batching. */
  const wireOps = { up: [] as string[], down: [] as string[], toProgram: [] as string[] };
  const timers = new RealTimers();
  const programErrors: unknown[] = [];
  let programRunning = true;
  let program: ProgramComms;
  const host: BridgeHost = {
    now: timers.now,
    setTimer: timers.setTimer,
    publish: (m) => {
      const handlers = ports.get(String(m.content.comm_id));
      if (!handlers) return;
      const data: unknown = wire(m.content.data ?? {});
      wireOps.down.push(String((data as { op?: string }).op));
      const buffers = m.buffers.map((b) => b.slice());
      later(() => {
        if (m.msg_type === "comm_msg") handlers.onMessage(data, buffers);
        else if (m.msg_type === "comm_close") handlers.onClose(String((data as { reason?: string }).reason));
      });
    },
    toProgram: (op, buffers) => {
      wireOps.toProgram.push(op.op);
      if (!programRunning) return false;
      const header = wire(op) as unknown as { [key: string]: unknown };
      const copies = buffers.map((b) => b.slice());
      const target = program;
      later(() => {
        const problem = target.handleKernelOp(header, copies);
        if (problem) throw new Error(problem);
      });
      return true;
    },
    parentForCell: () => ({}),
    newId: () => Math.random().toString(36).slice(2),
    log: { warn: () => {} },
  };
  const bridge = new CommsBridge(host, {
    heartbeat: { silenceMs: 60_000, pongTimeoutMs: 500 },
    ...(options.chunkBytes === undefined ? {} : { chunkBytes: options.chunkBytes }),
    ...(options.chunkWindowBytes === undefined ? {} : { chunkWindowBytes: options.chunkWindowBytes }),
    ...(options.heldValueBytes === undefined ? {} : { heldValueBytes: options.heldValueBytes }),
  });
  const startProgram = () => {
    program = new ProgramComms({
      send: (op, buffers) => {
        const header = wire(op) as unknown as { [key: string]: unknown };
        expect(parseProgramCommOp(header, buffers.length).ok).toBe(true);
        const copies = buffers.map((b) => b.slice());
        later(() => bridge.programOp(header, copies));
      },
      currentCell: () => "cell-1",
      reportError: (e) => programErrors.push(e),
    }, options.heldValueBytes === undefined ? {} : { heldValueBytes: options.heldValueBytes });
    programRunning = true;
    bridge.programStarted();
    return program;
  };
  /** The program exits: the kernel notices, and a new one starts later. */
  const killProgram = () => {
    programRunning = false;
    bridge.programStopped();
    program.dispose();
  };
  startProgram();
  let n = 0;
  const clients: TsnbComm[] = [];
  const client = () => {
    const c = new TsnbComm({
      kernelId: "k1",
      retryMs: 20,
      ...(options.clientChunkBytes === undefined ? {} : { chunkBytes: options.clientChunkBytes }),
      open: async (openData, handlers) => {
        const id = `comm-${++n}`;
        ports.set(id, handlers);
        later(() => bridge.commOpen(commOpen(id, "tsnb_comm", openData)));
        return {
          send: (data: JsonObject, buffers: Uint8Array[]) => {
            const json: unknown = wire(data);
            wireOps.up.push(String((json as { op?: string }).op));
            expect(parseBrowserMessage(json, buffers.length).ok).toBe(true);
            const copies = buffers.map((b) => b.slice());
            later(() => bridge.commMsg(commMsg(id, json, copies)));
          },
          close: () => {
            ports.delete(id);
            later(() => bridge.commClose(commClose(id)));
          },
        };
      },
    });
    clients.push(c);
    return c;
  };
  const dispose = () => {
    for (const c of clients) c.close();
    program.dispose();
    bridge.dispose();
    timers.dispose();
  };
  return { bridge, client, program: () => program, startProgram, killProgram, programErrors, dispose, ports, wireOps };
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

/** Waits for a condition that messages on later turns make true, with a deadline. */
async function until(check: () => boolean, deadlineMs = 3000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${deadlineMs} ms: ${check.toString()}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe("large values the program holds", () => {
  it("a page that subscribes late gets the program's large value from the program; the kernel stores none of it", async () => {
    const { bridge, client, program } = setup({ heldValueBytes: 16 * 1024 });
    const first = client();
    const got1: Float32Array[] = [];
    first.subscribe("plot", (v: Float32Array) => got1.push(v));
    await first.ready;
    const plot = new Float32Array(20_000).map((_, i) => i);
    program().send("plot", plot);
    program().send("label", "small");
    await until(() => got1.length === 1);
    expect(bridge.heldByProgram("plot")).toBe(true);
    expect(bridge.storedBinaryBytes).toBe(0);
    const late = client();
    const got2: Float32Array[] = [];
    const labels: string[] = [];
    late.subscribe("plot", (v: Float32Array) => got2.push(v));
    late.subscribe("label", (v: string) => labels.push(v));
    await until(() => got2.length === 1 && labels.length === 1);
    expect(got2[0]).toEqual(plot);
    expect(labels).toEqual(["small"]);
    // The first page got nothing twice.
    expect(got1).toHaveLength(1);
  });

  it("a large value a page sent to a subscribed program is replayed by the program to a page that listens later", async () => {
    const { bridge, client, program } = setup({ heldValueBytes: 16 * 1024 });
    const seen: number[] = [];
    program().subscribe("upload", (v: Uint8Array) => void seen.push(v.length));
    const sender = client();
    await sender.ready;
    sender.send("upload", new Uint8Array(50_000).fill(3));
    await until(() => seen.length === 1);
    expect(bridge.heldByProgram("upload")).toBe(true);
    expect(bridge.storedBinaryBytes).toBe(0);
    const other = client();
    const got: Uint8Array[] = [];
    other.subscribe("upload", (v: Uint8Array) => got.push(v));
    await until(() => got.length === 1);
    expect(got[0]!.length).toBe(50_000);
    expect(got[0]![49_999]).toBe(3);
    expect(seen).toEqual([50_000]);
  });
});

describe("large messages from a page, passed on to the program as their chunks arrive", () => {
  it("a value for a subscribed address and a call's argument arrive whole in the program, relayed in pieces", async () => {
    const { bridge, client, program, wireOps } = setup({ heldValueBytes: 16 * 1024, clientChunkBytes: 20_000 });
    const seen: Float32Array[] = [];
    program().subscribe("upload", (v: Float32Array) => void seen.push(v));
    program().register("sum", ([a]: [Uint8Array]) => a.reduce((n, x) => n + x, 0) + ":" + a.length);
    const tab = client();
    await tab.ready;
    const floats = new Float32Array(25_000).map((_, i) => i * 0.25);
    tab.send("upload", floats);
    await until(() => seen.length === 1);
    expect(seen[0]).toEqual(floats);
    expect(wireOps.toProgram.filter((op) => op === "comm_chunk").length).toBeGreaterThan(4);
    expect(bridge.heldByProgram("upload")).toBe(true);
    expect(bridge.storedBinaryBytes).toBe(0);
    const arg = new Uint8Array(70_000).fill(2);
    expect(await tab.call("sum", [arg])).toBe("140000:70000");
    expect(bridge.pendingCalls.toProgram).toBe(0);
  });
});

describe("browser -> program calls", () => {
  it("calls a registered function with args and kwargs and returns its result", async () => {
    const { client, program } = setup();
    program().register("math.add", (args, kwargs) => args[0] + args[1] + (kwargs.bonus ?? 0));
    program().register("slow.echo", async ([x]) => {
      await new Promise((r) => setTimeout(r, 5));
      return { echoed: x, falsy: [0, "", false, null] };
    });
    const tab = client();
    await tab.ready;
    expect(await tab.call("math.add", [2, 3], { bonus: 10 })).toBe(15);
    expect(await tab.call("slow.echo", ["hi"])).toEqual({ echoed: "hi", falsy: [0, "", false, null] });
  });

  it("sends a call made before the connection is up once it is", async () => {
    const { client, program } = setup();
    program().register("ping", () => "pong");
    const tab = client();
    expect(await tab.call("ping")).toBe("pong");
  });

  it("reports an exception with code -32001, its message and the program's stack", async () => {
    const { client, program } = setup();
    program().register("boom", function explodeHere() {
      throw new RangeError("tile out of range");
    });
    const tab = client();
    const e = await rpcRejection(tab.call("boom"));
    expect(e.code).toBe(RpcCode.EXCEPTION);
    expect(e.message).toContain("RangeError: tile out of range");
    expect(e.remoteStack).toContain("explodeHere");
  });

  it("reports a rejected promise as -32001 too", async () => {
    const { client, program } = setup();
    program().register("later.boom", async () => Promise.reject(new Error("async failure")));
    const e = await rpcRejection(client().call("later.boom"));
    expect(e.code).toBe(RpcCode.EXCEPTION);
    expect(e.message).toContain("async failure");
  });

  it("answers an unknown method with -32601 and names what is registered", async () => {
    const { client, program } = setup();
    program().register("known", () => 1);
    const e = await rpcRejection(client().call("unknown.method"));
    expect(e.code).toBe(RpcCode.METHOD_NOT_FOUND);
    expect(e.message).toContain("unknown.method");
    expect(e.message).toContain("known");
  });

  it("answers a result that cannot travel with -32002", async () => {
    const { client, program } = setup();
    program().register("fn", () => ({ f: () => 1 }));
    const e = await rpcRejection(client().call("fn"));
    expect(e.code).toBe(RpcCode.RESULT_NOT_SERIALIZABLE);
  });

  it("times out with -32005 and ignores the late answer", async () => {
    const { client, program, bridge } = setup();
    let release!: () => void;
    // On a loaded machine the 50 ms timeout may fire before the call even reaches the handler; the late
    // answer is only sent once it has, so wait for that instead of assuming an order.
    const reached = new Promise<void>((arrived) =>
      program().register("stuck", () => {
        arrived();
        return new Promise<string>((r) => (release = () => r("late")));
      }),
    );
    const tab = client();
    const e = await rpcRejection(tab.call("stuck", [], {}, { timeout: 50 }));
    expect(e.code).toBe(RpcCode.TIMEOUT);
    expect(tab.pendingCalls).toBe(0);
    await reached;
    release();
    // The late answer goes through the kernel and is dropped by the client, which keeps working.
    program().register("ok", () => "still fine");
    expect(await tab.call("ok")).toBe("still fine");
    expect(bridge.pendingCalls.toProgram).toBe(0);
  });

  it("matches 100 concurrent calls to their callers", async () => {
    const { client, program } = setup();
    program().register("square", async ([x]: number[]) => {
      await new Promise((r) => setTimeout(r, Math.random() * 10));
      return x! * x!;
    });
    const tab = client();
    const xs = Array.from({ length: 100 }, (_, i) => i);
    expect(await Promise.all(xs.map((x) => tab.call("square", [x])))).toEqual(xs.map((x) => x * x));
  });

  it("sends calls made in one task as one comm message and batches the answers", async () => {
    const { client, program, wireOps } = setup();
    program().register("id", ([x]) => x);
    const tab = client();
    await tab.ready;
    wireOps.up.length = 0;
    wireOps.down.length = 0;
    const xs = Array.from({ length: 100 }, (_, i) => i);
    expect(await Promise.all(xs.map((x) => tab.call("id", [x])))).toEqual(xs);
    expect(wireOps.up.filter((op) => op === "rpc_batch" || op === "call")).toEqual(["rpc_batch"]);
    const down = wireOps.down.filter((op) => op === "rpc_batch" || op === "reply");
    expect(down.length).toBeGreaterThanOrEqual(1);
    expect(down.length).toBeLessThanOrEqual(10);
  });

  it("carries typed arrays raw in arguments and results, nested anywhere", async () => {
    const { client, program } = setup();
    program().register("scale", ([data, factor]: [Float32Array, number]) => ({ out: data.map((v) => v * factor), len: data.length }));
    const input = Float32Array.from({ length: 1000 }, (_, i) => i / 2);
    const got = (await client().call("scale", [input, 2])) as { out: Float32Array; len: number };
    expect(got.out).toBeInstanceOf(Float32Array);
    expect(got.len).toBe(1000);
    expect(got.out[999]).toBe(999);
  });

  it("rejects a pending call with -32004 when the comm closes, and the kernel forgets it", async () => {
    const { client, program, bridge, ports } = setup();
    program().register("never", () => new Promise(() => {}));
    const tab = client();
    await tab.ready;
    const pending = tab.call("never");
    await until(() => bridge.pendingCalls.toProgram === 1);
    // The kernel closes the comm (as the heartbeat does for a dead page).
    const [id, handlers] = [...ports][0]!;
    bridge.commClose(commClose(id));
    handlers.onClose("closed by the test");
    const e = await rpcRejection(pending);
    expect(e.code).toBe(RpcCode.DISCONNECTED);
    expect(bridge.pendingCalls.toProgram).toBe(0);
  });

  it("rejects pending calls with -32004 when the page closes tsnb_comm", async () => {
    const { client, program } = setup();
    program().register("never", () => new Promise(() => {}));
    const tab = client();
    await tab.ready;
    const pending = tab.call("never");
    tab.close();
    expect((await rpcRejection(pending)).code).toBe(RpcCode.DISCONNECTED);
    expect((await rpcRejection(tab.call("never"))).code).toBe(RpcCode.DISCONNECTED);
  });

  it("rejects a pending call with -32003 when the program exits, and calls work again after restart", async () => {
    const { client, program, killProgram, startProgram, bridge } = setup();
    let called!: () => void;
    const reached = new Promise<void>((r) => (called = r));
    program().register("hang", () => {
      called();
      return new Promise(() => {});
    });
    const tab = client();
    const pending = tab.call("hang");
    await reached;
    killProgram();
    const e = await rpcRejection(pending);
    expect(e.code).toBe(RpcCode.PROGRAM_EXITED);
    expect(e.message).toContain("exited");
    // While no program runs, a call is answered at once rather than left to time out.
    expect((await rpcRejection(tab.call("hang"))).code).toBe(RpcCode.PROGRAM_EXITED);
    startProgram().register("hang", () => "back");
    expect(await tab.call("hang")).toBe("back");
    expect(bridge.pendingCalls).toEqual({ toProgram: 0, toFrontends: 0 });
  });
});

describe("large payloads", () => {
  it("chunks a big upload and a big result, reports progress both ways, and reassembles them exactly", async () => {
    let published = 0;
    // Two chunks in flight: the result arrives only because the page acknowledges each chunk as it comes.
    const { client, program } = setup({ chunkBytes: 64 * 1024, chunkWindowBytes: 128 * 1024, clientChunkBytes: 100 * 1024 });
    program().register("big.double", ([input]: [Float64Array]) => {
      published++;
      const out = new Float64Array(input.length * 2);
      out.set(input);
      out.set(input, input.length);
      return { out, note: "doubled" };
    });
    const input = Float64Array.from({ length: 40_000 }, (_, i) => i * 0.25); // 320 kB up, 640 kB down
    const progress: { phase: string; bytes: number; total: number }[] = [];
    const got = (await client().call("big.double", [input], {}, { timeout: 10_000, onProgress: (p) => progress.push(p) })) as { out: Float64Array; note: string };
    expect(published).toBe(1);
    expect(got.note).toBe("doubled");
    expect(got.out).toBeInstanceOf(Float64Array);
    expect(got.out.length).toBe(80_000);
    expect(got.out[39_999]).toBe(39_999 * 0.25);
    expect(got.out[79_999]).toBe(39_999 * 0.25);
    const up = progress.filter((p) => p.phase === "upload");
    const down = progress.filter((p) => p.phase === "download");
    expect(up.length).toBeGreaterThanOrEqual(4);
    expect(down.length).toBeGreaterThanOrEqual(10);
    for (const list of [up, down]) {
      for (let i = 1; i < list.length; i++) expect(list[i]!.bytes).toBeGreaterThan(list[i - 1]!.bytes);
      expect(list.at(-1)!.bytes).toBe(list.at(-1)!.total);
    }
    expect(down.at(-1)!.total).toBeGreaterThan(640_000);
  });

  it("chunks a big program -> page call and its big result", async () => {
    const { client, program } = setup({ chunkBytes: 50_000, clientChunkBytes: 70_000 });
    const tab = client();
    tab.register("page.reverse", (data: Uint8Array) => data.slice().reverse());
    await tab.ready;
    await until(() => program().frontends === 1);
    const input = Uint8Array.from({ length: 300_000 }, (_, i) => i % 251);
    const got = (await program().callFrontend({ name: "page.reverse", args: [input], timeout: 10_000 })) as Uint8Array;
    expect(got).toBeInstanceOf(Uint8Array);
    expect(got.length).toBe(300_000);
    expect(got[0]).toBe(input[299_999]);
    expect(got[299_999]).toBe(input[0]);
  });
});

describe("program -> browser calls", () => {
  it("calls a page function and gets its result, typed arrays included", async () => {
    const { client, program } = setup();
    const tab = client();
    tab.register("canvas.read", (w: number, h: number) => ({ size: [w, h], pixels: new Uint8ClampedArray(w * h * 4).fill(7) }));
    await tab.ready;
    const got = await program().callFrontend("canvas.read", 4, 2);
    expect(got.size).toEqual([4, 2]);
    expect(got.pixels).toBeInstanceOf(Uint8ClampedArray);
    expect(got.pixels.length).toBe(32);
  });

  it("fails with -32004 when no front-end is connected", async () => {
    const { program } = setup();
    const e = await rpcRejection(program().callFrontend("anything"));
    expect(e.code).toBe(RpcCode.DISCONNECTED);
    expect(e.message).toContain("no front-end is connected");
  });

  it("first responder: a tab without the function does not win over one with it; none with it gives -32601", async () => {
    const { client, program } = setup();
    const a = client();
    const b = client();
    b.register("who", () => "b");
    await Promise.all([a.ready, b.ready]);
    await until(() => program().frontends === 2);
    expect(await program().callFrontend("who")).toBe("b");
    const e = await rpcRejection(program().callFrontend("nobody.has.this"));
    expect(e.code).toBe(RpcCode.METHOD_NOT_FOUND);
  });

  it("targets one front-end by id and reports a page exception with its stack", async () => {
    const { client, program } = setup();
    const a = client();
    const b = client();
    a.register("id", () => "a");
    b.register("id", () => {
      throw new Error("b refuses");
    });
    await Promise.all([a.ready, b.ready]);
    await until(() => program().frontendIds.length === 2);
    expect(await program().callFrontend({ name: "id", target: a.id! })).toBe("a");
    const e = await rpcRejection(program().callFrontend({ name: "id", target: b.id! }));
    expect(e.code).toBe(RpcCode.EXCEPTION);
    expect(e.message).toContain("b refuses");
    expect(e.remoteStack).toBeTruthy();
    expect((await rpcRejection(program().callFrontend({ name: "id", target: "no-such-tab" }))).code).toBe(RpcCode.DISCONNECTED);
  });

  it("times out with -32005, and a closing tab fails the call with -32004", async () => {
    const { client, program, bridge } = setup();
    const tab = client();
    tab.register("never", () => new Promise(() => {}));
    await tab.ready;
    await until(() => program().frontends === 1);
    expect((await rpcRejection(program().callFrontend({ name: "never", timeout: 50 }))).code).toBe(RpcCode.TIMEOUT);
    const pending = program().callFrontend("never");
    await until(() => bridge.pendingCalls.toFrontends === 1);
    tab.close();
    const e = await rpcRejection(pending);
    expect(e.code).toBe(RpcCode.DISCONNECTED);
    expect(bridge.pendingCalls.toFrontends).toBe(0);
  });
});

describe("publish only while someone listens", () => {
  it("publish() sends only when a page subscribed to the topic", async () => {
    const { client, program } = setup();
    expect(program().publish("news", 1)).toBe(false);
    const tab = client();
    const got: unknown[] = [];
    tab.subscribe("news", (v) => got.push(v));
    await program().whenListening("news", { timeout: 2000 });
    expect(program().publish("news", 2)).toBe(true);
    await until(() => got.length > 0);
    expect(got).toEqual([2]);
  });
});

describe("bad RPC input is refused with a clear error and loses nothing", () => {
  it("the kernel refuses malformed calls and replies from a page, and keeps serving good ones", async () => {
    const { client, program, bridge, ports } = setup();
    program().register("ok", () => "fine");
    const tab = client();
    await tab.ready;
    const [id] = [...ports.keys()];
    const refused: string[] = [];
    const handlers = ports.get(id!)!;
    const original = handlers.onMessage;
    handlers.onMessage = (data, buffers) => {
      if ((data as { op?: string }).op === "error") refused.push((data as { message: string }).message);
      original(data, buffers);
    };
    const bad: [unknown, Uint8Array[]][] = [
      [{ op: "call", id: "x", value: [[], {}] }, []], // no method
      [{ op: "call", id: "", method: "ok", value: [[], {}] }, []], // empty id
      [{ op: "call", id: "x", method: "ok", value: [[], {}], nbuf: 2 }, [new Uint8Array(1)]], // nbuf mismatch
      [{ op: "reply", id: "x", value: 1, error: { code: 1, message: "m" } }, []], // both
      [{ op: "reply", id: "x", error: { code: "nope", message: "m" } }, []], // bad code
    ];
    for (const [data, buffers] of bad) bridge.commMsg(commMsg(id!, data, buffers));
    await until(() => refused.length === bad.length);
    expect(refused.join("\n")).toMatch(/"method" must be a non-empty string/);
    expect(refused.join("\n")).toMatch(/"id" must be a non-empty string/);
    expect(refused.join("\n")).toMatch(/"nbuf" says 2 binary parts but the message carries 1/);
    expect(refused.join("\n")).toMatch(/"value" or "error", not both/);
    expect(refused.join("\n")).toMatch(/"error.code" must be an integer/);
    expect(bridge.pendingCalls).toEqual({ toProgram: 0, toFrontends: 0 });
    expect(await tab.call("ok")).toBe("fine");
  });

  it("the kernel refuses malformed RPC ops from a program with a reason", () => {
    const { bridge } = setup();
    expect(bridge.programOp({ op: "comm_rpc_call", id: "p1", value: null }, [])).toMatch(/"method"/);
    expect(bridge.programOp({ op: "comm_rpc_call", id: "p1", method: "m", value: null, target: 5 }, [])).toMatch(/"target"/);
    expect(bridge.programOp({ op: "comm_rpc_reply", id: "b1" }, [])).toMatch(/"value" is missing/);
    expect(bridge.programOp({ op: "comm_rpc_cancel" }, [])).toMatch(/"id"/);
    expect(bridge.programOp({ op: "comm_rpc_cancel", id: "p1" }, [new Uint8Array(1)])).toMatch(/unexpected binary parts/);
  });

  it("a page call with arguments that are not [args, kwargs] gets -32602 from the program", async () => {
    const { client, program, bridge, ports } = setup();
    program().register("ok", () => "fine");
    const tab = client();
    await tab.ready;
    const [id] = [...ports.keys()];
    const replies: unknown[] = [];
    const handlers = ports.get(id!)!;
    const original = handlers.onMessage;
    handlers.onMessage = (data, buffers) => {
      if ((data as { op?: string }).op === "reply") replies.push(data);
      original(data, buffers);
    };
    bridge.commMsg(commMsg(id!, { op: "call", id: "raw-1", method: "ok", value: "not a list" }));
    await until(() => replies.length === 1);
    expect(replies[0]).toMatchObject({ op: "reply", id: "raw-1", error: { code: RpcCode.INVALID_PARAMS } });
  });
});
