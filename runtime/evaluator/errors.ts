// Error reports in Jupyter's shape (ename, evalue, traceback lines with ANSI colours like ipykernel):
// stack frames in cells are mapped back to the TypeScript line and column through esbuild's source map,
// frames from tsnb's own code and Node internals are dropped, and the first cell frame gets a source
// excerpt with a caret under the column.

import { inspect } from "node:util";
import { SourceMap, type SourceMapPayload } from "node:module";
import type { ErrorContent } from "../../protocol/jupyter.js";

const RED = "\u001b[31m";
const CYAN = "\u001b[36m";
const BOLD = "\u001b[1m";
const RESET = "\u001b[0m";

export interface CellSource {
  /** null: the cell ran as written, generated positions are source positions. */
  map: SourceMapPayload | null;
  /**
   * The cell as the user wrote it, one string: split into lines only for an error's excerpt (an array of
   * line strings was ~40 bytes per line for each of the 500 remembered cells).
   */
  source: string;
  /** Columns inserted by the compiler on one (1-based) line, to subtract after mapping. */
  columnShift: { line: number; by: number } | null;
}

export interface Position {
  fileName: string;
  /** 1-based */
  line: number;
  /** 1-based */
  column: number;
}

function excerpt(sourceLines: readonly string[], line: number, column: number): string[] {
  const text = sourceLines[line - 1];
  if (text === undefined) return [];
  const gutter = String(line);
  const pad = " ".repeat(gutter.length);
  const caretPad = text.slice(0, Math.max(0, column - 1)).replace(/[^\t]/g, " ");
  return [`${CYAN}${gutter} |${RESET} ${text}`, `${CYAN}${pad} |${RESET} ${caretPad}${RED}^${RESET}`];
}

export function formatSyntaxError(options: {
  fileName: string;
  message: string;
  /** 1-based, null when unknown */
  line: number | null;
  /** 0-based (esbuild's convention), null when unknown */
  column: number | null;
  sourceLines: readonly string[];
}): ErrorContent {
  const where = options.line !== null ? `${options.fileName}:${options.line}:${(options.column ?? 0) + 1}` : options.fileName;
  const evalue = `${options.message} (${where})`;
  const traceback = [`${RED}${BOLD}SyntaxError${RESET}: ${evalue}`];
  if (options.line !== null) traceback.push(...excerpt(options.sourceLines, options.line, (options.column ?? 0) + 1));
  return { ename: "SyntaxError", evalue, traceback };
}

const FRAME = /^\s*at (?:(.*?) \()?((?:async )?)(.+?):(\d+):(\d+)\)?$/;

export interface StackMapperOptions {
  /** File URLs/paths of tsnb's own bundles: frames there are internal. */
  internalPrefixes: readonly string[];
  /** How many cells' source maps to keep for errors from late callbacks. */
  capacity?: number;
}

/** How many cells' maps stay decoded: a traceback usually goes through one or two cells. */
const DECODED_CAPACITY = 4;

export class StackMapper {
  private readonly cells = new Map<string, CellSource>();
  /**
   * Node's SourceMap decodes every mapping into an array of its own (~50 bytes each, thousands per cell of a
   * few hundred lines), so maps are kept as esbuild's compact VLQ string and decoded only for an error.
   */
  private readonly decoded = new Map<string, SourceMap>();
  private readonly capacity: number;

  constructor(private readonly options: StackMapperOptions) {
    this.capacity = options.capacity ?? 500;
  }

  register(fileName: string, source: CellSource): void {
    this.cells.delete(fileName);
    this.decoded.delete(fileName);
    this.cells.set(fileName, source);
    while (this.cells.size > this.capacity) {
      const oldest = this.cells.keys().next().value;
      if (oldest === undefined) break;
      this.cells.delete(oldest);
      this.decoded.delete(oldest);
    }
  }

  has(fileName: string): boolean {
    return this.cells.has(fileName);
  }

