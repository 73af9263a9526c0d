// Fast unit tests of FileUpload's chunked transfer without processes: the receiver's state machine
// (protocol/upload.ts), the page-side sender's window and lazy reading with a fake RPC call whose answers
// the test releases one at a time, and the sweep of temporary directories left by killed programs.
// The widget wired to both ends is tested in widgets-model.test.ts; the real thing in upload-browser.test.ts.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseUploadOp, startUpload, stepUpload, type UploadOp, type UploadState } from "../protocol/upload.js";
import { sendFiles, type UploadSource } from "../frontend-shim/widgets/upload.js";
import { safeFileName, sweepDeadProcesses } from "../runtime/tsnb/widgets/upload.js";

const files = [
  { name: "a", type: "", size: 5, lastModified: 0 },
  { name: "empty", type: "", size: 0, lastModified: 0 },
  { name: "b", type: "", size: 3, lastModified: 0 },
];

describe("the receiver's state machine", () => {
  it("takes chunks in order across files (skipping empty ones) and completes on finish", () => {
    let s: UploadState = startUpload(files);
    const effects: string[] = [];
    for (const [file, offset, length] of [
      [0, 0, 2],
      [0, 2, 3],
      [2, 0, 3],
    ] as const) {
      const next = stepUpload(s, { type: "chunk", file, offset, length });
      s = next.state;
      effects.push(...next.effects.map((e) => (e.type === "progress" ? `progress ${e.name} ${e.loaded}/${e.total} ${e.uploadLoaded}/${e.uploadTotal}` : e.type)));
    }
    expect(s.state).toBe("complete");
    expect(effects).toEqual(["store", "progress a 2/5 2/8", "store", "progress a 5/5 5/8", "store", "progress b 3/3 8/8"]);
    expect(stepUpload(s, { type: "finish" })).toEqual({ state: { state: "done" }, effects: [{ type: "complete" }] });
    expect(startUpload([{ name: "e", type: "", size: 0, lastModified: 0 }]).state).toBe("complete");
  });

  it("fails with a reason on a gap, a repeat, an overflow, an early finish, a cancel; then ignores everything", () => {
    const start = startUpload(files);
    const after2 = stepUpload(start, { type: "chunk", file: 0, offset: 0, length: 2 }).state;
    const cases: [UploadState, Parameters<typeof stepUpload>[1], RegExp][] = [
      [after2, { type: "chunk", file: 0, offset: 3, length: 1 }, /expected file 0 at offset 2, got file 0 at offset 3/],
      [after2, { type: "chunk", file: 0, offset: 0, length: 2 }, /expected file 0 at offset 2, got file 0 at offset 0/],
      [after2, { type: "chunk", file: 0, offset: 2, length: 4 }, /does not fit "a" \(5 bytes announced\)/],
      [after2, { type: "chunk", file: 0, offset: 2, length: 0 }, /chunk of 0 bytes/],
      [after2, { type: "finish" }, /finished the upload early: file 0 \("a"\) has 2 of 5 bytes/],
      [after2, { type: "cancel", reason: "user closed the tab" }, /user closed the tab/],
      [{ state: "complete", files }, { type: "chunk", file: 2, offset: 3, length: 1 }, /after every byte/],
    ];
    for (const [state, event, reason] of cases) {
      const next = stepUpload(state, event);
      expect(next.state.state).toBe("failed");
      expect(next.effects).toHaveLength(1);
      expect(next.effects[0]!.type).toBe("fail");
      expect(next.state.state === "failed" && next.state.reason).toMatch(reason);
      expect(stepUpload(next.state, { type: "finish" })).toEqual({ state: next.state, effects: [] });
    }
  });

  it("parses ops with clear errors", () => {
    const data = new Uint8Array(2);
    expect(parseUploadOp([{ op: "chunk", upload: "u", file: 0, offset: 4, data }])).toEqual({ ok: true, value: { op: "chunk", upload: "u", file: 0, offset: 4, data } });
    expect(parseUploadOp([{ op: "start", upload: "u", frontend: null, files: [{ name: "n", type: "t", size: 1 }] }])).toEqual({
      ok: true,
      value: { op: "start", upload: "u", frontend: null, files: [{ name: "n", type: "t", size: 1, lastModified: 0 }] },
    });
    const bad: [unknown, RegExp][] = [
      [{ op: "chunk" }, /one op object/],
      [[{ op: "chunk", upload: "u", file: 0, offset: 0, data: [1, 2] }], /data must be a Uint8Array/],
      [[{ op: "chunk", upload: "u", file: -1, offset: 0, data }], /non-negative integers/],
      [[{ op: "start", upload: "u", frontend: null, files: [{ name: "n", type: "t", size: 1.5 }] }], /file 0 needs a size/],
      [[{ op: "start", upload: "", frontend: null, files: [] }], /needs an upload id/],
      [[{ op: "explode", upload: "u" }], /unknown upload op "explode"/],
    ];
    for (const [args, error] of bad) {
      const parsed = parseUploadOp(args);
      expect(parsed.ok).toBe(false);
      expect(!parsed.ok && parsed.error).toMatch(error);
    }
  });
});

