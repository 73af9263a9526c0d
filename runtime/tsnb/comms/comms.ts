// The program side of the comms bridge: `comms.send/subscribe/listen/read/sync/hasListeners` and
// `SyncedVariable`, speaking the comm ops of protocol/comms-ops.ts to the kernel over the program channel.
//
// Sends are batched: values queue in order and go out as one `comm_send` op on the next turn of the event
// loop, or at once when the batch is large, so a tight loop of 100,000 sends costs a handful of frames.
// The program channel writes synchronously and blocks while the kernel is not reading, which is what
// slows a sender whose browser fell behind.
//
// Callbacks run in the async context of the cell that subscribed (so their output lands under that cell)
// and keep working after it finished; an error thrown in one is reported as error output, never swallowed.

import { AsyncResource } from "node:async_hooks";
import { binarySize, HELD_VALUE_BYTES, itemOf, joinItems, MAX_ADDRESS_LENGTH, splitItems, valueOf, type ValueItem } from "../../../protocol/bridge.js";
import { parseKernelCommOp, type CommRpcReplyOp, type CommSendOp, type KernelCommOp, type ProgramCommOp } from "../../../protocol/comms-ops.js";
import { describeFrameError, encodeFrameHeader, FrameDecoder } from "../../../protocol/framing.js";
import { disposable } from "../../../protocol/disposable.js";
import type { JsonObject } from "../../../protocol/jupyter.js";
import type { CellId } from "../../../protocol/program.js";
import { ProgramRpc, type CallFrontendOptions, type RpcHandler } from "./rpc.js";

export { RpcError, RpcCode } from "../../../protocol/rpc.js";
export type { CallFrontendOptions, RpcHandler } from "./rpc.js";

export interface Disposable {
  dispose(): void;
}

export interface CommsHost {
  /** Writes one op to the kernel (after any buffered stream output). */
  send(op: ProgramCommOp, buffers: Uint8Array[]): void;
  currentCell(): CellId | null;
  /** Shows an error thrown by a user callback as error output (called in the callback's async context). */
  reportError(error: unknown): void;
}

export interface ListenOptions {
  /** Keep only the newest value not yet consumed, instead of every value in order. */
  latestOnly?: boolean;
}

export interface ReadOptions {
  /** Milliseconds to wait for the browser's value (default 10,000). */
  timeout?: number;
}

export interface WaitOptions {
  timeout?: number;
}

/** A read or wait that found no answer in time. */
export class CommsTimeoutError extends Error {
  override readonly name = "CommsTimeoutError";
}

/** Pending comms work cancelled because the comms (or the program) shut down. */
export class CommsClosedError extends Error {
  override readonly name = "CommsClosedError";
}

export interface Comms {
  /** Sends a value (any JSON value; typed arrays anywhere) to every browser listening on `address`. */
  send(address: string, value: unknown): void;
  /** Calls `callback` with every value a browser sends to `address`, until disposed. */
  subscribe<T = unknown>(address: string, callback: (value: T, address: string) => void | Promise<void>): Disposable;
  /** `for await (const v of comms.listen(address))`: values a browser sends to `address`. */
  listen<T = unknown>(address: string, options?: ListenOptions): AsyncIterableIterator<T> & Disposable;
  /** The browser's current value at `address` (a shim holding one answers), or a CommsTimeoutError. */
  read<T = unknown>(address: string, options?: ReadOptions): Promise<T>;
  /** Resolves when every value sent so far reached the kernel and its queue to the browsers has room. */
  sync(): Promise<void>;
  /** Whether any browser listens on `address` right now. */
  hasListeners(address: string): boolean;
  /** How many front-ends listen on `address` right now. */
  listeners(address: string): number;
  /** Resolves when a browser listens on `address` (at once if one does). */
  whenListening(address: string, options?: WaitOptions): Promise<void>;
  /** Calls back with the listener count of `address` each time it changes. */
  onListeners(address: string, callback: (count: number) => void): Disposable;
  /** How many front-ends (tabs, clients) are connected. */
  readonly frontends: number;
  /** The connected front-ends' ids (targets for `callFrontend`). */
  readonly frontendIds: readonly string[];
  /** Calls back with the connected front-ends' ids each time they change (a page connected or went away). */
  onFrontends(callback: (ids: readonly string[]) => void): Disposable;
  /**
   * Publish/subscribe: sends `value` on `topic` only while a browser listens there (wslink's "publish only
   * when someone listens"); returns whether it was sent. A page subscribes with `tsnb_comm.subscribe(topic)`;
   * `onListeners`/`whenListening` tell the program when to start and stop producing.
   */
  publish(topic: string, value: unknown): boolean;
  /** Lets browsers call `fn(args, kwargs)` with `await tsnb_comm.call(name, args, kwargs)`, until disposed. */
  register(name: string, fn: RpcHandler): Disposable;
  /**
   * Calls a function a page registered with `tsnb_comm.register(name, fn)`. Rejects with an RpcError:
   * -32004 when no front-end is connected (or it closed), -32601 when none registered `name`, -32001 when
   * it threw (with its stack), -32005 on timeout.
   */
  callFrontend(name: string, ...args: unknown[]): Promise<any>;
  callFrontend(options: CallFrontendOptions): Promise<any>;
}

