// The kernel's comms hub: every open `tsnb_comm` (one per tab or client), the program's subscriptions,
// the last-value store, and the batched, rate-budgeted, flow-controlled queues towards the browsers.
//
// The kernel is the hub: a value from the program goes to every comm listening on its address; a value
// from a browser goes to the program (if subscribed) and to the *other* comms listening on it, so tabs
// stay in sync. Every value is remembered per address and replayed to a late listener.
//
// Rate: the Jupyter server drops IOPub messages over 1000/s per websocket (averaged over 3 s), and every
// websocket receives every comm_msg, so one token bucket budgets all comm_msgs together, well under it.
// Memory: each comm acknowledges batches; a comm that is too far behind is not sent more, its queue
// grows to a high-water mark, and then `comm_sync` is answered late, which slows a program that awaits
// `comms.sync()`; `congested` tells the kernel to stop reading the program's channel.

import { disposable } from "../../protocol/disposable.js";
import { FrameDecoder, describeFrameError, encodeFrame, encodeFrameHeader, readFrameHeader, sliceParts } from "../../protocol/framing.js";
import type { Header, JsonObject, JupyterMessage } from "../../protocol/jupyter.js";
import {
  BRIDGE_TARGET,
  BRIDGE_VERSION,
  HELD_VALUE_BYTES,
  KERNEL_CHUNK_BYTES,
  binarySize,
  itemSize,
  joinItems,
  parseBrowserMessage,
  parseOpenData,
  splitItems,
  splitRpcBatch,
  type RpcBatchMessage,
  type RpcCallMessage,
  type RpcReplyMessage,
  type BrowserToKernel,
  type KernelToBrowser,
  type ValueItem,
} from "../../protocol/bridge.js";
import { parseProgramCommOp, type CommChunkOp, type KernelCommOp, type ProgramCommOp } from "../../protocol/comms-ops.js";
import type { CellId } from "../../protocol/program.js";
import { RpcCode, type RpcErrorInfo } from "../../protocol/rpc.js";
import { DEFAULT_HEARTBEAT, initialHeartbeat, stepHeartbeat, type HeartbeatConfig, type HeartbeatEvent, type HeartbeatState } from "./heartbeat.js";
import { blankDisplayContent, shimDisplayContent, stepInjection, type InjectionEvent, type InjectionState, type ShimBoot } from "./shim-display.js";

export interface Disposable {
  dispose(): void;
}

export interface BridgeLog {
  warn(message: string): void;
}

type Parent = Header | Record<string, never>;

export interface PublishRequest {
  msg_type: "comm_msg" | "comm_close" | "display_data" | "update_display_data";
  content: JsonObject;
  buffers: Uint8Array[];
  parent: Parent;
}

/** What the bridge needs from the kernel around it. */
export interface BridgeHost {
  now(): number;
  setTimer(ms: number, fn: () => void): Disposable;
  /** Publish on IOPub (the host adds header, session and signature). */
  publish(message: PublishRequest): void;
  /**
   * Write a comm op to the user program's channel (dropped by the host when no program runs; a host that
   * knows returns false then, so a browser's RPC call is answered at once instead of timing out).
   */
  toProgram(op: KernelCommOp, buffers: Uint8Array[]): boolean | void;
  /** The parent header for output attributed to a cell (`null`: the most recent cell). */
  parentForCell(cell: CellId | null): Parent;
  /** A fresh unique id (display ids). */
  newId(): string;
  log: BridgeLog;
}

export interface BridgeOptions {
  heartbeat: HeartbeatConfig;
  /** Sustained comm_msg budget for all comms together, per second. */
  messagesPerSecond: number;
  /** Burst allowance of the budget, in messages. */
  burstMessages: number;
  /** Largest batch, in (approximate) bytes; a single bigger value still goes alone. */
  maxBatchBytes: number;
  maxBatchItems: number;
  /** Bytes a comm may have unacknowledged before the kernel waits for its acks. */
  ackWindowBytes: number;
  /** The same while the next message to send is a chunk (a window of whole chunks, not one at a time). */
  chunkWindowBytes: number;
  /** Queued bytes (all comms) above which `comm_sync` is answered late and `congested` is set. */
  highWaterBytes: number;
  /** Queued bytes for ONE comm above which it is closed (it reconnects and gets the last values). */
  hardLimitBytes: number;
  /** Largest chunked message a browser may send, in bytes. */
  maxChunkedBytes: number;
  /** Re-inject the shim on a later use when none connected within this time. */
  shimRetryMs: number;
  /** The shim to inject; null when unavailable (no dist/shim.js or kernel id), then nothing is injected. */
  shim: ShimBoot | null;
  /**
   * RPC calls/replies to a page with more binary data than RPC_BATCH_BYTES go in chunks of this size, each
   * counted against the comm's ack window, so several are in flight, a slow page holds the rest back, and the
   * page reports progress.
   */
  chunkBytes: number;
  /**
   * A value bigger than this goes to a page in chunks too (`chunkBytes` each, several in flight): the Jupyter
   * server and the page then work on one chunk while the next is on its way, instead of each holding the whole
   * value before passing it on. 100 MB down: one message 1339 ms, chunks of 16 MiB ~830 ms (bench/profile-transfer.mjs).
   */
  chunkedValueBytes: number;
  /**
   * The last value of an address with this much binary data or more is not stored here when the program holds
   * it (it sent it, or subscribed to the address): a late listener gets it from the program (`comm_replay`).
   * Must not be below the program's own threshold (HELD_VALUE_BYTES), or a replay would find nothing.
   */
  heldValueBytes: number;
}

export const DEFAULT_BRIDGE_OPTIONS: BridgeOptions = {
  heartbeat: DEFAULT_HEARTBEAT,
  messagesPerSecond: 300,
  burstMessages: 300,
  maxBatchBytes: 1024 * 1024,
  maxBatchItems: 50_000,
  ackWindowBytes: 16 * 1024 * 1024,
  // Four 16 MiB chunks: the page acknowledges each as it arrives, so the next is sent while three are on
  // their way. Unacknowledged bytes sit in the server and the page, not in the kernel (its sockets write views).
  chunkWindowBytes: 64 * 1024 * 1024,
  highWaterBytes: 32 * 1024 * 1024,
  hardLimitBytes: 256 * 1024 * 1024,
  maxChunkedBytes: 512 * 1024 * 1024,
  shimRetryMs: 10_000,
  shim: null,
  chunkBytes: KERNEL_CHUNK_BYTES,
  chunkedValueBytes: 4 * 1024 * 1024,
  heldValueBytes: HELD_VALUE_BYTES,
};

type QueueEntry =
  | {
      type: "value";
      item: ValueItem;
      size: number;
      /** A newer value for the same latest-only address was queued after this one. */
      superseded: boolean;
    }
  /** An RPC call or reply over RPC_BATCH_BYTES: it waits behind the values queued before it, then goes in chunks. */
  | { type: "rpc"; data: RpcCallMessage | RpcReplyMessage; buffers: Uint8Array[]; size: number; superseded: false }
  /** A message the program is still sending in pieces (comm_chunk); its queued bytes are counted as they arrive. */
  | { type: "stream"; send: StreamSend; address: string | null; size: 0; superseded: false };

/** A message going to one comm in chunks: its framed parts and how far it got. */
interface ChunkedSend {
  kind: "whole";
  id: string;
  /** The call this is part of ("" for values), for the page's progress report. */
  call: string;
  parts: Uint8Array[];
  total: number;
  sent: number;
  index: number;
  at: { partIndex: number; partOffset: number };
}

