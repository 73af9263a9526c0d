// zeromq allows one send() in flight per socket (a second one throws EBUSY), so every socket gets a FIFO that
// feeds it one multipart message at a time. Producers never wait on it; they can read its length to slow down.

import type { Log } from "../log.js";
import type { QueueStats } from "./transport.js";

export type SendFn = (frames: Uint8Array[]) => Promise<void>;

interface Item {
  frames: Uint8Array[];
  bytes: number;
}

export class SendQueue {
  private items: Item[] = [];
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

  push(frames: Uint8Array[]): void {
    if (this.closed) {
      this.log.warn(`${this.name}: message dropped, the socket is closed`);
      return;
    }
    let bytes = 0;
    for (const f of frames) bytes += f.byteLength;
    this.items.push({ frames, bytes });
    this.bytes += bytes;
    if (!this.running) void this.run();
  }

  stats(): QueueStats {
    return { messages: this.items.length + (this.running ? 1 : 0), bytes: this.bytes };
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

  private async run(): Promise<void> {
    this.running = true;
    while (this.items.length > 0) {
      const item = this.items[0]!;
      try {
        await this.sendFn(item.frames);
      } catch (err) {
        this.log.error(`${this.name}: send failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      // abandon() may have emptied the queue while the send was in flight.
      if (this.items[0] === item) {
        this.items.shift();
        this.bytes -= item.bytes;
      }
    }
    this.running = false;
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
