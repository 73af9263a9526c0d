// RPC end to end through the real kernel process and the real user program over real zeromq sockets. The
// browser side is the real client (frontend-shim/client.ts) with its comm carried by the test's Jupyter
// client: every comm_msg for it on IOPub goes to the client, and its messages go out on shell.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rpcRejection } from "./helpers/comms-fakes.js";
import { startKernel, type RunningKernel } from "./helpers/kernel-client.js";
import { TsnbComm, type CommPortHandlers } from "../frontend-shim/client.js";
import { RpcCode } from "../protocol/rpc.js";
import type { JsonObject, JupyterMessage } from "../protocol/jupyter.js";

let kernel: RunningKernel;
const tabs = new Map<string, CommPortHandlers>();
const clients: TsnbComm[] = [];

beforeAll(async () => {
  kernel = await startKernel();
  // Route IOPub comm traffic to the clients as it arrives (the test client's inbox has no listener API).
  const inbox = kernel.client.iopub;
  const push = inbox.push.bind(inbox);
  inbox.push = (m: JupyterMessage) => {
    push(m);
    const handlers = tabs.get(String(m.content.comm_id));
    if (!handlers) return;
    if (m.header.msg_type === "comm_msg") handlers.onMessage(m.content.data, m.buffers);
    else if (m.header.msg_type === "comm_close") {
      tabs.delete(String(m.content.comm_id));
      handlers.onClose(String((m.content.data as { reason?: string } | undefined)?.reason ?? "closed by the kernel"));
    }
  };
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await kernel?.kill();
});

let counter = 0;
function tab(): TsnbComm {
  const client = new TsnbComm({
    kernelId: "test",
    retryMs: 50,
    open: async (openData, handlers) => {
      const id = `rpc-tab-${++counter}-${Date.now()}`;
      tabs.set(id, handlers);
      kernel.client.send("shell", "comm_open", { comm_id: id, target_name: "tsnb_comm", data: openData });
      return {
        send: (data: JsonObject, buffers: Uint8Array[]) => void kernel.client.send("shell", "comm_msg", { comm_id: id, data }, { buffers }),
        close: () => {
          tabs.delete(id);
          kernel.client.send("shell", "comm_close", { comm_id: id, data: {} });
        },
      };
    },
  });
  clients.push(client);
  return client;
}

/** Runs a cell and returns its text/plain result; fails with the cell's error. */
async function run(code: string, deadlineMs = 20_000): Promise<string> {
  const result = await kernel.client.execute(code, { deadlineMs });
  const error = result.iopub.find((m) => m.header.msg_type === "error");
  if (error || result.reply.content.status !== "ok") throw new Error(`cell failed: ${JSON.stringify(error?.content ?? result.reply.content)}`);
  const value = result.iopub.find((m) => m.header.msg_type === "execute_result");
  return ((value?.content.data as Record<string, string> | undefined)?.["text/plain"] ?? "").replace(/^'|'$/g, "");
}


