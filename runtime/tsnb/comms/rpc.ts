// The program side of RPC (protocol/rpc.ts): functions the browser may call (`comms.register`) and calls
// into the browser (`comms.callFrontend`). Arguments and results may hold typed arrays anywhere; they
// travel as raw binary parts.
//
// A registered function runs in the async context of the cell that registered it, so its output lands
// under that cell; it keeps working after the cell finished, until disposed.

import { AsyncResource } from "node:async_hooks";
import type { CommRpcCallOp, CommRpcReplyOp, ProgramCommOp } from "../../../protocol/comms-ops.js";
import type { CellId } from "../../../protocol/program.js";
import { disposable, type Disposable } from "../../../protocol/disposable.js";
import { encodeReply, PendingCalls, RpcCode, RpcError, runCall, type CallOutcome } from "../../../protocol/rpc.js";
import { encodeValue } from "../../../protocol/values.js";

export type { Disposable };

/** A function the browser can call: `tsnb_comm.call(name, args, kwargs)` runs `fn(args, kwargs)`. */
export type RpcHandler = (args: any, kwargs: { [key: string]: any }) => unknown;

export interface CallFrontendOptions {
  name: string;
  args?: unknown[];
  /** "first" (default): every front-end is asked and the first answer wins; or one front-end's id (`comms.frontendIds`). */
  target?: string;
  /** Milliseconds before the call fails with RpcError code -32005 (default 30,000). */
  timeout?: number;
}

export interface RpcHost {
  send(op: ProgramCommOp, buffers: Uint8Array[]): void;
  currentCell(): CellId | null;
  /** Flushes queued values first, so a call never overtakes values sent before it. */
  flush(): void;
}

export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

export class ProgramRpc implements Disposable {
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly pending = new PendingCalls({ owner: "comms", closedReason: "the call was cancelled: comms shut down" });
  private nextId = 0;
  private disposed = false;

  constructor(private readonly host: RpcHost) {}

  register(name: string, fn: RpcHandler): Disposable {
    if (typeof name !== "string" || name === "" || name.length > 256) throw new TypeError("comms.register: the name must be a non-empty string of at most 256 characters");
    if (typeof fn !== "function") throw new TypeError("comms.register: the handler must be a function");
    if (this.handlers.has(name)) throw new Error(`comms.register: "${name}" is already registered (dispose the earlier registration first)`);
    const bound = AsyncResource.bind(fn) as RpcHandler;
    this.handlers.set(name, bound);
    // Registering is a use of comms: it makes the kernel install the browser side under this cell.
    this.host.send({ op: "comm_subscribe", cell: this.host.currentCell(), address: `#rpc/${name}` }, []);
    this.host.send({ op: "comm_unsubscribe", address: `#rpc/${name}` }, []);
    return disposable(() => {
      if (this.handlers.get(name) === bound) this.handlers.delete(name);
    });
  }

  registered(): string[] {
    return [...this.handlers.keys()];
  }

  callFrontend(options: CallFrontendOptions): Promise<unknown> {
    if (this.disposed) return Promise.reject(new RpcError({ code: RpcCode.DISCONNECTED, message: "comms are shut down" }));
    const { name } = options;
    const target = options.target ?? "first";
    const timeout = options.timeout ?? DEFAULT_CALL_TIMEOUT_MS;
    if (typeof name !== "string" || name === "") return Promise.reject(new TypeError("comms.callFrontend: the name must be a non-empty string"));
    let encoded;
    try {
      encoded = encodeValue([options.args ?? [], {}]);
    } catch (err) {
      return Promise.reject(new RpcError({ code: RpcCode.INVALID_PARAMS, message: `comms.callFrontend("${name}"): the arguments cannot be sent: ${String(err)}` }));
    }
    const id = `p${++this.nextId}`;
    const answer = this.pending.add(id, {
      label: `comms.callFrontend("${name}")`,
      timeoutMs: timeout,
      onTimeout: () => this.host.send({ op: "comm_rpc_cancel", id }, []),
      data: undefined,
    });
    this.host.flush();
    const op: CommRpcCallOp = { op: "comm_rpc_call", id, method: name, value: encoded.json, cell: this.host.currentCell(), target };
    if (encoded.buffers.length > 0) op.nbuf = encoded.buffers.length;
    this.host.send(op, encoded.buffers);
    return answer;
  }

  handleCall(op: CommRpcCallOp, buffers: Uint8Array[]): void {
    runCall({
      handler: this.handlers.get(op.method),
      notFound: () => {
        const known = [...this.handlers.keys()];
        const hint = known.length > 0 ? ` (registered: ${known.slice(0, 20).join(", ")})` : " (nothing is registered: call comms.register first)";
        return `no function "${op.method}" is registered in the program${hint}`;
      },
      value: op.value,
      buffers,
      invoke: (fn, args, kwargs) => fn(args, kwargs),
      reply: (outcome: CallOutcome) => {
        if (this.disposed) return;
        const { payload, buffers: parts } = encodeReply(outcome);
        const out: CommRpcReplyOp = { op: "comm_rpc_reply", id: op.id, ...payload };
        this.host.send(out, parts);
      },
    });
  }

  handleReply(op: CommRpcReplyOp, buffers: Uint8Array[]): void {
    this.pending.settle(op.id, op, buffers, "the front-end");
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.handlers.clear();
    this.pending.dispose();
  }
}
