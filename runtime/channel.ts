// The program's end of the main channel (fd 3): frames in with a FrameDecoder over a net.Socket, frames out
// with blocking writes. Writes are synchronous on purpose: a cell printing 50 MB in a tight loop never
// yields to the event loop, so an async socket would queue the whole burst in memory. Blocking on a full
// pipe gives the same backpressure a terminal gives, keeps memory bounded and keeps every op in order.

import net from "node:net";
import { writeSync } from "node:fs";
import { describeFrameError, encodeFrame, FrameDecoder, type RawFrame } from "../protocol/framing.js";
import type { JsonObject } from "../protocol/jupyter.js";
import type { ProgramToKernel } from "../protocol/program.js";
import type { Disposable } from "../protocol/disposable.js";

export class ChannelClosedError extends Error {
  override readonly name = "ChannelClosedError";
}

export type ChannelEvent =
  | { type: "frame"; frame: RawFrame }
  | { type: "bad_frame"; detail: string }
  | { type: "closed"; reason: string };

export interface ChannelOptions {
  fd: number;
  onEvent(event: ChannelEvent): void;
}

/** Sleeps the calling thread; used only while the kernel's end of the pipe is full. */
function blockFor(ms: number, cell: Int32Array): void {
  Atomics.wait(cell, 0, 0, ms);
}

export class Channel implements Disposable {
  private readonly socket: net.Socket;
  private readonly decoder = new FrameDecoder();
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));
  private closed = false;
  /**
   * Chunks accepted but not yet fully written. An interrupt can terminate JavaScript in the middle of a
   * write (a cell printing into a full pipe); whatever is left stays here and is written first next time,
   * so a frame is never cut short.
   */
  private readonly unwritten: { data: Uint8Array; offset: number }[] = [];

  constructor(private readonly options: ChannelOptions) {
    this.socket = new net.Socket({ fd: options.fd, readable: true, writable: false });
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.socket.on("error", (err) => this.close(`channel error: ${err.message}`));
    this.socket.on("end", () => this.close("the kernel closed the channel"));
    this.socket.on("close", () => this.close("the channel closed"));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(op: ProgramToKernel, buffers: readonly Uint8Array[] = []): void {
    if (this.closed) throw new ChannelClosedError("the channel to the kernel is closed");
    const chunks = encodeFrame(op as unknown as JsonObject & { op: string }, buffers);
    // Header and JSON go out as one write; binary parts (large, already contiguous) are written as they are.
    this.unwritten.push({ data: Buffer.concat([chunks[0]!, chunks[1]!]), offset: 0 });
    for (let i = 2; i < chunks.length; i++) this.unwritten.push({ data: chunks[i]!, offset: 0 });
    this.drain();
  }

  /** Writes everything accepted so far (blocking while the kernel's end is full). */
  drain(): void {
    while (this.unwritten.length > 0) {
      const chunk = this.unwritten[0]!;
      this.writeAll(chunk);
      this.unwritten.shift();
    }
  }

  private writeAll(chunk: { data: Uint8Array; offset: number }): void {
    const data = chunk.data;
    while (chunk.offset < data.byteLength) {
      try {
        chunk.offset += writeSync(this.options.fd, data, chunk.offset, data.byteLength - chunk.offset);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // The socket made the fd non-blocking; a full pipe means the kernel is behind, so wait for it.
        if (code === "EAGAIN" || code === "EWOULDBLOCK") {
          blockFor(1, this.sleeper);
          continue;
        }
        this.close(`write failed: ${code ?? String(err)}`);
        throw new ChannelClosedError(`the channel to the kernel is closed (${code ?? String(err)})`);
      }
    }
  }

  private onData(chunk: Buffer): void {
    const { frames, error } = this.decoder.push(chunk);
    for (const frame of frames) this.options.onEvent({ type: "frame", frame });
    if (error) {
      // A stream that lost its framing cannot be resynchronised.
      this.options.onEvent({ type: "bad_frame", detail: describeFrameError(error) });
      this.close(`bad frame from the kernel: ${describeFrameError(error)}`);
    }
  }

  private close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.options.onEvent({ type: "closed", reason });
  }

  dispose(): void {
    this.close("disposed");
  }
}
