// zeromq allows one send() in flight per socket (a second one throws EBUSY), so every socket gets a FIFO that
// feeds it one multipart message at a time. Producers never wait on it; they can read its length to slow down.

import type { WireFrame } from "../../protocol/wire.js";
import type { Log } from "../log.js";
import type { QueueStats } from "./transport.js";

export type SendFn = (frames: WireFrame[]) => Promise<void>;

interface Item {
  frames: WireFrame[];
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
  private readonly isFull: (err: unknown) => boolean;
  private retryTimer: NodeJS.Timeout | null = null;
  private wakeRetry: (() => void) | null = null;

  constructor(options: {
    name: string;
    send: SendFn;
    log: Log;
    /** True for an error that means "the peer is full, try again later" rather than a failure. */
    isFull?: (err: unknown) => boolean;
  }) {
    this.name = options.name;
    this.sendFn = options.send;
    this.log = options.log;
    this.isFull = options.isFull ?? (() => false);
  }

  push(frames: WireFrame[]): void {
    if (this.closed) {
      this.log.warn(`${this.name}: message dropped, the socket is closed`);
      return;
    }
    let bytes = 0;
    for (const f of frames) bytes += typeof f === "string" ? Buffer.byteLength(f) : f.byteLength;
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
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.wakeRetry?.();
    this.wake();
  }

  private async run(): Promise<void> {
    this.running = true;
    let backoffMs = 1;
    while (this.items.length > 0) {
      const item = this.items[0]!;
      try {
        await this.sendFn(item.frames);
        backoffMs = 1;
      } catch (err) {
        if (this.isFull(err) && !this.closed) {
          // The message stays at the head of the queue; producers see the queue grow and slow down.
          await this.pause(backoffMs);
          backoffMs = Math.min(backoffMs * 2, 20);
          continue;
        }
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

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeRetry = () => {
        this.wakeRetry = null;
        this.retryTimer = null;
        resolve();
      };
      this.retryTimer = setTimeout(this.wakeRetry, ms);
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
