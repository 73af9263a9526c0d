// Starts dist/program.js exactly as the kernel does (main channel in the FIFOs of TSNB_PIPE / TSNB_PIPE_BACK made
// by the kernel's own createProgramFifos, fd 4 = interrupt channel, cwd = notebook directory) and speaks the pipe
// framing to it. Interrupts go through the kernel's own forcer, which stops busy code over the program's
// inspector port. Every wait has a deadline. Each program gets a fresh temporary notebook directory, removed
// with it by close().

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Duplex, Writable } from "node:stream";
import { encodeFrame, FrameDecoder, describeFrameError } from "../../protocol/framing.js";
import type { JsonObject } from "../../protocol/jupyter.js";
import type { ExecuteDoneOp, KernelToProgram, ProgramToKernel } from "../../protocol/program.js";
import { createProgramFifos, type ProgramFifos } from "../../kernel/execution/program-fifos.js";
import { InterruptForcer, withoutInspectorNotices } from "../../kernel/execution/interrupt-forcer.js";
import { memoryLog } from "../../kernel/log.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PROGRAM = join(ROOT, "dist", "program.js");

export class DeadlineError extends Error {
  override readonly name = "DeadlineError";
}

interface Waiter {
  from: number;
  match(op: ProgramToKernel): boolean;
  resolve(op: ProgramToKernel): void;
  reject(err: Error): void;
}

export interface CellRun {
  done: ExecuteDoneOp;
  /** Every op tagged with this cell that arrived before execute_done, in arrival order. */
  outputs: ProgramToKernel[];
  stdout: string;
  stderr: string;
}

let nextCell = 0;

