// The page side of FileUpload's chunked transfer (protocol/upload.ts). Each file is read in slices
// (`file.slice(a, b).arrayBuffer()`, never whole), and each slice goes out as one RPC call to the program;
// at most `window` calls are unanswered at a time, and the program answers a chunk once it stored it, so a
// slow program slows this loop instead of filling queues on the way. Browser code: no Node built-ins.

import type { UploadFileInfo, UploadOp } from "../../protocol/upload.js";

/** What the sender needs of a picked file (a DOM File, or a fake in tests). */
export interface UploadSource {
  readonly name: string;
  readonly type: string;
  readonly size: number;
  readonly lastModified: number;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

export interface UploadProgressEvent {
  file: number;
  name: string;
  /** Bytes of this file the program has acknowledged, and its size. */
  loaded: number;
  total: number;
  /** The same over the whole upload. */
  uploadLoaded: number;
  uploadTotal: number;
}

export type UploadCall = (method: string, op: UploadOp, options: { timeout: number }) => Promise<unknown>;

export interface SendFilesOptions {
  files: readonly UploadSource[];
  /** The program's RPC method for this widget (uploadMethod(widgetId)). */
  method: string;
  call: UploadCall;
  upload: string;
  /** This page's front-end id (the program fails the upload when this front-end disconnects). */
  frontend: string | null;
  chunkBytes: number;
  window: number;
  onProgress?: (progress: UploadProgressEvent) => void;
  /** Per call; a program that answers nothing for this long fails the upload. */
  callTimeoutMs?: number;
  /** Aborting it cancels the upload (the user pressed Cancel): nothing more is read or sent. */
  signal?: AbortSignal;
}

/** The upload failed in the page (a file could not be read) or the program refused or lost it. */
export class UploadFailedError extends Error {
  override readonly name = "UploadFailedError";
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.name === "Error" ? err.message : `${err.name}: ${err.message}`;
  return String(err);
}

/** Sends the files; resolves once the program has every byte and took the upload. */
export async function sendFiles(options: SendFilesOptions): Promise<void> {
  const { files, method, call, upload, chunkBytes, window } = options;
  const timeout = options.callTimeoutMs ?? 60_000;
  const infos: UploadFileInfo[] = files.map((f) => ({ name: f.name, type: f.type, size: f.size, lastModified: f.lastModified }));
  const uploadTotal = infos.reduce((n, f) => n + f.size, 0);
  await call(method, { op: "start", upload, frontend: options.frontend, files: infos }, { timeout });

  let failure: unknown = null;
  let uploadLoaded = 0;
  const inflight = new Set<Promise<void>>();
  const { signal } = options;
  const abortedWait = new Promise<void>((resolve) => signal?.addEventListener("abort", () => resolve(), { once: true }));
  const checkAborted = () => {
    if (signal?.aborted) throw new UploadFailedError("cancelled by the user");
  };
  const cancel = async (reason: string) => {
    // Best effort: the program may be gone, or already know (it refused a chunk).
    await call(method, { op: "cancel", upload, reason }, { timeout }).catch((err: unknown) => console.warn(`tsnb widgets: cancelling upload ${upload} failed: ${describe(err)}`));
  };
  try {
    for (const [index, file] of files.entries()) {
      for (let offset = 0; offset < file.size && failure === null; offset += chunkBytes) {
        checkAborted();
        const end = Math.min(file.size, offset + chunkBytes);
        let data: Uint8Array;
        try {
          data = new Uint8Array(await file.slice(offset, end).arrayBuffer());
        } catch (err) {
          throw new UploadFailedError(`"${file.name}" could not be read at byte ${offset} (${describe(err)}): was it changed or removed after it was picked?`);
        }
        if (data.byteLength !== end - offset) throw new UploadFailedError(`"${file.name}" changed after it was picked: read ${data.byteLength} bytes at ${offset}, expected ${end - offset}`);
        while (inflight.size >= window && failure === null && !signal?.aborted) await Promise.race([...inflight, abortedWait]);
        checkAborted();
        if (failure !== null) break;
        const sent = call(method, { op: "chunk", upload, file: index, offset, data }, { timeout }).then(
          () => {
            uploadLoaded += data.byteLength;
            options.onProgress?.({ file: index, name: file.name, loaded: end, total: file.size, uploadLoaded, uploadTotal });
          },
          (err: unknown) => {
            failure ??= err;
          },
        );
        inflight.add(sent);
        void sent.then(() => inflight.delete(sent));
      }
      if (failure !== null) break;
    }
    await Promise.all(inflight);
    checkAborted();
  } catch (err) {
    // Chunks already sent fail on the program's side once it sees the cancel; wait for them so nothing
    // of this upload is still travelling when the caller hears about the failure.
    await cancel(err instanceof UploadFailedError ? err.message : describe(err));
    await Promise.all(inflight);
    throw err;
  }
  if (failure !== null) {
    await cancel(describe(failure));
    throw new UploadFailedError(`the program did not take the upload: ${describe(failure)}`);
  }
  await call(method, { op: "finish", upload }, { timeout });
}
