// The program side of FileUpload's chunked transfer (protocol/upload.ts): one receiver per widget runs the
// uploads pages send to it, storing each chunk before answering it (the answer is the page's
// acknowledgement), either into a Uint8Array preallocated from the announced size or into a file in the
// widget's private temporary directory. An upload that fails (cancelled, the page went away, nothing
// arrived for too long, a bad chunk, storing failed) drops what it stored.

import { rmSync, mkdtempSync, readdirSync, mkdirSync } from "node:fs";
import { open, rm, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startUpload, stepUpload, totalBytes, type UploadEffect, type UploadFileInfo, type UploadOp, type UploadState } from "../../../protocol/upload.js";
import type { Disposable } from "../../../protocol/disposable.js";
import { isStaleDirName } from "../../../node/stale-dirs.js";

export interface UploadedFile {
  name: string;
  type: string;
  size: number;
  lastModified: number;
  data: Uint8Array;
}

export interface UploadedTempFile {
  name: string;
  type: string;
  size: number;
  lastModified: number;
  /** A file in the widget's private temporary directory, removed when a newer upload replaces it, on dispose and at exit. */
  path: string;
}

export interface UploadProgress {
  /** The file being received: its name and index in the upload, bytes of it stored so far and its size. */
  name: string;
  file: number;
  loaded: number;
  total: number;
  /** The same over all files of the upload. */
  uploadLoaded: number;
  uploadTotal: number;
}

/** An upload that did not complete: cancelled in the page, the page went away, a bad chunk, storing failed. */
export class UploadError extends Error {
  override readonly name = "UploadError";
}

/** Where one upload's bytes go. */
export interface UploadSink<F> {
  store(file: number, offset: number, data: Uint8Array): Promise<void> | void;
  /** Every byte is in: the files as the program sees them. */
  finish(): Promise<F[]>;
  /** The upload failed: drop what was stored. */
  discard(): Promise<void>;
}

export class MemorySink implements UploadSink<UploadedFile> {
  private readonly arrays: Uint8Array[];
  constructor(private readonly files: readonly UploadFileInfo[]) {
    try {
      this.arrays = files.map((f) => new Uint8Array(f.size));
    } catch (err) {
      throw new UploadError(`cannot hold ${totalBytes(files)} bytes in memory (${String(err)}): use new FileUpload({ storage: "file" }) for large files`);
    }
  }
  store(file: number, offset: number, data: Uint8Array): void {
    this.arrays[file]!.set(data, offset);
  }
  finish(): Promise<UploadedFile[]> {
    return Promise.resolve(this.files.map((f, i) => ({ name: f.name, type: f.type, size: f.size, lastModified: f.lastModified, data: this.arrays[i]! })));
  }
  discard(): Promise<void> {
    return Promise.resolve();
  }
}

/** A file name safe to create in our directory, recognisably the page's name. */
export function safeFileName(name: string, index: number): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  const cleaned = base.replace(/[\u0000-\u001f<>:"|?*]/g, "_").replace(/^\.+/, "_").slice(0, 200);
  return `${index}-${cleaned || "file"}`;
}

export class TempFileSink implements UploadSink<UploadedTempFile> {
  private readonly handles: (FileHandle | null)[];
  private readonly paths: string[];
  private created = false;
  constructor(
    private readonly dir: string,
    private readonly files: readonly UploadFileInfo[],
  ) {
    this.handles = files.map(() => null);
    this.paths = files.map((f, i) => join(dir, safeFileName(f.name, i)));
  }
  async store(file: number, offset: number, data: Uint8Array): Promise<void> {
    const handle = this.handles[file] ?? (this.handles[file] = await this.openFile(file));
    let done = 0;
    while (done < data.byteLength) {
      const { bytesWritten } = await handle.write(data, done, data.byteLength - done, offset + done);
      done += bytesWritten;
    }
  }
  private async openFile(file: number): Promise<FileHandle> {
    if (!this.created) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.created = true;
    }
    return open(this.paths[file]!, "wx", 0o600);
  }
  async finish(): Promise<UploadedTempFile[]> {
    // Empty files were never opened: create them so every path exists.
    for (const [i, f] of this.files.entries()) if (this.handles[i] === null && f.size === 0) this.handles[i] = await this.openFile(i);
    await this.closeAll();
    return this.files.map((f, i) => ({ name: f.name, type: f.type, size: f.size, lastModified: f.lastModified, path: this.paths[i]! }));
  }
  async discard(): Promise<void> {
    await this.closeAll();
    await rm(this.dir, { recursive: true, force: true });
  }
  private async closeAll(): Promise<void> {
    const handles = this.handles.filter((h): h is FileHandle => h !== null);
    this.handles.fill(null);
    await Promise.all(handles.map((h) => h.close()));
  }
}

