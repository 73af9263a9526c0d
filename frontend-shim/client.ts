// The browser side of the bridge, independent of how the comm is carried: `TsnbComm` speaks the
// protocol of protocol/bridge.ts over a `CommPort` (a @jupyterlab/services comm in the page, a fake in
// tests). It opens a comm with target `tsnb_comm`, waits for the kernel's ack, re-declares what it
// listens to after every reconnect (the kernel replays the last values), answers pings and acks batches.
// Browser code: no Node built-ins.

import {
  BRIDGE_VERSION,
  BROWSER_CHUNK_BYTES,
  MAX_CHUNKED_MESSAGE_BYTES,
  itemOf,
  itemSize,
  joinItems,
  parseKernelMessage,
  splitItems,
  splitRpcBatch,
  valueOf,
  type RpcBatchMessage,
  type BrowserToKernel,
  type KernelToBrowser,
  type ValueItem,
} from "../protocol/bridge.js";
import { encodeFrame, FrameDecoder, describeFrameError, sliceParts } from "../protocol/framing.js";
import type { JsonObject, JsonValue } from "../protocol/jupyter.js";
import { encodeReply, PendingCalls, RpcCode, RpcError, runCall } from "../protocol/rpc.js";
import { encodeValue } from "../protocol/values.js";

export { RpcCode, RpcError } from "../protocol/rpc.js";

export interface CallOptions {
  /** Milliseconds before the call fails with RpcError code -32005 (default 30,000). */
  timeout?: number;
  /**
   * Progress of a large call: "upload" as the arguments leave in chunks (over 8 MiB), "download" as a
   * large result arrives in chunks (over 1 MiB, in parts of up to 16 MiB). Bytes are of the framed message.
   */
  onProgress?: (progress: CallProgress) => void;
}

export interface CallProgress {
  phase: "upload" | "download";
  bytes: number;
  total: number;
}

/** A function the program can call with `comms.callFrontend(name, ...args)`. */
export type FrontendHandler = (...args: any[]) => unknown;

/** The page's bookkeeping for a call of its own (PendingCalls holds the promise and the deadline). */
interface OutgoingCall {
  /** Sent on the current comm (a comm that closes fails it); false while waiting for the connection. */
  sent: boolean;
  message: BrowserToKernel;
  buffers: Uint8Array[];
  onProgress: ((progress: CallProgress) => void) | undefined;
}

const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Calls with less binary data than this are batched; bigger ones go alone (and report progress). */
const RPC_BATCH_BYTES = 1024 * 1024;

/** One open comm, as the page's kernel connection provides it. */
export interface CommPort {
  send(data: JsonObject, buffers: Uint8Array[]): void;
  close(): void;
}

export interface CommPortHandlers {
  onMessage(data: unknown, buffers: Uint8Array[]): void;
  /** The comm closed (by the kernel, or the connection went away). */
  onClose(reason: string): void;
}

/** Opens a comm with target `tsnb_comm` and the given open data. */
export type CommOpener = (openData: JsonObject, handlers: CommPortHandlers) => Promise<CommPort>;

export type ConnectionStatus = "connecting" | "open" | "reconnecting" | "closed";

export interface TsnbCommOptions {
  open: CommOpener;
  kernelId: string;
  /** Wait this long for the kernel's open ack before retrying (GoNB waits 500 ms; we allow more). */
  ackTimeoutMs?: number;
  /** Delay before reconnecting after the comm closed. */
  retryMs?: number;
  /** Browser -> kernel messages larger than this are chunked (the server closes websockets over 10 MiB). */
  chunkBytes?: number;
  /**
   * While open and nothing came from the kernel for this long, check that the kernel still knows the comm
   * (default 10,000 ms). A restart asked for by another client can reach this connection as nothing at all
   * (see probe()); 0 turns the check off.
   */
  idleProbeMs?: number;
  log?: (message: string) => void;
}