/**
 * A message the program sends in pieces, going to one comm as they arrive: a chunk per piece (a piece over
 * `chunkBytes` is cut), never a copy. `pending` holds what arrived and has not left yet.
 */
interface StreamSend {
  kind: "stream";
  id: string;
  call: string;
  total: number;
  sent: number;
  index: number;
  pending: Uint8Array[];
  /** The last piece arrived: the chunk that empties `pending` is the last. */
  complete: boolean;
}

/** A message the program is sending in pieces (comm_chunk), passed on as they arrive. */
interface ProgramStream {
  next: number;
  /** Binary bytes announced by its header, and received so far. */
  dataBytes: number;
  received: number;
  targets: { record: CommRecord; send: StreamSend }[];
  /** For an RPC reply: the kernel's call id (forgotten once the whole reply is on its way) and the page's. */
  reply: { kernelId: string; record: CommRecord; callId: string } | null;
}

/** A page's large message passed on to the program piece by piece (kernel -> program comm_chunk). */
interface BrowserStream {
  /** The program's id for it, and its next piece's index. */
  programId: string;
  piece: number;
  /** The page's next chunk index. */
  next: number;
  dataBytes: number;
  received: number;
  /** The program it was going to stopped: the rest of the page's chunks are read and dropped. */
  dead: boolean;
  /** For a call: the kernel's call id. */
  callId: string | null;
}

interface ChunkAssembly {
  nextIndex: number;
  bytes: number;
  decoder: FrameDecoder;
}

interface CommRecord {
  id: string;
  /** Header of the comm_open: parent of everything sent on this comm. */
  parent: Parent;
  heartbeat: HeartbeatState;
  listens: Map<string, { latestOnly: boolean }>;
  queue: QueueEntry[];
  queuedBytes: number;
  /** Latest-only addresses: their pending queue entry, to supersede. */
  pendingLatest: Map<string, QueueEntry>;
  nextSeq: number;
  /** The chunked message being sent, if any: the queue waits behind it (its unsent bytes count as queued). */
  sending: ChunkedSend | StreamSend | null;
  inflight: { seq: number; bytes: number }[];
  inflightBytes: number;
  chunks: Map<string, ChunkAssembly>;
  /** Large messages this page is sending in chunks that go on to the program as they arrive, by the page's chunk id. */
  streams: Map<string, BrowserStream>;
  wake: Disposable | null;
}

/** Calls and replies with less binary data than this are batched per comm within a turn. */
const RPC_BATCH_BYTES = 1024 * 1024;
/**
 * A call or reply with this much binary data goes out at once, with whatever is batched before it, instead of at
 * the end of the turn: batching saves messages for many small answers, while a big one gains nothing by waiting,
 * and when the page's request was already answered busy/idle the end-of-turn flush is a 1 ms timer.
 */
const RPC_SEND_NOW_BYTES = 64 * 1024;

/** The outcome of a program comm op: null when handled, else what was wrong (the caller shows it). */
export type ProgramOpError = string | null;

export class CommsBridge {
  private readonly options: BridgeOptions;
  private readonly comms = new Map<string, CommRecord>();
  private readonly lastValues = new Map<string, ValueItem>();
  /** Addresses whose last value is a large one the program holds (see heldValueBytes): their binary size. */
  private readonly programHeld = new Map<string, number>();
  private readonly programSubscriptions = new Set<string>();
  private readonly listenerCounts = new Map<string, number>();
  /** Addresses the program asked to read and no browser has answered yet: a late listener is asked too. */
  private readonly pendingReads = new Set<string>();
  /** Browser -> program calls the program has not answered, by the kernel's call id. */
  private readonly browserCalls = new Map<string, { record: CommRecord; callId: string }>();
  /** Program -> browser calls not yet answered, by the program's call id: the comm ids still asked. */
  private readonly frontendCalls = new Map<string, Set<string>>();
  private nextCallId = 0;
  /** Messages the program is sending in pieces, by its stream id. */
  private readonly programStreams = new Map<string, ProgramStream>();
  /** Small RPC messages per comm waiting for the end of this turn, to go out as one comm message. */
  private readonly rpcOutbox = new Map<CommRecord, { messages: RpcBatchMessage["messages"]; buffers: Uint8Array[]; bytes: number }>();
  private rpcFlushTimer: Disposable | null = null;
  private pendingSyncs: string[] = [];
  private injection: InjectionState = { state: "none" };
  private injectionWake: Disposable | null = null;
  private flushTimer: Disposable | null = null;
  private tokens: number;
  private tokensAt: number;
  private nonce = 0;
  private congestedNow = false;
  private readonly congestionListeners = new Set<(congested: boolean) => void>();
  private disposed = false;

  constructor(private readonly host: BridgeHost, options: Partial<BridgeOptions> = {}) {
    this.options = { ...DEFAULT_BRIDGE_OPTIONS, ...options };
    this.tokens = this.options.burstMessages;
    this.tokensAt = host.now();
  }

  // ---- Jupyter side ------------------------------------------------------------------------------

  commOpen(msg: JupyterMessage): void {
    const content = msg.content;
    const commId = content.comm_id;
    if (typeof commId !== "string" || commId === "") {
      this.host.log.warn("comm_open without a comm_id ignored");
      return;
    }
    if (content.target_name !== BRIDGE_TARGET) {
      // Front-ends wait for the kernel to refuse a target it does not know.
      this.publishClose(commId, msg.header, `unknown comm target ${JSON.stringify(content.target_name)}`);
      return;
    }
    const open = parseOpenData(content.data ?? {});
    if (!open.ok) {
      this.publishClose(commId, msg.header, open.error);
      return;
    }
    if (this.comms.has(commId)) {
      this.host.log.warn(`comm_open for already open comm ${commId} ignored`);
      return;
    }
    const record: CommRecord = {
      id: commId,
      parent: msg.header,
      heartbeat: initialHeartbeat(this.host.now()),
      listens: new Map(),
      queue: [],
      queuedBytes: 0,
      pendingLatest: new Map(),
      nextSeq: 0,
      sending: null,
      inflight: [],
      inflightBytes: 0,
      chunks: new Map(),
      streams: new Map(),
      wake: null,
    };
    this.comms.set(commId, record);
    this.sendControl(record, { op: "open_ack", comm_id: commId, version: BRIDGE_VERSION });
    this.frontendsChanged();
  }

  commMsg(msg: JupyterMessage): void {
    const commId = msg.content.comm_id;
    if (typeof commId !== "string") {
      this.host.log.warn("comm_msg without a comm_id ignored");
      return;
    }
    const record = this.comms.get(commId);
    if (!record) {
      // A comm this kernel does not know (closed by the heartbeat, or from before a restart): closing
      // it makes that shim reconnect instead of talking into the void.
      this.publishClose(commId, msg.header, "this comm is not open in the kernel");
      return;
    }
    this.heartbeatEvent(record, { type: "heard", now: this.host.now() });
    if (!this.comms.has(commId)) return;
    const parsed = parseBrowserMessage(msg.content.data, msg.buffers.length);
    if (!parsed.ok) {
      this.refuse(record, parsed.error);
      return;
    }
    this.handleBrowser(record, parsed.message, msg.buffers);
  }

  commClose(msg: JupyterMessage): void {
    const commId = msg.content.comm_id;
    if (typeof commId !== "string") return;
    const record = this.comms.get(commId);
    if (record) this.dropComm(record, null);
  }

  /** The `comms` of comm_info_reply. */
  commInfo(targetName?: string): { [commId: string]: { target_name: string } } {
    const out: { [commId: string]: { target_name: string } } = {};
    if (targetName !== undefined && targetName !== "" && targetName !== BRIDGE_TARGET) return out;
    for (const id of this.comms.keys()) out[id] = { target_name: BRIDGE_TARGET };
    return out;
  }

