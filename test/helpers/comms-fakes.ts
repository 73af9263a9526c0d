// In-memory stand-ins around the kernel's CommsBridge: a manual clock with timers, a host that records
// what the bridge publishes and sends to the program, and builders for the Jupyter comm messages a
// browser would send. Used by the fast unit tests in addition to the real-socket tests.

import { expect } from "vitest";
import type { Header, JsonObject, JupyterMessage } from "../../protocol/jupyter.js";
import { DisposedError } from "../../protocol/disposable.js";
import { RpcError } from "../../protocol/rpc.js";
import { encodeFrame } from "../../protocol/framing.js";
import { joinItems, itemOf, parseKernelMessage, splitItems, valueOf, type KernelToBrowser } from "../../protocol/bridge.js";
import type { KernelCommOp } from "../../protocol/comms-ops.js";
import type { BridgeHost, Disposable, PublishRequest } from "../../kernel/comms/bridge.js";
import { concatBytes } from "../../protocol/bytes.js";

export class ManualClock {
  time = 1_000_000;
  private timers: { at: number; seq: number; fn: () => void; cancelled: boolean }[] = [];
  private seq = 0;

  now = (): number => this.time;

  setTimer = (ms: number, fn: () => void): Disposable => {
    const timer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return { dispose: () => void (timer.cancelled = true) };
  };

  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Runs every timer due within `ms`, in time order, advancing the clock to each. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.time = Math.max(this.time, next.at);
      next.fn();
    }
    this.time = end;
  }
}

/** Real timers for a bridge wired in memory (messages on later turns, like the wire); `dispose()` cancels every one left. */
export class RealTimers {
  private readonly timers = new Set<NodeJS.Timeout>();

  now = (): number => performance.now();

  setTimer = (ms: number, fn: () => void): Disposable => {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return { dispose: () => void (clearTimeout(t), this.timers.delete(t)) };
  };

  dispose(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

/**
 * Conditions re-checked whenever something was delivered (`notify()`), for rigs wired in memory: `until`
 * resolves with the first non-undefined result of `check` and fails at its deadline; `dispose()` rejects
 * what still waits with a DisposedError.
 */
export class Conditions {
  private readonly checks = new Set<() => void>();
  private readonly pending = new Set<{ timer: NodeJS.Timeout; reject(error: Error): void }>();

  notify = (): void => {
    for (const check of [...this.checks]) check();
  };

  /** Runs `fn` on every notify until dispose (a scripted peer reading its inbox). */
  onNotify(fn: () => void): void {
    this.checks.add(fn);
  }

  until = <T>(what: string, check: () => T | undefined, ms = 5000): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const first = check();
      if (first !== undefined) return resolve(first);
      const wait = {
        timer: setTimeout(() => {
          finish();
          reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
        }, ms),
        reject,
      };
      const test = () => {
        const got = check();
        if (got === undefined) return;
        finish();
        resolve(got);
      };
      const finish = () => {
        this.checks.delete(test);
        this.pending.delete(wait);
        clearTimeout(wait.timer);
      };
      this.checks.add(test);
      this.pending.add(wait);
    });

  dispose(): void {
    this.checks.clear();
    for (const wait of [...this.pending]) {
      clearTimeout(wait.timer);
      wait.reject(new DisposedError("a wait of the test rig"));
    }
    this.pending.clear();
  }
}

