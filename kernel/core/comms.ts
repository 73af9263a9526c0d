// The seam where the comms bridge (kernel/comms, issue 3) plugs into the core.
//
// The core validates comm_open/comm_msg/comm_close content, publishes busy/idle around each with the message
// as parent, and then calls one of these methods. A method may return a promise: idle is published when it
// settles, so output published before that (through `ctx.publish`, or `io.publish` with the request as
// parent) leaves together with busy and idle. If a method throws, the error is logged and idle still follows.
// comm_info_request is answered from `info()`.

import type { CommCloseContent, CommMsgContent, CommOpenContent, JsonObject, JupyterMessage } from "../../protocol/jupyter.js";
import type { Log } from "../log.js";
import type { KernelIO } from "./io.js";

export interface CommContext<C> {
  request: JupyterMessage<C>;
  /** Publishes on iopub with `request` as the parent. */
  publish(msgType: string, content: JsonObject, buffers?: Uint8Array[]): void;
  io: KernelIO;
}

export interface Comms {
  /** Open comms, optionally only those of one target: `comm_info_reply.comms`. */
  info(targetName: string | undefined): { [commId: string]: { target_name: string } };
  open(ctx: CommContext<CommOpenContent>): void | Promise<void>;
  message(ctx: CommContext<CommMsgContent>): void | Promise<void>;
  close(ctx: CommContext<CommCloseContent>): void | Promise<void>;
  /** Called once when the kernel shuts down. */
  dispose(): void | Promise<void>;
}

/** No comm targets: every comm_open is refused with comm_close, as the protocol asks for unknown targets. */
export class NoComms implements Comms {
  constructor(private readonly log: Log) {}

  info(): { [commId: string]: { target_name: string } } {
    return {};
  }

  open(ctx: CommContext<CommOpenContent>): void {
    this.log.warn(`comm_open for unknown target ${JSON.stringify(ctx.request.content.target_name)}: closing it`);
    ctx.publish("comm_close", { comm_id: ctx.request.content.comm_id, data: {} });
  }

  message(ctx: CommContext<CommMsgContent>): void {
    this.log.warn(`comm_msg for unknown comm ${ctx.request.content.comm_id}: ignored`);
  }

  close(): void {}

  dispose(): void {}
}
