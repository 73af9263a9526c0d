// An in-memory Transport for testing the core without sockets. Inbound messages can be given parsed
// (deliver) or as raw frames (deliverFrames), which go through the same verify-then-parse path as zeromq's.

import type { Channel, JupyterMessage, OutgoingMessage } from "../../protocol/jupyter.js";
import type { Signer } from "../../protocol/wire.js";
import type { Disposable } from "../../protocol/disposable.js";
import type { Log } from "../log.js";
import { decodeInbound, InboundQueue, type Incoming, type InboundChannel, type QueueStats, type Transport } from "./transport.js";

export class MemoryTransport implements Transport {
  readonly sent: OutgoingMessage[] = [];
  private readonly inbound: InboundQueue;
  private listeners = new Set<(m: OutgoingMessage) => void>();
  closed = false;

  constructor(private readonly options: { log: Log; signer: Signer }) {
    this.inbound = new InboundQueue(options.log);
  }

  onMessage(handler: (incoming: Incoming) => void): Disposable {
    return this.inbound.register(handler);
  }

  deliver(channel: InboundChannel, message: JupyterMessage): void {
    this.inbound.push({ channel, message });
  }

  deliverFrames(channel: InboundChannel, frames: readonly Uint8Array[]): void {
    const incoming = decodeInbound({ channel, frames, signer: this.options.signer, log: this.options.log });
    if (incoming) this.inbound.push(incoming);
  }

  send(message: OutgoingMessage): void {
    this.sent.push(message);
    for (const l of this.listeners) l(message);
  }

  /** Calls `listener` for every message sent from now on. */
  watch(listener: (m: OutgoingMessage) => void): Disposable {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  pending(_channel: Channel): QueueStats {
    return { messages: 0, bytes: 0 };
  }

  drained(_channel: Channel): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