/** The RpcError a promise must reject with; fails the test when it resolves or rejects with something else. */
export async function rpcRejection(p: Promise<unknown>): Promise<RpcError> {
  const outcome = await p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  if (outcome.ok) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.v)}`);
  expect(outcome.e).toBeInstanceOf(RpcError);
  return outcome.e as RpcError;
}

export interface ProgramMessage {
  op: KernelCommOp;
  buffers: Uint8Array[];
}

export class RecordingHost implements BridgeHost {
  published: PublishRequest[] = [];
  program: ProgramMessage[] = [];
  warnings: string[] = [];
  private ids = 0;
  readonly log = { warn: (m: string) => void this.warnings.push(m) };

  constructor(readonly clock: ManualClock) {}

  now = () => this.clock.now();
  setTimer = (ms: number, fn: () => void) => this.clock.setTimer(ms, fn);
  publish = (message: PublishRequest) => void this.published.push(message);
  toProgram = (op: KernelCommOp, buffers: Uint8Array[]) => void this.program.push({ op, buffers });
  parentForCell = (cell: string | null): Header | Record<string, never> =>
    cell === null ? {} : { msg_id: `parent-${cell}`, session: "s", username: "u", date: "", msg_type: "execute_request", version: "5.3" };
  newId = () => `id${this.ids++}`;

  /** comm_msg data sent to one comm, decoded, with their buffers; consumed from `published`. */
  takeFor(commId: string): { data: KernelToBrowser; buffers: Uint8Array[] }[] {
    const out: { data: KernelToBrowser; buffers: Uint8Array[] }[] = [];
    this.published = this.published.filter((p) => {
      if (p.msg_type !== "comm_msg" || p.content.comm_id !== commId) return true;
      const parsed = parseKernelMessage(p.content.data, p.buffers.length);
      if (!parsed.ok) throw new Error(`the kernel sent an invalid message: ${parsed.error}`);
      out.push({ data: parsed.message, buffers: p.buffers });
      return false;
    });
    return out;
  }

  /** Decoded values a comm received, in order (address, value). */
  valuesFor(commId: string): { address: string; value: unknown }[] {
    const out: { address: string; value: unknown }[] = [];
    for (const m of this.takeFor(commId)) {
      if (m.data.op !== "values") continue;
      for (const item of splitItems(m.data.items, m.buffers)) out.push({ address: item.address, value: valueOf(item) });
    }
    return out;
  }

  /** Values the program received, in order. */
  programValues(): { address: string; value: unknown }[] {
    const out: { address: string; value: unknown }[] = [];
    this.program = this.program.filter((m) => {
      if (m.op.op !== "comm_deliver") return true;
      for (const item of splitItems(m.op.items, m.buffers)) out.push({ address: item.address, value: valueOf(item) });
      return false;
    });
    return out;
  }

  closes(): string[] {
    return this.published.filter((p) => p.msg_type === "comm_close").map((p) => String(p.content.comm_id));
  }
}

let counter = 0;

function header(msgType: string): Header {
  return { msg_id: `m${counter++}`, session: "browser", username: "u", date: "", msg_type: msgType, version: "5.3" };
}

export function commOpen(commId: string, target = "tsnb_comm", data: JsonObject = { version: 1 }): JupyterMessage {
  return { identities: [], header: header("comm_open"), parent_header: {}, metadata: {}, content: { comm_id: commId, target_name: target, data }, buffers: [] };
}

export function commMsg(commId: string, data: unknown, buffers: Uint8Array[] = []): JupyterMessage {
  return {
    identities: [],
    header: header("comm_msg"),
    parent_header: {},
    metadata: {},
    content: { comm_id: commId, data: data as JsonObject },
    buffers,
  };
}

export function commClose(commId: string): JupyterMessage {
  return { identities: [], header: header("comm_close"), parent_header: {}, metadata: {}, content: { comm_id: commId, data: {} }, buffers: [] };
}

/** A browser `values` message for live values (typed arrays become buffers). */
export function browserValues(commId: string, values: { address: string; value: unknown }[]): JupyterMessage {
  const batch = joinItems(values.map((v) => itemOf(v.address, v.value)));
  return commMsg(commId, { op: "values", items: batch.items }, batch.buffers);
}

/** A program `comm_send` frame header + buffers for live values. */
export function programSend(values: { address: string; value: unknown }[], cell: string | null = "c1") {
  const batch = joinItems(values.map((v) => itemOf(v.address, v.value)));
  return { header: { op: "comm_send", cell, items: batch.items } as { [key: string]: unknown }, buffers: batch.buffers };
}

/** A message encoded in the pipe framing, as the shim does before chunking. */
export function framed(data: JsonObject & { op: string }, buffers: Uint8Array[]): Uint8Array {
  return concatBytes(encodeFrame(data, buffers));
}