  // ---- program side ------------------------------------------------------------------------------

  /** Handles a comm op frame from the program. Returns what was wrong with it, if anything. */
  programOp(header: { [key: string]: unknown }, buffers: Uint8Array[]): ProgramOpError {
    const parsed = parseProgramCommOp(header, buffers.length);
    if (!parsed.ok) return parsed.error;
    if (parsed.message.op === "comm_chunk") return this.programChunk(parsed.message, buffers[0]!);
    this.handleProgram(parsed.message, buffers);
    return null;
  }

  /** A (new) program started: it knows nothing yet, so tell it who listens. */
  programStarted(): void {
    this.abortStreams();
    this.browserStreamsDead();
    this.programHeld.clear();
    this.programSubscriptions.clear();
    this.pendingReads.clear();
    this.pendingSyncs = [];
    this.failProgramCalls("the program restarted before answering");
    this.host.toProgram({ op: "comm_frontends", count: this.comms.size, ids: [...this.comms.keys()] }, []);
    for (const [address, count] of this.listenerCounts) {
      if (count > 0) this.host.toProgram({ op: "comm_listeners", address, count }, []);
    }
  }

  /**
   * The program exited: its subscriptions and pending syncs go with it, and so do the large values it held.
   * Values in the store stay.
   */
  programStopped(): void {
    this.abortStreams();
    this.browserStreamsDead();
    this.programHeld.clear();
    this.programSubscriptions.clear();
    this.pendingReads.clear();
    this.pendingSyncs = [];
    this.failProgramCalls("the program exited before answering (it is restarted; its registered functions are gone)");
  }

  /** Calls in flight to or from a program that is gone: the browsers get an error, the program's calls are forgotten. */
  private failProgramCalls(why: string): void {
    this.frontendCalls.clear();
    const calls = [...this.browserCalls.values()];
    this.browserCalls.clear();
    for (const call of calls) {
      if (this.comms.get(call.record.id) !== call.record) continue;
      this.sendRpc(call.record, { op: "reply", id: call.callId, error: { code: RpcCode.PROGRAM_EXITED, message: why } }, []);
    }
  }

  /** How many RPC calls are waiting for an answer (tests, diagnostics). */
  get pendingCalls(): { toProgram: number; toFrontends: number } {
    return { toProgram: this.browserCalls.size, toFrontends: this.frontendCalls.size };
  }

  /** A cell finished and its idle is next: with no front-end, the injected shim is blanked before it. */
  cellFinished(cell: CellId): void {
    this.injectionEvent({ type: "cell_done", cell });
  }

  /** True while the queues towards the browsers are above the high-water mark. */
  get congested(): boolean {
    return this.congestedNow;
  }

  onCongestion(listener: (congested: boolean) => void): Disposable {
    this.congestionListeners.add(listener);
    return disposable(() => this.congestionListeners.delete(listener));
  }

  /** Current value of an address in the store (tests, diagnostics). */
  lastValue(address: string): ValueItem | undefined {
    return this.lastValues.get(address);
  }

  /** Whether the last value of an address is a large one the program holds (tests, diagnostics). */
  heldByProgram(address: string): boolean {
    return this.programHeld.has(address);
  }

  /** Bytes of binary data in the store (tests, diagnostics). */
  get storedBinaryBytes(): number {
    let n = 0;
    for (const item of this.lastValues.values()) n += binarySize(item);
    return n;
  }

  /** Remembers an address's new value: here, or only as "the program holds it" when it is large and the program has it. */
  private remember(item: ValueItem, programHasIt: boolean): void {
    const bytes = binarySize(item);
    if (programHasIt && bytes >= this.options.heldValueBytes) {
      this.lastValues.delete(item.address);
      this.programHeld.set(item.address, bytes);
      return;
    }
    this.lastValues.set(item.address, item);
    this.programHeld.delete(item.address);
  }

  get queuedBytes(): number {
    let total = 0;
    for (const c of this.comms.values()) total += c.queuedBytes;
    return total;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.flushTimer?.dispose();
    this.flushTimer = null;
    this.rpcFlushTimer?.dispose();
    this.rpcFlushTimer = null;
    this.rpcOutbox.clear();
    this.injectionWake?.dispose();
    this.injectionWake = null;
    for (const record of this.comms.values()) record.wake?.dispose();
    this.comms.clear();
    this.pendingSyncs = [];
    this.congestionListeners.clear();
  }

  // ---- browser messages --------------------------------------------------------------------------

