// Stops JavaScript that keeps the program's main thread busy when an interrupt arrives (`while (true) {}` in a
// cell, after an await, in a timer callback). The interrupt itself goes to fd 4, which the main thread reads;
// a busy main thread never reads it, so without an acknowledgement within ACK_TIMEOUT_MS this connects to the
// program's inspector port (runtime/interrupt.ts opens it on loopback with a secret path) and:
//   1. evaluates PROBE on the main thread. The inspector runs it on top of whatever JavaScript is executing,
//      so a stack deeper than the probe's own frame means busy. It also records the interrupt's number, so
//      the cell whose code is stopped reports "interrupted" rather than an error.
//   2. only when busy, sends Runtime.terminateExecution. Terminating an idle thread would kill the next
//      callback that runs instead, which is why a slow acknowledgement (a loaded machine) alone is never
//      taken as "busy": the probe is repeated until the acknowledgement comes.
// The connection is opened only for this and closed right after: a debugger still attached when the program
// exits would make Node wait for it to disconnect.

import { createHash, randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { DisposedError, type Disposable } from "../../protocol/disposable.js";
import { errorMessage, type Log } from "../log.js";

/** How long the main thread has to acknowledge before the inspector is asked whether it is busy. */
export const ACK_TIMEOUT_MS = 100;
/** Deadline for the inspector's handshake and each answer. */
const CALL_TIMEOUT_MS = 5_000;
/** Consecutive failed rounds (connection or probe) before an interrupt is given up, with a warning. */
const MAX_FAILED_ROUNDS = 5;

/** Evaluated on the program's main thread: records interrupt `seq`, then counts the lines of a fresh stack. */
function probe(seq: number): string {
  return `{ const note = globalThis[Symbol.for("tsnb.interrupt.note")]; if (typeof note === "function") note(${seq}); const limit = Error.stackTraceLimit; Error.stackTraceLimit = 4; const stack = String(new Error().stack); Error.stackTraceLimit = limit; stack.split("\\n").length }`;
}

/** "Error" plus the probe's own frame: the stack's length when no other JavaScript is running. */
const IDLE_STACK_LINES = 2;

/**
 * What Node prints on the program's stderr about its inspector; the kernel drops these lines. The two that
 * carry the port's secret path are matched anywhere, since user output without a final newline may precede
 * them in the same read; each is one write, so it never arrives cut in two.
 */
const INSPECTOR_NOTICES =
  /Debugger (?:listening|ending) on ws:\/\/\S+\n|For help, see: https:\/\/nodejs\.org\/en\/docs\/inspector\n|^Debugger attached\.\n|^Waiting for the debugger to disconnect\.\.\.\n/gm;

/** `text` without Node's inspector notices (the listening line carries the port's secret path). */
export function withoutInspectorNotices(text: string): string {
  return text.replace(INSPECTOR_NOTICES, "");
}

export class InterruptForcerError extends Error {
  override readonly name = "InterruptForcerError";
}

export interface InterruptForcerOptions {
  /** The program's inspector URL from its hello. */
  url: string;
  log: Log;
  ackTimeoutMs?: number;
}

interface CdpResponse {
  id: number;
  result?: { result?: { value?: unknown } };
  error?: { message?: string };
}

/**
 * A minimal WebSocket client (RFC 6455: text frames, masked as clients must) for one loopback connection to the
 * program's inspector. Not the `ws` package: loading it (with http, https, tls and zlib) took the --no-opt
 * kernel 300-400 ms on the first interrupt, and each interrupt needs only a few small messages.
 */
class InspectorSocket implements Disposable {
  private buffer: Buffer = Buffer.alloc(0);
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly onText: (text: string) => void,
    private readonly onClose: (err: Error) => void,
  ) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("close", () => this.fail(new InterruptForcerError("the inspector connection closed")));
    socket.on("error", (err) => this.fail(new InterruptForcerError(`inspector connection: ${err.message}`)));
  }

  static open(options: { url: string; timeoutMs: number; onText(text: string): void; onClose(err: Error): void }): Promise<InspectorSocket> {
    const url = new URL(options.url);
    if (url.protocol !== "ws:") return Promise.reject(new InterruptForcerError(`not a ws: URL: ${options.url}`));
    const key = randomBytes(16).toString("base64");
    const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
    return new Promise<InspectorSocket>((resolve, reject) => {
      const socket = connect({ host: url.hostname, port: Number(url.port) });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new InterruptForcerError(`no answer from the program's inspector within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end === -1) return;
        socket.off("data", onData);
        socket.off("error", onError);
        clearTimeout(timer);
        const response = head.subarray(0, end).toString("latin1");
        if (!/^HTTP\/1\.1 101 /.test(response) || !response.includes(`\r\nSec-WebSocket-Accept: ${accept}`)) {
          socket.destroy();
          reject(new InterruptForcerError(`the program's inspector refused the connection: ${response.split("\r\n")[0]}`));
          return;
        }
        const ws = new InspectorSocket(socket, options.onText, options.onClose);
        resolve(ws);
        if (head.length > end + 4) ws.onData(head.subarray(end + 4));
      };
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(new InterruptForcerError(`cannot reach the program's inspector: ${err.message}`));
      };
      socket.on("data", onData);
      socket.once("error", onError);
      socket.write(
        `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
  }

  sendText(text: string): void {
    const payload = Buffer.from(text, "utf8");
    const mask = randomBytes(4);
    const length = payload.length;
    const header = length < 126 ? Buffer.from([0x81, 0x80 | length]) : Buffer.alloc(4);
    if (length >= 126) {
      if (length > 0xffff) throw new InterruptForcerError("inspector message too long");
      header[0] = 0x81;
      header[1] = 0x80 | 126;
      header.writeUInt16BE(length, 2);
    }
    for (let i = 0; i < length; i++) payload[i] = payload[i]! ^ mask[i & 3]!;
    this.socket.write(Buffer.concat([header, mask, payload]));
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.buffer.length < 2) return;
      const opcode = this.buffer[0]! & 0x0f;
      let length = this.buffer[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.buffer.length < 4) return;
        length = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) return;
        length = Number(this.buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.buffer.length < offset + length) return;
      const payload = this.buffer.subarray(offset, offset + length);
      this.buffer = this.buffer.subarray(offset + length);
      // Replies are single unfragmented text frames; a close frame ends the connection; pings need no answer
      // for the few milliseconds this connection lives.
      if (opcode === 0x1) this.onText(payload.toString("utf8"));
      else if (opcode === 0x8) this.fail(new InterruptForcerError("the program's inspector closed the connection"));
    }
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.onClose(err);
  }

  dispose(): void {
    this.fail(new DisposedError("the inspector connection"));
  }
}

/** Chrome DevTools Protocol calls over one InspectorSocket. */
class CdpConnection implements Disposable {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(r: CdpResponse): void; reject(err: Error): void }>();
  private socket: InspectorSocket | null = null;
  private closed = false;

  static async open(url: string, timeoutMs: number): Promise<CdpConnection> {
    const connection = new CdpConnection();
    connection.socket = await InspectorSocket.open({
      url,
      timeoutMs,
      onText: (text) => connection.onText(text),
      onClose: (err) => connection.failAll(err),
    });
    return connection;
  }

  private onText(text: string): void {
    let message: CdpResponse;
    try {
      message = JSON.parse(text) as CdpResponse;
    } catch (err) {
      this.failAll(new InterruptForcerError(`unreadable inspector message: ${errorMessage(err)}`));
      return;
    }
    const waiter = typeof message.id === "number" ? this.pending.get(message.id) : undefined;
    if (!waiter) return; // an event, not a response
    this.pending.delete(message.id);
    waiter.resolve(message);
  }

  call(method: string, params: object, timeoutMs: number): Promise<CdpResponse> {
    if (this.closed || this.socket === null) return Promise.reject(new InterruptForcerError("the inspector connection is closed"));
    const id = ++this.nextId;
    const socket = this.socket;
    return new Promise<CdpResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new InterruptForcerError(`no answer to ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (response) => {
          clearTimeout(timer);
          resolve(response);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      socket.sendText(JSON.stringify({ id, method, params }));
    });
  }

  private failAll(err: Error): void {
    this.closed = true;
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
  }

  dispose(): void {
    if (this.closed) return;
    this.failAll(new DisposedError("the inspector connection"));
    this.socket?.dispose();
  }
}

