// Checks the shape of each op the program sends before anything acts on it. The program is our own runtime,
// but a bug there must produce a log line, not a kernel crash or a malformed Jupyter message.

import type { JsonObject, JsonValue } from "../../protocol/jupyter.js";
import type { ProgramToKernel } from "../../protocol/program.js";

export type ParsedOp = { ok: true; op: ProgramToKernel } | { ok: false; error: string };

const isString = (v: JsonValue | undefined): v is string => typeof v === "string";
const isObject = (v: JsonValue | undefined): v is JsonObject => v !== null && typeof v === "object" && !Array.isArray(v);
const isCell = (v: JsonValue | undefined) => v === null || typeof v === "string";

export function parseProgramOp(h: JsonObject & { op: string }): ParsedOp {
  const bad = (what: string): ParsedOp => ({ ok: false, error: `${h.op}: ${what}` });
  const op = h.op as ProgramToKernel["op"];
  switch (op) {
    case "hello":
      if (typeof h.pid !== "number") return bad('"pid" must be a number');
      if (h.inspector !== undefined && h.inspector !== null && !isString(h.inspector)) return bad('"inspector" must be a string or null');
      break;
    case "interrupt_ack":
      if (typeof h.seq !== "number") return bad('"seq" must be a number');
      break;
    case "stream":
      if (!isCell(h.cell)) return bad('"cell" must be a string or null');
      if (h.name !== "stdout" && h.name !== "stderr") return bad('"name" must be "stdout" or "stderr"');
      if (!isString(h.text)) return bad('"text" must be a string');
      break;
    case "display":
    case "update_display":
      if (!isCell(h.cell)) return bad('"cell" must be a string or null');
      if (!isObject(h.data)) return bad('"data" must be an object');
      if (h.metadata !== undefined && !isObject(h.metadata)) return bad('"metadata" must be an object');
      if (h.transient !== undefined && !isObject(h.transient)) return bad('"transient" must be an object');
      if (op === "update_display" && !(isObject(h.transient) && isString(h.transient.display_id))) {
        return bad('"transient.display_id" is required');
      }
      break;
    case "clear_output":
      if (!isCell(h.cell)) return bad('"cell" must be a string or null');
      break;
    case "error_output":
      if (!isCell(h.cell)) return bad('"cell" must be a string or null');
      if (!isString(h.ename) || !isString(h.evalue)) return bad('"ename" and "evalue" must be strings');
      break;
    case "input_request":
      if (!isString(h.id)) return bad('"id" must be a string');
      if (!isCell(h.cell)) return bad('"cell" must be a string or null');
      break;
    case "execute_done":
      if (!isString(h.id)) return bad('"id" must be a string');
      if (h.status === "ok") {
        if (h.result !== null && h.result !== undefined && !(isObject(h.result) && isObject(h.result.data))) {
          return bad('"result" must be null or {data, metadata}');
        }
        if (h.payload !== undefined && !(Array.isArray(h.payload) && h.payload.every(isObject))) {
          return bad('"payload" must be a list of objects');
        }
      } else if (h.status === "error") {
        if (!isString(h.ename) || !isString(h.evalue)) return bad('"ename" and "evalue" must be strings');
      } else {
        return bad('"status" must be "ok" or "error"');
      }
      break;
    case "complete_reply":
      if (!isString(h.id)) return bad('"id" must be a string');
      if (!Array.isArray(h.matches) || !h.matches.every(isString)) return bad('"matches" must be a list of strings');
      break;
    case "inspect_reply":
      if (!isString(h.id)) return bad('"id" must be a string');
      break;
    default: {
      const unknown: never = op;
      return { ok: false, error: `unknown op ${JSON.stringify(unknown)}` };
    }
  }
  return { ok: true, op: h as unknown as ProgramToKernel };
}
