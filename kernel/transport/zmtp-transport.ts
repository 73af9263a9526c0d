// The kernel's five sockets, bound from a connection file: shell/control/stdin ROUTER, iopub PUB, heartbeat REP,
// speaking ZMTP on Node's sockets (zmtp.ts). Frames are verified and parsed here and nowhere else.

import type { Channel, OutgoingMessage } from "../../protocol/jupyter.js";
import { encodeWireFrames, type Signer } from "../../protocol/wire.js";
import type { Disposable } from "../../protocol/disposable.js";
import type { Log } from "../log.js";
import type { ConnectionInfo } from "./connection.js";
import { SendQueue, type QueuedMessage } from "./send-queue.js";
import { HmacSigner } from "./signer.js";
import { decodeInbound, InboundQueue, type Incoming, type InboundChannel, type QueueStats, type Transport } from "./transport.js";
import { EchoSocket, PubSocket, RouterSocket, SCRATCH_BYTES, type Endpoint } from "./zmtp.js";

/**
 * Bytes an IOPub subscriber may have unsent before publishing waits for it. Big enough for a 16 MiB value chunk
 * in flight behind a few more, small enough that a stalled page holds the kernel at a bounded size.
 */
const IOPUB_HIGH_WATER_BYTES = 4 * 1024 * 1024;

export interface ZmtpTransportOptions {
  connection: ConnectionInfo;
  log: Log;
}

export function endpointFor(connection: ConnectionInfo, port: number): Endpoint {
  // jupyter_client names IPC endpoints "<ip>-<port>", the ip being a path prefix.
  return connection.transport === "ipc" ? { transport: "ipc", path: `${connection.ip}-${port}` } : { transport: "tcp", host: connection.ip, port };
}

export class ZmtpTransport implements Transport {
  private readonly inbound: InboundQueue;
  private readonly queues: Record<Channel, SendQueue>;
  /** Messages prepared ahead of their send (Transport.prepare). */
  private readonly prepared = new WeakMap<OutgoingMessage, QueuedMessage>();
  private closing: Promise<void> | null = null;
  private readonly sockets: { shell: RouterSocket; control: RouterSocket; stdin: RouterSocket; iopub: PubSocket; hb: EchoSocket };

  private constructor(
    private readonly signer: Signer,
    private readonly log: Log,
  ) {
    this.inbound = new InboundQueue(log);
    const scratch = new Uint8Array(SCRATCH_BYTES);
    const router = (channel: InboundChannel) =>
      new RouterSocket({ name: channel, log, scratch }, (frames) => {
        const incoming = decodeInbound({ channel, frames, signer: this.signer, log: this.log });
        if (incoming) this.inbound.push(incoming);
      });
    this.sockets = {
      shell: router("shell"),
      control: router("control"),
      stdin: router("stdin"),
      iopub: new PubSocket({ name: "iopub", log, scratch, highWaterBytes: IOPUB_HIGH_WATER_BYTES }),
      hb: new EchoSocket({ name: "heartbeat", log, scratch }),
    };
    const { shell, control, stdin, iopub } = this.sockets;
    this.queues = {
      shell: new SendQueue({ name: "shell", log, send: (frames) => shell.send(frames) }),
      control: new SendQueue({ name: "control", log, send: (frames) => control.send(frames) }),
      stdin: new SendQueue({ name: "stdin", log, send: (frames) => stdin.send(frames) }),
      iopub: new SendQueue({ name: "iopub", log, send: (frames) => iopub.send(frames) }),
    };
  }

  static async bind(options: ZmtpTransportOptions): Promise<ZmtpTransport> {
    const { connection, log } = options;
    const transport = new ZmtpTransport(new HmacSigner(connection.key), log);
    const { sockets } = transport;
    const binds = [
      sockets.shell.bind(endpointFor(connection, connection.shell_port)),
      sockets.control.bind(endpointFor(connection, connection.control_port)),
      sockets.stdin.bind(endpointFor(connection, connection.stdin_port)),
      sockets.iopub.bind(endpointFor(connection, connection.iopub_port)),
      sockets.hb.bind(endpointFor(connection, connection.hb_port)),
    ];
    const results = await Promise.allSettled(binds);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failure !== undefined) {
      await transport.close({ graceMs: 0 });
      throw failure.reason;
    }
    return transport;
  }

  onMessage(handler: (incoming: Incoming) => void): Disposable {
    return this.inbound.register(handler);
  }

  send(message: OutgoingMessage): void {
    const queued = this.prepared.get(message) ?? this.encode(message);
    this.prepared.delete(message);
    this.queues[message.channel].push(queued);
  }

  prepare(message: OutgoingMessage): void {
    if (!this.prepared.has(message)) this.prepared.set(message, this.encode(message));
  }

  private encode(message: OutgoingMessage): QueuedMessage {
    const wire = encodeWireFrames(message, this.signer);
    // PUB messages start with a topic; Jupyter subscribers take everything, the topic is informational.
    const frames = message.channel === "iopub" ? [`kernel.${message.header.msg_type}`, ...wire.slice(message.identities.length)] : wire;
    let bytes = 0;
    const encoded = frames.map((f) => {
      const b = typeof f === "string" ? Buffer.from(f, "utf8") : f;
      bytes += b.byteLength;
      return b;
    });
    return { frames: encoded, bytes };
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
      const started = Date.now();
      let graceTimer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(queues.map((q) => q.drained())),
        new Promise<void>((resolve) => {
          graceTimer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(graceTimer);
      for (const q of queues) q.abandon();
      // What the queues handed over still has to leave the process (the shutdown_reply, the last idle).
      const left = Math.max(0, graceMs - (Date.now() - started));
      await Promise.all(Object.values(this.sockets).map((s) => s.close({ graceMs: left })));
    })();
    return this.closing;
  }
}
