// The browser shim (bundled to dist/shim.js as an iife): defines `tsnbShimBoot(config)`, which the kernel's
// injected output calls with the kernel id. It connects to that kernel through @jupyterlab/services with
// the page's own base URL, websocket scheme and token, opens the `tsnb_comm` comm and publishes the
// global `tsnb_comm`. Running it again leaves one live object (it only re-checks the connection).

import { KernelManager, KernelMessage, ServerConnection } from "@jupyterlab/services";
import type { Kernel } from "@jupyterlab/services";
import { BRIDGE_COMM_ID_PREFIX, BRIDGE_TARGET, NUDGE_MSG_TYPE, NUDGE_PARENT } from "../protocol/bridge.js";
import { randomId, TsnbComm, type CommOpener, type CommPort } from "./client.js";
import { LegacyProtocolWebSocket } from "./websocket.js";
// Widget views (issue 4): they mount on widget outputs once this shim runs.
import "./widgets/index.js";

export interface BootConfig {
  kernelId: string;
  /** Overrides for pages whose settings cannot be discovered (tests, embedding). */
  baseUrl?: string;
  wsUrl?: string;
  token?: string;
  log?: boolean;
}

interface PageSettings {
  baseUrl: string;
  wsUrl: string;
  token: string;
}

/** The server's base URL, websocket URL and token as this page knows them. */
export function discoverSettings(config: BootConfig, doc: Document = document, loc: Location = location): PageSettings {
  let baseUrl: string | undefined;
  let wsUrl: string | undefined;
  let token = "";
  // JupyterLab, Notebook 7 and other lab-based pages.
  const el = doc.getElementById("jupyter-config-data");
  if (el?.textContent) {
    try {
      const data = JSON.parse(el.textContent) as { baseUrl?: string; wsUrl?: string; token?: string };
      baseUrl = data.baseUrl;
      wsUrl = data.wsUrl || undefined;
      token = data.token ?? "";
    } catch (err) {
      console.warn("tsnb_comm: unreadable jupyter-config-data", err);
    }
  }
  // Classic Notebook 6 (also JupyterHub single-user servers running it).
  if (baseUrl === undefined) baseUrl = doc.body?.dataset.baseUrl;
  baseUrl = config.baseUrl ?? baseUrl ?? "/";
  const absolute = new URL(baseUrl, loc.href);
  if (!absolute.pathname.endsWith("/")) absolute.pathname += "/";
  const http = absolute.href;
  const scheme = absolute.protocol === "https:" ? "wss:" : "ws:";
  const ws = config.wsUrl ?? (wsUrl ? new URL(wsUrl, loc.href).href.replace(/^http/, "ws") : `${scheme}//${absolute.host}${absolute.pathname}`);
  if (!token) token = new URLSearchParams(loc.search).get("token") ?? "";
  return { baseUrl: http, wsUrl: ws, token: config.token ?? token };
}

/** Exact-size copy when a view covers part of its buffer: the serializer sends `view.buffer` whole. */
function exact(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice();
}

