// The dispatcher: one table keyed by msg_type, validation at the edge, busy/idle published here and only
// here, and a reply for every request even when its handler throws.
//
// Requests in the "immediate" lane are handled as they arrive (control stays responsive while a cell runs);
// execute requests go through the "execution" lane, one at a time, so the dispatcher never waits on a cell.

import {
  PROTOCOL_VERSION,
  replyTypeFor,
  type JsonObject,
  type JupyterMessage,
  type RequestContentByType,
  type RequestType,
} from "../../protocol/jupyter.js";
import type { Disposable } from "../../protocol/disposable.js";
import { NUDGE_MSG_TYPE } from "../../protocol/bridge.js";
import { errorMessage, type Log } from "../log.js";
import type { InboundChannel, Incoming, Transport } from "../transport/transport.js";
import { TSNB_VERSION } from "../version.js";
import type { CommContext, Comms } from "./comms.js";
import type { Execution } from "./execution.js";
import { KernelIO } from "./io.js";
import type { History } from "./history.js";
import { isComplete } from "./is-complete.js";
import { VALIDATORS } from "./validate.js";

export interface KernelCoreOptions {
  transport: Transport;
  /** Built from the KernelIO so both send through the same publisher (see createKernelCore). */
  execution: Execution;
  comms: Comms;
  history: History;
  log: Log;
  io: KernelIO;
  /** Called once the shutdown_reply and idle are queued. The caller stops the process. */
  onShutdown: (restart: boolean) => void;
  /** How long IOPub is held at the start of a request so a quick one leaves in one burst (KernelIO.hold). */
  holdMs?: number;
  /** An execute that arrives within this many ms of IOPub's last message is not held (see run()). */
  backToBackMs?: number;
}

interface HandlerContext<T extends RequestType> {
  request: JupyterMessage<RequestContentByType[T]>;
  channel: InboundChannel;
  publish(msgType: string, content: JsonObject, buffers?: Uint8Array[]): void;
}

interface Entry<T extends RequestType> {
  lane: "immediate" | "execution";
  /** Reply content; null for comm messages, which have no reply. */
  handle(ctx: HandlerContext<T>): JsonObject | null | Promise<JsonObject | null>;
}

type DispatchTable = { readonly [T in RequestType]: Entry<T> };

interface Queued {
  channel: InboundChannel;
  message: JupyterMessage<RequestContentByType["execute_request"]>;
  aborted: boolean;
}

export const KERNEL_INFO: JsonObject = {
  status: "ok",
  protocol_version: PROTOCOL_VERSION,
  implementation: "tsnb",
  implementation_version: TSNB_VERSION,
  language_info: {
    name: "typescript",
    version: "5",
    mimetype: "text/typescript",
    file_extension: ".ts",
    pygments_lexer: "typescript",
    codemirror_mode: { name: "javascript", typescript: true },
    nbconvert_exporter: "script",
  },
  banner: `tsnb ${TSNB_VERSION}: TypeScript on Node.js ${process.version}. display(), input() and clearOutput() are globals.`,
  help_links: [
    { text: "TypeScript handbook", url: "https://www.typescriptlang.org/docs/handbook/intro.html" },
    { text: "Node.js API", url: "https://nodejs.org/api/" },
  ],
};

export class KernelCore {
  private readonly table: DispatchTable;
  private readonly io: KernelIO;
  private readonly log: Log;
  private readonly holdMs: number;
  private readonly backToBackMs: number;
  private executionQueue: Queued[] = [];
  private executing = false;
  private subscription: Disposable | null = null;
  private shuttingDown = false;

