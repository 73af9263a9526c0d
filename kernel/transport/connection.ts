// The connection file Jupyter writes for a kernel: where to bind and which key signs messages.

import { readFileSync } from "node:fs";

export interface ConnectionInfo {
  /** "ipc" binds Unix sockets at "<ip>-<port>" (jupyter_client's naming), for `jupyter ... --transport ipc`. */
  transport: "tcp" | "ipc";
  ip: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: "hmac-sha256";
}

export class ConnectionFileError extends Error {
  override readonly name = "ConnectionFileError";
}

const PORTS = ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"] as const;

export function parseConnectionInfo(text: string, source: string): ConnectionInfo {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConnectionFileError(`${source} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ConnectionFileError(`${source} must contain a JSON object`);
  }
  const obj = value as Record<string, unknown>;
  const transport = obj.transport ?? "tcp";
  if (transport !== "tcp" && transport !== "ipc") {
    throw new ConnectionFileError(`${source}: transport ${JSON.stringify(transport)} is not supported (only "tcp" and "ipc")`);
  }
  const ip = obj.ip ?? "127.0.0.1";
  if (typeof ip !== "string" || ip === "") throw new ConnectionFileError(`${source}: "ip" must be a non-empty string`);
  const ports: Partial<Record<(typeof PORTS)[number], number>> = {};
  for (const name of PORTS) {
    const port = obj[name];
    if (typeof port !== "number" || !Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new ConnectionFileError(`${source}: "${name}" must be a port number between 1 and 65535, got ${JSON.stringify(port)}`);
    }
    ports[name] = port;
  }
  const key = obj.key ?? "";
  if (typeof key !== "string") throw new ConnectionFileError(`${source}: "key" must be a string`);
  const scheme = obj.signature_scheme ?? "hmac-sha256";
  if (scheme !== "hmac-sha256") {
    throw new ConnectionFileError(`${source}: signature_scheme ${JSON.stringify(scheme)} is not supported (only "hmac-sha256")`);
  }
  return {
    transport,
    ip,
    shell_port: ports.shell_port!,
    iopub_port: ports.iopub_port!,
    stdin_port: ports.stdin_port!,
    control_port: ports.control_port!,
    hb_port: ports.hb_port!,
    key,
    signature_scheme: "hmac-sha256",
  };
}

export function readConnectionFile(path: string): ConnectionInfo {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file" : err instanceof Error ? err.message : String(err);
    throw new ConnectionFileError(`cannot read connection file ${path}: ${reason}`);
  }
  return parseConnectionInfo(text, `connection file ${path}`);
}