function bytes(view: ArrayBuffer | ArrayBufferView): Uint8Array {
  return view instanceof ArrayBuffer ? new Uint8Array(view) : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Most of our own requests whose busy/idle are still expected; older ones are forgotten. */
const MAX_TRACKED_REQUESTS = 1000;

/**
 * Latency: the Jupyter server writes each IOPub message to the websocket as it comes, without
 * TCP_NODELAY, so after it wrote the `busy` of one of our messages, the kernel's answer waits for the
 * browser's delayed ACK (~40 ms). A tiny message back to the server carries that ACK at once. The nudge
 * goes on the stdin channel, which the tsnb kernel reads without publishing anything (no busy/idle, so
 * it cannot start the same stall again). The only public way @jupyterlab/services offers to send on stdin
 * is `sendInputReply`; the nudge is an input_reply whose parent is marked `tsnb_nudge`, which the kernel
 * drops before input handling, so it can never answer a real input() prompt.
 */
function nudgeOnStatus(kernel: Kernel.IKernelConnection, ours: Set<string>): void {
  kernel.iopubMessage.connect((_, msg) => {
    if (msg.header.msg_type !== "status") return;
    const parentId = (msg.parent_header as { msg_id?: string }).msg_id;
    if (parentId === undefined || !ours.has(parentId)) return;
    if ((msg.content as { execution_state?: string }).execution_state === "idle") ours.delete(parentId);
    try {
      kernel.sendInputReply({ status: "ok", value: "" }, NUDGE_PARENT as unknown as KernelMessage.IInputReplyMsg["parent_header"]);
    } catch (err) {
      console.debug("tsnb_comm: nudge failed", err);
    }
  });
}

// ---- Notebook 6's own connection -----------------------------------------------------------------------

/** What the shim uses of a classic Notebook 6 page's kernel object (notebook/static/services/kernels). */
interface ClassicMessage {
  content: { data?: unknown };
  buffers?: (ArrayBuffer | ArrayBufferView)[];
}
interface ClassicComm {
  on_msg(callback: (msg: ClassicMessage) => void): void;
  on_close(callback: (msg: ClassicMessage) => void): void;
  send(data: unknown, callbacks?: unknown, metadata?: unknown, buffers?: ArrayBufferView[]): string;
  close(): string;
}
interface ClassicIopubMessage {
  content?: { comm_id?: unknown };
}
type ClassicIopubHandler = (msg: ClassicIopubMessage) => unknown;
interface ClassicKernel {
  id: string;
  ws?: WebSocket | null;
  comm_manager: {
    new_comm(target: string, data: unknown, callbacks?: unknown, metadata?: unknown, commId?: string): ClassicComm;
    unregister_comm?(comm: ClassicComm): void;
    /** Every comm this page knows, by id (Notebook 6 keeps promises of comms). */
    comms?: Record<string, unknown>;
  };
  get_iopub_handler?(msgType: string): ClassicIopubHandler | undefined;
  register_iopub_handler?(msgType: string, handler: ClassicIopubHandler): void;
  events: { on(event: string, handler: () => void): void; off(event: string, handler: () => void): void };
  _get_msg?(msgType: string, content: unknown): Record<string, unknown>;
}

/**
 * The page's own kernel connection, when this is a classic Notebook 6 page connected to our kernel. Using it
 * instead of a second connection halves what the server and the page do: the server sends every IOPub message
 * to every websocket of a kernel, so with two connections each value (and each busy/idle) crossed the server,
 * the wire and the page's main thread twice. With 100 MB going to the browser that second copy was most of
 * the time (bench/comms.mjs).
 */
function classicKernel(config: BootConfig): ClassicKernel | null {
  if (config.wsUrl !== undefined || config.baseUrl !== undefined) return null; // told to connect elsewhere
  const k = pageClassicKernel();
  if (!k || k.id !== config.kernelId) return null;
  if (typeof k.comm_manager?.new_comm !== "function" || typeof k.events?.on !== "function") return null;
  return k as ClassicKernel;
}

/** A new comm id for this page's bridge comm. */
function newCommId(): string {
  return `${BRIDGE_COMM_ID_PREFIX}${randomId()}`;
}

/** Marks a Notebook 6 kernel object whose comm handlers already ignore other pages' bridge comms (on the page's object, so a re-injected shim sees it). */
const FOREIGN_COMMS_IGNORED = Symbol.for("tsnb.foreignCommsIgnored");

/**
 * The server sends every IOPub message to every connection of a kernel, so a classic page also receives
 * the comm_msg and comm_close of tsnb comms it does not hold: another tab's, a JupyterLab page's, its own
 * services connection's, or its own comm in the moment after closing it. Notebook 6's CommManager logs
 * "Comm promise not found" for each of them. Those messages are not for this page: drop them before the
 * CommManager looks. Messages of every other comm (ours included) still go to it unchanged.
 */
function ignoreForeignBridgeComms(kernel: ClassicKernel): void {
  const marked = kernel as ClassicKernel & { [FOREIGN_COMMS_IGNORED]?: true };
  if (marked[FOREIGN_COMMS_IGNORED] || typeof kernel.get_iopub_handler !== "function" || typeof kernel.register_iopub_handler !== "function") return;
  for (const msgType of ["comm_msg", "comm_close"]) {
    const original = kernel.get_iopub_handler(msgType);
    if (typeof original !== "function") continue;
    kernel.register_iopub_handler(msgType, (msg) => {
      const id = msg.content?.comm_id;
      const known = kernel.comm_manager.comms;
      if (typeof id === "string" && id.startsWith(BRIDGE_COMM_ID_PREFIX) && known !== undefined && known[id] === undefined) return undefined;
      return original(msg);
    });
  }
  marked[FOREIGN_COMMS_IGNORED] = true;
}

/** Notebook 6's kernel object in this page, whichever kernel it is connected to. */
function pageClassicKernel(): Partial<ClassicKernel> | null {
  const k = (globalThis as { Jupyter?: { notebook?: { kernel?: unknown } } }).Jupyter?.notebook?.kernel;
  return k !== null && typeof k === "object" ? (k as Partial<ClassicKernel>) : null;
}

/**
 * Notebook 6 leaves its websocket's binaryType at "blob": Chromium then parks every binary message in the
 * browser process's blob storage and Notebook reads it back with a FileReader, an extra trip and copy of every
 * byte the kernel sends (a raw Chromium websocket test: a 100 MB message cost ~0.9 s more renderer CPU as a
 * Blob). Notebook's deserializer takes ArrayBuffers as they are. A reconnect makes a new websocket, so it is
 * set again then.
 */
function preferArrayBuffers(kernel: ClassicKernel): void {
  const set = (): void => {
    if (kernel.ws && kernel.ws.binaryType !== "arraybuffer") kernel.ws.binaryType = "arraybuffer";
  };
  set();
  kernel.events.on("kernel_connected.Kernel", set);
}

/** Binary data from which a message to a classic page's kernel skips Notebook's serializer (sendDirect). */
const DIRECT_SEND_BYTES = 1024 * 1024;

/**
 * Sends a comm_msg on Notebook 6's websocket in Notebook's own binary message format, copying each binary part
 * once, straight from the value's memory into the message. Notebook's comm.send copied each part twice: the
 * exact-size copy its serializer needs (it sends a view's whole buffer) and its serializer's own (100 MB up: ~150 ms
 * of the page's thread, sampled). Only for large messages (chunks of a big value or call): they need none of the
 * reply callbacks comm.send registers. False when it cannot (no open websocket), and the caller uses comm.send.
 */
function sendDirect(kernel: ClassicKernel, commId: string, data: unknown, buffers: readonly Uint8Array[]): boolean {
  const ws = kernel.ws;
  if (typeof kernel._get_msg !== "function" || !ws || ws.readyState !== 1) return false;
  const msg = kernel._get_msg("comm_msg", { comm_id: commId, data });
  msg.channel = "shell";
  delete msg.buffers;
  const json = new TextEncoder().encode(JSON.stringify(msg));
  // Notebook's layout (notebook/static/services/kernels/serialize.js): a count, the offsets, then the parts.
  const parts: Uint8Array[] = [json, ...buffers];
  const offsets: number[] = [];
  let at = 4 * (parts.length + 1);
  for (const p of parts) {
    offsets.push(at);
    at += p.byteLength;
  }
  const out = new Uint8Array(at);
  const view = new DataView(out.buffer);
  view.setUint32(0, parts.length);
  offsets.forEach((offset, i) => view.setUint32(4 * (i + 1), offset));
  parts.forEach((p, i) => out.set(p, offsets[i]));
  ws.send(out.buffer);
  return true;
}

function makeClassicOpener(kernel: ClassicKernel): CommOpener {
  // Same reason as nudgeOnStatus: the server's Nagle-held write of the answer goes out when the page's
  // tiny stdin message carries the ACK. On the page's own websocket, because that is where the answer waits.
  const nudge = (): void => {
    const ws = kernel.ws;
    if (typeof kernel._get_msg !== "function" || !ws || ws.readyState !== 1) return;
    const msg = kernel._get_msg(NUDGE_MSG_TYPE, {});
    msg.channel = "stdin";
    try {
      ws.send(JSON.stringify(msg));
    } catch (err) {
      console.debug("tsnb_comm: nudge failed", err);
    }
  };
  const callbacks = { iopub: { status: nudge } };
  preferArrayBuffers(kernel);
  return async (openData, handlers) => {
    let closed = false;
    const onClosed = (reason: string): void => {
      if (closed) return;
      closed = true;
      kernel.events.off("kernel_restarting.Kernel", onRestart);
      handlers.onClose(reason);
    };
    // A restarted kernel forgets every comm: reopen ours.
    const onRestart = (): void => onClosed("the kernel restarted");
    kernel.events.on("kernel_restarting.Kernel", onRestart);
    const commId = newCommId();
    const comm = kernel.comm_manager.new_comm(BRIDGE_TARGET, openData, undefined, undefined, commId);
    comm.on_msg((msg) => handlers.onMessage(msg.content.data, (msg.buffers ?? []).map(bytes)));
    comm.on_close((msg) => {
      const reason = (msg.content.data as { reason?: unknown } | undefined)?.reason;
      onClosed(typeof reason === "string" ? reason : "closed by the kernel");
    });
    return {
      send: (data, buffers) => {
        if (closed) return;
        if (buffers.reduce((n, b) => n + b.byteLength, 0) >= DIRECT_SEND_BYTES && sendDirect(kernel, commId, data, buffers)) return;
        // Notebook 6's serializer also sends a view's whole underlying buffer.
        comm.send(data, callbacks, {}, buffers.map(exact));
      },
      close: () => {
        if (closed) return;
        closed = true;
        kernel.events.off("kernel_restarting.Kernel", onRestart);
        try {
          comm.close();
          kernel.comm_manager.unregister_comm?.(comm);
        } catch (err) {
          console.warn("tsnb_comm: closing the comm failed", err);
        }
      },
    };
  };
}

function makeOpener(config: BootConfig): CommOpener {
  const classic = classicKernel(config);
  if (classic !== null) return makeClassicOpener(classic);
  return makeServicesOpener(config);
}

function makeServicesOpener(config: BootConfig): CommOpener {
  let kernel: Kernel.IKernelConnection | null = null;
  const restartListeners: (() => void)[] = [];
  const ours = new Set<string>();
  const connection = (): Kernel.IKernelConnection => {
    if (kernel && !kernel.isDisposed) return kernel;
    const settings = discoverSettings(config);
    const serverSettings = ServerConnection.makeSettings({
      baseUrl: settings.baseUrl,
      wsUrl: settings.wsUrl,
      token: settings.token,
      appendToken: settings.token !== "",
      WebSocket: LegacyProtocolWebSocket,
    });
    const manager = new KernelManager({ serverSettings });
    kernel = manager.connectTo({ model: { id: config.kernelId, name: "" }, handleComms: true, commsOverSubshells: "disabled" as never });
    nudgeOnStatus(kernel, ours);
    const restarted = () => {
      for (const l of [...restartListeners]) l();
    };
    kernel.statusChanged.connect((_, status) => {
      // A restarted kernel forgets every comm: reopen ours.
      if (status === "restarting" || status === "autorestarting") restarted();
    });
    // A restart another client asked for (JupyterLab's restart button is another connection than this one)
    // reaches this connection as no status at all: the server keeps its websocket open and the new kernel
    // just starts publishing. Every kernel process signs its messages with a session of its own, so a new
    // session is the restart. Only the kernel's own busy/idle/starting count: the server signs what it
    // publishes itself (its rate-limit warnings, "restarting", "dead") with its own session. The new kernel's
    // first messages can be lost while the server's IOPub subscription reconnects to the new process; then
    // TsnbComm's idle probe (client.ts) is what finds the restart.
    let kernelSession: string | null = null;
    kernel.iopubMessage.connect((_, msg) => {
      if (msg.header.msg_type !== "status") return;
      const state = (msg.content as { execution_state?: string }).execution_state;
      if (state !== "busy" && state !== "idle" && state !== "starting") return;
      const session = msg.header.session;
      if (kernelSession !== null && session !== kernelSession) restarted();
      kernelSession = session;
    });
    return kernel;
  };
  return async (openData, handlers) => {
    const k = connection();
    const comm = k.createComm(BRIDGE_TARGET, newCommId());
    let closed = false;
    const onClosed = (reason: string) => {
      if (closed) return;
      closed = true;
      const i = restartListeners.indexOf(restartListener);
      if (i >= 0) restartListeners.splice(i, 1);
      handlers.onClose(reason);
    };
    const restartListener = () => {
      onClosed("the kernel restarted");
      if (!comm.isDisposed) comm.dispose();
    };
    restartListeners.push(restartListener);
    comm.onMsg = (msg) => {
      const buffers = (msg.buffers ?? []).map((b) => bytes(b as ArrayBuffer | ArrayBufferView));
      handlers.onMessage(msg.content.data, buffers);
    };
    comm.onClose = (msg) => {
      const reason = (msg.content.data as { reason?: unknown } | undefined)?.reason;
      onClosed(typeof reason === "string" ? reason : "closed by the kernel");
    };
    comm.open(openData);
    const port: CommPort = {
      send: (data, buffers) => {
        if (comm.isDisposed) return;
        const future = comm.send(data, undefined, buffers.map(exact));
        ours.add(future.msg.header.msg_id);
        if (ours.size > MAX_TRACKED_REQUESTS) ours.delete(ours.values().next().value as string);
      },
      close: () => {
        closed = true;
        if (!comm.isDisposed) {
          try {
            comm.close();
          } catch (err) {
            console.warn("tsnb_comm: closing the comm failed", err);
          }
        }
      },
    };
    return port;
  };
}

type Global = typeof globalThis & {
  tsnb_comm?: TsnbComm;
  tsnbShimBoot?: (config: BootConfig) => TsnbComm;
};

function boot(config: BootConfig): TsnbComm {
  const g = globalThis as Global;
  const existing = g.tsnb_comm;
  if (existing instanceof Object && existing.kernelId === config.kernelId && existing.status !== "closed") {
    // Injected again: the kernel found no live shim. Nudge the connection; if the kernel no longer knows
    // our comm, it answers with comm_close and the client reopens.
    existing.probe();
    return existing;
  }
  existing?.close?.();
  const classic = pageClassicKernel();
  if (classic?.comm_manager !== undefined && classic.id === config.kernelId) ignoreForeignBridgeComms(classic as ClassicKernel);
  // A page going away says so, so the kernel does not wait for the heartbeat to find the comm dead
  // (a reloaded page gets a fresh shim on its next use of comms).
  const onPageHide = () => {
    if (g.tsnb_comm === comm) comm.close();
  };
  const log = config.log ? (m: string) => console.info(`tsnb_comm: ${m}`) : (m: string) => console.debug(`tsnb_comm: ${m}`);
  const comm = new TsnbComm({ kernelId: config.kernelId, open: makeOpener(config), log });
  g.tsnb_comm = comm;
  if (typeof addEventListener === "function") addEventListener("pagehide", onPageHide, { once: true });
  return comm;
}

(globalThis as Global).tsnbShimBoot = boot;