  constructor(private readonly options: KernelCoreOptions) {
    this.io = options.io;
    this.log = options.log;
    this.holdMs = options.holdMs ?? 10;
    this.backToBackMs = options.backToBackMs ?? 5;
    const { execution, comms } = options;
    const commContext = <C>(ctx: HandlerContext<RequestType> & { request: JupyterMessage<C> }): CommContext<C> => ({
      request: ctx.request,
      publish: ctx.publish,
      io: this.io,
    });
    this.table = {
      kernel_info_request: { lane: "immediate", handle: () => KERNEL_INFO },
      execute_request: {
        lane: "execution",
        handle: (ctx) => execution.execute({ request: ctx.request, publish: (t, c) => ctx.publish(t, c) }),
      },
      complete_request: { lane: "immediate", handle: (ctx) => execution.complete(ctx.request.content) },
      inspect_request: { lane: "immediate", handle: (ctx) => execution.inspect(ctx.request.content) },
      is_complete_request: { lane: "immediate", handle: (ctx) => ({ ...isComplete(ctx.request.content.code) }) },
      history_request: {
        lane: "immediate",
        handle: (ctx) => ({ status: "ok", history: options.history.query(ctx.request.content) }),
      },
      comm_info_request: {
        lane: "immediate",
        handle: (ctx) => ({ status: "ok", comms: comms.info(ctx.request.content.target_name) }),
      },
      comm_open: { lane: "immediate", handle: async (ctx) => (await comms.open(commContext(ctx)), null) },
      comm_msg: { lane: "immediate", handle: async (ctx) => (await comms.message(commContext(ctx)), null) },
      comm_close: { lane: "immediate", handle: async (ctx) => (await comms.close(commContext(ctx)), null) },
      shutdown_request: {
        lane: "immediate",
        handle: (ctx) => {
          this.shuttingDown = true;
          return { status: "ok", restart: ctx.request.content.restart };
        },
      },
      interrupt_request: {
        lane: "immediate",
        handle: () => {
          execution.interrupt();
          return { status: "ok" };
        },
      },
    };
  }

  /** Publishes `starting` and begins handling messages. */
  start(): void {
    if (this.subscription) return;
    this.io.status("starting", {});
    this.subscription = this.options.transport.onMessage((incoming) => this.dispatch(incoming));
  }

  stop(): void {
    this.subscription?.dispose();
    this.subscription = null;
  }

  private dispatch({ channel, message }: Incoming): void {
    const msgType = message.header.msg_type;
    if (channel === "stdin") {
      // The comms shim's latency nudge (frontend-shim/index.ts) only exists to carry a TCP ACK: an input_reply
      // whose parent is marked tsnb_nudge (sent with @jupyterlab/services' public sendInputReply), or a bare
      // tsnb_nudge message (classic Notebook pages). Dropped before input handling, so it never answers a prompt.
      if (msgType === NUDGE_MSG_TYPE || (msgType === "input_reply" && (message.parent_header as { msg_type?: unknown }).msg_type === NUDGE_MSG_TYPE)) return;
      if (msgType === "input_reply") this.options.execution.inputReply(message);
      else this.log.warn(`ignored ${msgType} on stdin (only input_reply is expected there)`);
      return;
    }
    if (!isRequestType(msgType)) {
      this.log.warn(`unknown message type ${JSON.stringify(msgType)} on ${channel}`);
      const replyType = replyTypeFor(msgType);
      void this.run(message, channel, replyType, () =>
        replyType === null ? null : errorReply("UnknownMessageType", `tsnb does not handle "${msgType}" messages`),
      );
      return;
    }
    this.dispatchKnown(msgType, channel, message);
  }

  private dispatchKnown<T extends RequestType>(msgType: T, channel: InboundChannel, raw: JupyterMessage): void {
    const replyType = replyTypeFor(msgType);
    const validated = VALIDATORS[msgType](raw.content);
    if (!validated.ok) {
      const evalue = `invalid ${msgType}: ${validated.error}`;
      this.log.warn(evalue);
      void this.run(raw, channel, replyType, (publish) => {
        // comm_open has no reply; refusing the comm is how its sender learns it failed.
        if (msgType === "comm_open" && typeof raw.content.comm_id === "string") {
          publish("comm_close", { comm_id: raw.content.comm_id, data: {} });
        }
        return replyType === null ? null : errorReply("InvalidRequest", evalue);
      });
      return;
    }
    const message = { ...raw, content: validated.value } as JupyterMessage<RequestContentByType[T]>;
    const entry = this.table[msgType] as Entry<T>;
    if (this.shuttingDown && msgType !== "shutdown_request") {
      this.log.warn(`${msgType} arrived during shutdown: answered with an error`);
      void this.run(raw, channel, replyType, () => (replyType === null ? null : errorReply("KernelShuttingDown", "the kernel is shutting down")));
      return;
    }
    switch (entry.lane) {
      case "immediate":
        void this.run(message, channel, replyType, (publish) => entry.handle({ request: message, channel, publish })).then(() => {
          if (msgType === "shutdown_request") {
            this.options.onShutdown((message.content as RequestContentByType["shutdown_request"]).restart);
          }
        });
        return;
      case "execution":
        this.executionQueue.push({ channel, message: message as Queued["message"], aborted: false });
        void this.pumpExecution();
        return;
      default: {
        const unreachable: never = entry.lane;
        throw new Error(`unknown lane ${String(unreachable)}`);
      }
    }
  }

