// Captures process.stdout/stderr writes (and so console.*) as `stream` ops tagged with the cell in whose
// context they happen (see context.ts). Consecutive writes to the same stream of the same cell are batched and
// flushed on the next turn of the event loop or at a size threshold; every other op flushes first, so a
// display after a print arrives after it.

import type { CellId, ProgramToKernel } from "../protocol/program.js";
import type { ContextTracker } from "./context.js";
import type { Disposable } from "../protocol/disposable.js";

export interface CellContext {
  cell: CellId;
  allowStdin: boolean;
}

export type StreamName = "stdout" | "stderr";

export interface OutputOptions {
  tracker: ContextTracker<CellContext>;
  send(op: ProgramToKernel): void;
  /** Bytes of text buffered before a synchronous flush (bounds memory during a tight print loop). */
  flushThreshold?: number;
}

interface Pending {
  cell: CellId | null;
  name: StreamName;
  parts: string[];
  length: number;
}

type WriteFn = typeof process.stdout.write;

export class Output implements Disposable {
  private pending: Pending | null = null;
  private scheduled: NodeJS.Immediate | null = null;
  private readonly threshold: number;
  private readonly decoders: Record<StreamName, TextDecoder> = {
    stdout: new TextDecoder("utf-8"),
    stderr: new TextDecoder("utf-8"),
  };
  private readonly originals: { stdout: WriteFn; stderr: WriteFn };
  private disposed = false;

  constructor(private readonly options: OutputOptions) {
    this.threshold = options.flushThreshold ?? 64 * 1024;
    this.originals = { stdout: process.stdout.write, stderr: process.stderr.write };
    process.stdout.write = this.makeWrite("stdout");
    process.stderr.write = this.makeWrite("stderr");
  }

  /** Writes straight to the process's raw stderr (fd 2), bypassing capture: for runtime diagnostics. */
  rawStderr(text: string): void {
    this.originals.stderr.call(process.stderr, text);
  }

  currentCell(): CellId | null {
    return this.options.tracker.current()?.cell ?? null;
  }

  write(name: StreamName, text: string, cell: CellId | null = this.currentCell()): void {
    if (text === "") return;
    const pending = this.pending;
    if (pending && (pending.cell !== cell || pending.name !== name)) this.flush();
    if (this.pending === null) this.pending = { cell, name, parts: [], length: 0 };
    this.pending.parts.push(text);
    this.pending.length += text.length;
    if (this.pending.length >= this.threshold) this.flush();
    else this.schedule();
  }

  /** Sends any buffered stream text, then `op`: keeps output order across op kinds. */
  send(op: ProgramToKernel): void {
    this.flush();
    this.options.send(op);
  }

  flush(): void {
    const pending = this.pending;
    if (pending === null) return;
    this.pending = null;
    this.options.send({ op: "stream", cell: pending.cell, name: pending.name, text: pending.parts.join("") });
  }

  private schedule(): void {
    if (this.scheduled !== null || this.disposed) return;
    // Not unref'd: an unref'd immediate lets libuv block in poll until the next timer or I/O, which
    // delayed output printed from timer callbacks by up to a second.
    this.scheduled = setImmediate(() => {
      this.scheduled = null;
      this.flush();
    });
  }

  private makeWrite(name: StreamName): WriteFn {
    const write = (chunk: unknown, encodingOrCb?: unknown, maybeCb?: unknown): boolean => {
      const cb = typeof encodingOrCb === "function" ? encodingOrCb : typeof maybeCb === "function" ? maybeCb : null;
      const encoding = typeof encodingOrCb === "string" ? (encodingOrCb as BufferEncoding) : "utf8";
      let text: string;
      if (typeof chunk === "string") text = chunk;
      else if (chunk instanceof Uint8Array) {
        text = encoding === "utf8" || encoding === ("utf-8" as BufferEncoding)
          ? this.decoders[name].decode(chunk, { stream: true })
          : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString(encoding);
      } else text = String(chunk);
      this.write(name, text);
      if (cb) queueMicrotask(() => (cb as (err?: Error | null) => void)(null));
      return true;
    };
    return write as WriteFn;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    this.flush();
    process.stdout.write = this.originals.stdout;
    process.stderr.write = this.originals.stderr;
  }
}
