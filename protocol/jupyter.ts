// Jupyter messaging protocol 5.3 types. Pure: no I/O, no Node built-ins (the browser bundle uses it).

export const PROTOCOL_VERSION = "5.3";

export type Channel = "shell" | "control" | "iopub" | "stdin";

export interface Header {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
}

/**
 * A header's `date`: `Date.prototype.toISOString` of `ms`, built from the UTC fields. V8's toISOString loads the
 * local time zone through ICU the first time it runs (0.85 MB of ICU data and time zone code paged in for good),
 * which the kernel, stamping every message, otherwise never needs.
 */
export function isoDate(ms: number): string {
  const d = new Date(ms);
  const year = d.getUTCFullYear();
  // Outside 0000-9999 the format has a sign and six digits; not worth copying for a clock reading.
  if (!(year >= 0 && year <= 9999)) return d.toISOString();
  const two = (n: number) => (n < 10 ? `0${n}` : `${n}`);
  const millis = d.getUTCMilliseconds();
  return (
    `${String(year).padStart(4, "0")}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())}` +
    `T${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}.${String(millis).padStart(3, "0")}Z`
  );
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A MIME bundle: MIME type to data (string for text types, JSON for application/json and friends). */
export type MimeBundle = { [mime: string]: JsonValue };

/**
 * A parsed Jupyter message as the kernel core sees it. The transport turns frames into this after the
 * signature has been verified; `content` is still unvalidated JSON until a handler validates it.
 */
export interface JupyterMessage<Content = JsonObject> {
  /** ZeroMQ routing identities (ROUTER sockets). Opaque; echoed back on replies. */
  identities: Uint8Array[];
  header: Header;
  /** Empty object when there is no parent. */
  parent_header: Header | Record<string, never>;
  metadata: JsonObject;
  content: Content;
  buffers: Uint8Array[];
}

/** What the core asks the transport to send: the transport adds the signature and frames it. */
export interface OutgoingMessage {
  channel: Channel;
  identities: Uint8Array[];
  header: Header;
  parent_header: Header | Record<string, never>;
  metadata: JsonObject;
  content: JsonObject;
  buffers: Uint8Array[];
}

// ---- content shapes of the requests the kernel handles -------------------------------------------

export interface ExecuteRequestContent {
  code: string;
  silent: boolean;
  store_history: boolean;
  user_expressions: { [name: string]: string };
  allow_stdin: boolean;
  stop_on_error: boolean;
}

export interface CompleteRequestContent {
  code: string;
  cursor_pos: number;
}

export interface InspectRequestContent {
  code: string;
  cursor_pos: number;
  detail_level: 0 | 1;
}

export interface IsCompleteRequestContent {
  code: string;
}

export interface HistoryRequestContent {
  output: boolean;
  raw: boolean;
  hist_access_type: "range" | "tail" | "search";
  session?: number;
  start?: number;
  stop?: number;
  n?: number;
  pattern?: string;
  unique?: boolean;
}

export interface CommInfoRequestContent {
  target_name?: string;
}

export interface ShutdownRequestContent {
  restart: boolean;
}

export interface InputReplyContent {
  value: string;
}

export interface CommOpenContent {
  comm_id: string;
  target_name: string;
  data: JsonObject;
  target_module?: string;
}

export interface CommMsgContent {
  comm_id: string;
  data: JsonObject;
}

export interface CommCloseContent {
  comm_id: string;
  data: JsonObject;
}

export interface ErrorContent {
  ename: string;
  evalue: string;
  traceback: string[];
}

/** The request types the kernel receives, keyed by msg_type, with their validated content. */
export interface RequestContentByType {
  kernel_info_request: Record<string, never>;
  execute_request: ExecuteRequestContent;
  complete_request: CompleteRequestContent;
  inspect_request: InspectRequestContent;
  is_complete_request: IsCompleteRequestContent;
  history_request: HistoryRequestContent;
  comm_info_request: CommInfoRequestContent;
  comm_open: CommOpenContent;
  comm_msg: CommMsgContent;
  comm_close: CommCloseContent;
  shutdown_request: ShutdownRequestContent;
  interrupt_request: Record<string, never>;
}

export type RequestType = keyof RequestContentByType;

/** Which reply type answers a request type, where the protocol defines one (comm messages have none). */
export const REPLY_TYPE: { readonly [T in RequestType]: string | null } = {
  kernel_info_request: "kernel_info_reply",
  execute_request: "execute_reply",
  complete_request: "complete_reply",
  inspect_request: "inspect_reply",
  is_complete_request: "is_complete_reply",
  history_request: "history_reply",
  comm_info_request: "comm_info_reply",
  comm_open: null,
  comm_msg: null,
  comm_close: null,
  shutdown_request: "shutdown_reply",
  interrupt_request: "interrupt_reply",
};

/** Reply type for any `*_request`, including ones the kernel does not implement. */
export function replyTypeFor(msgType: string): string | null {
  if (Object.prototype.hasOwnProperty.call(REPLY_TYPE, msgType)) return REPLY_TYPE[msgType as RequestType];
  return msgType.endsWith("_request") ? msgType.slice(0, -"_request".length) + "_reply" : null;
}