export class InterruptForcer implements Disposable {
  private acknowledged = 0;
  /** The newest interrupt to enforce; one loop at a time works towards it. */
  private target = 0;
  private running = false;
  private disposed = false;
  private readonly timers = new Set<{ timer: NodeJS.Timeout; resolve(): void }>();
  private connection: CdpConnection | null = null;

  constructor(private readonly options: InterruptForcerOptions) {}

  acknowledge(seq: number): void {
    if (seq > this.acknowledged) this.acknowledged = seq;
  }

  /** Makes sure interrupt `seq` takes effect even if the main thread is busy. Errors are logged. */
  force(seq: number): void {
    if (this.disposed) return;
    if (seq > this.target) this.target = seq;
    if (this.running) return;
    this.running = true;
    this.loop()
      .catch((err: unknown) => {
        if (!this.disposed) this.options.log.warn(`interrupt: could not stop the running code: ${errorMessage(err)}`);
      })
      .finally(() => {
        this.running = false;
        this.connection?.dispose();
        this.connection = null;
      });
  }

  private async loop(): Promise<void> {
    const wait = this.options.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    await this.delay(wait);
    let failures = 0;
    while (!this.disposed && this.acknowledged < this.target) {
      try {
        if (await this.round(this.target)) return;
        failures = 0;
      } catch (err) {
        // A connection that broke or a probe left unanswered (the main thread stuck in a system call) must not
        // end the attempt: drop the connection and try again, up to a limit.
        this.connection?.dispose();
        this.connection = null;
        if (this.disposed) return;
        if (++failures >= MAX_FAILED_ROUNDS) throw err;
        if (failures === 1) this.options.log.warn(`interrupt: ${errorMessage(err)}; retrying`);
      }
      // Idle but not acknowledged yet (the event loop is just slow), or a failed round: wait and ask again.
      await this.delay(wait);
    }
  }