  /** Maps a generated position in a cell (1-based) to the TypeScript source, or null. */
  mapPosition(fileName: string, line: number, column: number): Position | null {
    const cell = this.cells.get(fileName);
    if (!cell) return null;
    if (cell.map === null) return { fileName, line, column };
    const entry = this.decode(fileName, cell.map).findEntry(line - 1, column - 1) as Partial<{ originalLine: number; originalColumn: number }>;
    if (typeof entry.originalLine !== "number" || typeof entry.originalColumn !== "number") return null;
    const mappedLine = entry.originalLine + 1;
    let mappedColumn = entry.originalColumn + 1;
    const shift = cell.columnShift;
    if (shift && shift.line === mappedLine) mappedColumn = Math.max(1, mappedColumn - shift.by);
    return { fileName, line: mappedLine, column: mappedColumn };
  }

  private decode(fileName: string, payload: SourceMapPayload): SourceMap {
    let map = this.decoded.get(fileName);
    if (map === undefined) map = new SourceMap(payload);
    this.decoded.delete(fileName);
    this.decoded.set(fileName, map);
    while (this.decoded.size > DECODED_CAPACITY) {
      const oldest = this.decoded.keys().next().value;
      if (oldest === undefined) break;
      this.decoded.delete(oldest);
    }
    return map;
  }

  private isInternal(file: string): boolean {
    if (file.startsWith("node:internal") || file === "node:async_hooks" || file === "node:inspector" || file === "<anonymous>") return true;
    return this.options.internalPrefixes.some((prefix) => file.startsWith(prefix));
  }

  /** Builds the Jupyter error content for any thrown value. */
  format(thrown: unknown): ErrorContent {
    if (!(thrown instanceof Error) && !(typeof thrown === "object" && thrown !== null && typeof (thrown as { stack?: unknown }).stack === "string")) {
      const evalue = inspect(thrown, { depth: 2 });
      return { ename: "Uncaught", evalue, traceback: [`${RED}${BOLD}Uncaught${RESET} ${evalue}`] };
    }
    const error = thrown as Error;
    const ename = safeString(() => error.name, "Error") || "Error";
    const evalue = safeString(() => error.message, "");
    const stack = safeString(() => String(error.stack ?? ""), "");
    const lines = stack.split("\n");
    const firstFrame = lines.findIndex((line) => FRAME.test(line));
    const frames = firstFrame < 0 ? [] : lines.slice(firstFrame);
    const traceback = [`${RED}${BOLD}${ename}${RESET}: ${evalue}`];
    let snippet: string[] = [];
    for (const frame of frames) {
      const match = FRAME.exec(frame);
      if (!match) continue;
      const [, fn, asyncPrefix, file, lineText, columnText] = match;
      if (file === undefined || this.isInternal(file)) continue;
      const mapped = this.mapPosition(file, Number(lineText), Number(columnText));
      const where = mapped ? `${file}:${mapped.line}:${mapped.column}` : `${file}:${lineText}:${columnText}`;
      const name = fn ? `${asyncPrefix ?? ""}${fn}` : asyncPrefix ? "async <cell>" : null;
      traceback.push(name ? `    at ${name} (${CYAN}${where}${RESET})` : `    at ${CYAN}${where}${RESET}`);
      if (mapped && snippet.length === 0) {
        const cell = this.cells.get(file);
        if (cell) snippet = ["", `${CYAN}${where}${RESET}`, ...excerpt(cell.source.split("\n"), mapped.line, mapped.column)];
      }
    }
    traceback.push(...snippet);
    return { ename, evalue, traceback };
  }
}

function safeString(read: () => unknown, fallback: string): string {
  try {
    const value = read();
    return typeof value === "string" ? value : value === undefined ? fallback : String(value);
  } catch (err) {
    return `${fallback} (unreadable: ${err instanceof Error ? err.message : String(err)})`;
  }
}