describe("browser -> program RPC through the real kernel", () => {
  it("success, 100 concurrent calls, and binary arguments and results", async () => {
    await run(`
      comms.register("k.add", ([a, b], { scale = 1 }) => (a + b) * scale);
      comms.register("k.square", async ([x]) => { await new Promise((r) => setTimeout(r, Math.random() * 5)); return x * x; });
      comms.register("k.invert", ([pixels]) => ({ inverted: pixels.map((v) => 255 - v), type: pixels.constructor.name }));
      "registered"`);
    const t = tab();
    expect(await t.call("k.add", [2, 3], { scale: 10 }, { timeout: 10_000 })).toBe(50);
    const xs = Array.from({ length: 100 }, (_, i) => i);
    expect(await Promise.all(xs.map((x) => t.call("k.square", [x], {}, { timeout: 10_000 })))).toEqual(xs.map((x) => x * x));
    const pixels = Uint8ClampedArray.from({ length: 256 * 256 * 4 }, (_, i) => i % 256);
    const got = (await t.call("k.invert", [pixels], {}, { timeout: 10_000 })) as { inverted: Uint8ClampedArray; type: string };
    expect(got.type).toBe("Uint8ClampedArray");
    expect(got.inverted).toBeInstanceOf(Uint8ClampedArray);
    expect(got.inverted.length).toBe(pixels.length);
    expect(got.inverted[1]).toBe(254);
  });

  it("an exception comes back with code -32001, the message and the program's stack; unknown methods get -32601", async () => {
    await run(`
      function renderTile() { throw new Error("zoom level too deep"); }
      comms.register("k.fail", () => renderTile());
      "ok"`);
    const t = tab();
    const e = await rpcRejection(t.call("k.fail", [], {}, { timeout: 10_000 }));
    expect(e.code).toBe(RpcCode.EXCEPTION);
    expect(e.message).toContain("zoom level too deep");
    expect(e.remoteStack).toContain("renderTile");
    const missing = await rpcRejection(t.call("k.missing", [], {}, { timeout: 10_000 }));
    expect(missing.code).toBe(RpcCode.METHOD_NOT_FOUND);
  });

  it("times out with -32005 while the program is busy elsewhere", async () => {
    await run(`comms.register("k.never", () => new Promise(() => {})); "ok"`);
    const e = await rpcRejection(tab().call("k.never", [], {}, { timeout: 200 }));
    expect(e.code).toBe(RpcCode.TIMEOUT);
  });

  it("a pending call fails with -32004 when its comm is closed by the kernel", async () => {
    await run(`comms.register("k.hang", () => new Promise(() => {})); "ok"`);
    const t = tab();
    await t.ready;
    const pending = t.call("k.hang", [], {}, { timeout: 10_000 });
    // Calls made in one task leave together at its end (a microtask): let that happen first.
    await Promise.resolve();
    // The kernel closes a comm it is told is gone; from the page's side, the comm closes under the call.
    const id = t.id!;
    kernel.client.send("shell", "comm_close", { comm_id: id, data: {} });
    tabs.get(id)?.onClose("closed under the call");
    const e = await rpcRejection(pending);
    expect(e.code).toBe(RpcCode.DISCONNECTED);
  });

  it("a pending call fails with -32003 when the program exits (a cell calls process.exit), and RPC works after the restart", async () => {
    await run(`comms.register("k.slow", () => new Promise(() => {})); "ok"`);
    const t = tab();
    const pending = t.call("k.slow", [], {}, { timeout: 15_000 });
    const started = Date.now();
    await kernel.client.execute("setTimeout(() => process.exit(3), 100); 'bye'", { deadlineMs: 15_000 });
    const e = await rpcRejection(pending);
    expect(e.code).toBe(RpcCode.PROGRAM_EXITED);
    expect(Date.now() - started).toBeLessThan(10_000);
    await run(`comms.register("k.slow", () => "fresh program"); "ok"`);
    expect(await t.call("k.slow", [], {}, { timeout: 10_000 })).toBe("fresh program");
  });
});

describe("program -> browser RPC through the real kernel", () => {
  it("calls a page function with binary data, reports none connected, and page errors", async () => {
    for (const c of clients) c.close();
    // With no comm open, the program is told at once.
    const none = await run(`
      import { RpcError, RpcCode } from "tsnb";
      let outcome = "no error";
      try { await comms.callFrontend("page.sum", 1); } catch (e) { outcome = e.code + " " + (e instanceof RpcError) + " " + (e.code === RpcCode.DISCONNECTED) + " " + e.message; }
      outcome`);
    expect(none).toContain(`${RpcCode.DISCONNECTED} true true no front-end is connected`);
    const t = tab();
    t.register("page.sum", (data: Float64Array) => ({ sum: data.reduce((a, b) => a + b, 0), echo: data }));
    t.register("page.fail", () => {
      throw new TypeError("canvas missing");
    });
    await t.ready;
    const got = await run(`
      const r = await comms.callFrontend({ name: "page.sum", args: [new Float64Array([1, 2, 3.5])], timeout: 10000 });
      let err = "";
      try { await comms.callFrontend({ name: "page.fail", timeout: 10000 }); } catch (e) { err = e.code + " " + e.message; }
      let missing = "";
      try { await comms.callFrontend({ name: "page.nothing", timeout: 10000 }); } catch (e) { missing = String(e.code); }
      JSON.stringify({ sum: r.sum, type: r.echo.constructor.name, err, missing, ids: comms.frontendIds.length })`);
    const parsed = JSON.parse(got.replace(/\\'/g, "'")) as { sum: number; type: string; err: string; missing: string; ids: number };
    expect(parsed.sum).toBe(6.5);
    expect(parsed.type).toBe("Float64Array");
    expect(parsed.err).toContain(String(RpcCode.EXCEPTION));
    expect(parsed.err).toContain("canvas missing");
    expect(parsed.missing).toBe(String(RpcCode.METHOD_NOT_FOUND));
    expect(parsed.ids).toBeGreaterThanOrEqual(1);
  });
});