  private handleBrowser(record: CommRecord, message: BrowserToKernel, buffers: Uint8Array[]): void {
    switch (message.op) {
      case "listen": {
        const had = record.listens.has(message.address);
        record.listens.set(message.address, { latestOnly: message.latest_only });
        if (!had) this.countListeners(message.address);
        const last = this.lastValues.get(message.address);
        if (last) this.enqueue(record, last);
        else if (this.programHeld.has(message.address)) this.host.toProgram({ op: "comm_replay", address: message.address, frontend: record.id }, []);
        if (this.pendingReads.has(message.address)) this.sendControl(record, { op: "read", address: message.address });
        return;
      }
      case "unlisten":
        if (record.listens.delete(message.address)) this.countListeners(message.address);
        return;
      case "values": {
        if (message.ack !== undefined) this.acknowledge(record, message.ack);
        const items = splitItems(message.items, buffers);
        const toProgram: ValueItem[] = [];
        for (const item of items) {
          const subscribed = this.programSubscriptions.has(item.address);
          this.remember(item, subscribed);
          this.pendingReads.delete(item.address);
          if (subscribed) toProgram.push(item);
          for (const other of this.comms.values()) {
            if (other !== record && other.listens.has(item.address)) this.enqueue(other, item);
          }
        }
        if (toProgram.length > 0) {
          const batch = joinItems(toProgram);
          this.host.toProgram({ op: "comm_deliver", items: batch.items }, batch.buffers);
        }
        return;
      }
      case "pong":
        this.heartbeatEvent(record, { type: "pong", now: this.host.now(), nonce: message.nonce });
        return;
      case "ack":
        this.acknowledge(record, message.seq);
        return;
      case "chunk":
        this.handleChunk(record, message, buffers[0]!);
        return;
      case "rpc_batch":
        for (const part of splitRpcBatch(message, buffers)) this.handleBrowser(record, part.message, part.buffers);
        return;
      case "call": {
        const id = `b${++this.nextCallId}`;
        this.browserCalls.set(id, { record, callId: message.id });
        const op: KernelCommOp = { op: "comm_rpc_call", id, method: message.method, value: message.value };
        if (buffers.length > 0) op.nbuf = buffers.length;
        if (this.host.toProgram(op, buffers) === false) {
          this.browserCalls.delete(id);
          const error = { code: RpcCode.PROGRAM_EXITED, message: "the program is not running (it is starting or restarting)" };
          this.sendRpc(record, { op: "reply", id: message.id, error }, []);
        }
        return;
      }
      case "reply": {
        const asked = this.frontendCalls.get(message.id);
        if (!asked || !asked.has(record.id)) {
          this.host.log.warn(`comm ${record.id}: reply to unknown or finished call ${message.id} dropped`);
          return;
        }
        // "first responder" asks every front-end: one that lacks the function must not win over one that has it.
        if (message.error?.code === RpcCode.METHOD_NOT_FOUND && asked.size > 1) {
          asked.delete(record.id);
          return;
        }
        this.frontendCalls.delete(message.id);
        const op: KernelCommOp = message.error ? { op: "comm_rpc_reply", id: message.id, error: message.error } : { op: "comm_rpc_reply", id: message.id, value: message.value ?? null };
        if (buffers.length > 0) op.nbuf = buffers.length;
        this.host.toProgram(op, buffers);
        return;
      }
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled browser op ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private acknowledge(record: CommRecord, seq: number): void {
    while (record.inflight.length > 0 && record.inflight[0]!.seq <= seq) {
      record.inflightBytes -= record.inflight.shift()!.bytes;
    }
    // Only when the ack frees something to send: an empty flush timer armed here (acks ride on the browser's
    // next values, before its program has answered) would hold the program's answer for Node's 1 ms timeout
    // instead of the immediate flush the echo path gets.
    if (this.sendable(record)) this.scheduleFlush();
  }

  private handleChunk(record: CommRecord, message: { id: string; index: number; last: boolean }, bytes: Uint8Array): void {
    const stream = record.streams.get(message.id);
    if (stream !== undefined) {
      this.continueBrowserStream(record, message, stream, bytes);
      return;
    }
    let assembly = record.chunks.get(message.id);
    if (!assembly && message.index === 0 && this.startBrowserStream(record, message, bytes)) return;
    if (!assembly) {
      if (message.index !== 0) {
        this.refuse(record, `chunk ${message.index} of unknown chunked message ${message.id}`);
        return;
      }
      const limit = this.options.maxChunkedBytes;
      assembly = { nextIndex: 0, bytes: 0, decoder: new FrameDecoder({ maxHeaderBytes: limit, maxBufferBytes: limit }) };
      record.chunks.set(message.id, assembly);
    }
    if (message.index !== assembly.nextIndex) {
      record.chunks.delete(message.id);
      this.refuse(record, `chunked message ${message.id}: expected chunk ${assembly.nextIndex}, got ${message.index}`);
      return;
    }
    assembly.nextIndex++;
    assembly.bytes += bytes.byteLength;
    if (assembly.bytes > this.options.maxChunkedBytes) {
      record.chunks.delete(message.id);
      this.refuse(record, `chunked message ${message.id} exceeds ${this.options.maxChunkedBytes} bytes`);
      return;
    }
    const out = assembly.decoder.push(bytes);
    if (out.error) {
      record.chunks.delete(message.id);
      this.refuse(record, `chunked message ${message.id}: ${describeFrameError(out.error)}`);
      return;
    }
    if (!message.last) {
      if (out.frames.length > 0) {
        record.chunks.delete(message.id);
        this.refuse(record, `chunked message ${message.id} ended before its last chunk`);
      }
      return;
    }
    record.chunks.delete(message.id);
    const frame = out.frames[0];
    if (out.frames.length !== 1 || frame === undefined || assembly.decoder.bufferedBytes !== 0) {
      this.refuse(record, `chunked message ${message.id} does not hold exactly one whole message`);
      return;
    }
    const parsed = parseBrowserMessage(frame.header, frame.buffers.length);
    if (!parsed.ok) {
      this.refuse(record, `chunked message ${message.id}: ${parsed.error}`);
      return;
    }
    if (parsed.message.op === "chunk") {
      this.refuse(record, `chunked message ${message.id} holds another chunk`);
      return;
    }
    this.handleBrowser(record, parsed.message, frame.buffers);
  }

  /**
   * The first chunk of a page's large message for the program alone (a value for an address the program subscribes
   * to and no other page listens on, or a call): it goes on to the program as comm_chunk pieces as its chunks
   * arrive, so the program reads the first megabytes while the page is still sending the rest and the kernel never
   * holds the whole message. False when it is not such a message (then it is reassembled here, as before).
   */
  private startBrowserStream(record: CommRecord, message: { id: string; last: boolean }, bytes: Uint8Array): boolean {
    const head = readFrameHeader(bytes, { maxHeaderBytes: this.options.maxChunkedBytes, maxBufferBytes: this.options.maxChunkedBytes });
    if (!head.ok) return false;
    const parsed = parseBrowserMessage(head.header, head.lengths.length);
    if (!parsed.ok) return false;
    const inner = parsed.message;
    const dataBytes = head.lengths.reduce((a, b) => a + b, 0);
    if (dataBytes < this.options.heldValueBytes) return false;
    let op: KernelCommOp;
    let callId: string | null = null;
    if (inner.op === "values") {
      const item = inner.items[0];
      if (inner.items.length !== 1 || item === undefined || !this.programSubscriptions.has(item.address)) return false;
      for (const other of this.comms.values()) if (other !== record && other.listens.has(item.address)) return false;
      if (inner.ack !== undefined) this.acknowledge(record, inner.ack);
      // The program is given it and holds it (see heldValueBytes).
      this.lastValues.delete(item.address);
      this.programHeld.set(item.address, dataBytes);
      this.pendingReads.delete(item.address);
      op = { op: "comm_deliver", items: [item] };
    } else if (inner.op === "call") {
      callId = `b${++this.nextCallId}`;
      this.browserCalls.set(callId, { record, callId: inner.id });
      op = { op: "comm_rpc_call", id: callId, method: inner.method, value: inner.value, nbuf: head.lengths.length };
    } else {
      return false;
    }
    const stream: BrowserStream = { programId: `p${++this.nextCallId}`, piece: 0, next: 1, dataBytes, received: 0, dead: false, callId };
    record.streams.set(message.id, stream);
    const header = encodeFrameHeader(op as unknown as JsonObject & { op: string }, head.lengths);
    if (this.host.toProgram({ op: "comm_chunk", id: stream.programId, index: stream.piece++, last: false }, [header]) === false) {
      stream.dead = true;
      if (callId !== null) {
        this.browserCalls.delete(callId);
        if (inner.op === "call") this.sendRpc(record, { op: "reply", id: inner.id, error: { code: RpcCode.PROGRAM_EXITED, message: "the program is not running (it is starting or restarting)" } }, []);
      }
    }
    this.forwardPiece(record, message.id, stream, bytes.subarray(head.dataOffset), message.last);
    return true;
  }

  private continueBrowserStream(record: CommRecord, message: { id: string; index: number; last: boolean }, stream: BrowserStream, bytes: Uint8Array): void {
    if (message.index !== stream.next) {
      this.abortBrowserStream(record, message.id, stream, `expected chunk ${stream.next}, got ${message.index}`);
      return;
    }
    stream.next++;
    this.forwardPiece(record, message.id, stream, bytes, message.last);
  }

  private forwardPiece(record: CommRecord, id: string, stream: BrowserStream, bytes: Uint8Array, last: boolean): void {
    stream.received += bytes.byteLength;
    if (stream.received > stream.dataBytes) {
      this.abortBrowserStream(record, id, stream, `more data than its header announced (${stream.dataBytes} bytes)`);
      return;
    }
    if (last && stream.received !== stream.dataBytes) {
      this.abortBrowserStream(record, id, stream, `it ended after ${stream.received} of ${stream.dataBytes} bytes`);
      return;
    }
    if (last) record.streams.delete(id);
    if (stream.dead || (bytes.byteLength === 0 && !last)) return;
    this.host.toProgram({ op: "comm_chunk", id: stream.programId, index: stream.piece++, last }, [bytes]);
  }

  /** Gives up on a page's streamed message: the program gets an empty last piece (it drops the message), the page an error. */
  private abortBrowserStream(record: CommRecord, id: string, stream: BrowserStream, why: string): void {
    record.streams.delete(id);
    if (!stream.dead) this.host.toProgram({ op: "comm_chunk", id: stream.programId, index: stream.piece++, last: true }, [new Uint8Array(0)]);
    stream.dead = true;
    if (stream.callId !== null) this.browserCalls.delete(stream.callId);
    this.refuse(record, `chunked message ${id}: ${why}`);
  }

  private refuse(record: CommRecord, error: string): void {
    this.host.log.warn(`comm ${record.id}: refused: ${error}`);
    this.sendControl(record, { op: "error", message: error });
  }

  // ---- program ops -------------------------------------------------------------------------------

  private handleProgram(op: ProgramCommOp, buffers: Uint8Array[]): void {
    switch (op.op) {
      case "comm_chunk":
        // programOp hands these to programChunk, which reports what is wrong with them.
        return;
      case "comm_send": {
        if (op.frontend !== undefined) {
          // A replay for one front-end that started listening: not a new value.
          const record = this.comms.get(op.frontend);
          if (record === undefined) return;
          for (const item of splitItems(op.items, buffers)) if (record.listens.has(item.address)) this.enqueue(record, item);
          return;
        }
        this.used(op.cell);
        for (const item of splitItems(op.items, buffers)) {
          this.remember(item, true);
          for (const record of this.comms.values()) {
            if (record.listens.has(item.address)) this.enqueue(record, item);
          }
        }
        return;
      }
      case "comm_subscribe":
        this.used(op.cell);
        this.programSubscriptions.add(op.address);
        return;
      case "comm_unsubscribe":
        this.programSubscriptions.delete(op.address);
        this.pendingReads.delete(op.address);
        return;
      case "comm_read":
        this.used(op.cell);
        this.pendingReads.add(op.address);
        for (const record of this.comms.values()) {
          if (record.listens.has(op.address)) this.sendControl(record, { op: "read", address: op.address });
        }
        return;
      case "comm_sync":
        if (this.congestedNow) this.pendingSyncs.push(op.id);
        else this.host.toProgram({ op: "comm_sync_ack", id: op.id }, []);
        return;
      case "comm_rpc_call": {
        this.used(op.cell ?? null);
        const target = op.target ?? "first";
        const records = target === "first" ? [...this.comms.values()] : [this.comms.get(target)].filter((r): r is CommRecord => r !== undefined);
        if (records.length === 0) {
          const message =
            target === "first" ? "no front-end is connected (is this notebook open in a browser?)" : `front-end ${JSON.stringify(target)} is not connected`;
          this.replyToProgram(op.id, { code: RpcCode.DISCONNECTED, message });
          return;
        }
        if (this.frontendCalls.has(op.id)) {
          this.replyToProgram(op.id, { code: RpcCode.INVALID_PARAMS, message: `call id ${op.id} is already in flight` });
          return;
        }
        this.frontendCalls.set(op.id, new Set(records.map((r) => r.id)));
        const call: KernelToBrowser = { op: "call", id: op.id, method: op.method, value: op.value };
        if (buffers.length > 0) call.nbuf = buffers.length;
        for (const record of records) this.sendRpc(record, call, buffers);
        return;
      }
      case "comm_rpc_reply": {
        const call = this.browserCalls.get(op.id);
        if (!call) {
          this.host.log.warn(`the program answered unknown or abandoned call ${op.id}; dropped`);
          return;
        }
        this.browserCalls.delete(op.id);
        if (this.comms.get(call.record.id) !== call.record) return;
        const reply: KernelToBrowser = op.error ? { op: "reply", id: call.callId, error: op.error } : { op: "reply", id: call.callId, value: op.value ?? null };
        if (buffers.length > 0) reply.nbuf = buffers.length;
        this.sendRpc(call.record, reply, buffers);
        return;
      }
      case "comm_rpc_cancel":
        this.frontendCalls.delete(op.id);
        return;
      default: {
        const unreachable: never = op;
        throw new Error(`unhandled program op ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private used(cell: CellId | null): void {
    if (this.options.shim === null) return;
    this.injectionEvent({ type: "used", now: this.host.now(), displayId: `tsnb-shim-${this.host.newId()}`, cell });
  }

  private replyToProgram(id: string, error: RpcErrorInfo): void {
    this.host.toProgram({ op: "comm_rpc_reply", id, error }, []);
  }

  /**
   * Small RPC messages bypass the value queues: a call or reply is one message that its caller is waiting for,
   * not a stream to coalesce, and answers that come back within one turn go out together. A larger one (over
   * RPC_BATCH_BYTES of binary data, or over the chunk size) joins the comm's queue and goes in chunks under
   * an ack window and the high-water mark of values: a slow page holds the kernel and the program back.
   */
  private sendRpc(record: CommRecord, data: KernelToBrowser, buffers: Uint8Array[]): void {
    // An answer to a page that went silent (closed mid-call, e.g. mid-upload) checks that it is still
    // there, as values do: a dead comm is then closed and the program hears of it (comm_frontends).
    if (data.op === "reply") this.heartbeatEvent(record, { type: "outgoing", now: this.host.now(), nonce: this.nonce++ });
    if (this.comms.get(record.id) !== record) return;
    const size = binaryBytes(buffers);
    if (data.op !== "call" && data.op !== "reply") {
      this.host.publish({ msg_type: "comm_msg", content: { comm_id: record.id, data: data as unknown as JsonObject }, buffers, parent: record.parent });
      return;
    }
    if (size <= Math.min(RPC_BATCH_BYTES, this.chunkBytes)) {
      // Answers to many concurrent calls come back within one turn: one comm message for all of them.
      let box = this.rpcOutbox.get(record);
      if (!box) this.rpcOutbox.set(record, (box = { messages: [], buffers: [], bytes: 0 }));
      box.messages.push(data);
      for (const b of buffers) box.buffers.push(b);
      box.bytes += size + 64;
      if (box.bytes >= RPC_BATCH_BYTES || size >= RPC_SEND_NOW_BYTES) this.flushRpc();
      else if (this.rpcFlushTimer === null && !this.disposed) {
        this.rpcFlushTimer = this.host.setTimer(0, () => {
          this.rpcFlushTimer = null;
          this.flushRpc();
        });
      }
      return;
    }
    this.flushRpc();
    this.enqueueEntry(record, { type: "rpc", data, buffers, size: size + 256, superseded: false });
  }

  private flushRpc(): void {
    const boxes = [...this.rpcOutbox];
    this.rpcOutbox.clear();
    for (const [record, box] of boxes) {
      if (this.comms.get(record.id) !== record) continue;
      const data: KernelToBrowser = box.messages.length === 1 ? box.messages[0]! : { op: "rpc_batch", messages: box.messages };
      this.host.publish({ msg_type: "comm_msg", content: { comm_id: record.id, data: data as unknown as JsonObject }, buffers: box.buffers, parent: record.parent });
    }
  }

  private frontendsChanged(heartbeat = false): void {
    this.host.toProgram({ op: "comm_frontends", count: this.comms.size, ids: [...this.comms.keys()] }, []);
    this.injectionEvent({ type: "frontends", now: this.host.now(), count: this.comms.size, heartbeat });
  }

  private injectionEvent(event: InjectionEvent): void {
    const probeWindowMs = this.options.heartbeat.silenceMs + this.options.heartbeat.pongTimeoutMs + 1000;
    const step = stepInjection(this.injection, event, { retryMs: this.options.shimRetryMs, probeWindowMs });
    this.injection = step.state;
    for (const effect of step.effects) {
      switch (effect.type) {
        case "inject": {
          if (this.options.shim === null) break;
          let source: string;
          try {
            source = this.options.shim.source();
          } catch (err) {
            // The state machine tries again on a later use once its retry time has passed.
            this.host.log.warn(`the browser shim could not be read, so it was not injected: ${err instanceof Error ? err.message : String(err)}`);
            break;
          }
          this.host.publish({
            msg_type: "display_data",
            content: shimDisplayContent({ kernelId: this.options.shim.kernelId, source }, effect.displayId),
            buffers: [],
            parent: this.host.parentForCell(effect.cell),
          });
          break;
        }
        case "probe":
          for (const record of [...this.comms.values()]) {
            this.heartbeatEvent(record, { type: "probe", now: this.host.now(), nonce: this.nonce++ });
          }
          break;
        case "blank":
          this.host.publish({
            msg_type: "update_display_data",
            content: blankDisplayContent(effect.displayId),
            buffers: [],
            parent: this.host.parentForCell(effect.cell),
          });
          break;
        case "wake_at":
          this.injectionWake?.dispose();
          this.injectionWake = this.host.setTimer(Math.max(0, effect.at - this.host.now()), () => {
            this.injectionWake = null;
            this.injectionEvent({ type: "tick", now: this.host.now() });
          });
          break;
        default: {
          const unreachable: never = effect;
          throw new Error(`unhandled injection effect ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }

  // ---- listeners ---------------------------------------------------------------------------------

  private countListeners(address: string): void {
    let count = 0;
    for (const record of this.comms.values()) if (record.listens.has(address)) count++;
    const before = this.listenerCounts.get(address) ?? 0;
    if (count === before) return;
    if (count === 0) this.listenerCounts.delete(address);
    else this.listenerCounts.set(address, count);
    this.host.toProgram({ op: "comm_listeners", address, count }, []);
  }

  // ---- outgoing ----------------------------------------------------------------------------------

  private enqueue(record: CommRecord, item: ValueItem): void {
    const entry: QueueEntry = { type: "value", item, size: itemSize(item), superseded: false };
    this.supersede(record, item.address, entry);
    this.enqueueEntry(record, entry);
  }

  /** On a latest-only address, a new value replaces the one still waiting in the comm's queue, if any. */
  private supersede(record: CommRecord, address: string, entry: QueueEntry): void {
    if (!record.listens.get(address)?.latestOnly) return;
    const previous = record.pendingLatest.get(address);
    if (previous?.type === "value") {
      previous.superseded = true;
      record.queuedBytes -= previous.size;
    } else if (previous?.type === "stream" && previous.send.complete) {
      // A streamed value none of which has left yet (it would be record.sending then) and all of which is here.
      const at = record.queue.indexOf(previous);
      if (at >= 0) {
        record.queue.splice(at, 1);
        record.queuedBytes -= previous.send.pending.reduce((n, p) => n + p.byteLength, 0);
        previous.send.pending = [];
      }
    }
    record.pendingLatest.set(address, entry);
  }

  private enqueueEntry(record: CommRecord, entry: QueueEntry): void {
    record.queue.push(entry);
    record.queuedBytes += entry.size;
    this.heartbeatEvent(record, { type: "outgoing", now: this.host.now(), nonce: this.nonce++ });
    if (!this.comms.has(record.id)) return;
    if (record.queuedBytes > this.options.hardLimitBytes) {
      this.dropComm(record, `it fell ${record.queuedBytes} bytes behind (limit ${this.options.hardLimitBytes})`);
      return;
    }
    this.updateCongestion();
    this.scheduleFlush();
  }

  private sendControl(record: CommRecord, data: KernelToBrowser): void {
    this.host.publish({
      msg_type: "comm_msg",
      content: { comm_id: record.id, data: data as unknown as JsonObject },
      buffers: [],
      parent: record.parent,
    });
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== null || this.disposed) return;
    const wait = this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.options.messagesPerSecond) * 1000);
    this.flushTimer = this.host.setTimer(wait, () => {
      this.flushTimer = null;
      this.flush();
    });
  }

  private refill(): void {
    const now = this.host.now();
    const elapsed = Math.max(0, now - this.tokensAt);
    this.tokensAt = now;
    this.tokens = Math.min(this.options.burstMessages, this.tokens + (elapsed / 1000) * this.options.messagesPerSecond);
  }

  /** Sends batches and chunks round-robin over the comms while budget and ack windows allow. */
  private flush(): void {
    if (this.disposed) return;
    this.refill();
    let progress = true;
    while (progress) {
      progress = false;
      for (const record of this.comms.values()) {
        if (this.tokens < 1) break;
        if (!this.sendable(record)) continue;
        if (this.sendNext(record)) {
          this.tokens -= 1;
          progress = true;
        }
      }
    }
    this.updateCongestion();
    // Comms waiting for acks are flushed again when the acks come, not by polling.
    const waiting = [...this.comms.values()].some((r) => this.sendable(r));
    if (waiting) this.scheduleFlush();
  }

  /** Whether the comm's next message fits its ack window now (anything fits when nothing is in flight). */
  private sendable(record: CommRecord): boolean {
    let size: number;
    if (record.sending?.kind === "stream") {
      // A streamed message waits for its next piece.
      const piece = record.sending.pending[0];
      if (piece === undefined) return false;
      size = Math.min(this.chunkBytes, piece.byteLength);
    } else if (record.sending !== null) size = Math.min(this.chunkBytes, record.sending.total - record.sending.sent);
    else {
      const head = record.queue.find((e) => !e.superseded);
      if (head === undefined) return false;
      if (head.type === "stream" && head.send.pending.length === 0) return false;
      size = this.firstSendBytes(head);
    }
    if (record.inflightBytes === 0) return true;
    return size <= this.windowFor(record) - record.inflightBytes;
  }

  /** The ack window for the comm's next message: larger when that is a chunk. */
  private windowFor(record: CommRecord): number {
    const head = record.sending === null ? record.queue.find((e) => !e.superseded) : undefined;
    const chunked = record.sending !== null || (head !== undefined && this.goesInChunks(head));
    return chunked ? this.options.chunkWindowBytes : this.options.ackWindowBytes;
  }

  private goesInChunks(entry: QueueEntry): boolean {
    return entry.type !== "value" || entry.size > this.options.chunkedValueBytes;
  }

  /** What an entry puts in flight when it starts: all of it, or its first chunk when it goes in chunks. */
  private firstSendBytes(entry: QueueEntry): number {
    switch (entry.type) {
      case "value":
        return this.goesInChunks(entry) ? Math.min(this.chunkBytes, entry.size) : entry.size;
      case "rpc":
        return Math.min(this.chunkBytes, entry.size);
      case "stream":
        return Math.min(this.chunkBytes, entry.send.pending[0]?.byteLength ?? 0);
      default: {
        const unreachable: never = entry;
        throw new Error(`unhandled queue entry ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private get chunkBytes(): number {
    return Math.max(1024, this.options.chunkBytes);
  }

  /** Sends the comm's next message: the next chunk of a chunked one, else what the head of the queue holds. */
  private sendNext(record: CommRecord): boolean {
    if (record.sending === null) {
      const head = record.queue.find((e) => !e.superseded);
      if (head === undefined) return false;
      if (head.type === "value" && !this.goesInChunks(head)) return this.sendBatch(record);
      const index = record.queue.indexOf(head);
      record.queue.splice(0, index + 1);
      record.queuedBytes -= head.size;
      switch (head.type) {
        case "value": {
          if (record.pendingLatest.get(head.item.address) === head) record.pendingLatest.delete(head.item.address);
          const batch = joinItems([head.item]);
          // The inner seq is not acknowledged: the page acknowledges each chunk's own seq as it arrives.
          this.startChunks(record, { op: "values", seq: 0, items: batch.items }, batch.buffers, "");
          break;
        }
        case "rpc":
          this.startChunks(record, head.data, head.buffers, head.data.id);
          break;
        case "stream":
          if (head.address !== null && record.pendingLatest.get(head.address) === head) record.pendingLatest.delete(head.address);
          record.sending = head.send;
          break;
        default: {
          const unreachable: never = head;
          throw new Error(`unhandled queue entry ${JSON.stringify(unreachable)}`);
        }
      }
    }
    this.sendChunk(record);
    return true;
  }

  /** Frames a message for chunked sending; its bytes count as queued until they have left. */
  private startChunks(record: CommRecord, data: KernelToBrowser, buffers: Uint8Array[], call: string): void {
    const parts = encodeFrame(data as unknown as JsonObject & { op: string }, buffers);
    const total = parts.reduce((n, p) => n + p.byteLength, 0);
    record.sending = { kind: "whole", id: `k${++this.nextCallId}`, call, parts, total, sent: 0, index: 0, at: { partIndex: 0, partOffset: 0 } };
    record.queuedBytes += total;
  }

  /**
   * One chunk, counted in flight under its own seq: the page acknowledges chunks as they arrive, so several
   * travel at once (a window, not stop-and-wait) and none beyond the window while the page is behind. Only a
   * chunk that spans two parts is copied; the others are views of the payload the kernel holds anyway.
   */
  private sendChunk(record: CommRecord): void {
    const sending = record.sending!;
    if (sending.kind === "stream") {
      this.sendStreamChunk(record, sending);
      return;
    }
    const length = Math.min(this.chunkBytes, sending.total - sending.sent);
    const slice = sliceParts(sending.parts, length, sending.at);
    sending.at = slice.at;
    sending.sent += length;
    record.queuedBytes -= length;
    const seq = record.nextSeq++;
    record.inflight.push({ seq, bytes: length });
    record.inflightBytes += length;
    const last = sending.sent >= sending.total;
    const message: KernelToBrowser = { op: "chunk", id: sending.id, index: sending.index++, last, total: sending.total, call: sending.call, seq };
    if (last) record.sending = null;
    this.host.publish({ msg_type: "comm_msg", content: { comm_id: record.id, data: message as unknown as JsonObject }, buffers: [slice.bytes], parent: record.parent });
  }

  private sendStreamChunk(record: CommRecord, sending: StreamSend): void {
    let piece = sending.pending[0]!;
    if (piece.byteLength > this.chunkBytes) {
      sending.pending[0] = piece.subarray(this.chunkBytes);
      piece = piece.subarray(0, this.chunkBytes);
    } else {
      sending.pending.shift();
    }
    sending.sent += piece.byteLength;
    record.queuedBytes -= piece.byteLength;
    const seq = record.nextSeq++;
    record.inflight.push({ seq, bytes: piece.byteLength });
    record.inflightBytes += piece.byteLength;
    const last = sending.complete && sending.pending.length === 0;
    if (last) record.sending = null;
    const message: KernelToBrowser = { op: "chunk", id: sending.id, index: sending.index++, last, total: sending.total, call: sending.call, seq };
    this.host.publish({ msg_type: "comm_msg", content: { comm_id: record.id, data: message as unknown as JsonObject }, buffers: [piece], parent: record.parent });
  }

  // ---- messages the program sends in pieces ------------------------------------------------------

  /**
   * A piece of a large message from the program. The first holds its header: the kernel decides where it goes
   * (the comms listening on the value's address, or the page that made the call) and passes every piece on as
   * it arrives, so the page receives the first chunks while the program is still writing the rest. The kernel
   * keeps only the pieces not sent yet, never the whole message.
   */
  private programChunk(op: CommChunkOp, bytes: Uint8Array): ProgramOpError {
    if (op.index === 0) {
      const previous = this.programStreams.get(op.id);
      if (previous) this.abortStream(op.id, previous, "it was started again", true);
      const problem = this.startStream(op.id, bytes);
      if (problem !== null) return `comm_chunk ${op.id}: ${problem}`;
    } else {
      const stream = this.programStreams.get(op.id);
      if (stream === undefined) return `comm_chunk ${op.id}: piece ${op.index} of a message that did not start`;
      if (op.index !== stream.next) {
        this.abortStream(op.id, stream, `expected piece ${stream.next}, got ${op.index}`, true);
        return `comm_chunk ${op.id}: expected piece ${stream.next}, got ${op.index}`;
      }
      stream.next++;
      stream.received += bytes.byteLength;
      if (stream.received > stream.dataBytes) {
        this.abortStream(op.id, stream, "more data than its header announced", true);
        return `comm_chunk ${op.id}: more data than its header announced (${stream.dataBytes} bytes)`;
      }
      for (const target of stream.targets) {
        if (this.comms.get(target.record.id) !== target.record) continue;
        target.send.pending.push(bytes);
        target.record.queuedBytes += bytes.byteLength;
        if (target.record.queuedBytes > this.options.hardLimitBytes) {
          this.dropComm(target.record, `it fell ${target.record.queuedBytes} bytes behind (limit ${this.options.hardLimitBytes})`);
        }
      }
    }
    const stream = this.programStreams.get(op.id)!;
    if (op.last) {
      if (stream.received !== stream.dataBytes) {
        this.abortStream(op.id, stream, "it ended early", true);
        return `comm_chunk ${op.id}: ended after ${stream.received} of ${stream.dataBytes} bytes`;
      }
      for (const target of stream.targets) target.send.complete = true;
      if (stream.reply !== null) this.browserCalls.delete(stream.reply.kernelId);
      this.programStreams.delete(op.id);
    }
    this.updateCongestion();
    this.scheduleFlush();
    return null;
  }

  /** Reads a streamed message's header and queues it for its comms; what is wrong with it, if anything. */
  private startStream(id: string, bytes: Uint8Array): string | null {
    const head = readFrameHeader(bytes, { maxHeaderBytes: this.options.maxChunkedBytes, maxBufferBytes: this.options.maxChunkedBytes });
    if (!head.ok) return describeFrameError(head.error);
    if (head.dataOffset !== bytes.byteLength) return "the first piece must hold exactly the message's header";
    const inner = parseProgramCommOp(head.header, head.lengths.length);
    if (!inner.ok) return inner.error;
    const message = inner.message;
    const dataBytes = head.lengths.reduce((a, b) => a + b, 0);
    const stream: ProgramStream = { next: 1, dataBytes, received: 0, targets: [], reply: null };
    const queueFor = (record: CommRecord, data: KernelToBrowser, call: string, address: string | null) => {
      const header = encodeFrameHeader(data as unknown as JsonObject & { op: string }, head.lengths);
      const send: StreamSend = { kind: "stream", id: `k${++this.nextCallId}`, call, total: header.byteLength + dataBytes, sent: 0, index: 0, pending: [header], complete: false };
      stream.targets.push({ record, send });
      const entry: QueueEntry = { type: "stream", send, address, size: 0, superseded: false };
      if (address !== null) this.supersede(record, address, entry);
      this.enqueueEntry(record, entry);
      record.queuedBytes += header.byteLength;
    };
    switch (message.op) {
      case "comm_send": {
        const item = message.items[0];
        if (message.items.length !== 1 || item === undefined) return "a comm_send in pieces carries exactly one value";
        this.programStreams.set(id, stream);
        if (message.frontend !== undefined) {
          // A replay for one front-end that started listening: not a new value.
          const record = this.comms.get(message.frontend);
          if (record !== undefined && record.listens.has(item.address)) queueFor(record, { op: "values", seq: 0, items: [item] }, "", item.address);
          break;
        }
        this.used(message.cell);
        // The program holds what it sends in pieces (it is large); a late listener gets it replayed.
        this.lastValues.delete(item.address);
        this.programHeld.set(item.address, dataBytes);
        for (const record of [...this.comms.values()]) {
          if (record.listens.has(item.address)) queueFor(record, { op: "values", seq: 0, items: [item] }, "", item.address);
        }
        break;
      }
      case "comm_rpc_reply": {
        this.programStreams.set(id, stream);
        const call = this.browserCalls.get(message.id);
        // A reply to a call the kernel forgot (its page went away) is read and dropped.
        if (call === undefined || this.comms.get(call.record.id) !== call.record) break;
        stream.reply = { kernelId: message.id, record: call.record, callId: call.callId };
        const reply: RpcReplyMessage = message.error ? { op: "reply", id: call.callId, error: message.error } : { op: "reply", id: call.callId, value: message.value ?? null };
        if (head.lengths.length > 0) reply.nbuf = head.lengths.length;
        queueFor(call.record, reply, call.callId, null);
        break;
      }
      default:
        return `${message.op} cannot be sent in pieces (only comm_send of one value and comm_rpc_reply)`;
    }
    this.updateCongestion();
    return null;
  }

  /**
   * Gives up on a streamed message: a comm that started receiving it gets a last, empty chunk (the page drops the
   * message). With `answerCall`, a page waiting for it as an RPC result is answered with the error now (a program
   * that stopped has its calls answered by failProgramCalls instead).
   */
  private abortStream(id: string, stream: ProgramStream, why: string, answerCall: boolean): void {
    this.programStreams.delete(id);
    this.host.log.warn(`a message the program sent in pieces was dropped: ${why}`);
    for (const { record, send } of stream.targets) {
      if (this.comms.get(record.id) !== record) continue;
      const unsent = send.pending.reduce((n, p) => n + p.byteLength, 0);
      if (record.sending === send) {
        record.queuedBytes -= unsent;
        send.pending = [new Uint8Array(0)];
        send.complete = true;
        continue;
      }
      const at = record.queue.findIndex((e) => e.type === "stream" && e.send === send);
      if (at >= 0) record.queue.splice(at, 1);
      record.queuedBytes -= unsent;
    }
    if (answerCall && stream.reply !== null && this.browserCalls.delete(stream.reply.kernelId)) {
      this.sendRpc(stream.reply.record, { op: "reply", id: stream.reply.callId, error: { code: RpcCode.RESULT_NOT_SERIALIZABLE, message: `the program's answer was cut short: ${why}` } }, []);
    }
    this.updateCongestion();
    this.scheduleFlush();
  }

  /** The program that was being given pages' large messages is gone: the rest of their chunks are dropped. */
  private browserStreamsDead(): void {
    for (const record of this.comms.values()) for (const stream of record.streams.values()) stream.dead = true;
  }

  private abortStreams(): void {
    for (const [id, stream] of [...this.programStreams]) this.abortStream(id, stream, "the program stopped", false);
  }

  private sendBatch(record: CommRecord): boolean {
    const items: ValueItem[] = [];
    // A batch never overshoots the comm's ack window by more than one value, so a slow browser
    // really does hold back what the kernel has in flight.
    const limit = Math.min(this.options.maxBatchBytes, this.options.ackWindowBytes - record.inflightBytes);
    let bytes = 0;
    let taken = 0;
    for (const entry of record.queue) {
      if (entry.superseded) {
        taken++;
        continue;
      }
      if (entry.type !== "value" || this.goesInChunks(entry)) break;
      // A value bigger than what is left of the window waits for acks, unless nothing is in flight.
      if (items.length === 0 && record.inflightBytes > 0 && this.firstSendBytes(entry) > this.windowFor(record) - record.inflightBytes) break;
      if (items.length > 0 && (bytes + entry.size > limit || items.length >= this.options.maxBatchItems)) break;
      items.push(entry.item);
      bytes += entry.size;
      taken++;
      if (record.pendingLatest.get(entry.item.address) === entry) record.pendingLatest.delete(entry.item.address);
    }
    record.queue.splice(0, taken);
    record.queuedBytes -= bytes;
    if (items.length === 0) return false;
    const seq = record.nextSeq++;
    const batch = joinItems(items);
    const data: KernelToBrowser = { op: "values", seq, items: batch.items };
    record.inflight.push({ seq, bytes });
    record.inflightBytes += bytes;
    this.host.publish({
      msg_type: "comm_msg",
      content: { comm_id: record.id, data: data as unknown as JsonObject },
      buffers: batch.buffers,
      parent: record.parent,
    });
    return true;
  }

  private updateCongestion(): void {
    const congested = this.queuedBytes > this.options.highWaterBytes;
    if (congested === this.congestedNow) return;
    this.congestedNow = congested;
    if (!congested && this.pendingSyncs.length > 0) {
      const ids = this.pendingSyncs;
      this.pendingSyncs = [];
      for (const id of ids) this.host.toProgram({ op: "comm_sync_ack", id }, []);
    }
    for (const listener of [...this.congestionListeners]) listener(congested);
  }

  // ---- heartbeat ---------------------------------------------------------------------------------

  private heartbeatEvent(record: CommRecord, event: HeartbeatEvent): void {
    const step = stepHeartbeat(record.heartbeat, event, this.options.heartbeat);
    record.heartbeat = step.state;
    for (const effect of step.effects) {
      switch (effect.type) {
        case "send_ping":
          this.sendControl(record, { op: "ping", nonce: effect.nonce });
          break;
        case "wake_at":
          record.wake?.dispose();
          record.wake = this.host.setTimer(Math.max(0, effect.at - this.host.now()), () => {
            record.wake = null;
            if (this.comms.get(record.id) === record) this.heartbeatEvent(record, { type: "tick", now: this.host.now() });
          });
          break;
        case "closed":
          this.dropComm(record, effect.reason);
          break;
        default: {
          const unreachable: never = effect;
          throw new Error(`unhandled heartbeat effect ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }

  /** Forgets a comm; with a reason, the kernel closed it and tells the front-end why. */
  private dropComm(record: CommRecord, reason: string | null): void {
    if (this.comms.get(record.id) !== record) return;
    this.comms.delete(record.id);
    record.wake?.dispose();
    record.wake = null;
    if (record.heartbeat.state !== "closed") record.heartbeat = { state: "closed", reason: reason ?? "closed by the front-end" };
    if (reason !== null) {
      this.host.log.warn(`comm ${record.id} closed: ${reason}`);
      this.publishClose(record.id, record.parent, reason);
    }
    for (const address of record.listens.keys()) this.countListeners(address);
    record.queue = [];
    record.queuedBytes = 0;
    record.sending = null;
    record.chunks.clear();
    // The program drops what it got of this page's large messages.
    for (const stream of record.streams.values()) {
      if (!stream.dead) this.host.toProgram({ op: "comm_chunk", id: stream.programId, index: stream.piece++, last: true }, [new Uint8Array(0)]);
    }
    record.streams.clear();
    this.rpcOutbox.delete(record);
    for (const [id, call] of [...this.browserCalls]) if (call.record === record) this.browserCalls.delete(id);
    for (const [id, asked] of [...this.frontendCalls]) {
      if (!asked.delete(record.id) || asked.size > 0) continue;
      this.frontendCalls.delete(id);
      this.replyToProgram(id, { code: RpcCode.DISCONNECTED, message: `the front-end closed before answering${reason ? ` (${reason})` : ""}` });
    }
    this.updateCongestion();
    this.frontendsChanged(reason !== null);
    this.scheduleFlush();
  }

  private publishClose(commId: string, parent: Parent, reason: string): void {
    this.host.publish({ msg_type: "comm_close", content: { comm_id: commId, data: { reason } }, buffers: [], parent });
  }
}

function binaryBytes(buffers: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of buffers) n += b.byteLength;
  return n;
}