export class ProgramHarness {
  readonly received: ProgramToKernel[] = [];
  rawStdout = "";
  rawStderr = "";
  readonly pipeErrors: string[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly decoder = new FrameDecoder();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exited: Promise<void>;
  private count = 0;
  private interruptSeq = 0;
  private forcer: InterruptForcer | null = null;
  /** What the interrupt forcer logged (a failure to stop busy code shows up here). */
  readonly forcerLog = memoryLog();

  private constructor(
    readonly child: ChildProcess,
    readonly fifos: ProgramFifos,
    /** The program's working directory (its notebook directory): a fresh temporary one, removed by close(). */
    readonly cwd: string,
  ) {
    fifos.reader.on("data", (chunk: Buffer) => {
      const { frames, error } = this.decoder.push(chunk);
      for (const frame of frames) this.onOp(frame.header as unknown as ProgramToKernel);
      if (error) throw new Error(`program sent a bad frame: ${describeFrameError(error)}`);
    });
    // EPIPE after the program exited (a test that kills it) is expected; keep it for diagnostics.
    fifos.reader.on("error", (err) => this.pipeErrors.push(`channel: ${err.message}`));
    fifos.writer.on("error", (err) => this.pipeErrors.push(`channel back: ${err.message}`));
    (child.stdio[4] as Duplex).on("error", (err) => this.pipeErrors.push(`interrupt channel: ${err.message}`));
    child.stdout!.setEncoding("utf8").on("data", (t: string) => (this.rawStdout += t));
    child.stderr!.setEncoding("utf8").on("data", (t: string) => (this.rawStderr += withoutInspectorNotices(t)));
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        fifos.dispose();
        this.forcer?.dispose();
        resolve();
        // Nothing more can arrive: fail waiters now instead of at their deadlines.
        for (const waiter of this.waiters) {
          this.waiters.delete(waiter);
          waiter.reject(new Error(`program exited (code ${code}, signal ${signal}) while waiting; stderr: ${this.rawStderr.slice(-2000)}`));
        }
      });
    });
  }

  /**
   * Starts a program in a fresh temporary directory, after `prepare` wrote what it should find there, and waits
   * for its hello. A start that fails leaves no process and no directory behind.
   */
  static async start(options: { prepare?(cwd: string): void; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ProgramHarness> {
    // realpath: the program's process.cwd() is the resolved path (TMPDIR may be behind a symlink).
    const cwd = realpathSync(mkdtempSync(join(tmpdir(), "tsnb-harness-")));
    let fifos: ProgramFifos;
    try {
      options.prepare?.(cwd);
      fifos = await createProgramFifos();
    } catch (err) {
      rmSync(cwd, { recursive: true, force: true });
      throw err;
    }
    const child = spawn(process.execPath, ["--experimental-import-meta-resolve", "--inspect-publish-uid=stderr", PROGRAM], {
      cwd,
      env: { ...(options.env ?? process.env), ...fifos.env },
      stdio: ["ignore", "pipe", "pipe", "ignore", "pipe"],
    });
    const harness = new ProgramHarness(child, fifos, cwd);
    try {
      const hello = await harness.waitFor((op) => op.op === "hello", { timeoutMs: options.timeoutMs ?? 10_000, what: "hello" });
      if (hello.op !== "hello" || !fifos.tokenMatches(hello.token)) {
        throw new Error(`the program's hello did not carry its TSNB_PIPE_TOKEN: ${JSON.stringify(hello)}`);
      }
    } catch (err) {
      await harness.close();
      throw err;
    }
    return harness;
  }

  /** Closes the kernel's ends of the channel, as a kernel that went away would. */
  closeChannel(): void {
    this.fifos.dispose();
  }

  get exit() {
    return this.exitInfo;
  }

  private onOp(op: ProgramToKernel): void {
    if (op.op === "hello" && typeof op.inspector === "string") this.forcer ??= new InterruptForcer({ url: op.inspector, log: this.forcerLog });
    if (op.op === "interrupt_ack") this.forcer?.acknowledge(op.seq);
    const index = this.received.length;
    this.received.push(op);
    for (const waiter of this.waiters) {
      if (index >= waiter.from && waiter.match(op)) {
        this.waiters.delete(waiter);
        waiter.resolve(op);
      }
    }
  }

  waitFor<T extends ProgramToKernel = ProgramToKernel>(
    match: (op: ProgramToKernel) => boolean,
    options: { timeoutMs?: number; from?: number; what?: string } = {},
  ): Promise<T> {
    const from = options.from ?? 0;
    const existing = this.received.slice(from).find(match);
    if (existing) return Promise.resolve(existing as T);
    if (this.exitInfo !== null) {
      return Promise.reject(new Error(`program already exited (${JSON.stringify(this.exitInfo)}); stderr: ${this.rawStderr.slice(-2000)}`));
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        from,
        match,
        resolve: (op) => {
          clearTimeout(timer);
          resolve(op as T);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new DeadlineError(
            `no ${options.what ?? "matching op"} within ${timeoutMs} ms; received ${JSON.stringify(this.received.slice(from)).slice(0, 2000)}; stderr: ${this.rawStderr.slice(-2000)}; interrupt forcer: ${this.forcerLog.lines.join(" | ") || "-"}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  send(op: KernelToProgram): void {
    writeFrame(this.fifos.writer, op);
  }

  interrupt(): void {
    const seq = ++this.interruptSeq;
    writeFrame(this.child.stdio[4] as Writable, { op: "interrupt", seq });
    this.forcer?.force(seq);
  }

  /** Sends an execute op; returns its id and the index of the first op that can belong to it. */
  startExecute(code: string, options: { allowStdin?: boolean; silent?: boolean } = {}): { id: string; from: number } {
    const id = `cell-${process.pid}-${++nextCell}`;
    const from = this.received.length;
    this.send({
      op: "execute",
      id,
      code,
      silent: options.silent ?? false,
      store_history: true,
      allow_stdin: options.allowStdin ?? false,
      execution_count: ++this.count,
    });
    return { id, from };
  }

  async finish(started: { id: string; from: number }, timeoutMs = 15_000): Promise<CellRun> {
    const done = await this.waitFor<ExecuteDoneOp>((op) => op.op === "execute_done" && op.id === started.id, {
      from: started.from,
      timeoutMs,
      what: `execute_done for ${started.id}`,
    });
    const end = this.received.indexOf(done);
    const outputs = this.received.slice(started.from, end).filter((op) => "cell" in op && op.cell === started.id);
    const text = (name: string) =>
      outputs
        .filter((op): op is Extract<ProgramToKernel, { op: "stream" }> => op.op === "stream" && op.name === name)
        .map((op) => op.text)
        .join("");
    return { done, outputs, stdout: text("stdout"), stderr: text("stderr") };
  }

  async execute(code: string, options: { allowStdin?: boolean; silent?: boolean; timeoutMs?: number } = {}): Promise<CellRun> {
    return this.finish(this.startExecute(code, options), options.timeoutMs);
  }

  /** Kills the program (if still running), waits for it to exit and removes its directory. */
  async close(): Promise<void> {
    if (this.exitInfo === null) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
    this.fifos.dispose();
    for (const waiter of this.waiters) this.waiters.delete(waiter);
    rmSync(this.cwd, { recursive: true, force: true });
  }

  /** The program's heap in MB after a full garbage collection, measured by a cell of its own. */
  async heapUsedMbAfterGc(): Promise<number> {
    // No declarations: the cell must not clash with the names of the test's own cells.
    const run = await this.execute(
      [
        ";(await import('node:v8')).setFlagsFromString('--expose-gc')",
        ";(await import('node:vm')).runInNewContext('gc')()",
        "Math.round(process.memoryUsage().heapUsed / 1048576)",
      ].join("\n"),
    );
    return Number(resultText(run));
  }

  async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exited,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new DeadlineError(`program did not exit within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    return this.exitInfo!;
  }
}

function writeFrame(stream: Writable, op: KernelToProgram | JsonObject): void {
  for (const chunk of encodeFrame(op as JsonObject & { op: string })) stream.write(chunk);
}

/** Text result of a cell, or a readable failure. */
export function resultText(run: CellRun): string | null {
  if (run.done.status !== "ok") throw new Error(`cell failed: ${run.done.ename}: ${run.done.evalue}\n${run.done.traceback.join("\n")}`);
  const plain = run.done.result?.data["text/plain"];
  return typeof plain === "string" ? plain : null;
}
