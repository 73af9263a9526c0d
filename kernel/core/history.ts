// Input history for history_request (jupyter console's up-arrow, %history-style front-ends).
//
// Entries are kept per kernel process ("session", numbered like IPython's: 1, 2, ... across runs) and appended to
// a JSON-lines file so a restarted kernel still offers earlier sessions' input. The file is bounded: at start-up
// it is rewritten to the newest entries when it has grown past twice that many.
//
// The file, not memory, holds the entries (as IPython's SQLite database does): a kernel that loaded them kept
// every past cell's source on its heap for the whole session, 3 MB RSS for a 13,600-line file of one-line cells
// and more for real cells. Start-up reads only the file's tail (for the session number) and counts its lines;
// history_request, which front-ends send rarely (a console's start, a search), reads the file when asked.
//
// Compaction copies the newest lines byte for byte, a chunk at a time: parsing the whole file left its text and
// every entry as garbage that a quiet kernel kept for the rest of the session (a 6.6 MB file of 20,000 cells:
// 59-61.5 MB kernel RSS after 300 round trips instead of 50.8).
//
// Appends leave the execute path: `record` runs between a cell's reply and the next request, and a synchronous
// mkdir + append there cost ~0.07 ms of every round trip. Entries are written on the next turn of the event loop
// (one write for all recorded meanwhile), before any query, and on dispose(); a kernel killed in between loses
// at most those.

import { appendFileSync, closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { HistoryRequestContent, JsonValue } from "../../protocol/jupyter.js";
import type { Disposable } from "../../protocol/disposable.js";
import { errorMessage, type Log } from "../log.js";

export interface HistoryEntry {
  session: number;
  line: number;
  source: string;
}

export interface HistoryOptions {
  /** JSON-lines file; null keeps history in memory only. */
  file: string | null;
  /** Entries kept (in memory and, after compaction, on disk). */
  limit?: number;
  log: Log;
}

/** Where history lives unless TSNB_HISTORY_FILE says otherwise ("" turns persistence off). */
export function defaultHistoryFile(env: NodeJS.ProcessEnv): string | null {
  if (env.TSNB_HISTORY_FILE !== undefined) return env.TSNB_HISTORY_FILE === "" ? null : env.TSNB_HISTORY_FILE;
  const dataHome = env.XDG_DATA_HOME && env.XDG_DATA_HOME !== "" ? env.XDG_DATA_HOME : join(homedir(), ".local", "share");
  return join(dataHome, "tsnb", "history.jsonl");
}

function isEntry(value: unknown): value is HistoryEntry {
  if (value === null || typeof value !== "object") return false;
  const v = value as Record<string, unknown>;
  return Number.isInteger(v.session) && Number.isInteger(v.line) && typeof v.source === "string";
}

/** Jupyter's history `pattern` is a glob: `*` any run of characters, `?` one character. */
function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[\\s\\S]*").replace(/\?/g, "[\\s\\S]");
  return new RegExp(`^${escaped}$`);
}

/** Bytes read per step when counting lines and looking for the last entries. */
const CHUNK = 64 * 1024;

export class History implements Disposable {
  /** Entries of this session that could not be written to the file (or all of them without a file). */
  private unsaved: HistoryEntry[] = [];
  /** Entries recorded but not yet appended to the file. */
  private unwritten: HistoryEntry[] = [];
  private flushTimer: NodeJS.Immediate | null = null;
  readonly session: number;
  private readonly limit: number;
  private persistFailed = false;
  private readWarned = false;
  private dirReady = false;
  private disposed = false;

  constructor(private readonly options: HistoryOptions) {
    this.limit = options.limit ?? 10_000;
    this.session = this.lastSession() + 1;
    if (options.file !== null && this.countLines(options.file) >= 2 * this.limit) this.compact();
  }

  record(line: number, source: string): void {
    const entry: HistoryEntry = { session: this.session, line, source };
    if (this.options.file !== null && !this.persistFailed) {
      this.unwritten.push(entry);
      if (this.disposed) this.flush();
      else this.flushTimer ??= setImmediate(() => this.flush());
      return;
    }
    this.keepUnsaved([entry]);
  }