const BATCH_BYTES = 256 * 1024;
/**
 * A large value or RPC result goes to the kernel in `comm_chunk` pieces of this size: the kernel passes each on
 * towards the page while the next one is still crossing the FIFO, instead of reading the whole message first.
 */
const STREAM_PIECE_BYTES = 16 * 1024 * 1024;
const DEFAULT_READ_TIMEOUT = 10_000;

interface Subscriber {
  deliver(value: unknown, address: string): void;
}

interface Waiter {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class ProgramComms implements Comms, Disposable {
  private batch: ValueItem[] = [];
  private batchBytes = 0;
  private batchCell: CellId | null = null;
  private scheduled: NodeJS.Immediate | null = null;
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  private readonly listenerCounts = new Map<string, number>();
  private readonly listenerWatchers = new Map<string, Set<(count: number) => void>>();
  private readonly syncs = new Map<string, Waiter>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private frontendCount = 0;
  private frontendIdList: string[] = [];
  private readonly frontendWatchers = new Set<(ids: readonly string[]) => void>();
  private nextSync = 0;
  private disposed = false;
  private readonly rpc: ProgramRpc;
  /**
   * The last value of each address that is large (HELD_VALUE_BYTES or more of binary data) and that this
   * program sent or was delivered: the kernel keeps only small values and asks for these when a front-end
   * starts listening (`comm_replay`). They are the program's own arrays, not copies: a replay sends the bytes
   * an array holds at that moment.
   */
  private readonly held = new Map<string, ValueItem>();
  private readonly heldValueBytes: number;
  private nextStream = 0;
  /** Large messages from a page arriving in pieces (comm_chunk), by the kernel's id for them. */
  private readonly incoming = new Map<string, FrameDecoder>();

  constructor(
    private readonly host: CommsHost,
    options: { heldValueBytes?: number } = {},
  ) {
    this.heldValueBytes = options.heldValueBytes ?? HELD_VALUE_BYTES;
    this.rpc = new ProgramRpc({
      send: (op, buffers) => {
        if (op.op === "comm_rpc_reply" && this.isLarge(buffers)) this.sendInPieces(op, buffers);
        else host.send(op, buffers);
      },
      currentCell: () => host.currentCell(),
      flush: () => this.flush(),
    });
  }

  get frontends(): number {
    return this.frontendCount;
  }

  get frontendIds(): readonly string[] {
    return this.frontendIdList;
  }

  publish(topic: string, value: unknown): boolean {
    checkAddress(topic);
    if (!this.hasListeners(topic)) return false;
    this.send(topic, value);
    return true;
  }

  register(name: string, fn: RpcHandler): Disposable {
    this.checkOpen();
    return this.rpc.register(name, fn);
  }

  callFrontend(nameOrOptions: string | CallFrontendOptions, ...args: unknown[]): Promise<any> {
    this.checkOpen();
    if (typeof nameOrOptions === "string") return this.rpc.callFrontend({ name: nameOrOptions, args });
    if (nameOrOptions === null || typeof nameOrOptions !== "object") {
      return Promise.reject(new TypeError("comms.callFrontend needs a function name or {name, args, target, timeout}"));
    }
    return this.rpc.callFrontend(nameOrOptions);
  }

