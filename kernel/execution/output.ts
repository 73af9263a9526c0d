// Routes the program's output to IOPub under the right cell, and coalesces stream text: a cell printing
// 10,000 lines becomes a handful of stream messages (the Jupyter server drops IOPub messages beyond
// 1000/s), in order, each under MAX_STREAM_CHARS.

import type { JsonObject } from "../../protocol/jupyter.js";
import type { KernelIO, ParentHeader } from "../core/io.js";

export interface CoalesceLimits {
  /** A stream chunk waits at most this long for more text to join it. */
  flushMs: number;
  /** Pending text is published as soon as it reaches this many characters. */
  maxChars: number;
}

export const DEFAULT_COALESCE_LIMITS: CoalesceLimits = { flushMs: 12, maxChars: 256 * 1024 };

interface PendingStream {
  parent: ParentHeader;
  key: string;
  name: "stdout" | "stderr";
  chunks: string[];
  chars: number;
}

export class OutputPublisher {
  private pending: PendingStream | null = null;
  private timer: NodeJS.Timeout | null = null;

  private readonly io: KernelIO;
  private readonly limits: CoalesceLimits;
  private readonly afterPublish: () => void;

  constructor(options: {
    io: KernelIO;
    limits?: CoalesceLimits;
    /** Called after each IOPub publish, so the producer can be throttled. */
    afterPublish?: () => void;
  }) {
    this.io = options.io;
    this.limits = options.limits ?? DEFAULT_COALESCE_LIMITS;
    this.afterPublish = options.afterPublish ?? (() => {});
  }

  stream(options: { cellKey: string; parent: ParentHeader; name: "stdout" | "stderr"; text: string }): void {
    if (options.text === "") return;
    const key = `${options.cellKey}\u0000${options.name}`;
    if (this.pending && this.pending.key !== key) this.flush();
    if (!this.pending) {
      this.pending = { parent: options.parent, key, name: options.name, chunks: [], chars: 0 };
      this.timer = setTimeout(() => this.flush(), this.limits.flushMs);
    }
    const p = this.pending;
    let text = options.text;
    // Split huge writes so no single message grows past the limit.
    while (p.chars + text.length > this.limits.maxChars) {
      const room = this.limits.maxChars - p.chars;
      p.chunks.push(text.slice(0, room));
      p.chars += room;
      text = text.slice(room);
      this.publishPending();
      p.chunks = [];
      p.chars = 0;
    }
    if (text !== "") {
      p.chunks.push(text);
      p.chars += text.length;
    }
    if (p.chars >= this.limits.maxChars) this.flush();
  }

  /** Any other output first publishes pending stream text, so the order the program wrote in is kept. */
  publish(options: { parent: ParentHeader; msgType: string; content: JsonObject }): void {
    this.flush();
    this.io.publish(options);
    this.afterPublish();
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.pending) return;
    this.publishPending();
    this.pending = null;
  }

  dispose(): void {
    this.flush();
  }

  private publishPending(): void {
    const p = this.pending;
    if (!p || p.chars === 0) return;
    this.io.publish({ msgType: "stream", parent: p.parent, content: { name: p.name, text: p.chunks.join("") } });
    this.afterPublish();
  }
}
