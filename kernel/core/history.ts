// Input history for history_request (jupyter console's up-arrow, %history-style front-ends).
//
// Entries are kept per kernel process ("session", numbered like IPython's: 1, 2, ... across runs) and appended to
// a JSON-lines file so a restarted kernel still offers earlier sessions' input. The file is bounded: at start-up
// only the newest entries are loaded, and it is rewritten when it grows past twice that.

import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { HistoryRequestContent, JsonValue } from "../../protocol/jupyter.js";
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

export class History {
  private entries: HistoryEntry[] = [];
  readonly session: number;
  private readonly limit: number;
  private persistFailed = false;

  constructor(private readonly options: HistoryOptions) {
    this.limit = options.limit ?? 10_000;
    this.entries = this.load();
    this.session = this.entries.reduce((max, e) => Math.max(max, e.session), 0) + 1;
    if (options.file !== null && this.entries.length >= 2 * this.limit) this.compact();
  }

  record(line: number, source: string): void {
    const entry: HistoryEntry = { session: this.session, line, source };
    this.entries.push(entry);
    if (this.entries.length > 2 * this.limit) this.entries = this.entries.slice(-this.limit);
    this.persist(entry);
  }

  /** The `history` list of a history_reply: [session, line, source] triples, oldest first. */
  query(request: HistoryRequestContent): JsonValue[] {
    // With `output`, the third item is [input, output]; tsnb records inputs only, so output is null (as in
    // IPython when output logging is off).
    const triples = (list: HistoryEntry[]): JsonValue[] =>
      list.map((e) => [e.session, e.line, request.output ? [e.source, null] : e.source]);
    switch (request.hist_access_type) {
      case "tail":
        return triples(this.entries.slice(-Math.max(0, request.n ?? 10)));
      case "range": {
        // Negative or zero session numbers count back from the current one (IPython's convention).
        const requested = request.session ?? 0;
        const session = requested <= 0 ? this.session + requested : requested;
        const start = request.start ?? 1;
        const stop = request.stop ?? Number.POSITIVE_INFINITY;
        return triples(this.entries.filter((e) => e.session === session && e.line >= start && e.line < stop));
      }
      case "search": {
        const regex = globToRegExp(request.pattern ?? "*");
        let matches = this.entries.filter((e) => regex.test(e.source));
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

  private load(): HistoryEntry[] {
    const { file, log } = this.options;
    if (file === null) return [];
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") log.warn(`history: cannot read ${file}: ${errorMessage(err)}`);
      return [];
    }
    const entries: HistoryEntry[] = [];
    let skipped = 0;
    for (const line of text.split("\n")) {
      if (line === "") continue;
      try {
        const value: unknown = JSON.parse(line);
        if (isEntry(value)) entries.push(value);
        else skipped++;
      } catch {
        // A torn last line (a kernel killed mid-write) must not cost the rest of the file; counted below.
        skipped++;
      }
    }
    if (skipped > 0) log.warn(`history: ignored ${skipped} unreadable line(s) in ${file}`);
    return entries.slice(-this.limit * 2);
  }

  private compact(): void {
    this.entries = this.entries.slice(-this.limit);
    this.write(() => writeFileSync(this.options.file!, this.entries.map((e) => JSON.stringify(e) + "\n").join("")));
  }

  private persist(entry: HistoryEntry): void {
    this.write(() => appendFileSync(this.options.file!, JSON.stringify(entry) + "\n"));
  }

  private write(action: () => void): void {
    if (this.options.file === null || this.persistFailed) return;
    try {
      mkdirSync(dirname(this.options.file), { recursive: true });
      action();
    } catch (err) {
      // History is a convenience: a read-only home must not break execution. Say so once, keep it in memory.
      this.persistFailed = true;
      this.options.log.warn(`history: cannot write ${this.options.file}, keeping history in memory only: ${errorMessage(err)}`);
    }
  }
}