  send(address: string, value: unknown): void {
    this.checkOpen();
    checkAddress(address);
    const item = itemOf(address, value);
    const cell = this.host.currentCell();
    // A batch is attributed to one cell (the shim is injected there): a new cell starts a new batch.
    if (this.batch.length > 0 && cell !== this.batchCell) this.flush();
    this.batchCell = cell;
    this.batch.push(item);
    this.batchBytes += item.value === null ? 4 : 16 + item.buffers.reduce((n, b) => n + b.byteLength, 0);
    if (this.batchBytes >= BATCH_BYTES || this.batch.length >= 10_000) this.flush();
    else if (this.scheduled === null) this.scheduled = setImmediate(() => this.flush());
  }

  /** Writes the queued values now. */
  flush(): void {
    if (this.scheduled !== null) {
      clearImmediate(this.scheduled);
      this.scheduled = null;
    }
    if (this.batch.length === 0) return;
    const items = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const cell = this.batchCell;
    const sendBatch = (batch: ValueItem[]) => {
      const wire = joinItems(batch);
      this.host.send({ op: "comm_send", cell, items: wire.items }, wire.buffers);
    };
    // A large value goes alone, in pieces; the values around it keep their order.
    let start = 0;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      this.hold(item);
      if (!this.isLarge(item.buffers)) continue;
      if (i > start) sendBatch(items.slice(start, i));
      const wire = joinItems([item]);
      this.sendInPieces({ op: "comm_send", cell, items: wire.items }, wire.buffers);
      start = i + 1;
    }
    if (start < items.length) sendBatch(start === 0 ? items : items.slice(start));
  }

  /** A piece of a page's large value or call; the whole message is handled like one that came in one frame. */
  private receivePiece(op: { id: string; index: number; last: boolean }, bytes: Uint8Array): void {
    let decoder = this.incoming.get(op.id);
    if (op.index === 0) {
      decoder = new FrameDecoder({ maxHeaderBytes: 64 * 1024 * 1024, maxBufferBytes: 2 ** 32 });
      this.incoming.set(op.id, decoder);
    }
    if (decoder === undefined) return; // the rest of a message given up on
    const out = decoder.push(bytes);
    if (out.error) {
      this.incoming.delete(op.id);
      this.host.reportError(new Error(`a large message from the browser could not be read: ${describeFrameError(out.error)}`));
      return;
    }
    if (!op.last) return;
    this.incoming.delete(op.id);
    const frame = out.frames[0];
    if (out.frames.length !== 1 || frame === undefined || decoder.bufferedBytes !== 0 || frame.header.op === "comm_chunk") {
      this.host.reportError(new Error("a large message from the browser was cut short (the page went away or sent it wrong); it was dropped"));
      return;
    }
    const problem = this.handleKernelOp(frame.header, frame.buffers);
    if (problem) this.host.reportError(new Error(`a large message from the browser was refused: ${problem}`));
  }

  /** Whether binary data this large is held here (hold) and goes to the kernel in pieces (sendInPieces). */
  private isLarge(buffers: readonly Uint8Array[]): boolean {
    if (buffers.length === 0) return false;
    let n = 0;
    for (const b of buffers) n += b.byteLength;
    return n >= this.heldValueBytes;
  }

  /** Sends one message as `comm_chunk` pieces: its header first, then its binary data as views, never copied. */
  private sendInPieces(op: CommSendOp | CommRpcReplyOp, buffers: readonly Uint8Array[]): void {
    const id = `s${++this.nextStream}`;
    const pieces: Uint8Array[] = [encodeFrameHeader(op as unknown as JsonObject & { op: string }, buffers.map((b) => b.byteLength))];
    for (const b of buffers) {
      for (let at = 0; at < b.byteLength; at += STREAM_PIECE_BYTES) pieces.push(b.subarray(at, Math.min(b.byteLength, at + STREAM_PIECE_BYTES)));
    }
    pieces.forEach((piece, index) => this.host.send({ op: "comm_chunk", id, index, last: index === pieces.length - 1 }, [piece]));
  }

