// FileUpload's chunked transfer (issue 4, "Files"). Pure and browser-safe: the page's sender and the
// program's receiver share these ops and the receiver's state machine.
//
// The page calls the RPC method `uploadMethod(widgetId)` (registered by the program's FileUpload) once per
// op, `tsnb_comm.call(method, [op])`. Every op is answered, so the answers are the acknowledgements: the
// page keeps at most `window` chunk calls unanswered, and the program answers a chunk only once it is
// stored (copied into the preallocated array, or written to the temporary file). A slow program or disk
// therefore slows the page instead of growing queues in the server, the kernel or the program; the kernel
// relays each call and keeps nothing of it.
//
//   start  {upload, frontend, files: [{name, type, size, lastModified}]}  -> {ok: true}
//   chunk  {upload, file, offset, data: Uint8Array}                        -> {loaded, total}
//   finish {upload}                                                        -> {ok: true}
//   cancel {upload, reason}                                                -> {ok: true}
//
// Chunks of one upload come in order: file by file, each from offset 0 up, no gaps, none beyond the size
// announced at start. Anything else fails the upload with a clear error (the page shows it, the program
// gets an `error` event, partial files are removed).

import { isObject } from "./rpc.js";
import type { Parsed } from "./widgets.js";

export function uploadMethod(widgetId: string): string {
  return `tsnb.upload/${widgetId}`;
}

/** Bytes per chunk call. Well below the 8 MiB at which the shim would split one message into chunks. */
export const DEFAULT_UPLOAD_CHUNK_BYTES = 2 * 1024 * 1024;
/** Chunk calls the page keeps unanswered at most: the bytes in flight are about chunk x window. */
export const DEFAULT_UPLOAD_WINDOW = 4;
export const MAX_UPLOAD_CHUNK_BYTES = 6 * 1024 * 1024;
export const MAX_UPLOAD_WINDOW = 64;
export const MAX_UPLOAD_FILES = 1000;
export const MAX_UPLOAD_ID_LENGTH = 128;

export interface UploadFileInfo {
  name: string;
  type: string;
  size: number;
  lastModified: number;
}

export type UploadOp =
  | { op: "start"; upload: string; frontend: string | null; files: UploadFileInfo[] }
  | { op: "chunk"; upload: string; file: number; offset: number; data: Uint8Array }
  | { op: "finish"; upload: string }
  | { op: "cancel"; upload: string; reason: string };

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function parseFileInfo(raw: unknown, i: number): UploadFileInfo | string {
  if (!isObject(raw)) return `file ${i} must be an object`;
  const { name, type, size, lastModified } = raw;
  if (typeof name !== "string" || name === "" || name.length > 4096) return `file ${i} needs a name`;
  if (typeof type !== "string" || type.length > 256) return `file ${i} needs a type (a string, may be empty)`;
  if (!isCount(size)) return `file ${i} needs a size (a non-negative integer)`;
  return { name, type, size, lastModified: typeof lastModified === "number" && Number.isFinite(lastModified) ? lastModified : 0 };
}

/** The op of one call: `args` as the RPC handler receives them (`[op]`). */
export function parseUploadOp(args: unknown): Parsed<UploadOp> {
  const raw: unknown = Array.isArray(args) ? args[0] : undefined;
  if (!Array.isArray(args) || args.length !== 1 || !isObject(raw)) return { ok: false, error: "an upload call takes one op object" };
  const { op, upload } = raw;
  if (typeof upload !== "string" || upload === "" || upload.length > MAX_UPLOAD_ID_LENGTH) return { ok: false, error: "an upload op needs an upload id" };
  switch (op) {
    case "start": {
      const { frontend, files } = raw;
      if (frontend !== null && typeof frontend !== "string") return { ok: false, error: "start: frontend must be a string or null" };
      if (!Array.isArray(files) || files.length === 0 || files.length > MAX_UPLOAD_FILES) return { ok: false, error: `start: files must list 1 to ${MAX_UPLOAD_FILES} files` };
      const infos: UploadFileInfo[] = [];
      for (const [i, f] of files.entries()) {
        const info = parseFileInfo(f, i);
        if (typeof info === "string") return { ok: false, error: `start: ${info}` };
        infos.push(info);
      }
      return { ok: true, value: { op, upload, frontend, files: infos } };
    }
    case "chunk": {
      const { file, offset, data } = raw;
      if (!isCount(file) || !isCount(offset)) return { ok: false, error: "chunk: file and offset must be non-negative integers" };
      if (!(data instanceof Uint8Array)) return { ok: false, error: "chunk: data must be a Uint8Array" };
      return { ok: true, value: { op, upload, file, offset, data } };
    }
    case "finish":
      return { ok: true, value: { op, upload } };
    case "cancel":
      return { ok: true, value: { op, upload, reason: typeof raw.reason === "string" && raw.reason !== "" ? raw.reason.slice(0, 2000) : "cancelled by the page" } };
    default:
      return { ok: false, error: `unknown upload op ${JSON.stringify(op)}` };
  }
}

