// A zeromq Jupyter client for tests: connects to a kernel from its connection info, signs like
// jupyter_client, and gives every receive a deadline. `request()` returns the reply plus every IOPub message
// with that parent up to its `idle`; `sendRaw()` lets bad-input tests put arbitrary frames on a socket.

import { randomUUID } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as zmq from "zeromq";
import type { Header, JsonObject, JupyterMessage } from "../../protocol/jupyter.js";
import { decodeFrames, describeDecodeError, encodeFrames, type Signer } from "../../protocol/wire.js";
import type { ConnectionInfo } from "../../kernel/transport/connection.js";
import { HmacSigner } from "../../kernel/transport/signer.js";

export type ClientChannel = "shell" | "control" | "stdin";

export class ReceiveTimeoutError extends Error {
  override readonly name = "ReceiveTimeoutError";
}

export interface RequestResult {
  request: Header;
  reply: JupyterMessage;
  /** IOPub messages whose parent is the request, in arrival order, ending with the `idle` status. */
  iopub: JupyterMessage[];
}

interface Waiter<T> {
  match(item: T): boolean;
  resolve(item: T): void;
}

/** A list that remembers everything received and lets callers wait for an item, with a deadline. */
class Inbox<T> {
  readonly items: T[] = [];
  private waiters = new Set<Waiter<T>>();

  push(item: T): void {
    this.items.push(item);
    for (const w of this.waiters) {
      if (w.match(item)) {
        this.waiters.delete(w);
        w.resolve(item);
      }
    }
  }

  wait(match: (item: T) => boolean, deadlineMs: number, what: string, from = 0): Promise<T> {
    for (let i = from; i < this.items.length; i++) {
      const item = this.items[i]!;
      if (match(item)) return Promise.resolve(item);
    }
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new ReceiveTimeoutError(`no ${what} within ${deadlineMs} ms`));
      }, deadlineMs);
      const waiter: Waiter<T> = {
        match,
        resolve: (item) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
      this.waiters.add(waiter);
    });
  }
}

export function readConnection(path: string): ConnectionInfo {
  return JSON.parse(readFileSync(path, "utf8")) as ConnectionInfo;
}

export class KernelClient {
  readonly session = randomUUID();
  readonly signer: Signer;
  readonly iopub = new Inbox<JupyterMessage>();
  readonly replies: Record<ClientChannel, Inbox<JupyterMessage>> = { shell: new Inbox(), control: new Inbox(), stdin: new Inbox() };
  /** Frames the client could not decode (a kernel signing bug shows up here). */
  readonly decodeErrors: string[] = [];
  private readonly sockets: { shell: zmq.Dealer; control: zmq.Dealer; stdin: zmq.Dealer; iopub: zmq.Subscriber; hb: zmq.Request };
  private closed = false;

  private constructor(readonly connection: ConnectionInfo) {
    this.signer = new HmacSigner(connection.key);
    const opts = { linger: 0 };
    this.sockets = {
      shell: new zmq.Dealer({ ...opts, routingId: `shell-${this.session}` }),
      control: new zmq.Dealer({ ...opts, routingId: `control-${this.session}` }),
      // stdin must share the shell socket's identity: the kernel sends input_request to the shell request's sender.
      stdin: new zmq.Dealer({ ...opts, routingId: `shell-${this.session}` }),
      iopub: new zmq.Subscriber(opts),
      hb: new zmq.Request({ ...opts, receiveTimeout: 2000 }),
    };
  }

  static connect(connection: ConnectionInfo | string): KernelClient {
    const info = typeof connection === "string" ? readConnection(connection) : connection;
    const client = new KernelClient(info);
    const url = (port: number) => `tcp://${info.ip}:${port}`;
    client.sockets.shell.connect(url(info.shell_port));
    client.sockets.control.connect(url(info.control_port));
    client.sockets.stdin.connect(url(info.stdin_port));
    client.sockets.iopub.connect(url(info.iopub_port));
    client.sockets.iopub.subscribe();
    client.sockets.hb.connect(url(info.hb_port));
    for (const channel of ["shell", "control", "stdin"] as const) void client.receiveLoop(channel, client.sockets[channel], client.replies[channel]);
    void client.receiveLoop("iopub", client.sockets.iopub, client.iopub);
    return client;
  }