  /** Appends every entry recorded so far (what could not be written stays in memory). */
  flush(): void {
    if (this.flushTimer) clearImmediate(this.flushTimer);
    this.flushTimer = null;
    if (this.unwritten.length === 0) return;
    const entries = this.unwritten;
    this.unwritten = [];
    this.write(() => appendFileSync(this.options.file!, entries.map((e) => JSON.stringify(e) + "\n").join("")));
    if (this.persistFailed) this.keepUnsaved(entries);
  }

  /** Writes what is pending; later records are written at once. Idempotent. */
  dispose(): void {
    this.disposed = true;
    this.flush();
  }

  private keepUnsaved(entries: HistoryEntry[]): void {
    this.unsaved.push(...entries);
    if (this.unsaved.length > 2 * this.limit) this.unsaved = this.unsaved.slice(-this.limit);
  }

  /** The `history` list of a history_reply: [session, line, source] triples, oldest first. */
  query(request: HistoryRequestContent): JsonValue[] {
    this.flush();
    const entries = [...this.load(), ...this.unsaved].slice(-2 * this.limit);
    // With `output`, the third item is [input, output]; tsnb records inputs only, so output is null (as in
    // IPython when output logging is off).
    const triples = (list: HistoryEntry[]): JsonValue[] =>
      list.map((e) => [e.session, e.line, request.output ? [e.source, null] : e.source]);
    switch (request.hist_access_type) {
      case "tail":
        return triples(entries.slice(-Math.max(0, request.n ?? 10)));
      case "range": {
        // Negative or zero session numbers count back from the current one (IPython's convention).
        const requested = request.session ?? 0;
        const session = requested <= 0 ? this.session + requested : requested;
        const start = request.start ?? 1;
        const stop = request.stop ?? Number.POSITIVE_INFINITY;
        return triples(entries.filter((e) => e.session === session && e.line >= start && e.line < stop));
      }
      case "search": {
        const regex = globToRegExp(request.pattern ?? "*");
        let matches = entries.filter((e) => regex.test(e.source));
        if (request.unique) {
          const seen = new Set<string>();
          matches = matches.reverse().filter((e) => (seen.has(e.source) ? false : (seen.add(e.source), true))).reverse();
        }
        return triples(request.n !== undefined ? matches.slice(-request.n) : matches);
      }
      default: {
        const unreachable: never = request.hist_access_type;
        return unreachable;
      }
    }
  }

  /** Valid entries of a block of JSON lines, and how many lines were not entries. */
  private static parse(text: string): { entries: HistoryEntry[]; skipped: number } {
    const entries: HistoryEntry[] = [];
    let skipped = 0;
    for (const line of text.split("\n")) {
      if (line === "") continue;
      try {
        const value: unknown = JSON.parse(line);
        if (isEntry(value)) entries.push(value);
        else skipped++;
      } catch {
        // A torn last line (a kernel killed mid-write) must not cost the rest of the file; counted by the caller.
        skipped++;
      }
    }
    return { entries, skipped };
  }

  /** The file's entries (the newest 2 * limit), or none when there is no readable file. */
  private load(): HistoryEntry[] {
    const { file } = this.options;
    if (file === null) return [];
    const text = this.readFile(file, null, (fd) => readFileSync(fd, "utf8"));
    if (text === null) return [];
    const { entries, skipped } = History.parse(text);
    if (skipped > 0) this.warnOnce(`history: ignored ${skipped} unreadable line(s) in ${file}`);
    return entries.slice(-this.limit * 2);
  }

  /** Reading happens on every history_request: a broken file is reported once, not on every request. */
  private warnOnce(text: string): void {
    if (this.readWarned) return;
    this.readWarned = true;
    this.options.log.warn(text);
  }