export interface SyncedVariable<T = unknown> {
  get(): T;
  set(value: T): void;
  subscribe(callback: (value: T) => void): number;
  unsubscribe(id: number): void;
}

type State =
  | { state: "connecting"; attempt: number }
  | { state: "awaiting_ack"; attempt: number; port: CommPort }
  | { state: "open"; port: CommPort }
  | { state: "reconnecting"; attempt: number }
  | { state: "closed" };

type Event =
  | { type: "port_opened"; port: CommPort }
  | { type: "open_failed"; reason: string }
  | { type: "acked" }
  | { type: "ack_timeout" }
  | { type: "port_closed"; reason: string }
  | { type: "retry" }
  | { type: "close_requested" };

type Effect =
  | { type: "open_port" }
  | { type: "start_ack_timer" }
  | { type: "schedule_retry" }
  | { type: "close_port"; port: CommPort }
  | { type: "resubscribe" }
  | { type: "status"; status: ConnectionStatus };

/** The connection's one transition function: what each event does in each state. */
function transition(current: State, event: Event): { state: State; effects: Effect[] } {
  const stay = { state: current, effects: [] as Effect[] };
  if (event.type === "close_requested") {
    const effects: Effect[] = [{ type: "status", status: "closed" }];
    if (current.state === "awaiting_ack" || current.state === "open") effects.unshift({ type: "close_port", port: current.port });
    return current.state === "closed" ? stay : { state: { state: "closed" }, effects };
  }
  switch (current.state) {
    case "connecting":
    case "reconnecting":
      switch (event.type) {
        case "port_opened":
          return { state: { state: "awaiting_ack", attempt: current.attempt, port: event.port }, effects: [{ type: "start_ack_timer" }] };
        case "open_failed":
          return { state: { state: "reconnecting", attempt: current.attempt + 1 }, effects: [{ type: "status", status: "reconnecting" }, { type: "schedule_retry" }] };
        case "retry":
          return { state: current, effects: [{ type: "open_port" }] };
        default:
          return stay;
      }
    case "awaiting_ack":
      switch (event.type) {
        case "acked":
          return { state: { state: "open", port: current.port }, effects: [{ type: "status", status: "open" }, { type: "resubscribe" }] };
        case "ack_timeout":
        case "port_closed":
          return {
            state: { state: "reconnecting", attempt: current.attempt + 1 },
            effects: [{ type: "close_port", port: current.port }, { type: "status", status: "reconnecting" }, { type: "schedule_retry" }],
          };
        default:
          return stay;
      }
    case "open":
      switch (event.type) {
        case "port_closed":
          return { state: { state: "reconnecting", attempt: 1 }, effects: [{ type: "status", status: "reconnecting" }, { type: "schedule_retry" }] };
        default:
          return stay;
      }
    case "closed":
      return stay;
    default: {
      const unreachable: never = current;
      throw new Error(`unhandled state ${JSON.stringify(unreachable)}`);
    }
  }
}

interface Subscription {
  address: string;
  callback: (value: unknown, address: string) => void;
}

/** A separate ack is sent once this much arrived unacknowledged (the kernel's window is 16 MiB). */
const ACK_EVERY_BYTES = 1024 * 1024;
/** ...or after this long without a values message to carry it. */
const ACK_QUIET_MS = 250;

/**
 * Ids for comms, calls and chunks: 96 random bits. crypto.randomUUID only exists on secure origins (a plain
 * http page on another host has none); getRandomValues exists everywhere and needs no counter to stay unique.
 */
