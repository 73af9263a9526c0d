// Request content is untrusted JSON until validated here, at the edge. A validator either returns the typed
// content (with protocol defaults filled in) or a message saying exactly which field is wrong.

import type {
  CommCloseContent,
  CommInfoRequestContent,
  CommMsgContent,
  CommOpenContent,
  CompleteRequestContent,
  ExecuteRequestContent,
  HistoryRequestContent,
  InspectRequestContent,
  IsCompleteRequestContent,
  JsonObject,
  JsonValue,
  RequestContentByType,
  RequestType,
  ShutdownRequestContent,
} from "../../protocol/jupyter.js";

export type Validated<T> = { ok: true; value: T } | { ok: false; error: string };

type Validator<T> = (content: JsonObject) => Validated<T>;

class FieldError extends Error {}

function field<T>(content: JsonObject, name: string, check: (v: JsonValue) => v is JsonValue & T, expected: string, fallback?: T): T {
  const value = content[name];
  if (value === undefined) {
    if (fallback !== undefined) return fallback;
    throw new FieldError(`"${name}" is required (${expected})`);
  }
  if (!check(value)) throw new FieldError(`"${name}" must be ${expected}, got ${describe(value)}`);
  return value as T;
}

function describe(value: JsonValue): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  const text = JSON.stringify(value);
  return `${typeof value} ${text.length > 40 ? text.slice(0, 40) + "…" : text}`;
}

const isString = (v: JsonValue): v is string => typeof v === "string";
const isBool = (v: JsonValue): v is boolean => typeof v === "boolean";
const isInt = (v: JsonValue): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;
const isObject = (v: JsonValue): v is JsonObject => v !== null && typeof v === "object" && !Array.isArray(v);

function guard<T>(fn: (content: JsonObject) => T): Validator<T> {
  return (content) => {
    try {
      return { ok: true, value: fn(content) };
    } catch (err) {
      if (err instanceof FieldError) return { ok: false, error: err.message };
      throw err;
    }
  };
}

const execute = guard<ExecuteRequestContent>((c) => {
  const code = field<string>(c, "code", isString, "a string of TypeScript code");
  const silent = field<boolean>(c, "silent", isBool, "true or false", false);
  const userExpressions = field<JsonObject>(c, "user_expressions", isObject, "an object", {});
  for (const [name, expr] of Object.entries(userExpressions)) {
    if (typeof expr !== "string") throw new FieldError(`"user_expressions.${name}" must be a string`);
  }
  return {
    code,
    silent,
    // The spec's default: history is stored unless the request is silent.
    store_history: field<boolean>(c, "store_history", isBool, "true or false", !silent),
    user_expressions: userExpressions as { [name: string]: string },
    allow_stdin: field<boolean>(c, "allow_stdin", isBool, "true or false", true),
    stop_on_error: field<boolean>(c, "stop_on_error", isBool, "true or false", true),
  };
});

const codeAndCursor = (c: JsonObject) => {
  const code = field<string>(c, "code", isString, "a string");
  const cursor = field<number>(c, "cursor_pos", isInt, "a non-negative integer", code.length);
  return { code, cursor_pos: Math.min(cursor, code.length) };
};

const complete = guard<CompleteRequestContent>(codeAndCursor);

const inspect = guard<InspectRequestContent>((c) => {
  const detail = field<number>(c, "detail_level", isInt, "0 or 1", 0);
  return { ...codeAndCursor(c), detail_level: detail === 1 ? 1 : 0 };
});

const isCompleteRequest = guard<IsCompleteRequestContent>((c) => ({ code: field<string>(c, "code", isString, "a string") }));

const history = guard<HistoryRequestContent>((c) => {
  const access = field<string>(c, "hist_access_type", isString, '"range", "tail" or "search"', "tail");
  if (access !== "range" && access !== "tail" && access !== "search") {
    throw new FieldError(`"hist_access_type" must be "range", "tail" or "search", got ${JSON.stringify(access)}`);
  }
  const optional = <T>(name: string, check: (v: JsonValue) => v is JsonValue & T, expected: string): T | undefined =>
    c[name] === undefined || c[name] === null ? undefined : field<T>(c, name, check, expected);
  const isAnyInt = (v: JsonValue): v is number => typeof v === "number" && Number.isInteger(v);
  const out: HistoryRequestContent = {
    output: field<boolean>(c, "output", isBool, "true or false", false),
    raw: field<boolean>(c, "raw", isBool, "true or false", true),
    hist_access_type: access,
  };
  // Sessions count back from the current one when zero or negative, so they may be any integer.
  const session = optional<number>("session", isAnyInt, "an integer");
  const start = optional<number>("start", isInt, "a non-negative integer");
  const stop = optional<number>("stop", isInt, "a non-negative integer");
  const n = optional<number>("n", isInt, "a non-negative integer");
  const pattern = optional<string>("pattern", isString, "a string");
  const unique = optional<boolean>("unique", isBool, "true or false");
  if (session !== undefined) out.session = session;
  if (start !== undefined) out.start = start;
  if (stop !== undefined) out.stop = stop;
  if (n !== undefined) out.n = n;
  if (pattern !== undefined) out.pattern = pattern;
  if (unique !== undefined) out.unique = unique;
  return out;
});

const commInfo = guard<CommInfoRequestContent>((c) => {
  const target = c.target_name;
  if (target === undefined || target === null) return {};
  if (typeof target !== "string") throw new FieldError(`"target_name" must be a string, got ${describe(target)}`);
  return { target_name: target };
});

const commOpen = guard<CommOpenContent>((c) => {
  const out: CommOpenContent = {
    comm_id: field<string>(c, "comm_id", isString, "a string"),
    target_name: field<string>(c, "target_name", isString, "a string"),
    data: field<JsonObject>(c, "data", isObject, "an object", {}),
  };
  if (typeof c.target_module === "string") out.target_module = c.target_module;
  return out;
});

const commMsg = guard<CommMsgContent>((c) => ({
  comm_id: field<string>(c, "comm_id", isString, "a string"),
  data: field<JsonObject>(c, "data", isObject, "an object", {}),
}));

const commClose = guard<CommCloseContent>((c) => ({
  comm_id: field<string>(c, "comm_id", isString, "a string"),
  data: field<JsonObject>(c, "data", isObject, "an object", {}),
}));

const shutdown = guard<ShutdownRequestContent>((c) => ({ restart: field<boolean>(c, "restart", isBool, "true or false", false) }));

const empty = guard<Record<string, never>>(() => ({}));

export const VALIDATORS: { readonly [T in RequestType]: Validator<RequestContentByType[T]> } = {
  kernel_info_request: empty,
  execute_request: execute,
  complete_request: complete,
  inspect_request: inspect,
  is_complete_request: isCompleteRequest,
  history_request: history,
  comm_info_request: commInfo,
  comm_open: commOpen,
  comm_msg: commMsg,
  comm_close: commClose,
  shutdown_request: shutdown,
  interrupt_request: empty,
};