  subscribe<T = unknown>(address: string, callback: (value: T, address: string) => void | Promise<void>): Disposable {
    this.checkOpen();
    checkAddress(address);
    if (typeof callback !== "function") throw new TypeError("comms.subscribe needs a callback function");
    // Bound to the subscribing cell's async context: output and errors from the callback land there.
    const run = AsyncResource.bind((value: unknown, addr: string) => {
      try {
        const result = callback(value as T, addr);
        if (result && typeof (result as Promise<void>).then === "function") {
          (result as Promise<void>).then(undefined, (err: unknown) => this.host.reportError(err));
        }
      } catch (err) {
        this.host.reportError(err);
      }
    });
    return this.addSubscriber(address, { deliver: run });
  }

  listen<T = unknown>(address: string, options: ListenOptions = {}): AsyncIterableIterator<T> & Disposable {
    this.checkOpen();
    checkAddress(address);
    const latestOnly = options.latestOnly === true;
    const buffered: unknown[] = [];
    let waiting: { resolve(r: IteratorResult<T>): void; reject(e: Error): void } | null = null;
    let finished: Error | "done" | null = null;
    const subscription = this.addSubscriber(address, {
      deliver: (value) => {
        if (waiting) {
          const w = waiting;
          waiting = null;
          w.resolve({ value: value as T, done: false });
        } else if (latestOnly) {
          buffered.length = 0;
          buffered.push(value);
        } else buffered.push(value);
      },
    });
    const end = (reason: Error | "done") => {
      if (finished !== null) return;
      finished = reason;
      subscription.dispose();
      buffered.length = 0;
      if (waiting) {
        const w = waiting;
        waiting = null;
        if (reason === "done") w.resolve({ value: undefined as never, done: true });
        else w.reject(reason);
      }
    };
    this.onDispose.add(() => end(new CommsClosedError(`comms.listen("${address}") ended: the comms shut down`)));
    const iterator: AsyncIterableIterator<T> & Disposable = {
      next: () => {
        if (buffered.length > 0) return Promise.resolve({ value: buffered.shift() as T, done: false });
        if (finished === "done") return Promise.resolve({ value: undefined as never, done: true });
        if (finished !== null) return Promise.reject(finished);
        if (waiting) return Promise.reject(new Error(`comms.listen("${address}"): next() called while another next() is pending`));
        return new Promise((resolve, reject) => (waiting = { resolve, reject }));
      },
      return: () => {
        end("done");
        return Promise.resolve({ value: undefined as never, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
      dispose: () => end("done"),
    };
    return iterator;
  }

  read<T = unknown>(address: string, options: ReadOptions = {}): Promise<T> {
    this.checkOpen();
    checkAddress(address);
    const timeout = options.timeout ?? DEFAULT_READ_TIMEOUT;
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        subscription.dispose();
        clearTimeout(timer);
        this.timers.delete(timer);
        this.onDispose.delete(cancel);
        fn();
      };
      const subscription = this.addSubscriber(address, { deliver: (value) => finish(() => resolve(value as T)) });
      const timer = setTimeout(() => {
        const why =
          this.frontendCount === 0
            ? "no front-end is connected (is this notebook open in a browser?)"
            : this.hasListeners(address)
              ? "the browsers listening there did not answer"
              : "no browser listens on that address";
        finish(() => reject(new CommsTimeoutError(`comms.read("${address}") got no value within ${timeout} ms: ${why}`)));
      }, timeout);
      this.timers.add(timer);
      const cancel = () => finish(() => reject(new CommsClosedError(`comms.read("${address}") was cancelled: the comms shut down`)));
      this.onDispose.add(cancel);
      this.flush();
      this.host.send({ op: "comm_read", cell: this.host.currentCell(), address }, []);
    });
  }

  sync(): Promise<void> {
    this.checkOpen();
    this.flush();
    const id = `sync-${++this.nextSync}`;
    return new Promise<void>((resolve, reject) => {
      this.syncs.set(id, { resolve: () => resolve(), reject });
      this.host.send({ op: "comm_sync", id }, []);
    });
  }

  hasListeners(address: string): boolean {
    return this.listeners(address) > 0;
  }

  listeners(address: string): number {
    return this.listenerCounts.get(address) ?? 0;
  }