/** A fake RPC into the program: records ops and answers chunks only when the test releases them. */
class HeldCalls {
  ops: UploadOp[] = [];
  private held: { resolve(v: unknown): void; reject(e: Error): void }[] = [];
  maxUnanswered = 0;
  refuseChunk = -1;
  call = (_method: string, op: UploadOp): Promise<unknown> => {
    this.ops.push(op);
    if (op.op !== "chunk") return Promise.resolve({ ok: true });
    return new Promise((resolve, reject) => {
      this.held.push({ resolve, reject });
      this.maxUnanswered = Math.max(this.maxUnanswered, this.held.length);
    });
  };
  get unanswered(): number {
    return this.held.length;
  }
  /** Answers the oldest held chunk (or refuses it); resolves after the sender reacted. */
  async release(error?: Error): Promise<void> {
    const next = this.held.shift();
    if (!next) throw new Error("no chunk is waiting for an answer");
    if (error) next.reject(error);
    else next.resolve({});
    await new Promise((r) => setImmediate(r));
  }
  /** Waits (turning the event loop, with a deadline) until `n` chunks are held. */
  async until(n: number): Promise<void> {
    const deadline = Date.now() + 5000;
    while (this.held.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${this.held.length} of ${n} chunks arrived`);
      await new Promise((r) => setImmediate(r));
    }
  }
}

function countingSource(size: number, reads: number[]): UploadSource {
  return {
    name: "f.bin",
    type: "",
    size,
    lastModified: 0,
    slice: (a, b) => {
      reads.push(a);
      return { arrayBuffer: () => Promise.resolve(new Uint8Array(b - a).fill(a & 255).buffer) };
    },
  };
}

describe("the page-side sender", () => {
  it("keeps at most `window` chunks unanswered and reads slices only as the window opens", async () => {
    const calls = new HeldCalls();
    const reads: number[] = [];
    const progress: number[] = [];
    const done = sendFiles({ files: [countingSource(10_000, reads)], method: "m", call: calls.call, upload: "u", frontend: "f", chunkBytes: 1000, window: 3, onProgress: (p) => progress.push(p.loaded) });
    await calls.until(3);
    // Three sent, the fourth slice read and waiting for room: nothing more is read while the program is silent.
    await new Promise((r) => setImmediate(r));
    expect(calls.unanswered).toBe(3);
    expect(reads).toEqual([0, 1000, 2000, 3000]);
    for (let i = 0; i < 7; i++) {
      await calls.release();
      await calls.until(Math.min(3, 10 - (i + 1)));
    }
    while (calls.unanswered > 0) await calls.release();
    await done;
    expect(calls.maxUnanswered).toBe(3);
    expect(reads).toHaveLength(10);
    expect(progress).toEqual([1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000]);
    expect(calls.ops.map((o) => (o.op === "chunk" ? o.offset : o.op))).toEqual(["start", 0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, "finish"]);
  });

  it("cancelled by its signal: stops reading, waits for what is in flight, tells the program and rejects", async () => {
    const calls = new HeldCalls();
    const reads: number[] = [];
    const controller = new AbortController();
    const done = sendFiles({ files: [countingSource(10_000, reads)], method: "m", call: calls.call, upload: "u", frontend: null, chunkBytes: 1000, window: 2, signal: controller.signal });
    const outcome = done.then(
      () => "resolved",
      (e: Error) => e.message,
    );
    await calls.until(2);
    controller.abort();
    while (calls.unanswered > 0) await calls.release();
    expect(await outcome).toBe("cancelled by the user");
    expect(calls.ops.at(-1)).toEqual({ op: "cancel", upload: "u", reason: "cancelled by the user" });
    expect(calls.ops.filter((o) => o.op === "chunk")).toHaveLength(2);
    expect(reads).toEqual([0, 1000, 2000]);
  });

  it("stops at the first refused chunk, cancels with the program's reason and rejects", async () => {
    const calls = new HeldCalls();
    const reads: number[] = [];
    const done = sendFiles({ files: [countingSource(10_000, reads)], method: "m", call: calls.call, upload: "u", frontend: null, chunkBytes: 1000, window: 2 });
    const outcome = done.then(
      () => "resolved",
      (e: Error) => e.message,
    );
    await calls.until(2);
    await calls.release(new Error("UploadError: the disk is full"));
    while (calls.unanswered > 0) await calls.release();
    expect(await outcome).toBe("the program did not take the upload: UploadError: the disk is full");
    expect(calls.ops.at(-1)).toEqual({ op: "cancel", upload: "u", reason: "UploadError: the disk is full" });
    expect(calls.ops.some((o) => o.op === "finish")).toBe(false);
    expect(reads.length).toBeLessThanOrEqual(4);
  });
});

describe("temporary directories", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("sweeps directories of programs that no longer run, and keeps live ones", () => {
    const root = mkdtempSync(join(tmpdir(), "tsnb-sweep-"));
    dirs.push(root);
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    const deadPid = Number(dead.stdout);
    for (const name of [`tsnb-upload-${deadPid}-abc`, `tsnb-upload-${process.pid}-def`, "tsnb-upload-x-1", "other"]) mkdirSync(join(root, name, "u1"), { recursive: true });
    expect(sweepDeadProcesses(root)).toEqual([`tsnb-upload-${deadPid}-abc`]);
    expect(existsSync(join(root, `tsnb-upload-${deadPid}-abc`))).toBe(false);
    expect(existsSync(join(root, `tsnb-upload-${process.pid}-def`))).toBe(true);
  });

  it("names files after the page's name without letting it leave the directory", () => {
    expect(safeFileName("report.csv", 0)).toBe("0-report.csv");
    expect(safeFileName("../../etc/passwd", 1)).toBe("1-passwd");
    expect(safeFileName("..", 2)).toBe("2-_");
    expect(safeFileName("a\\b:c?.txt", 3)).toBe("3-b_c_.txt");
    expect(safeFileName("", 4)).toBe("4-file");
  });
});
