// The one way anything in the kernel sends a Jupyter message: headers carry this process's session id, iopub
// messages carry their parent, and IOPub can be held back briefly so a quick request leaves in one burst.

import { randomUUID } from "node:crypto";
import { isoDate, PROTOCOL_VERSION, type Channel, type Header, type JsonObject, type JupyterMessage, type OutgoingMessage } from "../../protocol/jupyter.js";
import type { Disposable } from "../../protocol/disposable.js";
import type { QueueStats, Transport } from "../transport/transport.js";

export type ParentHeader = Header | Record<string, never>;

export interface PublishOptions {
  msgType: string;
  content: JsonObject;
  parent: ParentHeader;
  metadata?: JsonObject;
  buffers?: Uint8Array[];
  /**
   * Goes out at once when everything held so far is `status`: an answer the browser waits for (a comms echo)
   * then reaches the server before the request's busy/idle. The server writes without TCP_NODELAY, so its
   * first write leaves at once and later ones wait for the browser's ACK; written after busy, the answer
   * waited for the browser to receive busy and send the shim's nudge. Held like anything else when other
   * output is held, so it never overtakes a stream, display or earlier value.
   */
  overtakeStatus?: boolean;
}

export class KernelIO {
  /** A new id per kernel process: clients read a changed session as "the kernel restarted". */
  readonly session = randomUUID();
  /** Open holds (see hold()); IOPub messages wait in `held` while there is one. */
  private holds = new Set<NodeJS.Timeout>();
  private held: OutgoingMessage[] = [];
  /** Started by the first held message: overlapping holds must not delay any message longer than this. */
  private heldDeadline: NodeJS.Timeout | null = null;
  /** Encodes held messages once the current turn is over (see prepareHeld). */
  private preparing: NodeJS.Immediate | null = null;
  private readonly transport: Transport;
  private readonly maxHoldMs: number;
  private readonly now: () => number;
  /** When the last IOPub message was handed to the transport (`now()` ms); null before the first. */
  private lastIopubSend: number | null = null;

  constructor(transport: Transport, options: { maxHoldMs?: number; now?: () => number } = {}) {
    this.transport = transport;
    this.maxHoldMs = options.maxHoldMs ?? 10;
    this.now = options.now ?? (() => performance.now());
  }

  /** Milliseconds since IOPub last sent anything (Infinity before the first message). */
  iopubQuietMs(): number {
    return this.lastIopubSend === null ? Infinity : this.now() - this.lastIopubSend;
  }

  header(msgType: string): Header {
    return {
      msg_id: randomUUID(),
      session: this.session,
      username: "tsnb",
      date: isoDate(Date.now()),
      msg_type: msgType,
      version: PROTOCOL_VERSION,
    };
  }

  publish(options: PublishOptions): Header {
    const header = this.header(options.msgType);
    const message: OutgoingMessage = {
      channel: "iopub",
      identities: [],
      header,
      parent_header: options.parent,
      metadata: options.metadata ?? {},
      content: options.content,
      buffers: options.buffers ?? [],
    };
    if (this.holds.size === 0 || (options.overtakeStatus === true && this.held.every((m) => m.header.msg_type === "status"))) {
      this.sendIopub(message);
    } else {
      this.held.push(message);
      this.heldDeadline ??= setTimeout(() => this.flushHeld(), this.maxHoldMs);
      if (this.transport.prepare) this.preparing ??= setImmediate(() => this.prepareHeld());
    }
    return header;
  }

  /** A reply goes back on the channel the request came in on, to the identities that sent it. */
  reply(options: { request: JupyterMessage<unknown>; channel: Channel; msgType: string; content: JsonObject; metadata?: JsonObject }): void {
    this.transport.send({
      channel: options.channel,
      identities: options.request.identities,
      header: this.header(options.msgType),
      parent_header: options.request.header,
      metadata: options.metadata ?? {},
      content: options.content,
      buffers: [],
    });
  }

  /** Sends on stdin to the client that made `request` (the execute request that allowed stdin). */
  sendStdin(options: { request: JupyterMessage<unknown>; msgType: string; content: JsonObject }): Header {
    const header = this.header(options.msgType);
    this.transport.send({
      channel: "stdin",
      identities: options.request.identities,
      header,
      parent_header: options.request.header,
      metadata: {},
      content: options.content,
      buffers: [],
    });
    return header;
  }

  status(state: "starting" | "busy" | "idle", parent: ParentHeader): void {
    this.publish({ msgType: "status", content: { execution_state: state }, parent });
  }

  /**
   * Holds IOPub messages (in order) until the hold is disposed or `ms` passes. A request answered within the
   * hold leaves as busy, outputs and idle in one burst, which the Jupyter server forwards in one websocket
   * write; published one by one, each later write waits ~40 ms for the browser's delayed ACK (REFERENCE.md
   * section 5). A slow request only delays its first output by `ms`. Direct zeromq clients pay for it: they could
   * decode busy and execute_input while the cell runs; KernelCore does not hold executes that come back to back.
   */
  hold(ms: number): Disposable {
    if (ms <= 0) return { dispose() {} };
    const timer: NodeJS.Timeout = setTimeout(() => this.release(timer), ms);
    this.holds.add(timer);
    return { dispose: () => this.release(timer) };
  }

  iopubPending(): QueueStats {
    return this.transport.pending("iopub");
  }

  iopubDrained(): Promise<void> {
    return this.transport.drained("iopub");
  }

  private release(timer: NodeJS.Timeout): void {
    if (!this.holds.delete(timer)) return;
    clearTimeout(timer);
    if (this.holds.size === 0) this.flushHeld();
  }

  /**
   * Held messages (a request's busy and execute_input) are encoded and signed after the turn that published them,
   * which for an execute is the turn that wrote the cell to the program: while the program runs, not after it
   * answered, when the rest of the request's messages wait behind them.
   */
  private prepareHeld(): void {
    this.preparing = null;
    for (const message of this.held) this.transport.prepare?.(message);
  }

  private flushHeld(): void {
    if (this.heldDeadline) clearTimeout(this.heldDeadline);
    this.heldDeadline = null;
    if (this.preparing) clearImmediate(this.preparing);
    this.preparing = null;
    const held = this.held;
    this.held = [];
    for (const message of held) this.sendIopub(message);
  }

  private sendIopub(message: OutgoingMessage): void {
    this.lastIopubSend = this.now();
    this.transport.send(message);
  }

  /** Sends whatever is held and drops the timers (the kernel is stopping). Idempotent. */
  dispose(): void {
    for (const timer of [...this.holds]) this.release(timer);
    this.flushHeld();
  }
}
