// is_complete for TypeScript without parsing: a scanner over brackets, strings, template literals and
// comments. Front-ends (the console, qtconsole) ask it whether Enter should run the code or add a line.
// Regular-expression literals are not recognised: a bracket inside one (/[(]/) can make the answer
// "incomplete", which only costs the user one extra Enter.

export type IsCompleteResult =
  | { status: "complete" }
  | { status: "incomplete"; indent: string }
  | { status: "invalid" };

const OPENERS: Record<string, string> = { "(": ")", "[": "]", "{": "}" };
const CLOSERS = new Set([")", "]", "}"]);

/** Stack entries: an open bracket, an open template literal, or a `${` expression inside one. */
type Frame = "(" | "[" | "{" | "`" | "${";

export function isComplete(code: string): IsCompleteResult {
  const stack: Frame[] = [];
  let i = 0;
  const n = code.length;
  while (i < n) {
    const top = stack[stack.length - 1];
    const c = code[i]!;
    if (top === "`") {
      // Inside template text: only `\`, the closing backtick and `${` matter.
      if (c === "\\") {
        i += 2;
      } else if (c === "`") {
        stack.pop();
        i++;
      } else if (c === "$" && code[i + 1] === "{") {
        stack.push("${");
        i += 2;
      } else {
        i++;
      }
      continue;
    }
    if (c === "/" && code[i + 1] === "/") {
      const end = code.indexOf("\n", i);
      i = end < 0 ? n : end + 1;
      continue;
    }
    if (c === "/" && code[i + 1] === "*") {
      const end = code.indexOf("*/", i + 2);
      if (end < 0) return incomplete(stack);
      i = end + 2;
      continue;
    }
    if (c === "'" || c === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= n) return incomplete(stack);
        const d = code[j]!;
        if (d === "\\") {
          j += 2;
          continue;
        }
        // A plain string cannot span lines (without a backslash): running it would be a syntax error.
        if (d === "\n") return { status: "invalid" };
        if (d === c) break;
        j++;
      }
      i = j + 1;
      continue;
    }
    if (c === "`") {
      stack.push("`");
      i++;
      continue;
    }
    if (c in OPENERS) {
      stack.push(c as Frame);
      i++;
      continue;
    }
    if (CLOSERS.has(c)) {
      const open = stack.pop();
      const expected = open === undefined ? undefined : open === "${" ? "}" : OPENERS[open];
      if (expected !== c) return { status: "invalid" };
      i++;
      continue;
    }
    i++;
  }
  if (stack.length > 0) return incomplete(stack);
  // A trailing backslash or a dangling binary operator would also continue, but TypeScript has no line
  // continuation, so a complete bracket structure is runnable as typed.
  return { status: "complete" };
}

function incomplete(stack: Frame[]): IsCompleteResult {
  // Inside a template literal the text is content, so adding indentation would change the string.
  const inTemplate = stack[stack.length - 1] === "`";
  const depth = stack.filter((f) => f !== "`").length;
  return { status: "incomplete", indent: inTemplate ? "" : "  ".repeat(Math.max(1, depth)) };
}
