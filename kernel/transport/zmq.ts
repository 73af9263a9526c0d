// Real zeromq sockets bound from a connection file: shell/control/stdin ROUTER, iopub PUB, heartbeat REP.

import { createRequire } from "node:module";
import type * as Zmq from "zeromq";

// zeromq is CommonJS: required, not imported, because Node's ESM loader would first run its cjs-module-lexer
// over the package to find the named exports (0.5 MB RSS for the kernel's whole life).
const zmq = createRequire(import.meta.url)("zeromq") as typeof Zmq;
import type { Channel, OutgoingMessage } from "../../protocol/jupyter.js";
import { encodeWireFrames, type Signer, type WireFrame } from "../../protocol/wire.js";
import type { Disposable } from "../../protocol/disposable.js";
import type { Log } from "../log.js";
import type { ConnectionInfo } from "./connection.js";
import { SendQueue } from "./send-queue.js";
import { HmacSigner } from "./signer.js";
import { decodeInbound, InboundQueue, type Incoming, type InboundChannel, type QueueStats, type Transport } from "./transport.js";

/** Messages zeromq may queue per IOPub subscriber before sends wait (stream messages are up to 256 KiB). */
const IOPUB_HIGH_WATER_MARK = 32;

export interface ZmqTransportOptions {
  connection: ConnectionInfo;
  log: Log;
}

export class ZmqTransport implements Transport {
  private readonly inbound: InboundQueue;
  private readonly queues: Record<Channel, SendQueue>;
  /** Frames of messages prepared ahead of their send (Transport.prepare). */
  private readonly prepared = new WeakMap<OutgoingMessage, WireFrame[]>();
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly sockets: {
      shell: Zmq.Router;
      control: Zmq.Router;
      stdin: Zmq.Router;
      iopub: Zmq.XPublisher;
      hb: Zmq.Reply;
    },
    private readonly signer: Signer,
    private readonly log: Log,
  ) {
    this.inbound = new InboundQueue(log);
    const queue = (name: Channel, socket: Zmq.Router | Zmq.XPublisher) =>
      new SendQueue({
        name,
        send: (frames) => socket.send(frames),
        log,
        // XPUB with noDrop reports a full subscriber as EAGAIN (its "writable" poll is always true).
        isFull: (err) => (err as { code?: string }).code === "EAGAIN",
      });
    this.queues = {
      shell: queue("shell", sockets.shell),
      control: queue("control", sockets.control),
      stdin: queue("stdin", sockets.stdin),
      iopub: queue("iopub", sockets.iopub),
    };
  }

  static async bind(options: ZmqTransportOptions): Promise<ZmqTransport> {
    const { connection, log } = options;
    // A peer that sends a single frame over this size is disconnected by zeromq before the kernel buffers
    // it: front-ends chunk big values far below it (the Jupyter server's websocket limit is 10 MiB).
    const inbound = { linger: 1000, maxMessageSize: 256 * 1024 * 1024, sendTimeout: 0 };
    const sockets = {
      shell: new zmq.Router(inbound),
      control: new zmq.Router(inbound),
      stdin: new zmq.Router(inbound),
      // A plain PUB socket drops messages over its high-water mark (losing `idle` leaves a cell busy forever)
      // or, without a mark, buffers without limit. XPUB with noDrop makes a full subscriber block the send
      // instead: the send queue grows, the execution layer stops reading the program, and the program's
      // writes block. Output is delayed, never lost, and kernel memory stays bounded.
      iopub: new zmq.XPublisher({ linger: 1000, noDrop: true, sendHighWaterMark: IOPUB_HIGH_WATER_MARK, sendTimeout: 0 }),
      hb: new zmq.Reply({ linger: 0 }),
    };
    const address = (port: number) => `tcp://${connection.ip}:${port}`;
    try {
      await Promise.all([
        sockets.shell.bind(address(connection.shell_port)),
        sockets.control.bind(address(connection.control_port)),
        sockets.stdin.bind(address(connection.stdin_port)),
        sockets.iopub.bind(address(connection.iopub_port)),
        sockets.hb.bind(address(connection.hb_port)),
      ]);
    } catch (err) {
      for (const s of Object.values(sockets)) s.close();
      throw err;
    }
    const transport = new ZmqTransport(sockets, new HmacSigner(connection.key), log);
    transport.startReceiving();
    return transport;
  }

  onMessage(handler: (incoming: Incoming) => void): Disposable {
    return this.inbound.register(handler);
  }

  send(message: OutgoingMessage): void {
    const frames = this.prepared.get(message) ?? this.encode(message);
    this.prepared.delete(message);
    this.queues[message.channel].push(frames);
  }

  prepare(message: OutgoingMessage): void {
    if (!this.prepared.has(message)) this.prepared.set(message, this.encode(message));
  }

  private encode(message: OutgoingMessage): WireFrame[] {
    const frames = encodeWireFrames(message, this.signer);
    // PUB messages start with a topic; Jupyter subscribers take everything, the topic is informational.
    return message.channel === "iopub" ? [`kernel.${message.header.msg_type}`, ...frames.slice(message.identities.length)] : frames;
  }

  pending(channel: Channel): QueueStats {
    return this.queues[channel].stats();
  }

  drained(channel: Channel): Promise<void> {
    return this.queues[channel].drained();
  }

  close(options: { graceMs?: number } = {}): Promise<void> {
    if (this.closing) return this.closing;
    const graceMs = options.graceMs ?? 1000;
    this.closing = (async () => {
      const queues = Object.values(this.queues);
      for (const q of queues) q.close();
      let graceTimer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(queues.map((q) => q.drained())),
        new Promise<void>((resolve) => {
          graceTimer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(graceTimer);
      for (const q of queues) q.abandon();
      for (const s of Object.values(this.sockets)) s.close();
    })();
    return this.closing;
  }

  private startReceiving(): void {
    const routers: Array<[InboundChannel, Zmq.Router]> = [
      ["shell", this.sockets.shell],
      ["control", this.sockets.control],
      ["stdin", this.sockets.stdin],
    ];
    for (const [channel, socket] of routers) void this.receiveLoop(channel, socket);
    void this.heartbeatLoop();
    void this.subscriptionLoop();
  }

  private async receiveLoop(channel: InboundChannel, socket: Zmq.Router): Promise<void> {
    try {
      for await (const frames of socket) {
        const incoming = decodeInbound({ channel, frames, signer: this.signer, log: this.log });
        if (incoming) this.inbound.push(incoming);
      }
    } catch (err) {
      if (!socket.closed) this.log.error(`${channel} receive loop stopped: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** XPUB hands subscription messages to the application; they need no action, but must be read. */
  private async subscriptionLoop(): Promise<void> {
    const iopub = this.sockets.iopub;
    try {
      for await (const _subscription of iopub) {
        // Jupyter clients subscribe to everything; the topic filter is zeromq's job.
      }
    } catch (err) {
      if (!iopub.closed) this.log.error(`iopub subscription loop stopped: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async heartbeatLoop(): Promise<void> {
    const hb = this.sockets.hb;
    try {
      // REP strictly alternates receive/send, so awaiting the echo here is the whole queue it needs.
      for await (const frames of hb) await hb.send(frames);
    } catch (err) {
      if (!hb.closed) this.log.error(`heartbeat stopped: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
