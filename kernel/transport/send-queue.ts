// Every channel gets a FIFO that feeds its socket one multipart message at a time. A send may wait (an IOPub
// subscriber over its high-water mark); later messages then wait behind it, in order. Producers never wait on
// the queue; they read its length to slow down.

import type { Log } from "../log.js";
import type { QueueStats } from "./transport.js";

/** One multipart message, already encoded: the frames' bytes and how many there are. */
export interface QueuedMessage {
  frames: Uint8Array[];
  bytes: number;
}

export type SendFn = (frames: Uint8Array[]) => Promise<void> | void;

export class SendQueue {
  private items: QueuedMessage[] = [];
  private bytes = 0;
  private running = false;
  private closed = false;
  private waiters: Array<() => void> = [];

  private readonly name: string;
  private readonly sendFn: SendFn;
  private readonly log: Log;

  constructor(options: { name: string; send: SendFn; log: Log }) {
    this.name = options.name;
    this.sendFn = options.send;
    this.log = options.log;
  }

  push(message: QueuedMessage): void {
    if (this.closed) {
      this.log.warn(`${this.name}: message dropped, the socket is closed`);
      return;
    }
    this.items.push(message);
    this.bytes += message.bytes;
    if (!this.running) this.pump();
  }

  stats(): QueueStats {
    return { messages: this.items.length, bytes: this.bytes };
  }

  drained(): Promise<void> {
    if (!this.running && this.items.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Stops accepting messages; what is queued still goes out (the caller bounds the wait). */
  close(): void {
    this.closed = true;
  }

  /** Drops whatever is still queued and releases every drained() waiter. */
  abandon(): void {
    this.closed = true;
    this.items = [];
    this.bytes = 0;
    this.wake();
  }

  /** Sends; returns the wait when the socket is behind, undefined when the message is fully handed over. */
  private sendNow(message: QueuedMessage): Promise<void> | undefined {
    try {
      const result = this.sendFn(message.frames);
      return result instanceof Promise ? result : undefined;
    } catch (err) {
      this.log.error(`${this.name}: send failed: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }

  /**
   * Writes queued messages until one has to wait for its socket, and resumes after that wait. The head of the
   * queue is the message being written; it counts as pending until its wait is over.
   */
  private pump(): void {
    while (this.items.length > 0) {
      const head = this.items[0]!;
      const wait = this.sendNow(head);
      if (wait !== undefined) {
        this.running = true;
        wait
          .catch((err: unknown) => this.log.error(`${this.name}: send failed: ${err instanceof Error ? err.message : String(err)}`))
          .then(() => {
            // abandon() may have emptied the queue while we waited.
            if (this.items[0] === head) {
              this.items.shift();
              this.bytes -= head.bytes;
            }
            this.running = false;
            this.pump();
          });
        return;
      }
      this.items.shift();
      this.bytes -= head.bytes;
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
