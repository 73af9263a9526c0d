// The program side of RPC (protocol/rpc.ts): functions the browser may call (`comms.register`) and calls
// into the browser (`comms.callFrontend`). Arguments and results may hold typed arrays anywhere; they
// travel as raw binary parts.
//
// A registered function runs in the async context of the cell that registered it, so its output lands
// under that cell; it keeps working after the cell finished, until disposed.

import { AsyncResource } from "node:async_hooks";
import type { CommRpcCallOp, CommRpcReplyOp, ProgramCommOp } from "../../../protocol/comms-ops.js";
import type { CellId } from "../../../protocol/program.js";
import { errorInfo, RpcCode, RpcError, splitParams, type RpcErrorInfo } from "../../../protocol/rpc.js";
import { decodeValue, encodeValue } from "../../../protocol/values.js";

export interface Disposable {
  dispose(): void;
}

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

interface PendingCall {
  resolve(value: unknown): void;
  reject(error: RpcError): void;
  timer: NodeJS.Timeout;
}

export class ProgramRpc implements Disposable {
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly pending = new Map<string, PendingCall>();
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
    let done = false;
    return {
      dispose: () => {
        if (done) return;
        done = true;
        if (this.handlers.get(name) === bound) this.handlers.delete(name);
      },
    };
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
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        this.host.send({ op: "comm_rpc_cancel", id }, []);
        reject(new RpcError({ code: RpcCode.TIMEOUT, message: `comms.callFrontend("${name}") got no answer within ${timeout} ms` }));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      this.host.flush();
      const op: CommRpcCallOp = { op: "comm_rpc_call", id, method: name, value: encoded.json, cell: this.host.currentCell(), target };
      if (encoded.buffers.length > 0) op.nbuf = encoded.buffers.length;
      this.host.send(op, encoded.buffers);
    });
  }

  handleCall(op: CommRpcCallOp, buffers: Uint8Array[]): void {
    const reply = (outcome: { value: unknown } | { error: RpcErrorInfo }) => {
      if (this.disposed) return;
      if ("error" in outcome) {
        this.host.send({ op: "comm_rpc_reply", id: op.id, error: outcome.error }, []);
        return;
      }
      let encoded;
      try {
        encoded = encodeValue(outcome.value === undefined ? null : outcome.value);
      } catch (err) {
        this.host.send({ op: "comm_rpc_reply", id: op.id, error: errorInfo(RpcCode.RESULT_NOT_SERIALIZABLE, err) }, []);
        return;
      }
      const out: CommRpcReplyOp = { op: "comm_rpc_reply", id: op.id, value: encoded.json };
      if (encoded.buffers.length > 0) out.nbuf = encoded.buffers.length;
      this.host.send(out, encoded.buffers);
    };
    const fn = this.handlers.get(op.method);
    if (!fn) {
      const known = [...this.handlers.keys()];
      const hint = known.length > 0 ? ` (registered: ${known.slice(0, 20).join(", ")})` : " (nothing is registered: call comms.register first)";
      reply({ error: { code: RpcCode.METHOD_NOT_FOUND, message: `no function "${op.method}" is registered in the program${hint}` } });
      return;
    }
    let params;
    try {
      params = splitParams(decodeValue(op.value, buffers));
    } catch (err) {
      params = `the arguments could not be decoded: ${String(err)}`;
    }
    if (typeof params === "string") {
      reply({ error: { code: RpcCode.INVALID_PARAMS, message: params } });
      return;
    }
    let result: unknown;
    try {
      result = fn(params.args, params.kwargs);
    } catch (err) {
      reply({ error: errorInfo(RpcCode.EXCEPTION, err) });
      return;
    }
    Promise.resolve(result).then(
      (value) => reply({ value }),
      (err: unknown) => reply({ error: errorInfo(RpcCode.EXCEPTION, err) }),
    );
  }

  handleReply(op: CommRpcReplyOp, buffers: Uint8Array[]): void {
    const call = this.pending.get(op.id);
    if (!call) return;
    this.pending.delete(op.id);
    clearTimeout(call.timer);
    if (op.error) {
      call.reject(new RpcError(op.error));
      return;
    }
    try {
      call.resolve(decodeValue(op.value ?? null, buffers));
    } catch (err) {
      call.reject(new RpcError({ code: RpcCode.INVALID_PARAMS, message: `the front-end's result could not be decoded: ${String(err)}` }));
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.handlers.clear();
    for (const [id, call] of [...this.pending]) {
      this.pending.delete(id);
      clearTimeout(call.timer);
      call.reject(new RpcError({ code: RpcCode.DISCONNECTED, message: "the call was cancelled: comms shut down" }));
    }
  }
}
