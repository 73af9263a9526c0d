// The kernel core talks to a Transport: parsed, signature-verified messages in; OutgoingMessages out.
// ZmqTransport binds real sockets; MemoryTransport lets tests drive the core without any.

import type { Channel, JupyterMessage, OutgoingMessage } from "../../protocol/jupyter.js";
import { decodeFrames, describeDecodeError, type Signer } from "../../protocol/wire.js";
import { disposable, type Disposable } from "../../protocol/disposable.js";
import type { Log } from "../log.js";

/** Channels the kernel receives requests on (iopub is publish-only). */
export type InboundChannel = Exclude<Channel, "iopub">;

export interface Incoming {
  channel: InboundChannel;
  message: JupyterMessage;
}

export interface QueueStats {
  /** Messages accepted by send() that the socket has not taken yet. */
  messages: number;
  bytes: number;
}

export interface Transport {
  /** Registers the single consumer of inbound messages. Messages that arrive before this are queued. */
  onMessage(handler: (incoming: Incoming) => void): Disposable;
  /**
   * Queues a message; never blocks and never throws. Messages on one channel leave in the order they were
   * queued, so callers may queue busy, reply and idle back to back and they go out in one burst.
   */
  send(message: OutgoingMessage): void;
  /**
   * Optional: does the encoding and signing of `message` now, so that a later send() of the same object only hands
   * it to the socket. For messages that are known early but sent later (IOPub held at the start of a request).
   * The message must not change in between.
   */
  prepare?(message: OutgoingMessage): void;
  /** What is still waiting in a channel's send queue (the execution layer pauses its producer on this). */
  pending(channel: Channel): QueueStats;
  /** Resolves when everything queued so far on the channel has been handed to the socket. */
  drained(channel: Channel): Promise<void>;
  /** Flushes the send queues (bounded by `graceMs`) and releases the sockets. Idempotent. */
  close(options?: { graceMs?: number }): Promise<void>;
}

/**
 * Shared by both transports: verify and parse raw frames, and log-and-drop anything that fails. A message
 * that fails verification is never acted on, not even answered: a reply would leak that the port is a kernel.
 */
export function decodeInbound(options: { channel: InboundChannel; frames: readonly Uint8Array[]; signer: Signer; log: Log }): Incoming | null {
  const { channel, frames, signer, log } = options;
  const result = decodeFrames(frames, signer);
  if (!result.ok) {
    log.warn(`dropped a message on ${channel}: ${describeDecodeError(result.error)}`);
    return null;
  }
  return { channel, message: result.message };
}

/** Messages that arrive before the consumer registers are held, in order, then handed over. */
export class InboundQueue {
  private handler: ((incoming: Incoming) => void) | null = null;
  private early: Incoming[] = [];

  constructor(private readonly log: Log) {}

  push(incoming: Incoming): void {
    if (this.handler === null) {
      this.early.push(incoming);
      return;
    }
    this.deliver(this.handler, incoming);
  }

  register(handler: (incoming: Incoming) => void): Disposable {
    if (this.handler !== null) throw new Error("Transport.onMessage: a handler is already registered");
    this.handler = handler;
    const early = this.early;
    this.early = [];
    for (const incoming of early) this.deliver(handler, incoming);
    return disposable(() => {
      if (this.handler === handler) this.handler = null;
    });
  }

  private deliver(handler: (incoming: Incoming) => void, incoming: Incoming): void {
    try {
      handler(incoming);
    } catch (err) {
      // The core answers its own errors; reaching here is a kernel bug, which must not take the socket loop down.
      this.log.error(`unhandled error while handling ${incoming.message.header.msg_type}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    }
  }
}
