// Turns a cell's TypeScript into JavaScript that V8's REPL mode can evaluate:
//   1. magic lines (`!cmd`, `%cd dir`, ...) become awaited calls of runtime helpers, on the same line;
//   2. esbuild strips types (enums, decorators, namespaces supported) and produces a source map;
//   3. acorn parses the output and import declarations, `import()`, `import.meta` and `export` keywords
//      are rewritten in place, keeping every line where it was so the source map stays valid.

import type { Message, TransformFailure } from "esbuild";
import { parse, type Node, type Options as AcornOptions, type Token } from "acorn";
import type { SourceMapPayload } from "node:module";
import type { ErrorContent } from "../../protocol/jupyter.js";
import { formatSyntaxError } from "./errors.js";

/** Names of the runtime helpers the rewritten code calls. They live on globalThis, non-enumerable. */
export const HELPERS = {
  import: "__tsnb_import",
  named: "__tsnb_named",
  meta: "__tsnb_import_meta",
  magic: "__tsnb_magic",
  shell: "__tsnb_shell",
  keep: "__tsnb_keep",
} as const;

export interface CompiledCell {
  type: "ok";
  js: string;
  /**
   * esbuild's source map, undecoded (decoded only when an error needs it: see StackMapper), without the
   * source text, which `source` holds. null when the cell was plain JavaScript, evaluated as written
   * (positions map to themselves).
   */
  map: SourceMapPayload | null;
  fileName: string;
  /** The cell's source lines as the user wrote them (before magic translation). */
  source: string;
  /** Columns the last-expression wrapper inserted on one line; source-mapped columns there are shifted. */
  columnShift: { line: number; by: number } | null;
  /**
   * The cell needs V8's REPL mode: it declares let/const/class at the top level (re-running it must be able to
   * redeclare them) or awaits at the top level (imports and magics become awaits). Other cells are evaluated as
   * ordinary scripts, which mean the same for them and cost the inspector a third of the time (see needsReplMode).
   */
  replMode: boolean;
}

export type CompileResult = CompiledCell | ({ type: "syntax_error" } & ErrorContent);

export interface CompileOptions {
  code: string;
  fileName: string;
  experimentalDecorators: boolean;
}

const MAGIC_LINE = /^(\s*)%([A-Za-z_][\w-]*)(?:[ \t]+(.*))?$/;
const SHELL_LINE = /^(\s*)!(.*)$/;

/** Replaces magic and shell lines with awaited helper calls; line count is preserved. */
export function translateMagics(code: string): string {
  return code
    .split("\n")
    .map((line) => {
      const magic = MAGIC_LINE.exec(line);
      if (magic) {
        const [, indent, name, args] = magic;
        return `${indent}await ${HELPERS.magic}(${JSON.stringify(name)}, ${JSON.stringify((args ?? "").trim())});`;
      }
      const shell = SHELL_LINE.exec(line);
      // `!=` / `!!x` / `!(...)` style lines are TypeScript, not shell commands.
      if (shell && /^[^\s=!(]/.test(shell[2] ?? "")) {
        const [, indent, command] = shell;
        return `${indent}await ${HELPERS.shell}(${JSON.stringify((command ?? "").trim())});`;
      }
      return line;
    })
    .join("\n");
}

type TransformOutcome = { type: "ok"; code: string; map: string } | { type: "error"; error: Message | undefined; thrown: unknown };

async function transformTs(code: string, options: CompileOptions): Promise<TransformOutcome> {
  try {
    // Loaded on first use: a notebook whose first cells are plain JavaScript starts without esbuild.
    const { transform } = await import("esbuild");
    const result = await transform(code, {
      loader: "ts",
      format: "esm",
      target: "es2022",
      // es2022 keeps esbuild lowering decorators (Node 20 has none) but would drop import attributes.
      supported: { "import-attributes": true },
      sourcemap: "external",
      // The source is kept once, as the cell's source lines; in the map it would be a second copy per cell.
      sourcesContent: false,
      sourcefile: options.fileName,
      // Keep imports whose bindings look unused: a later cell may use them. Type-only imports
      // (`import type`) are still removed.
      tsconfigRaw: {
        compilerOptions: {
          verbatimModuleSyntax: true,
          experimentalDecorators: options.experimentalDecorators,
          useDefineForClassFields: true,
        },
      },
      logLevel: "silent",
    });
    return { type: "ok", code: result.code, map: result.map };
  } catch (err) {
    const failure = err as Partial<TransformFailure>;
    if (!Array.isArray(failure.errors)) throw err;
    return { type: "error", error: failure.errors[0], thrown: err };
  }
}

// Lines that cannot start an expression statement at the top level.
const NOT_EXPRESSION_START =
  /^\s*(?:$|\/\/|\/\*|[})\].,;:?=&|*%>]|export\b|import\b|function\b|async\s+function\b|class\b|abstract\b|const\b|let\b|var\b|enum\b|interface\b|type\s+[A-Za-z_$][\w$]*\s*[=<]|namespace\b|module\s|declare\b|@|if\b|else\b|for\b|while\b|do\b|switch\b|case\b|default\b|try\b|catch\b|finally\b|return\b|throw\b|break\b|continue\b|using\b)/;