  /**
   * The highest session number among the last entries of the file (0 without any): sessions only grow, so the
   * tail is enough. Reads backwards in chunks until a chunk holds a complete entry.
   */
  private lastSession(): number {
    const { file } = this.options;
    if (file === null) return 0;
    return this.readFile(file, 0, (fd) => {
      const size = fstatSync(fd).size;
      for (let length = Math.min(size, CHUNK); length > 0; length = Math.min(size, length * 4)) {
        const buffer = Buffer.alloc(length);
        const read = readSync(fd, buffer, 0, length, size - length);
        const text = buffer.toString("utf8", 0, read);
        // The first line of a chunk that does not start the file is probably cut: only whole lines count.
        const whole = length === size ? text : text.slice(text.indexOf("\n") + 1);
        const { entries } = History.parse(whole);
        if (entries.length > 0) return entries.reduce((max, e) => Math.max(max, e.session), 0);
        if (length === size) break;
      }
      return 0;
    });
  }

  /** Lines in the file, counted in fixed-size chunks so a long file is never held in memory at start-up. */
  private countLines(file: string): number {
    return this.readFile(file, 0, (fd) => {
      const buffer = Buffer.alloc(CHUNK);
      let lines = 0;
      for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) {
        for (let at = buffer.indexOf(10); at !== -1 && at < read; at = buffer.indexOf(10, at + 1)) lines++;
      }
      return lines;
    });
  }

  /**
   * Runs `read` on the open file. A missing file is an empty history; any other failure is logged once and
   * also gives `empty`: history is a convenience, never a reason for a request or a start-up to fail.
   */
  private readFile<T>(file: string, empty: T, read: (fd: number) => T): T {
    let fd: number;
    try {
      fd = openSync(file, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.warnOnce(`history: cannot read ${file}: ${errorMessage(err)}`);
      return empty;
    }
    try {
      return read(fd);
    } catch (err) {
      this.warnOnce(`history: cannot read ${file}: ${errorMessage(err)}`);
      return empty;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Rewrites the file to its newest `limit` lines (unreadable ones included: queries skip those anyway), found by
   * counting newlines backwards from the end and copied through one fixed-size buffer, then renamed over the file.
   */
  private compact(): void {
    const file = this.options.file!;
    this.write(() => {
      const fd = openSync(file, "r");
      try {
        const size = fstatSync(fd).size;
        const start = History.tailStart(fd, size, this.limit);
        if (start === 0) return;
        const temp = `${file}.compact-${process.pid}`;
        try {
          const out = openSync(temp, "w");
          try {
            const buffer = Buffer.alloc(CHUNK);
            for (let at = start; at < size; ) {
              const read = readSync(fd, buffer, 0, Math.min(CHUNK, size - at), at);
              if (read === 0) break;
              writeSync(out, buffer, 0, read);
              at += read;
            }
          } finally {
            closeSync(out);
          }
          renameSync(temp, file);
        } catch (err) {
          rmSync(temp, { force: true });
          throw err;
        }
      } finally {
        closeSync(fd);
      }
    });
  }

  /** Byte offset where the last `lines` lines of the file begin (0: it has no more than that). */
  private static tailStart(fd: number, size: number, lines: number): number {
    const buffer = Buffer.alloc(CHUNK);
    // A newline ending the file closes the last line; it does not start another.
    let end = size;
    let seen = 0;
    while (end > 0) {
      const begin = Math.max(0, end - CHUNK);
      const read = readSync(fd, buffer, 0, end - begin, begin);
      for (let i = read - 1; i >= 0; i--) {
        if (buffer[i] !== 10 || begin + i === size - 1) continue;
        seen++;
        if (seen === lines) return begin + i + 1;
      }
      end = begin;
    }
    return 0;
  }

  private write(action: () => void): void {
    if (this.options.file === null || this.persistFailed) return;
    try {
      // The directory is made once; if it disappears later, the append fails and is retried after a mkdir.
      if (!this.dirReady) mkdirSync(dirname(this.options.file), { recursive: true });
      this.dirReady = true;
      try {
        action();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        mkdirSync(dirname(this.options.file), { recursive: true });
        action();
      }
    } catch (err) {
      // History is a convenience: a read-only home must not break execution. Say so once, keep it in memory.
      this.persistFailed = true;
      this.options.log.warn(`history: cannot write ${this.options.file}, keeping history in memory only: ${errorMessage(err)}`);
    }
  }
}
