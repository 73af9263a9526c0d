// The one way anything in the kernel sends a Jupyter message: headers carry this process's session id, iopub
// messages carry their parent, and deferred `busy` statuses are always published before anything else.

import { randomUUID } from "node:crypto";
import { PROTOCOL_VERSION, type Channel, type Header, type JsonObject, type JupyterMessage } from "../../protocol/jupyter.js";
import type { Disposable } from "../disposable.js";
import type { QueueStats, Transport } from "../transport/transport.js";

export type ParentHeader = Header | Record<string, never>;

export interface PublishOptions {
  msgType: string;
  content: JsonObject;
  parent: ParentHeader;
  metadata?: JsonObject;
  buffers?: Uint8Array[];
}

export class KernelIO {
  /** A new id per kernel process: clients read a changed session as "the kernel restarted". */
  readonly session = randomUUID();
  private deferredBusy: Array<{ parent: Header; timer: NodeJS.Timeout }> = [];

  constructor(private readonly transport: Transport) {}

  header(msgType: string): Header {
    return {
      msg_id: randomUUID(),
      session: this.session,
      username: "tsnb",
      date: new Date().toISOString(),
      msg_type: msgType,
      version: PROTOCOL_VERSION,
    };
  }

  publish(options: PublishOptions): Header {
    this.flushBusy();
    const header = this.header(options.msgType);
    this.transport.send({
      channel: "iopub",
      identities: [],
      header,
      parent_header: options.parent,
      metadata: options.metadata ?? {},
      content: options.content,
      buffers: options.buffers ?? [],
    });
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
   * Publishes `busy` for `parent` at the latest after `deferMs`, or earlier as soon as anything else is
   * published. A request answered within the delay then leaves as busy, reply and idle in one burst, which
   * the Jupyter server forwards in one websocket write (REFERENCE.md section 5: split writes wait ~40 ms for
   * the browser's delayed ACK). Disposing publishes it if it is still pending.
   */
  deferBusy(parent: Header, deferMs: number): Disposable {
    if (deferMs <= 0) {
      this.status("busy", parent);
      return { dispose() {} };
    }
    const entry = { parent, timer: setTimeout(() => this.flushBusy(), deferMs) };
    this.deferredBusy.push(entry);
    return {
      dispose: () => {
        if (this.deferredBusy.includes(entry)) this.flushBusy();
      },
    };
  }

  iopubPending(): QueueStats {
    return this.transport.pending("iopub");
  }

  iopubDrained(): Promise<void> {
    return this.transport.drained("iopub");
  }

  private flushBusy(): void {
    if (this.deferredBusy.length === 0) return;
    const pending = this.deferredBusy;
    this.deferredBusy = [];
    for (const { parent, timer } of pending) {
      clearTimeout(timer);
      this.publish({ msgType: "status", content: { execution_state: "busy" }, parent });
    }
  }

  /** Cancels timers without publishing (the transport is going away). */
  dispose(): void {
    for (const { timer } of this.deferredBusy) clearTimeout(timer);
    this.deferredBusy = [];
  }
}