// ---- the private temporary directory -----------------------------------------------------------------

const DIRS_KEY = Symbol.for("tsnb.uploadDirs");
const DIR_PREFIX = "tsnb-upload-";

/** The directories this process made, removed at exit (one exit handler per process, however many widgets). */
function liveDirs(): Set<string> {
  const g = globalThis as { [DIRS_KEY]?: Set<string> };
  let dirs = g[DIRS_KEY];
  if (!dirs) {
    const set = new Set<string>();
    dirs = g[DIRS_KEY] = set;
    process.on("exit", () => {
      for (const dir of set) rmSync(dir, { recursive: true, force: true });
    });
    sweepDeadProcesses(tmpdir());
  }
  return dirs;
}

/** Removes directories left by programs that were killed (SIGKILL runs no exit handler): their pid is gone. */
export function sweepDeadProcesses(root: string): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(root)) {
    if (!isStaleDirName(name, DIR_PREFIX)) continue;
    rmSync(join(root, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** A widget's temporary directory (mode 0700, made on first use) with one subdirectory per upload. */
export class UploadDir implements Disposable {
  private dir: string | null = null;
  private next = 0;
  private disposed = false;

  get path(): string | null {
    return this.dir;
  }

  /** A fresh subdirectory path for one upload (created by the sink when the first byte arrives). */
  newUploadDir(): string {
    if (this.disposed) throw new UploadError("the upload's widget was disposed");
    if (this.dir === null) {
      const dirs = liveDirs();
      this.dir = mkdtempSync(join(tmpdir(), `${DIR_PREFIX}${process.pid}-`));
      dirs.add(this.dir);
    }
    return join(this.dir, `u${++this.next}`);
  }

  /** Removes an earlier upload's subdirectory (its value was replaced). */
  remove(uploadDir: string): void {
    rmSync(uploadDir, { recursive: true, force: true });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.dir === null) return;
    rmSync(this.dir, { recursive: true, force: true });
    liveDirs().delete(this.dir);
  }
}

// ---- the receiver ------------------------------------------------------------------------------------

export interface ReceiverHooks<F> {
  progress(progress: UploadProgress): void;
  complete(files: F[], upload: { id: string; dir: string | null }): void;
  failed(error: UploadError): void;
}

export interface UploadReceiverOptions<F> {
  /** Where a new upload's bytes go (may throw UploadError, e.g. too large for memory). */
  makeSink(files: readonly UploadFileInfo[]): { sink: UploadSink<F>; dir: string | null };
  hooks: ReceiverHooks<F>;
  /** An upload with no op for this long fails (a page that vanished without its comm closing). */
  stallMs: number;
  setTimer(ms: number, fn: () => void): Disposable;
  /** Uploads running at once (several pages may upload to one widget). */
  maxUploads?: number;
}

interface Running<F> {
  id: string;
  frontend: string | null;
  state: UploadState;
  sink: UploadSink<F>;
  dir: string | null;
  /** Stores and completion run in order; a chunk is answered when its store is done. */
  chain: Promise<void>;
  stall: Disposable;
}

const FAILED_MEMORY = 32;

export class UploadReceiver<F> implements Disposable {
  private readonly uploads = new Map<string, Running<F>>();
  /** Why recent uploads failed, so a late chunk gets the reason rather than "unknown upload". */
  private readonly failures = new Map<string, string>();
  private disposed = false;

  constructor(private readonly options: UploadReceiverOptions<F>) {}

  get running(): number {
    return this.uploads.size;
  }

  /** Runs one op from the page; resolves to its answer or rejects with an UploadError (sent to the page). */
  handle(op: UploadOp): Promise<unknown> {
    if (this.disposed) return Promise.reject(new UploadError("the upload's widget was disposed"));
    if (op.op === "start") return this.start(op.upload, op.frontend, op.files);
    const running = this.uploads.get(op.upload);
    if (!running) {
      if (op.op === "cancel") return Promise.resolve({ ok: true });
      const why = this.failures.get(op.upload);
      return Promise.reject(new UploadError(why ? `the upload failed: ${why}` : `unknown upload ${op.upload}`));
    }
    this.rearm(running);
    switch (op.op) {
      case "chunk": {
        const total = running.state.state === "receiving" || running.state.state === "complete" ? (running.state.files[op.file]?.size ?? 0) : 0;
        const effects = this.step(running, { type: "chunk", file: op.file, offset: op.offset, length: op.data.byteLength });
        return this.apply(running, effects, op.data).then(() => {
          if (running.state.state === "failed") throw new UploadError(running.state.reason);
          return { loaded: op.offset + op.data.byteLength, total };
        });
      }
      case "finish":
        return this.apply(running, this.step(running, { type: "finish" }), null).then(() => {
          if (running.state.state === "failed") throw new UploadError(running.state.reason);
          return { ok: true };
        });
      case "cancel":
        return this.apply(running, this.step(running, { type: "cancel", reason: `cancelled in the page: ${op.reason}` }), null).then(() => ({ ok: true }));
      default: {
        const unreachable: never = op;
        return Promise.reject(new UploadError(`unhandled upload op ${JSON.stringify(unreachable)}`));
      }
    }
  }

  /** The connected front-ends changed: uploads from a page that is gone fail now. */
  frontendsChanged(ids: readonly string[]): void {
    for (const running of [...this.uploads.values()]) {
      if (running.frontend !== null && !ids.includes(running.frontend)) this.abort(running, "the page sending the upload disconnected");
    }
  }

  dispose(): void {
    if (this.disposed) return;
    for (const running of [...this.uploads.values()]) this.abort(running, "the upload's widget was disposed");
    this.disposed = true;
  }

  private start(id: string, frontend: string | null, files: readonly UploadFileInfo[]): Promise<unknown> {
    if (this.uploads.has(id) || this.failures.has(id)) return Promise.reject(new UploadError(`upload ${id} was already started`));
    const max = this.options.maxUploads ?? 4;
    if (this.uploads.size >= max) return Promise.reject(new UploadError(`${max} uploads to this widget are already running`));
    let made;
    try {
      made = this.options.makeSink(files);
    } catch (err) {
      const error = err instanceof UploadError ? err : new UploadError(`the upload could not start: ${String(err)}`);
      this.remember(id, error.message);
      this.options.hooks.failed(error);
      return Promise.reject(error);
    }
    const running: Running<F> = { id, frontend, state: startUpload(files), sink: made.sink, dir: made.dir, chain: Promise.resolve(), stall: { dispose() {} } };
    this.uploads.set(id, running);
    this.rearm(running);
    return Promise.resolve({ ok: true });
  }

  private abort(running: Running<F>, reason: string): void {
    void this.apply(running, this.step(running, { type: "abort", reason }), null);
  }

  private rearm(running: Running<F>): void {
    running.stall.dispose();
    const ms = this.options.stallMs;
    running.stall = this.options.setTimer(ms, () => this.abort(running, `nothing arrived from the page for ${ms / 1000} s`));
  }

  private step(running: Running<F>, event: Parameters<typeof stepUpload>[1]): UploadEffect[] {
    const next = stepUpload(running.state, event);
    running.state = next.state;
    return next.effects;
  }

  /** Carries out effects in order on the upload's chain; resolves when they are done. */
  private apply(running: Running<F>, effects: UploadEffect[], data: Uint8Array | null): Promise<void> {
    for (const effect of effects) {
      switch (effect.type) {
        case "store": {
          const bytes = data;
          if (bytes === null) throw new Error("a store effect without data");
          running.chain = running.chain.then(() => running.sink.store(effect.file, effect.offset, bytes)).catch((err: unknown) => this.storeFailed(running, err));
          break;
        }
        case "progress": {
          const { name, file, loaded, total, uploadLoaded, uploadTotal } = effect;
          running.chain = running.chain.then(() => {
            if (running.state.state !== "failed") this.options.hooks.progress({ name, file, loaded, total, uploadLoaded, uploadTotal });
          });
          break;
        }
        case "complete":
          this.finishRunning(running);
          running.chain = running.chain
            .then(() => running.sink.finish())
            .then(
              (files) => this.options.hooks.complete(files, { id: running.id, dir: running.dir }),
              (err: unknown) => {
                // Finishing (closing files) failed after the state machine said done: fail it by hand.
                running.state = { state: "failed", reason: `storing the upload failed: ${String(err)}` };
                return this.discard(running, running.state.reason);
              },
            );
          break;
        case "fail":
          this.finishRunning(running);
          this.remember(running.id, effect.reason);
          running.chain = running.chain.then(() => this.discard(running, effect.reason));
          break;
        default: {
          const unreachable: never = effect;
          throw new Error(`unhandled upload effect ${JSON.stringify(unreachable)}`);
        }
      }
    }
    return running.chain;
  }

  private storeFailed(running: Running<F>, err: unknown): void {
    if (running.state.state === "failed") return;
    this.abort(running, `storing the upload failed: ${String(err)}`);
  }

  private finishRunning(running: Running<F>): void {
    running.stall.dispose();
    this.uploads.delete(running.id);
  }

  private async discard(running: Running<F>, reason: string): Promise<void> {
    await running.sink.discard();
    this.options.hooks.failed(new UploadError(reason));
  }

  private remember(id: string, reason: string): void {
    this.failures.set(id, reason);
    if (this.failures.size > FAILED_MEMORY) this.failures.delete(this.failures.keys().next().value as string);
  }
}
