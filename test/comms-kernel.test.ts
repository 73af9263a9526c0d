// The comms bridge end to end through the real kernel process and the real user program, over real
// zeromq sockets: this test client plays the browser (it opens `tsnb_comm` and speaks the bridge
// protocol) while cells use the `comms` API.

import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startKernel, parentId, type RunningKernel } from "./helpers/kernel-client.js";
import { KernelTab } from "./helpers/kernel-tab.js";
import type { JupyterMessage } from "../protocol/jupyter.js";

let kernel: RunningKernel;

beforeAll(async () => {
  kernel = await startKernel();
}, 30_000);

afterAll(async () => {
  await kernel?.kill();
});

const newTab = () => new KernelTab(kernel);

function outputsOf(iopub: JupyterMessage[]) {
  return {
    text: iopub.filter((m) => m.header.msg_type === "stream").map((m) => String(m.content.text)).join(""),
    errors: iopub.filter((m) => m.header.msg_type === "error").map((m) => `${m.content.ename}: ${m.content.evalue}`),
    result: iopub.find((m) => m.header.msg_type === "execute_result")?.content.data as Record<string, string> | undefined,
  };
}

describe("comms through the real kernel and program", () => {
  it("refuses other comm targets and acknowledges tsnb_comm, listing it in comm_info", async () => {
    const other = kernel.client.send("shell", "comm_open", { comm_id: "not-ours", target_name: "jupyter.widget", data: {} });
    await kernel.client.idle(other);
    expect(kernel.client.iopubFor(other).some((m) => m.header.msg_type === "comm_close" && m.content.comm_id === "not-ours")).toBe(true);
    const tab = newTab();
    await tab.open();
    const info = kernel.client.send("shell", "comm_info_request", { target_name: "tsnb_comm" });
    const reply = await kernel.client.reply("shell", info);
    expect(Object.keys(reply.content.comms as object)).toContain(tab.id);
  });

  it("injects the shim under the first cell that uses comms, with this kernel's id", async () => {
    const result = await kernel.client.execute('comms.send("boot", 1)');
    expect(result.reply.content.status).toBe("ok");
    // The shim is injected only while no front-end is connected; an earlier test's tab may be open.
    const kernelId = /kernel-(.+)\.json$/.exec(kernel.connectionFile)![1]!;
    const info = await kernel.client.reply("shell", kernel.client.send("shell", "comm_info_request", {}));
    if (Object.keys(info.content.comms as object).length === 0) {
      const display = result.iopub.find((m) => m.header.msg_type === "display_data");
      const data = display?.content.data as Record<string, string>;
      expect(data["application/javascript"]).toContain(`tsnbShimBoot({"kernelId":"${kernelId}"})`);
    }
  });

  it("delivers the program's values to a listening tab in order, falsy values and typed arrays included", async () => {
    const tab = newTab();
    await tab.open();
    tab.listen("vals");
    await kernel.client.idle(tab.listen("vals"));
    const result = await kernel.client.execute(
      'for (const v of [0, "", false, null, new Float32Array([1.5, 2.5]), { nested: new Int16Array([-7]) }]) comms.send("vals", v); await comms.sync();',
    );
    expect(outputsOf(result.iopub).errors).toEqual([]);
    const values = (await tab.waitForValues(6)).map((v) => v.value);
    expect(values.slice(0, 4)).toEqual([0, "", false, null]);
    expect(values[4]).toBeInstanceOf(Float32Array);
    expect(Array.from(values[4] as Float32Array)).toEqual([1.5, 2.5]);
    expect((values[5] as { nested: Int16Array }).nested).toBeInstanceOf(Int16Array);
    // Binary parts travelled as comm buffers, not inside the JSON.
    const withBuffers = tab.messages.filter((m) => m.data.op === "values" && m.buffers.length > 0);
    expect(withBuffers.length).toBeGreaterThan(0);
  });

  it("echo: the tab answers each value plus one and the program sees the exact sequence", async () => {
    const tab = newTab();
    await tab.open();
    await kernel.client.idle(tab.listen("echo-out"));
    const setup = await kernel.client.execute(`
      const echoed: number[] = [];
      const allEchoed = new Promise<number[]>((resolve) => {
        comms.subscribe<number>("echo-in", (v) => { echoed.push(v); if (echoed.length === 100) resolve(echoed); });
      });
      await comms.sync();
      for (let i = 0; i < 100; i++) comms.send("echo-out", i);
    `);
    expect(outputsOf(setup.iopub).errors).toEqual([]);
    let answered = 0;
    await tab.waitFor("100 values to echo", () => {
      while (answered < tab.values.length) {
        const v = tab.values[answered++]!;
        if (v.address === "echo-out") tab.sendValue("echo-in", (v.value as number) + 1);
      }
      return answered >= 100;
    });
    const result = await kernel.client.execute("(await allEchoed).join(',')", { deadlineMs: 20_000 });
    expect(outputsOf(result.iopub).result?.["text/plain"]).toBe(`'${Array.from({ length: 100 }, (_, i) => i + 1).join(",")}'`);
  });

  it("a Float32Array from the tab arrives in the program as a Float32Array", async () => {
    const tab = newTab();
    await tab.open();
    const setup = await kernel.client.execute(`const arrived = comms.read<Float32Array>("samples", { timeout: 10000 });`);
    expect(outputsOf(setup.iopub).errors).toEqual([]);
    await kernel.client.idle(tab.sendValue("samples", new Float32Array([0.25, -8])));
    const result = await kernel.client.execute("const s = await arrived; `${s.constructor.name} ${Array.from(s)}`");
    expect(outputsOf(result.iopub).result?.["text/plain"]).toBe("'Float32Array 0.25,-8'");
  });

  it("a burst of 100,000 values arrives complete, in order, in few comm messages", async () => {
    const tab = newTab();
    await tab.open();
    await kernel.client.idle(tab.listen("burst"));
    // The tab reads (acks, answers pings) while the cell runs, as a browser does: a tab that stayed silent for
    // the length of a slow cell would rightly be pinged, found dead and dropped.
    const arriving = tab.waitForValues(100_000, 45_000);
    const result = await kernel.client.execute('for (let i = 0; i < 100000; i++) comms.send("burst", i); await comms.sync();', { deadlineMs: 30_000 });
    expect(outputsOf(result.iopub).errors).toEqual([]);
    const values = await arriving;
    expect(values.every((v, i) => v.value === i)).toBe(true);
    const batches = tab.messages.filter((m) => m.data.op === "values").length;
    expect(batches).toBeLessThan(100);
  }, 60_000);

  it("keeps no copy of large values: twelve of 20 MB leave kernel memory far below their sum, and a late tab still gets each", async () => {
    const pid = kernel.process.pid!;
    const hwmKb = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
    writeFileSync(`/proc/${pid}/clear_refs`, "5"); // resets VmHWM to the current RSS
    const before = hwmKb();
    const sent = await kernel.client.execute(
      `for (let i = 0; i < 12; i++) { const a = new Float32Array(5_000_000); a[a.length - 1] = i + 0.5; comms.send("big-" + i, a); } await comms.sync();`,
      { deadlineMs: 60_000 },
    );
    expect(outputsOf(sent.iopub).errors).toEqual([]);
    const tab = newTab();
    await tab.open();
    for (let i = 0; i < 12; i++) {
      tab.listen(`big-${i}`);
      const [v] = (await tab.waitForValues(i + 1, 30_000)).slice(i);
      expect([v!.address, (v!.value as Float32Array).length, (v!.value as Float32Array)[4_999_999]]).toEqual([`big-${i}`, 5_000_000, i + 0.5]);
      tab.values[i] = { address: v!.address, value: null }; // the test process need not hold them all either
    }
    // Storing them takes 240 MB on top of what the kernel had (peak +256 MB when the kernel did); passing them
    // through takes one or two at a time (+115 MB).
    const grewMb = (hwmKb() - before) / 1024;
    expect(grewMb).toBeLessThan(180);
  }, 120_000);

  it("a stalled tab slows a program that awaits sync, and everything arrives once it catches up", async () => {
    const tab = newTab();
    await tab.open();
    await kernel.client.idle(tab.listen("flood"));
    tab.acking = false;
    // 120 MiB in 1 MiB values: far beyond the 16 MiB ack window and the 32 MiB high-water mark.
    const cell = kernel.client.execute(
      'for (let i = 0; i < 120; i++) { comms.send("flood", { i, bytes: new Uint8Array(1 << 20) }); await comms.sync(); } "flooded"',
      { deadlineMs: 60_000 },
    );
    let finished = false;
    void cell.then(() => (finished = true), () => (finished = true));
    // The kernel stops at its window: about 16 MiB reach the stalled tab, and the cell cannot finish.
    await tab.waitFor("the first values", () => tab.values.length >= 10);
    const stalledAt = Date.now();
    await kernel.client.iopub.wait(() => false, 1500, "nothing (waiting while stalled)").catch(() => undefined);
    expect(Date.now() - stalledAt).toBeGreaterThanOrEqual(1400);
    expect(finished).toBe(false);
    expect(tab.values.length).toBeLessThan(40);
    tab.resume();
    // Acknowledging as batches arrive (the tab pumps while it waits) lets the rest through.
    const values = await tab.waitForValues(120, 30_000);
    const result = await cell;
    expect(outputsOf(result.iopub).result?.["text/plain"]).toBe("'flooded'");
    expect(values.map((v) => (v.value as { i: number }).i)).toEqual(Array.from({ length: 120 }, (_, i) => i));
  }, 90_000);

  it("reports an error thrown in a comms callback under its cell and keeps delivering", async () => {
    const tab = newTab();
    await tab.open();
    const setup = await kernel.client.execute(`
      const seen: number[] = [];
      comms.subscribe<number>("cb", (v) => { if (v === 1) throw new Error("callback failed on " + v); seen.push(v); });
      await comms.sync();
    `);
    expect(outputsOf(setup.iopub).errors).toEqual([]);
    tab.sendValue("cb", 1);
    tab.sendValue("cb", 2);
    const error = await kernel.client.iopub.wait(
      (m) => m.header.msg_type === "error" && parentId(m) === setup.request.msg_id,
      10_000,
      "the callback's error under its cell",
    );
    expect(String(error.content.evalue)).toContain("callback failed on 1");
    const after = await kernel.client.execute("await comms.sync(); seen");
    expect(outputsOf(after.iopub).result?.["text/plain"]).toBe("[ 2 ]");
  });

  it("refuses bad input from a tab with a clear error and keeps working", async () => {
    const tab = newTab();
    await tab.open();
    tab.send({ op: "values", items: [{ address: "x" }] });
    tab.send({ op: "nonsense" });
    tab.send({ op: "values", items: [{ address: "x", value: 1, nbuf: 2 }] });
    await tab.waitFor("three errors", () => tab.messages.filter((m) => m.data.op === "error").length >= 3);
    const errors = tab.messages.filter((m) => m.data.op === "error").map((m) => (m.data as { message: string }).message);
    expect(errors[0]).toMatch(/value/);
    expect(errors[1]).toMatch(/unknown op/);
    expect(errors[2]).toMatch(/binary parts/);
    const ok = await kernel.client.execute("1 + 1");
    expect(outputsOf(ok.iopub).result?.["text/plain"]).toBe("2");
  });
});

describe("comms with no front-end", () => {
  it("read times out with a clear error and send lands in the store", async () => {
    // Close every tab this kernel knows, as if the notebook ran headless.
    const info = await kernel.client.reply("shell", kernel.client.send("shell", "comm_info_request", {}));
    for (const id of Object.keys(info.content.comms as object)) {
      await kernel.client.idle(kernel.client.send("shell", "comm_close", { comm_id: id, data: {} }));
    }
    const result = await kernel.client.execute('comms.send("stored", 42); await comms.read("nothing", { timeout: 200 })');
    const { errors } = outputsOf(result.iopub);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/CommsTimeoutError: comms.read\("nothing"\) got no value within 200 ms: no front-end is connected/);
    const tab = newTab();
    await tab.open();
    await kernel.client.idle(tab.listen("stored"));
    expect((await tab.waitForValues(1)).map((v) => v.value)).toEqual([42]);
  });
});