  /**
   * Sends kernel_info until the reply arrives AND an IOPub message does: only then is the subscription live
   * (PUB/SUB drops whatever was published before the subscriber connected).
   */
  async waitForReady(deadlineMs = 15_000): Promise<JupyterMessage> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new ReceiveTimeoutError(`kernel not ready within ${deadlineMs} ms`);
      const header = this.send("shell", "kernel_info_request", {});
      try {
        const reply = await this.replies.shell.wait((m) => parentId(m) === header.msg_id, Math.min(500, left), "kernel_info_reply");
        await this.iopub.wait((m) => parentId(m) === header.msg_id, Math.min(500, Math.max(1, deadline - Date.now())), "iopub status");
        return reply;
      } catch (err) {
        if (!(err instanceof ReceiveTimeoutError)) throw err;
      }
    }
  }

  header(msgType: string): Header {
    return { msg_id: randomUUID(), session: this.session, username: "test", date: new Date().toISOString(), msg_type: msgType, version: "5.3" };
  }

  /** Sends a signed message; returns its header. */
  send(channel: ClientChannel, msgType: string, content: JsonObject, options: { parent?: Header; buffers?: Uint8Array[] } = {}): Header {
    const header = this.header(msgType);
    const frames = encodeFrames(
      { identities: [], header, parent_header: options.parent ?? {}, metadata: {}, content, buffers: options.buffers ?? [] },
      this.signer,
    );
    void this.sendRaw(channel, frames);
    return header;
  }

  /** Puts arbitrary frames on a socket (bad-input tests). */
  sendRaw(channel: ClientChannel, frames: (Uint8Array | string)[]): Promise<void> {
    return this.sockets[channel].send(frames);
  }

  /** Sends a request and collects its reply and every IOPub message up to its `idle`, each with a deadline. */
  async request(
    channel: "shell" | "control",
    msgType: string,
    content: JsonObject,
    options: { deadlineMs?: number; buffers?: Uint8Array[] } = {},
  ): Promise<RequestResult> {
    const deadlineMs = options.deadlineMs ?? 10_000;
    const request = this.send(channel, msgType, content, options.buffers ? { buffers: options.buffers } : {});
    const [reply] = await Promise.all([
      this.reply(channel, request, deadlineMs),
      this.idle(request, deadlineMs),
    ]);
    return { request, reply, iopub: this.iopubFor(request) };
  }

  /** For messages without a reply (comm_open, comm_msg, comm_close): sends and collects IOPub up to idle. */
  async notify(msgType: string, content: JsonObject, options: { deadlineMs?: number; buffers?: Uint8Array[] } = {}): Promise<Omit<RequestResult, "reply">> {
    const request = this.send("shell", msgType, content, options.buffers ? { buffers: options.buffers } : {});
    await this.idle(request, options.deadlineMs ?? 10_000);
    return { request, iopub: this.iopubFor(request) };
  }

  reply(channel: ClientChannel, request: Header, deadlineMs = 10_000): Promise<JupyterMessage> {
    return this.replies[channel].wait((m) => parentId(m) === request.msg_id, deadlineMs, `reply to ${request.msg_type} on ${channel}`);
  }

  idle(request: Header, deadlineMs = 10_000): Promise<JupyterMessage> {
    return this.iopub.wait(
      (m) => parentId(m) === request.msg_id && m.header.msg_type === "status" && m.content.execution_state === "idle",
      deadlineMs,
      `idle for ${request.msg_type}`,
    );
  }

  iopubFor(request: Header): JupyterMessage[] {
    return this.iopub.items.filter((m) => parentId(m) === request.msg_id);
  }

  /** Sends execute_request (defaults like jupyter_client) and waits for reply and idle. */
  execute(code: string, options: { deadlineMs?: number; content?: JsonObject } = {}): Promise<RequestResult> {
    return this.request(
      "shell",
      "execute_request",
      { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true, ...options.content },
      options,
    );
  }

  /** Round trip on the heartbeat socket. */
  async heartbeat(payload = "ping"): Promise<string> {
    await this.sockets.hb.send(payload);
    const [echo] = await this.sockets.hb.receive();
    return echo!.toString();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of Object.values(this.sockets)) s.close();
  }

  private async receiveLoop(name: string, socket: zmq.Dealer | zmq.Subscriber, inbox: Inbox<JupyterMessage>): Promise<void> {
    try {
      for await (const frames of socket) {
        const result = decodeFrames(frames, this.signer);
        if (result.ok) inbox.push(result.message);
        else this.decodeErrors.push(`${name}: ${describeDecodeError(result.error)}`);
      }
    } catch (err) {
      if (!this.closed) this.decodeErrors.push(`${name}: receive loop failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

export function parentId(message: JupyterMessage): string | undefined {
  const parent = message.parent_header;
  return "msg_id" in parent ? parent.msg_id : undefined;
}

// ---- starting a real kernel process ------------------------------------------------------------------


export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Ports the OS reports free right now (held open together so they are distinct). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<Server>((resolve, reject) => {
        const server = createServer();
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve(server));
      }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

export async function writeConnectionFile(dir: string, options: { key?: string } = {}): Promise<{ path: string; connection: ConnectionInfo }> {
  const [shell, iopub, stdin, control, hb] = (await freePorts(5)) as [number, number, number, number, number];
  const connection: ConnectionInfo = {
    transport: "tcp",
    ip: "127.0.0.1",
    shell_port: shell,
    iopub_port: iopub,
    stdin_port: stdin,
    control_port: control,
    hb_port: hb,
    key: options.key ?? randomUUID(),
    signature_scheme: "hmac-sha256",
  };
  const path = join(dir, `kernel-${randomUUID()}.json`);
  writeFileSync(path, JSON.stringify(connection));
  return { path, connection };
}

export interface RunningKernel {
  process: ChildProcess;
  connectionFile: string;
  connection: ConnectionInfo;
  client: KernelClient;
  /** Everything the kernel wrote to stderr so far. */
  stderr(): string;
  /** Resolves once stderr matches `pattern`, or rejects after the deadline. */
  waitForStderr(pattern: RegExp, deadlineMs?: number): Promise<void>;
  /** Resolves with the exit code, or rejects after the deadline. */
  exited(deadlineMs?: number): Promise<number | null>;
  /** Kills the kernel and its user program (by process group) and closes the client. Idempotent. */
  kill(): Promise<void>;
}

/**
 * Starts `node bin/tsnb.mjs kernel --connection-file F` on random loopback ports with a random key, connects
 * a client and waits until it is ready. The kernel runs in its own process group so kill() also ends its
 * user program.
 */
export async function startKernel(options: StartKernelOptions = {}): Promise<RunningKernel> {
  // The ports are picked free, then bound by the kernel: in between, another process (a parallel test file's
  // kernel or server) may take one. The kernel says so and exits; Jupyter's launcher has the same race and
  // tries again with new ports, and so does this.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startKernelOnce(options);
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt === 3) throw err;
    }
  }
}

type StartKernelOptions = { cwd?: string; env?: NodeJS.ProcessEnv; key?: string; readyDeadlineMs?: number };

class PortTakenError extends Error {}

async function startKernelOnce(options: StartKernelOptions): Promise<RunningKernel> {
  const dir = mkdtempSync(join(tmpdir(), "tsnb-kernel-"));
  const { path, connection } = await writeConnectionFile(dir, options.key === undefined ? {} : { key: options.key });
  const child = spawn(process.execPath, [join(REPO_ROOT, "bin", "tsnb.mjs"), "kernel", "--connection-file", path], {
    cwd: options.cwd ?? dir,
    // Like Jupyter's launcher: if this test process dies before kill() runs, the kernel notices and exits.
    // History goes to this kernel's own temp dir (never the user's ~/.local/share/tsnb) unless a test names a file.
    env: { TSNB_HISTORY_FILE: join(dir, "history.jsonl"), ...(options.env ?? process.env), JPY_PARENT_PID: String(process.pid) },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stderr = "";
  const stderrWatchers = new Set<() => void>();
  child.stderr!.setEncoding("utf8").on("data", (t: string) => {
    stderr += t;
    for (const w of stderrWatchers) w();
  });
  child.stdout!.resume();
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const client = KernelClient.connect(connection);
  let killed: Promise<void> | null = null;
  const kernel: RunningKernel = {
    process: child,
    connectionFile: path,
    connection,
    client,
    stderr: () => stderr,
    waitForStderr: (pattern, deadlineMs = 5_000) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(stderr)) return resolve();
        const check = () => {
          if (!pattern.test(stderr)) return;
          stderrWatchers.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          stderrWatchers.delete(check);
          reject(new ReceiveTimeoutError(`kernel stderr did not match ${pattern} within ${deadlineMs} ms; stderr:\n${stderr}`));
        }, deadlineMs);
        stderrWatchers.add(check);
      }),
    exited: (deadlineMs = 10_000) => {
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([
        exit,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ReceiveTimeoutError(`kernel did not exit within ${deadlineMs} ms`)), deadlineMs);
        }),
      ]).finally(() => clearTimeout(timer));
    },
    kill: () => {
      killed ??= (async () => {
        client.close();
        if (child.pid !== undefined) {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch (err) {
            // ESRCH: the group is already gone, which is the goal.
            if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
          }
        }
        await exit;
        rmSync(dir, { recursive: true, force: true });
      })();
      return killed;
    },
  };
  // A kernel that exits while starting (ports taken, a bad connection file) fails the start at once instead of
  // after the whole ready deadline. Promise.race handles this promise's rejection even when it comes later.
  let ready = false;
  const exitedWhileStarting = new Promise<never>((_, reject) => {
    child.once("exit", (code) => {
      if (!ready) reject(new Error(`kernel exited with code ${code} before it was ready`));
    });
  });
  try {
    await Promise.race([client.waitForReady(options.readyDeadlineMs ?? 15_000), exitedWhileStarting]);
    ready = true;
  } catch (err) {
    await kernel.kill();
    const message = `${err instanceof Error ? err.message : String(err)}\nkernel stderr:\n${stderr}`;
    throw /address already in use/i.test(stderr) ? new PortTakenError(message) : new Error(message);
  }
  return kernel;
}