export function randomId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class TsnbComm {
  readonly kernelId: string;
  /** Resolves the first time the kernel acknowledges the comm. */
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (error: Error) => void;
  private current: State = { state: "connecting", attempt: 1 };
  private readonly subscriptions = new Map<number, Subscription>();
  private readonly byAddress = new Map<string, Set<number>>();
  private readonly latestOnly = new Set<string>();
  /** The last value seen or sent per address: given to a new subscriber and answered to reads. */
  private readonly lastValues = new Map<string, unknown>();
  private readonly statusCallbacks = new Map<number, (status: ConnectionStatus) => void>();
  private outbox: ValueItem[] = [];
  private flushQueued = false;
  /** Newest batch handled but not yet acknowledged, and roughly how many bytes that leaves unacknowledged. */
  private ackSeq: number | null = null;
  private unackedBytes = 0;
  private ackTimer: ReturnType<typeof setTimeout> | null = null;
  private openAckTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** When the kernel last sent anything on the open comm (performance.now()). */
  private lastHeard = 0;
  private nextId = 1;
  private readonly calls = new PendingCalls<OutgoingCall>({ owner: "tsnb_comm", closedReason: "tsnb_comm was closed" });
  private readonly handlers = new Map<string, FrontendHandler>();
  /** Large kernel messages being reassembled, by chunk id. */
  private readonly assemblies = new Map<string, { decoder: FrameDecoder; next: number; bytes: number }>();
  private readonly options: Required<Omit<TsnbCommOptions, "log">> & { log: (m: string) => void };

  constructor(options: TsnbCommOptions) {
    this.options = {
      open: options.open,
      kernelId: options.kernelId,
      ackTimeoutMs: options.ackTimeoutMs ?? 3000,
      retryMs: options.retryMs ?? 1000,
      chunkBytes: options.chunkBytes ?? BROWSER_CHUNK_BYTES,
      idleProbeMs: options.idleProbeMs ?? 10_000,
      log: options.log ?? (() => {}),
    };
    this.kernelId = options.kernelId;
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // A page that never connects must not leave an unhandled rejection behind.
    this.ready.catch(() => {});
    this.apply([{ type: "open_port" }, { type: "status", status: "connecting" }]);
  }

  get status(): ConnectionStatus {
    switch (this.current.state) {
      case "connecting":
      case "awaiting_ack":
        return this.current.attempt === 1 ? "connecting" : "reconnecting";
      case "open":
        return "open";
      case "reconnecting":
        return "reconnecting";
      case "closed":
        return "closed";
      default: {
        const unreachable: never = this.current;
        return unreachable;
      }
    }
  }

  // ---- public API (GoNB's names) -----------------------------------------------------------------

  send(address: string, value: unknown): void {
    this.checkNotClosed();
    if (typeof address !== "string" || address === "") throw new TypeError("tsnb_comm.send: address must be a non-empty string");
    const item = itemOf(address, value);
    this.lastValues.set(address, value);
    this.outbox.push(item);
    this.queueFlush();
  }

  /**
   * Sends made in one task go out as one message, at the end of that task: a microtask, not a timer,
   * because browsers clamp timers to 4 ms and that would be most of an echo's round trip.
   */
  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  subscribe(address: string, callback: (value: any, address: string) => void, options: { latestOnly?: boolean } = {}): number {
    this.checkNotClosed();
    if (typeof callback !== "function") throw new TypeError("tsnb_comm.subscribe: callback must be a function");
    const id = this.nextId++;
    this.subscriptions.set(id, { address, callback });
    let ids = this.byAddress.get(address);
    const first = !ids;
    if (!ids) this.byAddress.set(address, (ids = new Set()));
    ids.add(id);
    if (options.latestOnly) this.latestOnly.add(address);
    if (first) {
      // The kernel replays its last value for the address in answer.
      if (this.current.state === "open") this.sendNow({ op: "listen", address, latest_only: this.latestOnly.has(address) });
    } else if (this.lastValues.has(address)) {
      const value = this.lastValues.get(address);
      queueMicrotask(() => this.subscriptions.has(id) && this.invokeCallback(callback, value, address));
    }
    return id;
  }

  unsubscribe(id: number): void {
    const sub = this.subscriptions.get(id);
    if (!sub) return;
    this.subscriptions.delete(id);
    const ids = this.byAddress.get(sub.address);
    ids?.delete(id);
    if (ids && ids.size === 0) {
      this.byAddress.delete(sub.address);
      this.latestOnly.delete(sub.address);
      if (this.current.state === "open") this.sendNow({ op: "unlisten", address: sub.address });
    }
  }

  newSyncedVariable<T>(address: string, initial: T): SyncedVariable<T> {
    let value = initial;
    const callbacks = new Map<number, (value: T) => void>();
    let local = 0;
    this.lastValues.set(address, initial);
    this.subscribe(address, (v: T) => {
      value = v;
      for (const cb of [...callbacks.values()]) this.invokeCallback(cb as (v: unknown) => void, v, address);
    });
    return {
      get: () => value,
      set: (v: T) => {
        value = v;
        this.send(address, v);
      },
      subscribe: (cb) => {
        const id = ++local;
        callbacks.set(id, cb);
        return id;
      },
      unsubscribe: (id) => void callbacks.delete(id),
    };
  }

  /** This front-end's id while connected (the comm id; a program targets it with callFrontend). */
  get id(): string | null {
    return this.commId;
  }
  private commId: string | null = null;

  /**
   * Calls a function the program registered with `comms.register(method, fn)`: it runs `fn(args, kwargs)`.
   * Typed arrays anywhere in the arguments and the result travel raw. Rejects with an RpcError: -32601 no
   * such function, -32001 it threw (`remoteStack` has the program's stack), -32002 its result cannot travel,
   * -32003 the program exited or restarted, -32004 the connection closed, -32005 timeout.
   * A call made while (re)connecting is sent once connected, within its timeout.
   */
  call(method: string, args: unknown[] = [], kwargs: { [key: string]: unknown } = {}, options: CallOptions = {}): Promise<any> {
    if (this.current.state === "closed") return Promise.reject(new RpcError({ code: RpcCode.DISCONNECTED, message: "tsnb_comm is closed" }));
    if (typeof method !== "string" || method === "") return Promise.reject(new TypeError("tsnb_comm.call: method must be a non-empty string"));
    let encoded;
    try {
      encoded = encodeValue([args, kwargs]);
    } catch (err) {
      return Promise.reject(new RpcError({ code: RpcCode.INVALID_PARAMS, message: `tsnb_comm.call("${method}"): the arguments cannot be sent: ${String(err)}` }));
    }
    const id = randomId();
    const timeout = options.timeout ?? DEFAULT_CALL_TIMEOUT_MS;
    const message: BrowserToKernel = { op: "call", id, method, value: encoded.json };
    if (encoded.buffers.length > 0) message.nbuf = encoded.buffers.length;
    const answer = this.calls.add(id, {
      label: `tsnb_comm.call("${method}")`,
      timeoutMs: timeout,
      data: { sent: false, message, buffers: encoded.buffers, onProgress: options.onProgress },
    });
    this.queueCalls();
    return answer;
  }

  /** How many calls are waiting for an answer. */
  get pendingCalls(): number {
    return this.calls.size;
  }

  /** Lets the program call `fn(...args)` with `comms.callFrontend(method, ...args)`; returns an unregister function. */
  register(method: string, fn: FrontendHandler): () => void {
    if (typeof method !== "string" || method === "") throw new TypeError("tsnb_comm.register: method must be a non-empty string");
    if (typeof fn !== "function") throw new TypeError("tsnb_comm.register: fn must be a function");
    this.handlers.set(method, fn);
    return () => {
      if (this.handlers.get(method) === fn) this.handlers.delete(method);
    };
  }

  unregister(method: string): void {
    this.handlers.delete(method);
  }

  /** Calls made in one task go out together at its end (a microtask, like values). */
  private queueCalls(): void {
    if (this.callsQueued) return;
    this.callsQueued = true;
    queueMicrotask(() => {
      this.callsQueued = false;
      this.flushCalls();
    });
  }
  private callsQueued = false;

  /** Sends every call not sent yet: big ones alone (chunked, with progress), small ones batched. */
  private flushCalls(): void {
    if (this.current.state !== "open") return;
    let batch: OutgoingCall[] = [];
    let bytes = 0;
    const sendBatch = () => {
      if (batch.length === 1) this.sendCall(batch[0]!);
      else if (batch.length > 1) {
        this.flush();
        const messages: RpcBatchMessage["messages"] = [];
        const buffers: Uint8Array[] = [];
        for (const call of batch) {
          if (call.message.op === "call") messages.push(call.message);
          for (const b of call.buffers) buffers.push(b);
          call.sent = true;
          call.buffers = [];
        }
        this.sendNow({ op: "rpc_batch", messages }, buffers, bytes);
      }
      batch = [];
      bytes = 0;
    };
    for (const [, call] of this.calls.entries()) {
      if (call.sent) continue;
      const size = call.buffers.reduce((n, b) => n + b.byteLength, 0) + 64;
      if (size > Math.min(RPC_BATCH_BYTES, this.options.chunkBytes / 2)) {
        sendBatch();
        this.sendCall(call);
        continue;
      }
      if (bytes + size > RPC_BATCH_BYTES) sendBatch();
      batch.push(call);
      bytes += size;
    }
    sendBatch();
  }

  private sendCall(call: OutgoingCall): void {
    call.sent = true;
    // Values sent before the call reach the program before it.
    this.flush();
    const approx = JSON.stringify(call.message.op === "call" ? call.message.value : null).length;
    const progress = call.onProgress;
    this.sendNow(call.message, call.buffers, approx, progress && ((bytes, total) => this.invokeProgress(progress, { phase: "upload", bytes, total })));
    // Sent once: the arguments are no longer needed here (a big upload must not stay in memory).
    call.buffers = [];
  }

  /** The comm a call went out on closed: nothing will answer it. */
  private failSentCalls(reason: string): void {
    // Parts of large messages from the closed comm will never be completed.
    this.assemblies.clear();
    this.calls.rejectIf(
      (call) => call.sent,
      (label) => new RpcError({ code: RpcCode.DISCONNECTED, message: `${label}: the connection to the kernel closed before an answer came (${reason})` }),
    );
  }

  private answerCall(id: string, method: string, value: JsonValue, buffers: Uint8Array[]): void {
    runCall({
      handler: this.handlers.get(method),
      notFound: () => `no function "${method}" is registered in this page (tsnb_comm.register)`,
      value,
      buffers,
      invoke: (fn, args) => fn(...args),
      reply: (outcome) => {
        if (this.current.state !== "open") return;
        const { payload, buffers: parts } = encodeReply(outcome);
        const approx = "value" in payload ? JSON.stringify(payload.value).length : 0;
        this.sendNow({ op: "reply", id, ...payload }, parts, approx);
      },
    });
  }

  /**
   * Checks that the kernel still knows this comm: a kernel that does not answers with comm_close, and
   * the client reopens. (A pong is harmless to a kernel that does know it.)
   */
  probe(): void {
    if (this.current.state === "open") this.sendNow({ op: "pong", nonce: 0 });
  }

  /** Calls back on every connection status change; returns an id for `offStatus`. */
  onStatus(callback: (status: ConnectionStatus) => void): number {
    const id = this.nextId++;
    this.statusCallbacks.set(id, callback);
    return id;
  }

  offStatus(id: number): void {
    this.statusCallbacks.delete(id);
  }

  close(): void {
    this.flush();
    this.calls.dispose();
    this.dispatch({ type: "close_requested" });
    for (const t of [this.ackTimer, this.openAckTimer, this.retryTimer, this.idleTimer]) if (t !== null) clearTimeout(t);
    this.ackTimer = this.openAckTimer = this.retryTimer = this.idleTimer = null;
    this.rejectReady(new Error("tsnb_comm was closed"));
  }

  // ---- protocol ----------------------------------------------------------------------------------

  private checkNotClosed(): void {
    if (this.current.state === "closed") throw new Error("tsnb_comm is closed");
  }

  private dispatch(event: Event): void {
    const step = transition(this.current, event);
    this.current = step.state;
    this.apply(step.effects);
  }

  private apply(effects: Effect[]): void {
    for (const effect of effects) {
      switch (effect.type) {
        case "open_port": {
          const handlers: CommPortHandlers = {
            onMessage: (data, buffers) => this.onMessage(port, data, buffers),
            onClose: (reason) => {
              if (this.portOf() !== port) return;
              this.failSentCalls(reason);
              this.dispatch({ type: "port_closed", reason });
            },
          };
          let port: CommPort | null = null;
          this.options.open({ version: BRIDGE_VERSION }, handlers).then(
            (p) => {
              port = p;
              if (this.current.state === "closed") p.close();
              else this.dispatch({ type: "port_opened", port: p });
            },
            (err: unknown) => {
              this.options.log(`could not open the tsnb comm: ${String(err)}`);
              this.dispatch({ type: "open_failed", reason: String(err) });
            },
          );
          break;
        }
        case "start_ack_timer":
          if (this.openAckTimer !== null) clearTimeout(this.openAckTimer);
          this.openAckTimer = setTimeout(() => {
            this.openAckTimer = null;
            this.dispatch({ type: "ack_timeout" });
          }, this.options.ackTimeoutMs);
          break;
        case "schedule_retry":
          if (this.retryTimer !== null) clearTimeout(this.retryTimer);
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            this.dispatch({ type: "retry" });
          }, this.options.retryMs);
          break;
        case "close_port":
          try {
            effect.port.close();
          } catch (err) {
            this.options.log(`closing the tsnb comm failed: ${String(err)}`);
          }
          break;
        case "resubscribe":
          if (this.openAckTimer !== null) clearTimeout(this.openAckTimer);
          this.openAckTimer = null;
          for (const address of this.byAddress.keys()) {
            this.sendNow({ op: "listen", address, latest_only: this.latestOnly.has(address) });
          }
          this.flush();
          this.flushCalls();
          this.lastHeard = performance.now();
          this.armIdleProbe(this.options.idleProbeMs);
          this.resolveReady();
          break;
        case "status":
          for (const cb of [...this.statusCallbacks.values()]) this.invokeCallback(cb as (v: unknown) => void, effect.status, "#status");
          break;
        default: {
          const unreachable: never = effect;
          throw new Error(`unhandled effect ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }

  private portOf(): CommPort | null {
    return this.current.state === "awaiting_ack" || this.current.state === "open" ? this.current.port : null;
  }

  /**
   * The kernel says nothing to a page with nothing to receive, and a kernel restarted by another client
   * may not say so either: its first messages (starting, the restarting client's kernel_info) go out while
   * the Jupyter server's IOPub subscription for this page is still reconnecting to the new process, and are
   * lost. Under load that window swallowed every sign of the restart and the page's views kept looking
   * live. So a comm silent for `idleProbeMs` is probed; a restarted kernel answers with comm_close. One
   * timer, re-armed for the remaining quiet time, instead of one per message.
   */
  private armIdleProbe(ms: number): void {
    if (this.options.idleProbeMs <= 0 || this.idleTimer !== null) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.current.state !== "open") return;
      const quiet = performance.now() - this.lastHeard;
      if (quiet >= this.options.idleProbeMs) {
        this.probe();
        this.lastHeard = performance.now();
        this.armIdleProbe(this.options.idleProbeMs);
      } else {
        this.armIdleProbe(this.options.idleProbeMs - quiet);
      }
    }, ms);
  }

  private onMessage(port: CommPort | null, data: unknown, buffers: Uint8Array[]): void {
    if (port !== null && this.portOf() !== port) return;
    this.lastHeard = performance.now();
    const parsed = parseKernelMessage(data, buffers.length);
    if (!parsed.ok) {
      this.options.log(`ignored a message from the kernel: ${parsed.error}`);
      return;
    }
    this.handle(parsed.message, buffers);
  }

  /** `reassembled`: the message came in chunks, which were acknowledged as they arrived. */
  private handle(message: KernelToBrowser, buffers: Uint8Array[], reassembled = false): void {
    switch (message.op) {
      case "open_ack":
        this.commId = message.comm_id;
        this.dispatch({ type: "acked" });
        return;
      case "call":
        this.answerCall(message.id, message.method, message.value, buffers);
        return;
      case "chunk":
        this.handleChunk(message, buffers[0]!);
        return;
      case "rpc_batch":
        for (const part of splitRpcBatch(message, buffers)) this.handle(part.message, part.buffers);
        return;
      case "reply":
        this.calls.settle(message.id, message, buffers, "the program");
        return;
      case "ping":
        this.sendNow({ op: "pong", nonce: message.nonce });
        return;
      case "values":
        for (const item of splitItems(message.items, buffers)) {
          if (!reassembled) this.unackedBytes += itemSize(item);
          let value: unknown;
          try {
            value = valueOf(item);
          } catch (err) {
            this.options.log(`a value for "${item.address}" could not be decoded: ${String(err)}`);
            continue;
          }
          this.lastValues.set(item.address, value);
          const ids = this.byAddress.get(item.address);
          if (!ids) continue;
          for (const id of [...ids]) {
            const sub = this.subscriptions.get(id);
            if (sub) this.invokeCallback(sub.callback, value, item.address);
          }
        }
        if (!reassembled) this.ackLater(message.seq);
        return;
      case "read":
        if (this.lastValues.has(message.address)) {
          this.outbox.push(itemOf(message.address, this.lastValues.get(message.address)));
          this.flush();
        }
        return;
      case "error":
        this.options.log(`the kernel refused a message: ${message.message}`);
        return;
      default: {
        const unreachable: never = message;
        this.options.log(`unknown message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private handleChunk(message: { id: string; index: number; last: boolean; total: number; call: string; seq?: number }, bytes: Uint8Array): void {
    // Acknowledged at once on arrival, before reassembly: the kernel keeps a window of a few parts in flight,
    // and a part is big (only messages over the kernel's chunk size come in parts), so one ack each is cheap.
    if (message.seq !== undefined) {
      this.ackSeq = this.ackSeq === null ? message.seq : Math.max(this.ackSeq, message.seq);
      this.sendAck();
    }
    let assembly = this.assemblies.get(message.id);
    if (!assembly) {
      if (message.index !== 0 || message.total > MAX_CHUNKED_MESSAGE_BYTES) {
        this.options.log(`dropped chunk ${message.index} of ${message.id} (unknown, or ${message.total} bytes is over the limit)`);
        return;
      }
      assembly = { decoder: new FrameDecoder({ maxHeaderBytes: message.total, maxBufferBytes: message.total }), next: 0, bytes: 0 };
      this.assemblies.set(message.id, assembly);
    }
    if (message.index !== assembly.next) {
      this.assemblies.delete(message.id);
      this.options.log(`chunked message ${message.id}: expected chunk ${assembly.next}, got ${message.index}; dropped`);
      return;
    }
    assembly.next++;
    assembly.bytes += bytes.byteLength;
    const call = this.calls.get(message.call);
    if (call?.onProgress) this.invokeProgress(call.onProgress, { phase: "download", bytes: assembly.bytes, total: message.total });
    const out = assembly.decoder.push(bytes);
    if (out.error) {
      this.assemblies.delete(message.id);
      this.options.log(`chunked message ${message.id}: ${describeFrameError(out.error)}`);
      return;
    }
    if (!message.last) return;
    this.assemblies.delete(message.id);
    const frame = out.frames[0];
    if (out.frames.length !== 1 || frame === undefined) {
      this.options.log(`chunked message ${message.id} does not hold exactly one message`);
      return;
    }
    const parsed = parseKernelMessage(frame.header, frame.buffers.length);
    if (!parsed.ok || parsed.message.op === "chunk") {
      this.options.log(`chunked message ${message.id}: ${parsed.ok ? "holds another chunk" : parsed.error}`);
      return;
    }
    this.handle(parsed.message, frame.buffers, true);
  }

  private invokeProgress(callback: (p: CallProgress) => void, progress: CallProgress): void {
    try {
      callback(progress);
    } catch (err) {
      console.error("tsnb_comm: a progress callback threw", err);
    }
  }

  private invokeCallback(callback: (value: unknown, address: string) => void, value: unknown, address: string): void {
    try {
      callback(value, address);
    } catch (err) {
      // The page's own callback failed: show it where developers look, keep delivering to the others.
      console.error(`tsnb_comm: a callback for "${address}" threw`, err);
    }
  }

  /**
   * Acks ride on the next values this page sends. A separate ack goes out only when much is unacknowledged
   * (the kernel stops sending at its window) or after a quiet spell: each separate message costs a
   * busy/idle pair on IOPub, which the server's Nagle-delayed writes can turn into a 40 ms stall for
   * whatever comes next.
   */
  private ackLater(seq: number): void {
    this.ackSeq = this.ackSeq === null ? seq : Math.max(this.ackSeq, seq);
    if (this.unackedBytes >= ACK_EVERY_BYTES) {
      this.sendAck();
      return;
    }
    if (this.ackTimer === null) this.ackTimer = setTimeout(() => this.sendAck(), ACK_QUIET_MS);
  }

  private sendAck(): void {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    const seq = this.takeAck();
    if (seq !== undefined) this.sendNow({ op: "ack", seq });
  }

  /** The ack to send now, if any, clearing the pending one. */
  private takeAck(): number | undefined {
    if (this.ackSeq === null || this.current.state !== "open") return undefined;
    const seq = this.ackSeq;
    this.ackSeq = null;
    this.unackedBytes = 0;
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    return seq;
  }

  private flush(): void {
    if (this.current.state !== "open" || this.outbox.length === 0) return;
    // Batches stay below the chunk size where possible; a single larger value is chunked.
    let start = 0;
    while (start < this.outbox.length) {
      let end = start;
      let bytes = 0;
      while (end < this.outbox.length) {
        const size = itemSize(this.outbox[end]!);
        if (end > start && bytes + size > this.options.chunkBytes / 2) break;
        bytes += size;
        end++;
      }
      const batch = joinItems(this.outbox.slice(start, end));
      const message: BrowserToKernel = { op: "values", items: batch.items };
      const ack = this.takeAck();
      if (ack !== undefined) message.ack = ack;
      this.sendNow(message, batch.buffers, bytes);
      start = end;
    }
    this.outbox = [];
  }

  private sendNow(message: BrowserToKernel, buffers: Uint8Array[] = [], approxBytes = 0, onChunk?: (sent: number, total: number) => void): void {
    const port = this.portOf();
    if (port === null) return;
    const total = approxBytes + buffers.reduce((n, b) => n + b.byteLength, 0);
    if (total < this.options.chunkBytes) {
      port.send(message as unknown as JsonObject, buffers);
      return;
    }
    // Too big for one websocket message: frame it and send the bytes in slices, cut straight from the
    // value's own memory (a slice inside one part is a view; the port makes its one exact-size copy), not
    // from a joined copy of the whole message: 100 MB up made two extra 100 MB copies on the page's thread.
    const parts = encodeFrame(message as unknown as JsonObject & { op: string }, buffers);
    const length = parts.reduce((n, p) => n + p.byteLength, 0);
    const id = randomId();
    const size = this.options.chunkBytes;
    let at = { partIndex: 0, partOffset: 0 };
    for (let index = 0, sent = 0; sent < length; index++) {
      const n = Math.min(size, length - sent);
      const slice = sliceParts(parts, n, at);
      at = slice.at;
      sent += n;
      port.send({ op: "chunk", id, index, last: sent >= length }, [slice.bytes]);
      onChunk?.(sent, length);
    }
  }
}
