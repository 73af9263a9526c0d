// A scripted browser tab on the test client's real zeromq sockets (helpers/kernel-client.ts): it opens one
// `tsnb_comm`, keeps every message and value the kernel sends it, acknowledges value batches and answers
// pings like the shim, and answers reads of addresses it holds a value for. Used by the kernel-level comms
// and pipes tests.

import { randomUUID } from "node:crypto";
import { itemOf, joinItems, parseKernelMessage, splitItems, valueOf, type KernelToBrowser } from "../../protocol/bridge.js";
import { FrameDecoder } from "../../protocol/framing.js";
import type { JsonObject } from "../../protocol/jupyter.js";
import { ReceiveTimeoutError, type RunningKernel } from "./kernel-client.js";

export interface KernelTabOptions {
  /** Starts the comm id, to tell tabs apart in failure messages. Default "tab". */
  idPrefix?: string;
  /** Default deadline of `waitFor`. Default 10 s. */
  waitMs?: number;
}

export class KernelTab {
  readonly id: string;
  readonly messages: { data: KernelToBrowser; buffers: Uint8Array[] }[] = [];
  readonly values: { address: string; value: unknown }[] = [];
  /** What this tab answers when the kernel asks it to read an address (a shim holding a value does). */
  readonly answers = new Map<string, unknown>();
  /** A stalled tab: it stops acknowledging batches (it still answers pings, so it is not closed). */
  acking = true;
  private unacked: number | null = null;
  private opened = false;
  /** How many IOPub messages were looked at already. */
  private seen = 0;
  private readonly waitMs: number;
  /** Messages arriving in chunks (values over 4 MiB, large RPC messages), by chunk id. */
  private readonly assemblies = new Map<string, FrameDecoder>();

  constructor(
    private readonly kernel: RunningKernel,
    options: KernelTabOptions = {},
  ) {
    this.id = `${options.idPrefix ?? "tab"}-${randomUUID()}`;
    this.waitMs = options.waitMs ?? 10_000;
  }

  async open(): Promise<void> {
    this.kernel.client.send("shell", "comm_open", { comm_id: this.id, target_name: "tsnb_comm", data: { version: 1 } });
    await this.waitFor("the open ack", () => this.opened);
  }

  send(data: JsonObject, buffers: Uint8Array[] = []) {
    return this.kernel.client.send("shell", "comm_msg", { comm_id: this.id, data }, { buffers });
  }

  listen(address: string, latestOnly = false) {
    return this.send({ op: "listen", address, latest_only: latestOnly });
  }

  sendValue(address: string, value: unknown) {
    const batch = joinItems([itemOf(address, value)]);
    return this.send({ op: "values", items: batch.items } as unknown as JsonObject, batch.buffers);
  }

  /** Reads new comm messages for this tab from IOPub and reacts to them like the shim. */
  pump(): void {
    const items = this.kernel.client.iopub.items;
    for (; this.seen < items.length; this.seen++) {
      const m = items[this.seen]!;
      if (m.header.msg_type !== "comm_msg" || m.content.comm_id !== this.id) continue;
      const parsed = parseKernelMessage(m.content.data, m.buffers.length);
      if (!parsed.ok) throw new Error(`kernel sent an invalid message: ${parsed.error}`);
      this.handle(parsed.message, m.buffers);
    }
  }

  private handle(data: KernelToBrowser, buffers: Uint8Array[], reassembled = false): void {
    this.messages.push({ data, buffers });
    switch (data.op) {
      case "open_ack":
        this.opened = true;
        return;
      case "values":
        for (const item of splitItems(data.items, buffers)) this.values.push({ address: item.address, value: valueOf(item) });
        if (!reassembled) this.ack(data.seq);
        return;
      case "chunk": {
        // Acknowledged on arrival and reassembled, as the shim does.
        if (data.seq !== undefined) this.ack(data.seq);
        let decoder = this.assemblies.get(data.id);
        if (!decoder) this.assemblies.set(data.id, (decoder = new FrameDecoder({ maxHeaderBytes: data.total, maxBufferBytes: data.total })));
        const out = decoder.push(buffers[0]!);
        if (out.error) throw new Error(`chunked message ${data.id}: ${out.error.type}`);
        if (!data.last) return;
        this.assemblies.delete(data.id);
        const frame = out.frames[0];
        if (out.frames.length !== 1 || !frame) throw new Error(`chunked message ${data.id} does not hold one message`);
        const inner = parseKernelMessage(frame.header, frame.buffers.length);
        if (!inner.ok) throw new Error(`chunked message ${data.id}: ${inner.error}`);
        this.handle(inner.message, frame.buffers, true);
        return;
      }
      case "ping":
        this.send({ op: "pong", nonce: data.nonce });
        return;
      case "read":
        if (this.answers.has(data.address)) this.sendValue(data.address, this.answers.get(data.address));
        return;
      default:
        return;
    }
  }

  private ack(seq: number): void {
    if (this.acking) this.send({ op: "ack", seq });
    else this.unacked = Math.max(this.unacked ?? seq, seq);
  }

  /** Resumes acknowledging, starting with everything held back. */
  resume(): void {
    this.acking = true;
    if (this.unacked !== null) this.send({ op: "ack", seq: this.unacked });
    this.unacked = null;
  }

  /** Pumps until `done()` holds (checked after every IOPub message); fails at the deadline. */
  async waitFor(what: string, done: () => boolean, deadlineMs = this.waitMs): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      this.pump();
      if (done()) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`tab ${this.id}: no ${what} within ${deadlineMs} ms`);
      // Wake on the next IOPub message (any), bounded by the deadline; the loop reports a missed one.
      await this.kernel.client.iopub.wait(() => true, left, "iopub", this.kernel.client.iopub.items.length).catch((err: unknown) => {
        if (!(err instanceof ReceiveTimeoutError)) throw err;
      });
    }
  }

  async waitForValues(count: number, deadlineMs = 20_000) {
    await this.waitFor(`${count} values`, () => this.values.length >= count, deadlineMs);
    return this.values;
  }

  valuesOf(address: string): unknown[] {
    return this.values.filter((v) => v.address === address).map((v) => v.value);
  }
}