  private async pumpExecution(): Promise<void> {
    if (this.executing) return;
    this.executing = true;
    try {
      for (let next = this.executionQueue.shift(); next; next = this.executionQueue.shift()) {
        const item = next;
        const entry = this.table.execute_request;
        const reply = await this.run(item.message, item.channel, "execute_reply", (publish) =>
          item.aborted ? { status: "aborted" } : entry.handle({ request: item.message, channel: item.channel, publish }),
        );
        const { silent, stop_on_error, store_history, code } = item.message.content;
        if (store_history && !silent && !item.aborted && typeof reply?.execution_count === "number") {
          this.options.history.record(reply.execution_count, code);
        }
        if (reply?.status === "error" && stop_on_error && !silent) {
          // Only what was queued behind the failing cell is aborted; later requests run normally.
          for (const queued of this.executionQueue) queued.aborted = true;
        }
      }
    } finally {
      this.executing = false;
    }
  }

  /**
   * The one place busy/idle are published: busy (deferred briefly), the handler, the reply (an error reply if
   * the handler threw), then idle. Returns the reply content.
   */
  private async run(
    request: JupyterMessage<unknown>,
    channel: InboundChannel,
    replyType: string | null,
    handler: (publish: HandlerContext<RequestType>["publish"]) => JsonObject | null | Promise<JsonObject | null>,
  ): Promise<JsonObject | null> {
    const parent = request.header;
    // The hold makes a quick request's messages reach the Notebook server together, which spares a browser the
    // ~40 ms delayed-ACK stall when its executes come at any pace (bench/exec-browser.mjs: 10 ms with it, 17-48
    // without). An execute that arrives back to back with IOPub traffic (within backToBackMs of its last message:
    // a client that sends the next cell as soon as it has the previous idle, nbclient, a queue of cells) gains
    // nothing from it in a browser, which then stalls either way (48 ms with and without), and a direct zeromq
    // client loses the chance to decode busy and execute_input while the cell runs (~0.3 ms of a 2-3 ms round trip).
    const backToBack = request.header.msg_type === "execute_request" && this.io.iopubQuietMs() < this.backToBackMs;
    const hold = this.io.hold(backToBack ? 0 : this.holdMs);
    this.io.status("busy", parent);
    const publish = (msgType: string, content: JsonObject, buffers?: Uint8Array[]) => {
      this.io.publish({ msgType, content, parent, ...(buffers ? { buffers } : {}) });
    };
    let content: JsonObject | null;
    try {
      content = await handler(publish);
    } catch (err) {
      this.log.error(`${request.header.msg_type} handler failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      content = replyType === null ? null : errorReply(err instanceof Error ? err.name : "Error", errorMessage(err));
    }
    // Outputs go out before the reply: clients that stop listening at the reply still see them.
    hold.dispose();
    if (replyType !== null) {
      this.io.reply({ request, channel, msgType: replyType, content: content ?? { status: "ok" } });
    }
    this.io.status("idle", parent);
    return content;
  }
}

function isRequestType(msgType: string): msgType is RequestType {
  return Object.prototype.hasOwnProperty.call(VALIDATORS, msgType);
}

export function errorReply(ename: string, evalue: string, traceback: string[] = []): JsonObject {
  return { status: "error", ename, evalue, traceback };
}
