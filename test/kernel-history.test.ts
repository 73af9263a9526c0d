import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { History, defaultHistoryFile } from "../kernel/core/history.js";
import { memoryLog } from "../kernel/log.js";
import type { HistoryRequestContent } from "../protocol/jupyter.js";
import { startKernel, type RunningKernel } from "./helpers/kernel-client.js";

const tail = (n: number): HistoryRequestContent => ({ output: false, raw: true, hist_access_type: "tail", n });

/** Temp directories made by this file's tests, removed after each test. */
const tempDirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "tsnb-history-"));
  tempDirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("History", () => {
  const tempFile = () => join(tempDir(), "nested", "history.jsonl");

  it("answers tail, range and glob search like IPython, oldest first", () => {
    const history = new History({ file: null, log: memoryLog() });
    history.record(1, "const a = 1");
    history.record(2, "console.log(a)");
    history.record(3, "const a = 2");
    expect(history.query(tail(2))).toEqual([
      [1, 2, "console.log(a)"],
      [1, 3, "const a = 2"],
    ]);
    expect(history.query({ output: false, raw: true, hist_access_type: "range", session: 0, start: 2, stop: 3 })).toEqual([
      [1, 2, "console.log(a)"],
    ]);
    expect(history.query({ output: false, raw: true, hist_access_type: "search", pattern: "const a*" })).toEqual([
      [1, 1, "const a = 1"],
      [1, 3, "const a = 2"],
    ]);
    expect(history.query({ output: false, raw: true, hist_access_type: "search", pattern: "const a = ?", n: 1 })).toEqual([
      [1, 3, "const a = 2"],
    ]);
  });

  it("pairs each input with a null output when outputs are asked for (inputs only are recorded)", () => {
    const history = new History({ file: null, log: memoryLog() });
    history.record(1, "1 + 1");
    expect(history.query({ ...tail(1), output: true })).toEqual([[1, 1, ["1 + 1", null]]]);
  });

  it("keeps only the newest of repeated inputs when asked for unique matches", () => {
    const history = new History({ file: null, log: memoryLog() });
    history.record(1, "x");
    history.record(2, "y");
    history.record(3, "x");
    expect(history.query({ output: false, raw: true, hist_access_type: "search", pattern: "*", unique: true })).toEqual([
      [1, 2, "y"],
      [1, 3, "x"],
    ]);
  });

  it("persists across kernel runs, numbering each run as a new session", () => {
    const file = tempFile();
    const first = new History({ file, log: memoryLog() });
    first.record(1, "let kept = 1");
    first.dispose(); // the first kernel process ended
    const second = new History({ file, log: memoryLog() });
    expect(second.session).toBe(2);
    second.record(1, "kept");
    expect(second.query(tail(10))).toEqual([
      [1, 1, "let kept = 1"],
      [2, 1, "kept"],
    ]);
    expect(second.query({ output: false, raw: true, hist_access_type: "range", session: -1 })).toEqual([[1, 1, "let kept = 1"]]);
  });

  it("survives a torn or foreign line in the file and says so", () => {
    const file = tempFile();
    const writer = new History({ file, log: memoryLog() });
    writer.record(1, "good");
    writer.dispose();
    appendFileSync(file, '{"session": 1, "line": 2, "sour');
    const log = memoryLog();
    const history = new History({ file, log });
    expect(history.query(tail(10))).toEqual([[1, 1, "good"]]);
    expect(log.lines.join("\n")).toMatch(/ignored 1 unreadable line/);
  });

  it("keeps working in memory when the file cannot be written, and logs it once", () => {
    const dir = tempDir();
    const blocker = join(dir, "not-a-dir");
    writeFileSync(blocker, "");
    const log = memoryLog();
    const history = new History({ file: join(blocker, "history.jsonl"), log });
    history.record(1, "a");
    history.record(2, "b");
    expect(history.query(tail(10))).toHaveLength(2);
    expect(log.lines.filter((l) => l.includes("cannot write"))).toHaveLength(1);
  });

  it("bounds the file: a long history is compacted to the newest entries at start-up", () => {
    const file = tempFile();
    const writer = new History({ file, limit: 5, log: memoryLog() });
    for (let i = 1; i <= 12; i++) writer.record(i, `cell ${i}`);
    writer.dispose();
    const reader = new History({ file, limit: 5, log: memoryLog() });
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(5);
    expect(reader.query(tail(1))).toEqual([[1, 12, "cell 12"]]);
  });

  it("compacts byte for byte: the newest lines stay as written, long ones and unreadable ones included", () => {
    const file = tempFile();
    const writer = new History({ file, limit: 3, log: memoryLog() });
    writer.record(1, "old 1");
    writer.record(2, "old 2");
    writer.record(3, "old 3");
    writer.dispose();
    const long = JSON.stringify({ session: 1, line: 4, source: "z".repeat(200_000) });
    appendFileSync(file, `${long}\nnot json\n${JSON.stringify({ session: 1, line: 5, source: "new \u00e9\u{1F600}" })}\n`);
    const before = readFileSync(file, "utf8");
    new History({ file, limit: 3, log: memoryLog() });
    const after = readFileSync(file, "utf8");
    expect(after).toBe(before.slice(before.indexOf(long)));
    expect(existsSync(`${file}.compact-${process.pid}`)).toBe(false);
    const log = memoryLog();
    expect(new History({ file, limit: 3, log }).query(tail(10))).toEqual([
      [1, 4, "z".repeat(200_000)],
      [1, 5, "new \u00e9\u{1F600}"],
    ]);
    expect(log.lines.some((l) => l.includes("ignored 1 unreadable line"))).toBe(true);
  });

  it("compacts a long file without holding it: the heap does not grow by the file's size", () => {
    const file = tempFile();
    const line = JSON.stringify({ session: 1, line: 1, source: "w".repeat(480) }) + "\n";
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, line.repeat(60_000)); // ~30 MB
    const heapBefore = process.memoryUsage().heapUsed;
    const history = new History({ file, limit: 1000, log: memoryLog() });
    const grown = process.memoryUsage().heapUsed - heapBefore;
    // Reading and parsing it whole left the 30 MB text and 60,000 entries on the heap until a full GC.
    expect(grown).toBeLessThan(8 * 1024 * 1024);
    expect(readFileSync(file, "utf8")).toBe(line.repeat(1000));
    expect(history.query(tail(1))).toEqual([[1, 1, "w".repeat(480)]]);
  });

  it("reads the file when asked, so entries another kernel appended meanwhile are offered too", () => {
    const file = tempFile();
    const mine = new History({ file, log: memoryLog() });
    mine.record(1, "mine");
    mine.flush();
    const other = new History({ file, log: memoryLog() });
    other.record(1, "theirs");
    other.flush();
    expect(mine.query(tail(10))).toEqual([
      [1, 1, "mine"],
      [2, 1, "theirs"],
    ]);
  });

  it("numbers the session after the file's last one even when the last entry is longer than a read chunk", () => {
    const file = tempFile();
    const first = new History({ file, log: memoryLog() });
    first.record(1, "short");
    first.record(2, "x".repeat(300_000));
    first.dispose();
    const second = new History({ file, log: memoryLog() });
    expect(second.session).toBe(2);
    expect(second.query(tail(1))).toEqual([[1, 2, "x".repeat(300_000)]]);
  });

  it("appends off the execute path: on the next turn of the event loop, before a query, or at dispose", async () => {
    const file = tempFile();
    const history = new History({ file, log: memoryLog() });
    history.record(1, "a");
    history.record(2, "b");
    expect(existsSync(file)).toBe(false);
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Both lines in one append, one turn later.
    expect(readFileSync(file, "utf8")).toBe('{"session":1,"line":1,"source":"a"}\n{"session":1,"line":2,"source":"b"}\n');
    history.record(3, "c");
    expect(history.query(tail(1))).toEqual([[1, 3, "c"]]);
    history.record(4, "d");
    history.dispose();
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(4);
    // After dispose (the kernel is exiting) a record is written at once.
    history.record(5, "e");
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(5);
  });

  it("recreates its directory when it disappears between writes", () => {
    const file = tempFile();
    const log = memoryLog();
    const history = new History({ file, log });
    history.record(1, "a");
    history.flush();
    rmSync(dirname(file), { recursive: true });
    history.record(2, "b");
    history.dispose();
    expect(readFileSync(file, "utf8")).toBe('{"session":1,"line":2,"source":"b"}\n');
    expect(log.lines).toEqual([]);
  });

  it("lives under XDG_DATA_HOME unless TSNB_HISTORY_FILE names a file or turns it off", () => {
    expect(defaultHistoryFile({ XDG_DATA_HOME: "/data" })).toBe("/data/tsnb/history.jsonl");
    expect(defaultHistoryFile({ TSNB_HISTORY_FILE: "/x/h.jsonl" })).toBe("/x/h.jsonl");
    expect(defaultHistoryFile({ TSNB_HISTORY_FILE: "" })).toBe(null);
  });
});