// ---- the receiver's state machine (one per upload) ---------------------------------------------------

export type UploadState =
  /** Expecting the chunk at `offset` of file `file` (files of size 0 are skipped). */
  | { state: "receiving"; files: readonly UploadFileInfo[]; file: number; offset: number; loaded: number }
  /** Every byte is in; waiting for `finish`. */
  | { state: "complete"; files: readonly UploadFileInfo[] }
  | { state: "done" }
  | { state: "failed"; reason: string };

export type UploadEvent =
  | { type: "chunk"; file: number; offset: number; length: number }
  | { type: "finish" }
  | { type: "cancel"; reason: string }
  /** The page that sends went away, nothing arrived for too long, the widget was disposed, storing failed. */
  | { type: "abort"; reason: string };

export type UploadEffect =
  /** Store these bytes (the chunk just accepted). */
  | { type: "store"; file: number; offset: number }
  | { type: "progress"; file: number; name: string; loaded: number; total: number; uploadLoaded: number; uploadTotal: number }
  /** All files are in and the page said finish: publish the value. */
  | { type: "complete" }
  /** Drop what was stored (partial temporary files) and tell the program why. */
  | { type: "fail"; reason: string };

export function totalBytes(files: readonly UploadFileInfo[]): number {
  return files.reduce((n, f) => n + f.size, 0);
}

/** The state after `start`: past any leading empty files. */
export function startUpload(files: readonly UploadFileInfo[]): UploadState {
  return skipEmpty({ state: "receiving", files, file: 0, offset: 0, loaded: 0 });
}

function skipEmpty(s: Extract<UploadState, { state: "receiving" }>): UploadState {
  let file = s.file;
  let offset = s.offset;
  while (file < s.files.length && offset >= s.files[file]!.size) {
    file++;
    offset = 0;
  }
  return file === s.files.length ? { state: "complete", files: s.files } : { ...s, file, offset };
}

function fail(reason: string): { state: UploadState; effects: UploadEffect[] } {
  return { state: { state: "failed", reason }, effects: [{ type: "fail", reason }] };
}

/** The receiver's one transition function. */
export function stepUpload(current: UploadState, event: UploadEvent): { state: UploadState; effects: UploadEffect[] } {
  if (current.state === "done" || current.state === "failed") return { state: current, effects: [] };
  switch (event.type) {
    case "cancel":
      return fail(event.reason);
    case "abort":
      return fail(event.reason);
    case "finish":
      if (current.state === "complete") return { state: { state: "done" }, effects: [{ type: "complete" }] };
      return fail(`the page finished the upload early: file ${current.file} ("${current.files[current.file]!.name}") has ${current.offset} of ${current.files[current.file]!.size} bytes`);
    case "chunk": {
      if (current.state === "complete") return fail(`a chunk arrived after every byte of the upload was in (file ${event.file}, offset ${event.offset})`);
      const info = current.files[current.file]!;
      if (event.file !== current.file || event.offset !== current.offset) {
        return fail(`chunk out of order: expected file ${current.file} at offset ${current.offset}, got file ${event.file} at offset ${event.offset}`);
      }
      if (event.length === 0 || event.offset + event.length > info.size) {
        return fail(`chunk of ${event.length} bytes at offset ${event.offset} does not fit "${info.name}" (${info.size} bytes announced): did the file change?`);
      }
      const offset = event.offset + event.length;
      const loaded = current.loaded + event.length;
      const next = skipEmpty({ ...current, offset, loaded });
      const progress: UploadEffect = { type: "progress", file: current.file, name: info.name, loaded: offset, total: info.size, uploadLoaded: loaded, uploadTotal: totalBytes(current.files) };
      return { state: next, effects: [{ type: "store", file: event.file, offset: event.offset }, progress] };
    }
    default: {
      const unreachable: never = event;
      throw new Error(`unhandled upload event ${JSON.stringify(unreachable)}`);
    }
  }
}