const MAX_TAIL_LINES = 40;

/**
 * esbuild drops expression statements it considers pure (`-1`, `NaN`, `"a" + "b"`...), which would lose
 * the cell's completion value. So the last top-level expression is found by trial: for each candidate
 * start line, counting up from the end, wrap the rest in `__tsnb_keep(...)` and keep the first variant
 * that compiles. Candidates start at column 0 (or on the last line), which is where top-level statements
 * start in practice, so a cell needs few tries.
 */
function continuesPreviousLine(lines: readonly string[], k: number): boolean {
  for (let i = k - 1; i >= 0; i--) {
    const text = lines[i]!.replace(/\/\/.*$/, "").trim();
    if (text === "") continue;
    return !/[;{}]$/.test(text);
  }
  return false;
}

async function transformKeepingLastExpression(
  translated: string,
  options: CompileOptions,
): Promise<{ outcome: Extract<TransformOutcome, { type: "ok" }>; shift: CompiledCell["columnShift"] } | null> {
  const lines = translated.split("\n");
  let end = lines.length;
  while (end > 0 && /^\s*(?:\/\/.*)?$/.test(lines[end - 1]!)) end--;
  if (end === 0) return null;
  // No leading `;`: an identifier at the start of the line ends the previous statement exactly where
  // JavaScript's automatic semicolon insertion would, so the wrapper cannot split a statement...
  const prefix = `${HELPERS.keep}(`;
  for (let k = end - 1; k >= Math.max(0, end - MAX_TAIL_LINES); k--) {
    const first = lines[k]!;
    if (NOT_EXPRESSION_START.test(first)) continue;
    if (k !== end - 1 && /^\s/.test(first)) continue;
    // ...except before `(`, `[`, a template or a unary sign, which continue an unterminated line above.
    if (/^\s*[([`+\-/]/.test(first) && continuesPreviousLine(lines, k)) continue;
    const tail = lines.slice(k, end);
    tail[tail.length - 1] = tail[tail.length - 1]!.replace(/;\s*$/, "");
    const indent = /^\s*/.exec(first)![0];
    tail[0] = indent + prefix + tail[0]!.slice(indent.length);
    const candidate = [...lines.slice(0, k), ...tail.slice(0, -1), `${tail[tail.length - 1]}\n)`, ...lines.slice(end)].join("\n");
    const outcome = await transformTs(candidate, options);
    if (outcome.type === "ok") return { outcome, shift: { line: k + 1, by: prefix.length } };
  }
  return null;
}

/** How a cell reads as JavaScript (imports, exports and top-level await allowed): the same for both parses below. */
const CELL_PARSE_OPTIONS = {
  ecmaVersion: "latest",
  sourceType: "module",
  allowAwaitOutsideFunction: true,
  allowHashBang: true,
} as const satisfies AcornOptions;

/** Tokens that can open a type argument list (`f<T>`, `f<<T>() => T>`). */
const TYPE_ARGS_OPEN = new Set(["<", "<<"]);
/** Tokens that can close one: `>` and every token that starts with it (`f<A<B>>(x)` ends in `>>`). */
const TYPE_ARGS_CLOSE = new Set([">", ">=", ">>", ">>>", ">>=", ">>>="]);

/**
 * Plain JavaScript needs no esbuild: parse it with acorn and evaluate it as written. TypeScript syntax
 * fails that parse, except generic calls like `f<T>(x)`, which JavaScript reads as comparisons; so a cell
 * with both an opening `<` and a closing `>`-like token goes through esbuild, as do `using` declarations
 * (Node 20 cannot run them). A lone `<` (`for (let i = 0; i < n; i++)`) cannot be a type argument list,
 * and keeping such cells off esbuild spares its ~11 MB service process and its IPC round trip.
 */
function plainJavaScript(translated: string): AnyNode | null {
  let opens = false;
  let closes = false;
  let usesUsing = false;
  let program: AnyNode;
  try {
    program = parse(translated, {
      ...CELL_PARSE_OPTIONS,
      onToken: (token: Token) => {
        const value = (token as Token & { value?: unknown }).value;
        if (typeof value !== "string") return;
        if (TYPE_ARGS_OPEN.has(value) && token.type.label !== "string" && token.type.label !== "template") opens = true;
        else if (TYPE_ARGS_CLOSE.has(value) && token.type.label !== "string" && token.type.label !== "template") closes = true;
        else if (token.type.label === "name" && value === "using") usesUsing = true;
      },
    }) as unknown as AnyNode;
  } catch (err) {
    // Not JavaScript: TypeScript, or a syntax error that esbuild will report with its own message.
    if (err instanceof SyntaxError) return null;
    throw err;
  }
  if ((opens && closes) || usesUsing) return null;
  // `{ a: 1 }` as the last statement is a block to JavaScript but an object to a REPL user; the esbuild
  // path's last-expression wrapper reads it as the object, like Node's REPL.
  const body = program.body as AnyNode[];
  if (body.length > 0 && body[body.length - 1]!.type === "BlockStatement") return null;
  return program;
}

export async function compileCell(options: CompileOptions): Promise<CompileResult> {
  const translated = translateMagics(options.code);
  const plain = plainJavaScript(translated);
  if (plain) {
    const rewritten = rewriteParsed(translated, plain);
    return {
      type: "ok",
      js: withSourceUrl(rewritten, options.fileName),
      map: null,
      fileName: options.fileName,
      source: options.code,
      columnShift: null,
      replMode: needsReplMode(plain),
    };
  }
  let outcome: TransformOutcome;
  let columnShift: CompiledCell["columnShift"] = null;
  const kept = await transformKeepingLastExpression(translated, options);
  if (kept) {
    outcome = kept.outcome;
    columnShift = kept.shift;
  } else {
    outcome = await transformTs(translated, options);
  }
  if (outcome.type === "error") {
    if (!outcome.error) throw outcome.thrown;
    return {
      type: "syntax_error",
      ...formatSyntaxError({
        fileName: options.fileName,
        message: outcome.error.text,
        line: outcome.error.location?.line ?? null,
        column: outcome.error.location?.column ?? null,
        sourceLines: options.code.split("\n"),
      }),
    };
  }
  const rewritten = rewriteModuleSyntax(outcome.code);
  if (rewritten.type === "error") {
    return {
      type: "syntax_error",
      ...formatSyntaxError({ fileName: options.fileName, message: rewritten.message, line: null, column: null, sourceLines: options.code.split("\n") }),
    };
  }
  const map = JSON.parse(outcome.map) as SourceMapPayload;
  return {
    type: "ok",
    js: withSourceUrl(rewritten.code, options.fileName),
    map,
    fileName: options.fileName,
    source: options.code,
    columnShift,
    replMode: rewritten.replMode,
  };
}

function withSourceUrl(code: string, fileName: string): string {
  return `${code}\n//# sourceURL=${fileName}`;
}

/**
 * Compiles cells, remembering recent results by source text: re-running a cell skips esbuild (an IPC
 * round trip to its service process). Only the sourceURL differs between runs; the source map is keyed
 * by that name elsewhere, so the map object is shared.
 */
export interface CellCompilerOptions {
  /** Compiled cells remembered by source text. */
  capacity?: number;
  /**
   * esbuild's service process (13-15 MB RSS, plus ~2 MB in the program) is stopped after this long without a
   * TypeScript cell; the next one starts it again (7-10 ms). A notebook spends most of its life idle.
   */
  esbuildIdleMs?: number;
  /** Where a failure to stop esbuild is reported (the program's log, not a cell). */
  log?: (text: string) => void;
}

export class CellCompiler {
  // Keyed by the source itself: a key like `${flag}:${code}` was a second copy of every remembered cell's
  // source (V8 flattens a concatenated key), 28 KB per cell for a 28 KB cell.
  private readonly cache = new Map<string, { js: string; experimentalDecorators: boolean; compiled: CompiledCell }>();
  private readonly capacity: number;
  private readonly esbuildIdleMs: number;
  private readonly log: (text: string) => void;
  private esbuildIdleTimer: ReturnType<typeof setTimeout> | null = null;
  /** Compiles under way: esbuild is never stopped under one of them. */
  private compiling = 0;
  private disposed = false;

  constructor(options: CellCompilerOptions = {}) {
    this.capacity = options.capacity ?? 200;
    this.esbuildIdleMs = options.esbuildIdleMs ?? 30_000;
    this.log = options.log ?? ((text) => process.stderr.write(`${text}\n`));
  }

  async compile(options: CompileOptions): Promise<CompileResult> {
    const hit = this.cache.get(options.code);
    if (hit && hit.experimentalDecorators === options.experimentalDecorators) {
      this.cache.delete(options.code);
      this.cache.set(options.code, hit);
      return { ...hit.compiled, fileName: options.fileName, js: withSourceUrl(hit.js, options.fileName) };
    }
    this.compiling++;
    let result: CompileResult;
    try {
      result = await compileCell(options);
    } finally {
      this.compiling--;
    }
    // A syntax error from esbuild also started its service; only plain JavaScript never does.
    if (result.type === "syntax_error" || result.map !== null) this.armEsbuildIdleStop();
    if (result.type === "ok") {
      const suffix = `\n//# sourceURL=${options.fileName}`;
      this.cache.delete(options.code);
      this.cache.set(options.code, {
        js: result.js.slice(0, result.js.length - suffix.length),
        experimentalDecorators: options.experimentalDecorators,
        compiled: result,
      });
      while (this.cache.size > this.capacity) {
        const oldest = this.cache.keys().next().value;
        if (oldest === undefined) break;
        this.cache.delete(oldest);
      }
    }
    return result;
  }

  /** Stops the idle timer and esbuild's service if it runs. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.esbuildIdleTimer !== null) {
      clearTimeout(this.esbuildIdleTimer);
      this.esbuildIdleTimer = null;
      void stopEsbuild(this.log);
    }
  }

  private armEsbuildIdleStop(): void {
    if (this.disposed) return;
    if (this.esbuildIdleTimer !== null) clearTimeout(this.esbuildIdleTimer);
    this.esbuildIdleTimer = setTimeout(() => {
      this.esbuildIdleTimer = null;
      // A compile that started meanwhile re-arms the timer when it ends.
      if (this.compiling === 0) void stopEsbuild(this.log);
    }, this.esbuildIdleMs);
    // An idle timer must not keep the program alive.
    this.esbuildIdleTimer.unref();
  }
}

/** esbuild restarts its service by itself at the next transform. */
async function stopEsbuild(log: (text: string) => void): Promise<void> {
  try {
    const { stop } = await import("esbuild");
    await stop();
  } catch (err) {
    log(`could not stop esbuild's idle service process: ${String(err)}`);
  }
}

interface Edit {
  start: number;
  end: number;
  text: string;
}

type AnyNode = Node & { [key: string]: unknown };

function isNode(value: unknown): value is AnyNode {
  return typeof value === "object" && value !== null && typeof (value as { type?: unknown }).type === "string";
}

function walk(node: AnyNode, visit: (node: AnyNode) => void): void {
  visit(node);
  for (const key of Object.keys(node)) {
    const child = node[key];
    if (Array.isArray(child)) {
      for (const item of child) if (isNode(item)) walk(item, visit);
    } else if (isNode(child)) walk(child, visit);
  }
}

/** Replacement text that keeps the replaced range's line count, so later lines do not move. */
function sameLines(original: string, replacement: string): string {
  const lines = original.split("\n").length - 1;
  return replacement + "\n".repeat(Math.max(0, lines - (replacement.split("\n").length - 1)));
}

function blank(original: string): string {
  return original.replace(/[^\n]/g, " ");
}

function importCall(code: string, source: AnyNode, attributes: unknown): string {
  const spec = code.slice(source.start, source.end);
  if (Array.isArray(attributes) && attributes.length > 0) {
    const first = attributes[0] as AnyNode;
    const last = attributes[attributes.length - 1] as AnyNode;
    return `${HELPERS.import}(${spec}, { with: { ${code.slice(first.start, last.end)} } })`;
  }
  return `${HELPERS.import}(${spec})`;
}

function rewriteImportDeclaration(code: string, node: AnyNode): string {
  const specifiers = (node.specifiers as AnyNode[]) ?? [];
  const call = `await ${importCall(code, node.source as AnyNode, node.attributes)}`;
  if (specifiers.length === 0) return `${call};`;
  const namespace = specifiers.find((s) => s.type === "ImportNamespaceSpecifier");
  const named: string[] = [];
  const names: string[] = [];
  for (const spec of specifiers) {
    const local = (spec.local as AnyNode & { name: string }).name;
    if (spec.type === "ImportDefaultSpecifier") {
      named.push(`default: ${local}`);
      names.push("default");
    } else if (spec.type === "ImportSpecifier") {
      const imported = spec.imported as AnyNode & { name?: string; value?: string };
      const importedName = imported.name ?? String(imported.value);
      named.push(`${JSON.stringify(importedName)}: ${local}`);
      names.push(importedName);
    }
  }
  if (namespace) {
    const ns = (namespace.local as AnyNode & { name: string }).name;
    const rest = named.length > 0 ? ` const { ${named.join(", ")} } = ${HELPERS.named}(${ns}, ${JSON.stringify(names)});` : "";
    return `const ${ns} = ${call};${rest}`;
  }
  return `const { ${named.join(", ")} } = ${HELPERS.named}(${call}, ${JSON.stringify(names)});`;
}

export function rewriteModuleSyntax(code: string): { type: "ok"; code: string; replMode: boolean } | { type: "error"; message: string } {
  let program: AnyNode;
  try {
    program = parse(code, CELL_PARSE_OPTIONS) as unknown as AnyNode;
  } catch (err) {
    return { type: "error", message: err instanceof Error ? err.message : String(err) };
  }
  return { type: "ok", code: rewriteParsed(code, program), replMode: needsReplMode(program) };
}

/** Function bodies: an `await` or a declaration inside one is not at the cell's top level. */
const FUNCTION_NODES = new Set(["FunctionDeclaration", "FunctionExpression", "ArrowFunctionExpression"]);

/**
 * Whether a parsed cell (before its imports are rewritten) needs REPL mode rather than plain script evaluation.
 * The two differ only in top-level let/const/class (a script cannot declare them again when the cell is re-run,
 * REPL mode can) and top-level await (REPL mode only); `var` and function declarations, the completion value,
 * `this`, stack traces and interrupts are the same. Imports and `export ... from` become awaits when rewritten.
 * Runtime.evaluate in REPL mode, which also has to await its result promise, took ~90-117 us against ~33-47
 * for a script (node 20, `1+1`, in-process session).
 */
export function needsReplMode(program: AnyNode): boolean {
  const declaresLexically = (node: AnyNode | null | undefined): boolean =>
    node !== null &&
    node !== undefined &&
    ((node.type === "VariableDeclaration" && node.kind !== "var") || node.type === "ClassDeclaration");
  for (const statement of program.body as AnyNode[]) {
    switch (statement.type) {
      case "ImportDeclaration":
      case "ExportAllDeclaration":
        return true;
      case "ExportNamedDeclaration":
        if (statement.source || declaresLexically(statement.declaration as AnyNode | null)) return true;
        break;
      case "ExportDefaultDeclaration":
        if (declaresLexically(statement.declaration as AnyNode)) return true;
        break;
      default:
        if (declaresLexically(statement)) return true;
    }
  }
  let awaits = false;
  const visit = (node: AnyNode): void => {
    if (awaits || FUNCTION_NODES.has(node.type)) return;
    if (node.type === "AwaitExpression" || (node.type === "ForOfStatement" && node.await === true)) {
      awaits = true;
      return;
    }
    for (const key of Object.keys(node)) {
      const child = node[key];
      if (Array.isArray(child)) {
        for (const item of child) if (isNode(item)) visit(item);
      } else if (isNode(child)) visit(child);
    }
  };
  visit(program);
  return awaits;
}

function rewriteParsed(code: string, program: AnyNode): string {
  const edits: Edit[] = [];
  for (const statement of program.body as AnyNode[]) {
    const text = code.slice(statement.start, statement.end);
    switch (statement.type) {
      case "ImportDeclaration":
        edits.push({ start: statement.start, end: statement.end, text: sameLines(text, rewriteImportDeclaration(code, statement)) });
        break;
      case "ExportAllDeclaration":
        edits.push({
          start: statement.start,
          end: statement.end,
          text: sameLines(text, `await ${importCall(code, statement.source as AnyNode, statement.attributes)};`),
        });
        break;
      case "ExportNamedDeclaration": {
        const declaration = statement.declaration as AnyNode | null;
        if (declaration) {
          // `export const x = 1` -> `       const x = 1`: the declaration stays, global as in any cell.
          edits.push({ start: statement.start, end: declaration.start, text: blank(code.slice(statement.start, declaration.start)) });
        } else if (statement.source) {
          edits.push({ start: statement.start, end: statement.end, text: sameLines(text, `await ${importCall(code, statement.source as AnyNode, statement.attributes)};`) });
        } else {
          edits.push({ start: statement.start, end: statement.end, text: blank(text) });
        }
        break;
      }
      case "ExportDefaultDeclaration": {
        const declaration = statement.declaration as AnyNode;
        const prefix = code.slice(statement.start, declaration.start);
        const named = (declaration.type === "FunctionDeclaration" || declaration.type === "ClassDeclaration") && declaration.id;
        if (named) edits.push({ start: statement.start, end: declaration.start, text: blank(prefix) });
        else {
          edits.push({ start: statement.start, end: declaration.start, text: blank(prefix).slice(1) + "(" });
          edits.push({ start: declaration.end, end: declaration.end, text: ")" });
        }
        break;
      }
      default:
        break;
    }
  }
  walk(program, (node) => {
    if (node.type === "ImportExpression") {
      edits.push({ start: node.start, end: node.start + "import".length, text: HELPERS.import });
    } else if (node.type === "MetaProperty") {
      const meta = node.meta as AnyNode & { name: string };
      if (meta.name === "import") edits.push({ start: node.start, end: node.end, text: HELPERS.meta });
    }
  });
  edits.sort((a, b) => b.start - a.start);
  let out = code;
  for (const edit of edits) out = out.slice(0, edit.start) + edit.text + out.slice(edit.end);
  return out;
}