describe("history_request against the real kernel", () => {
  let kernel: RunningKernel | null = null;
  afterEach(async () => {
    await kernel?.kill();
    kernel = null;
  });

  it("returns executed cells with their execution counts, and not silent or unstored ones", async () => {
    const file = join(tempDir(), "history.jsonl");
    kernel = await startKernel({ env: { ...process.env, TSNB_HISTORY_FILE: file } });
    await kernel.client.execute("const answer = 42");
    await kernel.client.execute("answer + 1");
    await kernel.client.execute("'hidden'", { content: { silent: true } });
    await kernel.client.execute("'unstored'", { content: { store_history: false } });
    const { reply } = await kernel.client.request("shell", "history_request", { ...tail(10) });
    expect(reply.content).toEqual({
      status: "ok",
      history: [
        [1, 1, "const answer = 42"],
        [1, 2, "answer + 1"],
      ],
    });
    await kernel.kill();
    kernel = await startKernel({ env: { ...process.env, TSNB_HISTORY_FILE: file } });
    const search = await kernel.client.request("shell", "history_request", {
      output: false,
      raw: true,
      hist_access_type: "search",
      pattern: "answer*",
    });
    expect(search.reply.content.history).toEqual([[1, 2, "answer + 1"]]);
  });

  it("answers a malformed history_request with a clear error reply", async () => {
    kernel = await startKernel();
    const { reply } = await kernel.client.request("shell", "history_request", { hist_access_type: "tail", n: "ten" });
    expect(reply.content).toMatchObject({ status: "error", ename: "InvalidRequest" });
    expect(String(reply.content.evalue)).toMatch(/"n" must be a non-negative integer/);
  });
});
