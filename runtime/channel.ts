// The program's end of the main channel (the FIFOs TSNB_PIPE_BACK in, TSNB_PIPE out; PIPES.md section 3):
// frames in with a FrameDecoder over a net.Socket, frames out with blocking writes. Writes are synchronous on purpose: a cell printing 50 MB in a tight loop never
// yields to the event loop, so an async socket would queue the whole burst in memory. Blocking on a full
// pipe gives the same backpressure a terminal gives, keeps memory bounded and keeps every op in order.

import net from "node:net";
import { closeSync, constants as fsConstants, openSync, writeSync } from "node:fs";
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
  /** Frames from the kernel (TSNB_PIPE_BACK). */
  readFd: number;
  /** Frames to the kernel (TSNB_PIPE), non-blocking. */
  writeFd: number;
  onEvent(event: ChannelEvent): void;
}

export interface ChannelFifos {
  readFd: number;
  writeFd: number;
  /** The TSNB_PIPE_TOKEN the hello must carry. */
  token: string;
}

const CHANNEL_VARIABLES = ["TSNB_PIPE", "TSNB_PIPE_BACK", "TSNB_PIPE_TOKEN"] as const;

/**
 * Opens the FIFOs the kernel made for this program and removes their variables from `env`, so neither cell
 * code nor the processes it spawns (which inherit process.env) can write into the runtime's own channel by
 * accident; `!commands` get a pair of their own (pipes.ts). Neither open blocks: the kernel already holds
 * the other end of both. The fds are close-on-exec (libuv opens them so), so children do not inherit them.
 * Returns what is wrong instead when the program was not started by the kernel.
 */
export function openChannelFifos(env: NodeJS.ProcessEnv): ChannelFifos | string {
  const missing = CHANNEL_VARIABLES.filter((name) => !env[name]);
  if (missing.length > 0) return `${missing.join(", ")} not set`;
  let readFd: number;
  try {
    readFd = openSync(env.TSNB_PIPE_BACK!, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    return `TSNB_PIPE_BACK: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  let writeFd: number;
  try {
    // ENXIO here means nobody reads the FIFO: not the kernel's.
    writeFd = openSync(env.TSNB_PIPE!, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    closeSync(readFd);
    return `TSNB_PIPE: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  const token = env.TSNB_PIPE_TOKEN!;
  for (const name of CHANNEL_VARIABLES) delete env[name];
  return { readFd, writeFd, token };
}

const FIRST_WAIT_MS = 0.05;
const MAX_WAIT_MS = 1;
/** How long a full FIFO is retried at once before sleeping (see writeAll). */
const SPIN_MS = 0.2;
/** Retrying at once is allowed only this early in a drain: a long transfer then sleeps, as before. */
const SPIN_BUDGET_MS = 3;

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

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
    this.socket = new net.Socket({ fd: options.readFd, readable: true, writable: false });
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
    const spinUntil = nowMs() + SPIN_BUDGET_MS;
    while (this.unwritten.length > 0) {
      const chunk = this.unwritten[0]!;
      this.writeAll(chunk, spinUntil);
      this.unwritten.shift();
    }
  }

  private writeAll(chunk: { data: Uint8Array; offset: number }, spinUntil: number): void {
    const data = chunk.data;
    let waitMs = FIRST_WAIT_MS;
    let fullSince = -1;
    while (chunk.offset < data.byteLength) {
      try {
        chunk.offset += writeSync(this.options.writeFd, data, chunk.offset, data.byteLength - chunk.offset);
        waitMs = FIRST_WAIT_MS;
        fullSince = -1;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // The fd is non-blocking (a blocking write(2) could not be interrupted; Atomics.wait can); a full FIFO
        // means the kernel is behind, so wait for it. A FIFO holds only 64 KiB, which the kernel empties in
        // tens of microseconds: a fixed 1 ms sleep capped a burst at ~60 MB/s, so start short and back off
        // to 1 ms only while the kernel stays behind (paused for IOPub), to not spin.
        // Early in a drain, first retry at once for up to SPIN_MS: any sleep lasts at least ~0.1 ms (the
        // timer slack included), several times what the kernel needs to empty the FIFO, and a 1 MB RPC
        // result needs 16 such rounds. A 1 MB write between two Node processes under load took a median
        // 1.1 ms this way against 1.6 ms sleeping at once (interleaved, 100 each).
        if (code === "EAGAIN" || code === "EWOULDBLOCK") {
          const now = nowMs();
          if (fullSince < 0) fullSince = now;
          if (now < spinUntil && now - fullSince < SPIN_MS) continue;
          blockFor(waitMs, this.sleeper);
          waitMs = Math.min(waitMs * 2, MAX_WAIT_MS);
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
    closeSync(this.options.writeFd);
    this.options.onEvent({ type: "closed", reason });
  }

  dispose(): void {
    this.close("disposed");
  }
}
