// complete_request / inspect_request answered from the live runtime: names in scope (globals and the
// let/const/class names of earlier cells), properties of objects for `expr.prefix`, and signatures of
// functions. Object expressions are evaluated only when V8 can prove them free of side effects.

import { inspect } from "node:util";
import type { MimeBundle } from "../protocol/jupyter.js";
import type { Evaluator } from "./evaluator/evaluate.js";

const KEYWORDS = [
  "await", "break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do", "else",
  "enum", "export", "extends", "false", "finally", "for", "function", "if", "import", "in", "instanceof", "interface",
  "let", "new", "null", "return", "super", "switch", "this", "throw", "true", "try", "type", "typeof", "undefined",
  "var", "void", "while", "with", "yield", "async", "of", "as", "satisfies", "keyof", "readonly",
];

const IDENT = "[A-Za-z_$][\\w$]*";
const CHAIN = `${IDENT}(?:\\??\\.${IDENT}|\\[\\d+\\])*`;
const MEMBER_AT_END = new RegExp(`(${CHAIN})\\??\\.(${IDENT})?$`);
const IDENT_AT_END = new RegExp(`(${IDENT})$`);

/** Jupyter cursor positions count Unicode code points; JS strings count UTF-16 units. */
function toUtf16Offset(code: string, cursorPos: number): number {
  let units = 0;
  let points = 0;
  for (const ch of code) {
    if (points >= cursorPos) break;
    units += ch.length;
    points++;
  }
  return units;
}

function propertyNames(value: unknown): string[] {
  if (value === null || value === undefined) return [];
  const names = new Set<string>();
  let object: object | null = Object(value) as object;
  while (object !== null) {
    for (const name of Object.getOwnPropertyNames(object)) names.add(name);
    object = Object.getPrototypeOf(object) as object | null;
  }
  // Only names that can follow a dot.
  return [...names].filter((name) => /^[A-Za-z_$][\w$]*$/.test(name));
}

export interface CompleteResult {
  matches: string[];
  cursor_start: number;
  cursor_end: number;
}

export async function complete(options: { evaluator: Evaluator; code: string; cursorPos: number }): Promise<CompleteResult> {
  const before = options.code.slice(0, toUtf16Offset(options.code, options.cursorPos));
  const member = MEMBER_AT_END.exec(before);
  let prefix: string;
  let candidates: string[];
  if (member) {
    prefix = member[2] ?? "";
    const target = await options.evaluator.evaluateSideEffectFree(member[1]!);
    candidates = target.found ? propertyNames(target.value) : [];
  } else {
    prefix = IDENT_AT_END.exec(before)?.[1] ?? "";
    if (prefix === "") return { matches: [], cursor_start: options.cursorPos, cursor_end: options.cursorPos };
    const lexical = await options.evaluator.lexicalNames();
    candidates = [...lexical, ...propertyNames(globalThis), ...KEYWORDS].filter((name) => !name.startsWith("__tsnb"));
  }
  const matches = [...new Set(candidates.filter((name) => name.startsWith(prefix)))].sort((a, b) => {
    // Public names before _private ones, then alphabetical.
    const pa = a.startsWith("_") ? 1 : 0;
    const pb = b.startsWith("_") ? 1 : 0;
    return pa - pb || a.localeCompare(b);
  });
  const prefixPoints = [...prefix].length;
  return { matches, cursor_start: options.cursorPos - prefixPoints, cursor_end: options.cursorPos };
}

function signature(fn: (...args: never[]) => unknown, name: string): string {
  const source = Function.prototype.toString.call(fn);
  if (source.includes("[native code]")) return `${name}(${fn.length > 0 ? `${fn.length} argument${fn.length > 1 ? "s" : ""}` : ""})`;
  if (/^class\b/.test(source)) {
    const ctor = /constructor\s*(\([^)]*\))/.exec(source);
    return `class ${name}${ctor ? ` ${ctor[1]}` : ""}`;
  }
  const params = /^[^(]*(\([^)]*\))/.exec(source)?.[1] ?? /^(\w+)\s*=>/.exec(source)?.[1] ?? "(...)";
  return `${name}${params}`;
}

export async function inspectAt(options: {
  evaluator: Evaluator;
  code: string;
  cursorPos: number;
  detailLevel: 0 | 1;
}): Promise<{ found: boolean; data: MimeBundle }> {
  const offset = toUtf16Offset(options.code, options.cursorPos);
  // The expression under (or just before) the cursor: extend left over a member chain, right over an identifier.
  const left = new RegExp(`(${CHAIN})?$`).exec(options.code.slice(0, offset))?.[1] ?? "";
  const right = /^[\w$]*/.exec(options.code.slice(offset))?.[0] ?? "";
  let expression = left + right;
  if (expression === "") {
    // Cursor inside a call's parentheses: inspect the callee.
    const callee = new RegExp(`(${CHAIN})\\s*\\([^()]*$`).exec(options.code.slice(0, offset));
    expression = callee?.[1] ?? "";
  }
  if (expression === "") return { found: false, data: {} };
  const target = await options.evaluator.evaluateSideEffectFree(expression);
  if (!target.found) return { found: false, data: {} };
  const value = target.value;
  const lines: string[] = [];
  if (typeof value === "function") {
    lines.push(signature(value as (...args: never[]) => unknown, expression.split(".").pop() ?? expression));
    if (options.detailLevel === 1) lines.push("", Function.prototype.toString.call(value));
  } else {
    const kind = value === null ? "null" : Array.isArray(value) ? "Array" : typeof value === "object" ? (Object.getPrototypeOf(value)?.constructor?.name ?? "Object") : typeof value;
    lines.push(`${expression}: ${kind}`);
    lines.push(inspect(value, { depth: options.detailLevel === 1 ? 4 : 1, colors: false, maxArrayLength: 50 }));
  }
  return { found: true, data: { "text/plain": lines.join("\n") } };
}