  /** One probe (and terminate when busy); true when the interrupt was enforced. */
  private async round(seq: number): Promise<boolean> {
    this.connection ??= await CdpConnection.open(this.options.url, CALL_TIMEOUT_MS);
    const reply = await this.connection.call("Runtime.evaluate", { expression: probe(seq), silent: true, returnByValue: true }, CALL_TIMEOUT_MS);
    if (reply.error) throw new InterruptForcerError(`busy probe failed: ${reply.error.message ?? "unknown error"}`);
    const lines = reply.result?.result?.value;
    if (this.acknowledged >= seq) return true;
    if (typeof lines !== "number" || lines <= IDLE_STACK_LINES) return false;
    const done = await this.connection.call("Runtime.terminateExecution", {}, CALL_TIMEOUT_MS);
    if (done.error) throw new InterruptForcerError(`terminateExecution failed: ${done.error.message ?? "unknown error"}`);
    // The main thread now reads fd 4 and acknowledges; an interrupt that came meanwhile gets its own round.
    return this.target === seq;
  }

  private delay(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.timers.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      this.timers.add(entry);
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const entry of this.timers) {
      clearTimeout(entry.timer);
      entry.resolve();
    }
    this.timers.clear();
    this.connection?.dispose();
    this.connection = null;
  }
}