  whenListening(address: string, options: WaitOptions = {}): Promise<void> {
    this.checkOpen();
    if (this.hasListeners(address)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | null = null;
      const watcher = this.onListeners(address, (count) => {
        if (count === 0) return;
        cleanup();
        resolve();
      });
      const cancel = () => {
        cleanup();
        reject(new CommsClosedError(`comms.whenListening("${address}") was cancelled: the comms shut down`));
      };
      const cleanup = () => {
        watcher.dispose();
        this.onDispose.delete(cancel);
        if (timer !== null) {
          clearTimeout(timer);
          this.timers.delete(timer);
        }
      };
      this.onDispose.add(cancel);
      if (options.timeout !== undefined) {
        const ms = options.timeout;
        timer = setTimeout(() => {
          cleanup();
          reject(new CommsTimeoutError(`no browser listened on "${address}" within ${ms} ms`));
        }, ms);
        this.timers.add(timer);
      }
      // Using comms is what makes the kernel install the browser side, so say we are here.
      this.host.send({ op: "comm_subscribe", cell: this.host.currentCell(), address }, []);
      if (!this.subscribers.has(address)) this.host.send({ op: "comm_unsubscribe", address }, []);
    });
  }

  onFrontends(callback: (ids: readonly string[]) => void): Disposable {
    const bound = AsyncResource.bind(callback);
    this.frontendWatchers.add(bound);
    return disposable(() => this.frontendWatchers.delete(bound));
  }

  onListeners(address: string, callback: (count: number) => void): Disposable {
    checkAddress(address);
    const bound = AsyncResource.bind(callback);
    let set = this.listenerWatchers.get(address);
    if (!set) this.listenerWatchers.set(address, (set = new Set()));
    set.add(bound);
    return disposable(() => {
      const current = this.listenerWatchers.get(address);
      current?.delete(bound);
      if (current?.size === 0) this.listenerWatchers.delete(address);
    });
  }

  /** Handles a comm op frame from the kernel; returns what was wrong with it, if anything. */
  handleKernelOp(header: { [key: string]: unknown }, buffers: Uint8Array[]): string | null {
    const parsed = parseKernelCommOp(header, buffers.length);
    if (!parsed.ok) return parsed.error;
    this.dispatch(parsed.message, buffers);
    return null;
  }

  private dispatch(op: KernelCommOp, buffers: Uint8Array[]): void {
    switch (op.op) {
      case "comm_deliver":
        for (const item of splitItems(op.items, buffers)) {
          this.hold(item);
          this.deliver(item);
        }
        // What the callbacks sent synchronously is usually an answer the browser waits for: write it now rather
        // than on the next check phase. A burst sent from one callback is still one batch (it is all queued by now).
        this.flush();
        return;
      case "comm_sync_ack": {
        const waiter = this.syncs.get(op.id);
        this.syncs.delete(op.id);
        waiter?.resolve(undefined);
        return;
      }
      case "comm_listeners": {
        if (op.count > 0) this.listenerCounts.set(op.address, op.count);
        else this.listenerCounts.delete(op.address);
        const watchers = this.listenerWatchers.get(op.address);
        if (watchers) for (const w of [...watchers]) this.guard(() => w(op.count));
        return;
      }
      case "comm_frontends":
        this.frontendCount = op.count;
        if (op.ids) this.frontendIdList = op.ids;
        for (const w of [...this.frontendWatchers]) this.guard(() => w(this.frontendIdList));
        return;
      case "comm_rpc_call":
        this.rpc.handleCall(op, buffers);
        return;
      case "comm_rpc_reply":
        this.rpc.handleReply(op, buffers);
        return;
      case "comm_chunk":
        this.receivePiece(op, buffers[0]!);
        return;
      case "comm_replay": {
        // Values sent before the replay go first, so the front-end ends with the newest.
        this.flush();
        const item = this.held.get(op.address);
        if (item === undefined) return;
        const wire = joinItems([item]);
        this.sendInPieces({ op: "comm_send", cell: null, items: wire.items, frontend: op.frontend }, wire.buffers);
        return;
      }
      default: {
        const unreachable: never = op;
        throw new Error(`unhandled kernel comm op ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Keeps an address's newest value when it is large (the kernel then holds none of it); forgets an older one. */
  private hold(item: ValueItem): void {
    if (this.isLarge(item.buffers)) this.held.set(item.address, item);
    else if (this.held.size > 0) this.held.delete(item.address);
  }

  private deliver(item: ValueItem): void {
    const subscribers = this.subscribers.get(item.address);
    if (!subscribers || subscribers.size === 0) return;
    let value: unknown;
    try {
      value = valueOf(item);
    } catch (err) {
      this.host.reportError(new Error(`a value from the browser for "${item.address}" could not be decoded: ${String(err)}`));
      return;
    }
    for (const s of [...subscribers]) s.deliver(value, item.address);
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.host.reportError(err);
    }
  }

  private addSubscriber(address: string, subscriber: Subscriber): Disposable {
    let set = this.subscribers.get(address);
    if (!set) {
      this.subscribers.set(address, (set = new Set()));
      this.flush();
      this.host.send({ op: "comm_subscribe", cell: this.host.currentCell(), address }, []);
    }
    set.add(subscriber);
    let done = false;
    return {
      dispose: () => {
        if (done) return;
        done = true;
        const current = this.subscribers.get(address);
        if (!current) return;
        current.delete(subscriber);
        if (current.size === 0) {
          this.subscribers.delete(address);
          if (!this.disposed) this.host.send({ op: "comm_unsubscribe", address }, []);
        }
      },
    };
  }

  private readonly onDispose = new Set<() => void>();

  private checkOpen(): void {
    if (this.disposed) throw new CommsClosedError("comms are shut down");
  }

  dispose(): void {
    if (this.disposed) return;
    try {
      this.flush();
    } finally {
      this.disposed = true;
      this.held.clear();
      this.incoming.clear();
      this.rpc.dispose();
      for (const cancel of [...this.onDispose]) cancel();
      this.onDispose.clear();
      for (const [id, waiter] of this.syncs) {
        this.syncs.delete(id);
        waiter.reject(new CommsClosedError("comms.sync() was cancelled: the comms shut down"));
      }
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      this.subscribers.clear();
      this.listenerWatchers.clear();
      this.frontendWatchers.clear();
    }
  }
}

function checkAddress(address: unknown): asserts address is string {
  if (typeof address !== "string" || address === "") throw new TypeError(`a comms address must be a non-empty string, got ${String(address)}`);
  if (address.length > MAX_ADDRESS_LENGTH) throw new TypeError(`a comms address must be at most ${MAX_ADDRESS_LENGTH} characters`);
}

// ---- SyncedVariable --------------------------------------------------------------------------------

export const COMMS_KEY = Symbol.for("tsnb.comms");

function globalComms(): Comms {
  const comms = (globalThis as { [COMMS_KEY]?: Comms })[COMMS_KEY];
  if (!comms) throw new Error("tsnb comms only work inside a tsnb kernel (no runtime found in this process)");
  return comms;
}

export interface SyncedVariableOptions {
  comms?: Comms;
}

/**
 * A value shared with the browser at one address: setting `value` sends it; a browser setting it (a
 * shim's `newSyncedVariable` on the same address) updates it here and fires the change callbacks.
 */
export class SyncedVariable<T = unknown> implements Disposable {
  private current: T;
  private readonly subscription: Disposable;
  private readonly callbacks = new Set<(value: T, from: "browser" | "program") => void>();
  private readonly comms: Comms;

  constructor(readonly address: string, initial: T, options: SyncedVariableOptions = {}) {
    this.comms = options.comms ?? globalComms();
    this.current = initial;
    this.subscription = this.comms.subscribe<T>(address, (value) => {
      this.current = value;
      for (const cb of [...this.callbacks]) cb(value, "browser");
    });
    this.comms.send(address, initial);
  }

  get value(): T {
    return this.current;
  }

  set value(value: T) {
    this.current = value;
    this.comms.send(this.address, value);
    for (const cb of [...this.callbacks]) cb(value, "program");
  }

  /** Calls back on every change, from the browser or from this program. */
  onChange(callback: (value: T, from: "browser" | "program") => void): Disposable {
    const bound = AsyncResource.bind(callback);
    this.callbacks.add(bound);
    return disposable(() => this.callbacks.delete(bound));
  }

  dispose(): void {
    this.subscription.dispose();
    this.callbacks.clear();
  }
}
