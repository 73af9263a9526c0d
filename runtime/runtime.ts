// The user program: receives ops from the kernel on the main channel, runs cells one at a time, and sends
// output, displays, input requests and results back. See ARCHITECTURE.md ("The program channel").

import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ErrorContent, JsonObject } from "../protocol/jupyter.js";
import type { RawFrame } from "../protocol/framing.js";
import type { CompleteOp, ExecuteOp, InputReplyOp, InspectOp, ProgramToKernel } from "../protocol/program.js";
import { Channel, ChannelClosedError, type ChannelEvent, type ChannelFifos } from "./channel.js";
import { ContextTracker } from "./context.js";
import { DisposedError, type Disposable } from "../protocol/disposable.js";
import { CellCompiler, HELPERS } from "./evaluator/compile.js";
import { installFastConsoleFormat, installPlainConsole } from "./console.js";
import { StackMapper } from "./evaluator/errors.js";
import { Evaluator } from "./evaluator/evaluate.js";
import { disarmAsyncHookChecks, InterruptController, openInspectorPort } from "./interrupt.js";
import { complete, inspectAt } from "./introspect.js";
import { Magics } from "./magics.js";
import { PipeRegistry, type CommandPipes } from "./pipes.js";
import { createImporter, type Importer } from "./modules.js";
import { Output, type CellContext } from "./output.js";
import { API_KEY, createTsnb, hasDisplayedHook, isNoResult, type Tsnb } from "./tsnb/api.js";
import { registerTypeScriptLoader } from "./ts-loader.js";
import { COMMS_KEY, ProgramComms, SyncedVariable } from "./tsnb/comms/comms.js";

export interface RuntimeOptions {
  channel: ChannelFifos;
  interruptFd: number;
  tsnbUrl: string;
  resolve: ((specifier: string, parent?: string) => string) | undefined;
  /** Prefixes of file names whose stack frames are tsnb internals. */
  internalPrefixes: string[];
}

export class InterruptedError extends Error {
  override readonly name = "Interrupted";
}

export class InputError extends Error {
  override readonly name = "InputError";
}

interface PendingInput {
  cell: string | null;
  resolve(value: string): void;
  reject(err: Error): void;
}

const RED = "\u001b[31m";
const BOLD = "\u001b[1m";
const RESET = "\u001b[0m";

/** `name?`, `?name`, `a.b??` alone in a cell: a help request (IPython's syntax; never valid TypeScript). */
const HELP_NAME = "[A-Za-z_$][\\w$]*(?:\\.[A-Za-z_$][\\w$]*)*";
const HELP_REQUEST = new RegExp(`^\\s*(?:(${HELP_NAME})\\s*(\\?\\??)|(\\?\\??)\\s*(${HELP_NAME}))\\s*$`);

/** The help request in a cell, if the whole cell is one. */
function helpRequest(code: string): { expression: string; detailLevel: 0 | 1 } | null {
  const m = HELP_REQUEST.exec(code);
  if (m === null) return null;
  const marks = m[2] ?? m[3] ?? "?";
  return { expression: (m[1] ?? m[4])!, detailLevel: marks === "??" ? 1 : 0 };
}

function interruptedContent(): ErrorContent {
  const evalue = "Execution interrupted by the user; variables from earlier cells are kept.";
  return { ename: "Interrupted", evalue, traceback: [`${RED}${BOLD}Interrupted${RESET}: ${evalue}`] };
}

export class Runtime implements Disposable {
  private readonly tracker: ContextTracker<CellContext>;
  private readonly channel: Channel;
  private readonly output: Output;
  private readonly plainConsole: Disposable;
  private readonly fastConsole: Disposable | null;
  private readonly evaluator: Evaluator;
  private readonly interrupts: InterruptController;
  private readonly mapper: StackMapper;
  private readonly importer: Importer;
  private readonly magics: Magics;
  private readonly pipes: PipeRegistry;
  private readonly tsnb: Tsnb;
  private readonly comms: ProgramComms;
  private readonly pendingInputs = new Map<string, PendingInput>();
  private readonly fileNameUses = new Map<string, number>();
  private readonly compiler = new CellCompiler({ log: (text) => this.log(text) });
  private queue: Promise<void> = Promise.resolve();
  private nextDisplay = 0;
  private tsLoaderRegistered = false;
  private nextInput = 0;
  private disposed = false;
  /** tsconfig.json as last read, keyed by path, inode, size and mtime. */
  private tsconfig: { key: string; legacyDecorators: boolean } | null = null;

  constructor(private readonly options: RuntimeOptions) {
    const { readFd, writeFd, token } = options.channel;
    this.channel = new Channel({ readFd, writeFd, onEvent: (event) => this.onChannelEvent(event) });
    // Before hello, so the kernel can interrupt busy code from the first cell on; reported once output exists.
    const startNotes: string[] = [];
    const inspectorUrl = openInspectorPort((text) => startNotes.push(text));
    this.channel.send({ op: "hello", pid: process.pid, node_version: process.version, token, inspector: inspectorUrl });
    this.evaluator = new Evaluator({ log: (text) => this.log(text) });
    this.tracker = new ContextTracker<CellContext>();
    this.output = new Output({ tracker: this.tracker, send: (op) => this.channel.send(op) });
    this.plainConsole = installPlainConsole();
    // Output has just put its capture on process.stdout/stderr.write: those are the writes that never throw.
    this.fastConsole = installFastConsoleFormat(console, {
      directWrites: { stdout: process.stdout.write, stderr: process.stderr.write },
    });
    if (this.fastConsole === null) this.log("console fast path unavailable on this Node version; console.log formats with util.format");
    this.mapper = new StackMapper({ internalPrefixes: options.internalPrefixes });
    this.importer = createImporter({
      tsnbUrl: options.tsnbUrl,
      resolve: options.resolve,
      // Registering module hooks starts Node's loader thread (~50 ms): only when a cell imports a file.
      beforeFileImport: () => {
        if (this.tsLoaderRegistered) return;
        this.tsLoaderRegistered = true;
        const note = registerTypeScriptLoader({ tsnbUrl: options.tsnbUrl });
        if (note !== null) this.log(note);
      },
    });
    this.magics = new Magics({ write: (name, text) => this.output.write(name, text) });
    this.pipes = new PipeRegistry({ log: (text) => this.log(text) });
    this.tsnb = createTsnb({
      send: (op) => this.send(op),
      currentCell: () => this.output.currentCell(),
      requestInput: (request) => this.requestInput(request),
      newDisplayId: () => `tsnb-${process.pid}-${++this.nextDisplay}`,
    });
    this.comms = new ProgramComms({
      send: (op, buffers) => {
        // Stream text first, so output and comm traffic keep their order. Comm ops are not in
        // ProgramToKernel: the kernel routes them to its comms bridge as extension ops.
        this.output.flush();
        this.channel.send(op as unknown as ProgramToKernel, buffers);
      },
      currentCell: () => this.output.currentCell(),
      reportError: (err) => this.send({ op: "error_output", cell: this.output.currentCell(), ...this.mapper.format(err) }),
    });
    this.interrupts = new InterruptController({
      fd: options.interruptFd,
      log: (text) => this.log(text),
      onInterrupt: () => this.onInterrupt(),
      acknowledge: (seq) => this.send({ op: "interrupt_ack", seq }),
    });
    for (const note of startNotes) this.log(note);
    const note = disarmAsyncHookChecks();
    if (note !== null) this.log(note);
    this.installGlobals();
    this.installProcessHandlers();
    // esbuild is not warmed ahead of time: its service process costs ~11.5 MB RSS for the whole session,
    // while starting it on the first TypeScript-only cell costs that cell ~30-80 ms once. Plain JavaScript
    // cells never start it.
  }

  private log(text: string): void {
    this.output.rawStderr(`[tsnb runtime] ${text}\n`);
  }

  private send(op: ProgramToKernel): void {
    this.output.send(op);
  }

  private installGlobals(): void {
    const define = (name: string, value: unknown) =>
      Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
    Object.defineProperty(globalThis, API_KEY, { value: this.tsnb, configurable: true, enumerable: false });
    define("display", this.tsnb.display);
    define("input", this.tsnb.input);
    define("clearOutput", this.tsnb.clearOutput);
    Object.defineProperty(globalThis, COMMS_KEY, { value: this.comms, configurable: true, enumerable: false });
    define("comms", this.comms);
    define("SyncedVariable", SyncedVariable);
    define("require", this.importer.require);
    define(HELPERS.import, this.importer.importFromCell);
    define(HELPERS.named, this.importer.named);
    define(HELPERS.keep, <T>(value: T): T => value);
    define(HELPERS.magic, (name: string, args: string) => this.magics.magic(name, args));
    // The exit code is reported as text on failure; as a cell's last line the command shows no result.
    define(HELPERS.shell, async (command: string) => {
      // Child output arrives on I/O callbacks, which carry no cell context: pin it to this cell.
      const cell = this.output.currentCell();
      const write = (name: "stdout" | "stderr", text: string) => this.output.write(name, text, cell);
      // The command's input() is its cell's: asked under that cell, allowed only if the cell's request allows stdin.
      const context = this.tracker.current();
      const requestInput = (request: { prompt: string; password: boolean }) => this.requestInput(request, context);
      let pipes: CommandPipes | null = null;
      try {
        pipes = await this.pipes.create({
          host: { comms: this.comms, send: (op) => this.send(op), write, requestInput },
          cell,
          label: `!${command.length > 60 ? command.slice(0, 57) + "..." : command}`,
        });
      } catch (err) {
        // No FIFOs (no mkfifo, unwritable temp dir): the command still runs, without TSNB_PIPE.
        write("stderr", `tsnb: no TSNB_PIPE for this command: ${err instanceof Error ? err.message : String(err)}\n`);
      }
      try {
        await this.magics.shell(command, pipes ? { write, env: pipes.env } : { write });
      } finally {
        if (pipes) await this.pipes.close(pipes);
      }
    });
    Object.defineProperty(globalThis, HELPERS.meta, { get: () => this.importer.importMeta(), configurable: true, enumerable: false });
  }

  private installProcessHandlers(): void {
    const report = (err: unknown, cell: string | null) => {
      if (err instanceof ChannelClosedError) {
        this.shutdown(0);
        return;
      }
      try {
        this.send({ op: "error_output", cell, ...this.mapper.format(err) });
      } catch (sendErr) {
        this.log(`could not report an error: ${String(sendErr)}; the error was: ${String(err)}`);
      }
    };
    process.on("uncaughtException", (err) => report(err, this.tracker.takeThrowContext()?.cell ?? this.output.currentCell()));
    process.on("unhandledRejection", (reason, promise) =>
      report(reason, this.tracker.contextOfPromise(promise)?.cell ?? this.output.currentCell()),
    );
    process.on("exit", () => this.dispose());
    // Interrupts arrive on fd 4. A SIGINT to the whole process group (Ctrl+C in the terminal running
    // Jupyter, or a signal-mode interrupt) must not kill the user's state; the kernel ends the program
    // with SIGTERM/SIGKILL or a shutdown op.
    // Not logged: raw stderr would reach the notebook.
    process.on("SIGINT", () => undefined);
  }

  private onChannelEvent(event: ChannelEvent): void {
    switch (event.type) {
      case "frame":
        this.onFrame(event.frame);
        break;
      case "bad_frame":
        this.log(event.detail);
        break;
      case "closed":
        // The kernel is gone (or restarting us): nothing can be delivered any more.
        this.shutdown(0);
        break;
      default: {
        const unreachable: never = event;
        this.log(`unknown channel event ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onFrame(frame: RawFrame): void {
    const h = frame.header as JsonObject;
    const str = (key: string) => (typeof h[key] === "string" ? (h[key] as string) : null);
    switch (h.op) {
      case "execute": {
        const id = str("id");
        if (id === null) return this.log(`execute without a string id ignored`);
        const code = str("code");
        const count = typeof h.execution_count === "number" ? h.execution_count : 0;
        if (code === null) {
          this.send({ op: "execute_done", id, status: "error", ename: "TypeError", evalue: "execute: code must be a string", traceback: [] });
          return;
        }
        const op: ExecuteOp = { op: "execute", id, code, execution_count: count, silent: h.silent === true, store_history: h.store_history !== false, allow_stdin: h.allow_stdin === true };
        this.queue = this.queue.then(() => this.runCell(op));
        return;
      }
      case "complete":
      case "inspect": {
        const id = str("id");
        const code = str("code");
        const cursor = typeof h.cursor_pos === "number" ? h.cursor_pos : null;
        if (id === null) return this.log(`${h.op} without a string id ignored`);
        if (code === null || cursor === null) {
          if (h.op === "complete") this.send({ op: "complete_reply", id, matches: [], cursor_start: 0, cursor_end: 0, metadata: {} });
          else this.send({ op: "inspect_reply", id, found: false, data: {} });
          return;
        }
        if (h.op === "complete") void this.complete({ op: "complete", id, code, cursor_pos: cursor });
        else void this.inspect({ op: "inspect", id, code, cursor_pos: cursor, detail_level: h.detail_level === 1 ? 1 : 0 });
        return;
      }
      case "input_reply":
        return this.onInputReply(h as unknown as InputReplyOp);
      case "shutdown":
        return this.shutdown(0);
      case "interrupt":
        return this.log("interrupt ops belong on the interrupt channel (fd 4); ignored on the main channel");
      default: {
        if (typeof h.op === "string" && h.op.startsWith("comm_")) {
          const problem = this.comms.handleKernelOp(h, frame.buffers);
          if (problem !== null) this.log(`bad comm op from the kernel: ${problem}`);
          return;
        }
        return this.log(`unknown op ${JSON.stringify(h.op)} ignored`);
      }
    }
  }

  /**
   * Standard (TC39) decorators unless the notebook directory's tsconfig.json turns on TypeScript's
   * legacy `experimentalDecorators`, as libraries like TypeORM expect.
   */
  private legacyDecorators(): boolean {
    const file = join(process.cwd(), "tsconfig.json");
    // Checked before every cell, so a stat, not a read: a missing file used to cost a thrown ENOENT (~0.1 ms
    // per execute), and an unchanged one is not read again.
    let stat;
    try {
      stat = statSync(file, { throwIfNoEntry: false });
    } catch (err) {
      this.log(`could not read tsconfig.json: ${String(err)}`);
      return false;
    }
    if (stat === undefined) return false;
    const key = `${file}\0${stat.ino}\0${stat.size}\0${stat.mtimeMs}`;
    if (this.tsconfig?.key === key) return this.tsconfig.legacyDecorators;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      this.log(`could not read tsconfig.json: ${String(err)}`);
      return false;
    }
    // tsconfig.json allows comments, so no JSON.parse: drop comments, then look for the one flag.
    const withoutComments = text.replace(/\/\*[\s\S]*?\*\/|(^|[^:"\\])\/\/.*$/gm, "$1");
    const legacyDecorators = /"experimentalDecorators"\s*:\s*true/.test(withoutComments);
    this.tsconfig = { key, legacyDecorators };
    return legacyDecorators;
  }

  private cellFileName(op: ExecuteOp): string {
    const base = `cell[${op.execution_count}]`;
    const uses = (this.fileNameUses.get(base) ?? 0) + 1;
    this.fileNameUses.set(base, uses);
    return uses === 1 ? `${base}.ts` : `${base}~${uses}.ts`;
  }

  /**
   * IPython's `name?` / `name??`: the inspect text goes to the pager (an execute_reply "page" payload, which
   * front-ends show in their help panel), not into the cell's output.
   */
  private async pageHelp(op: ExecuteOp, expression: string, detailLevel: 0 | 1): Promise<ProgramToKernel> {
    const reply = await inspectAt({ evaluator: this.evaluator, code: expression, cursorPos: expression.length, detailLevel });
    if (!reply.found) {
      this.output.write("stdout", `Object \`${expression}\` not found.\n`, op.id);
      return { op: "execute_done", id: op.id, status: "ok", result: null };
    }
    return { op: "execute_done", id: op.id, status: "ok", result: null, payload: [{ source: "page", data: reply.data, start: 0 }] };
  }

  /** End-of-cell hooks (widgets refresh their saved outputs) run in the cell's context, before its reply. */
  private cellDone(op: ExecuteOp): void {
    try {
      this.tracker.run({ cell: op.id, allowStdin: false }, () => this.tsnb.runBeforeCellDone());
    } catch (err) {
      this.send({ op: "error_output", cell: op.id, ...this.mapper.format(err) });
    }
  }

  private async runCell(op: ExecuteOp): Promise<void> {
    const signal = this.interrupts.signal();
    try {
      const done = await this.evaluateCell(op, signal);
      this.cellDone(op);
      this.send(done);
    } catch (err) {
      if (err instanceof ChannelClosedError) return this.shutdown(0);
      // A failure of the runtime itself: still answer, so the kernel's queue moves on.
      this.log(`cell ${op.id} failed inside the runtime: ${err instanceof Error ? err.stack : String(err)}`);
      this.send({ op: "execute_done", id: op.id, status: "error", ename: "InternalError", evalue: String(err), traceback: [] });
    } finally {
      signal.dispose();
    }
  }

  private async evaluateCell(op: ExecuteOp, signal: ReturnType<InterruptController["signal"]>): Promise<ProgramToKernel> {
    const help = helpRequest(op.code);
    if (help !== null) return this.pageHelp(op, help.expression, help.detailLevel);
    const fileName = this.cellFileName(op);
    const compiled = await this.compiler.compile({ code: op.code, fileName, experimentalDecorators: this.legacyDecorators() });
    if (signal.isInterrupted()) return { op: "execute_done", id: op.id, status: "error", ...interruptedContent() };
    if (compiled.type === "syntax_error") {
      const { type: _type, ...error } = compiled;
      return { op: "execute_done", id: op.id, status: "error", ...error };
    }
    this.mapper.register(fileName, { map: compiled.map, source: compiled.source, columnShift: compiled.columnShift });
    const context: CellContext = { cell: op.id, allowStdin: op.allow_stdin };
    const outcome = await this.tracker.run(context, () => this.evaluator.evaluate(compiled.js, signal, { replMode: compiled.replMode }));
    switch (outcome.type) {
      case "interrupted":
        return { op: "execute_done", id: op.id, status: "error", ...interruptedContent() };
      case "exception":
        return { op: "execute_done", id: op.id, status: "error", ...this.mapper.format(outcome.value) };
      case "value": {
        if (op.silent || outcome.value === undefined || isNoResult(outcome.value)) {
          return { op: "execute_done", id: op.id, status: "ok", result: null };
        }
        if (hasDisplayedHook(outcome.value)) {
          // A value that keeps its output current (a widget) needs a display id, which execute_result lacks.
          const value = outcome.value;
          try {
            this.tracker.run(context, () => this.tsnb.display(value));
          } catch (err) {
            return { op: "execute_done", id: op.id, status: "error", ...this.mapper.format(err) };
          }
          return { op: "execute_done", id: op.id, status: "ok", result: null };
        }
        try {
          const data = await this.tracker.run(context, () => this.tsnb.toMimeBundle(outcome.value));
          return { op: "execute_done", id: op.id, status: "ok", result: { data, metadata: {} } };
        } catch (err) {
          return { op: "execute_done", id: op.id, status: "error", ...this.mapper.format(err) };
        }
      }
      default: {
        const unreachable: never = outcome;
        throw new Error(`unknown outcome ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onInterrupt(): void {
    // This runs at the top of an event-loop callback, where no cell is current; terminated code may have
    // skipped the finally blocks that restore the context.
    this.tracker.reset();
    // Finish a frame that terminated code was in the middle of writing.
    this.channel.drain();
    // Output printed just before a loop that never yielded is still buffered: show it now.
    this.output.flush();
    this.magics.killChildren();
    for (const [id, pending] of this.pendingInputs) {
      this.pendingInputs.delete(id);
      pending.reject(new InterruptedError("input() was interrupted"));
    }
  }

  private requestInput(request: { prompt: string; password: boolean }, context = this.tracker.current()): Promise<string> {
    if (!context) return Promise.reject(new InputError("input() can only be called while a cell is running"));
    if (!context.allowStdin) {
      return Promise.reject(new InputError("input() is not available: this front-end does not accept input (allow_stdin is false)"));
    }
    const id = `input-${++this.nextInput}`;
    return new Promise<string>((resolve, reject) => {
      this.pendingInputs.set(id, { cell: context.cell, resolve, reject });
      this.send({ op: "input_request", id, cell: context.cell, prompt: request.prompt, password: request.password });
    });
  }

  private onInputReply(reply: InputReplyOp): void {
    const pending = typeof reply.id === "string" ? this.pendingInputs.get(reply.id) : undefined;
    if (!pending) return this.log(`input_reply for unknown request ${JSON.stringify(reply.id)} ignored`);
    this.pendingInputs.delete(reply.id);
    if (reply.status === "ok" && typeof reply.value === "string") pending.resolve(reply.value);
    else if (reply.status === "error") pending.reject(new InputError(`${reply.ename}: ${reply.evalue}`));
    else pending.reject(new InputError("malformed input_reply"));
  }

  private async complete(op: CompleteOp): Promise<void> {
    try {
      const reply = await complete({ evaluator: this.evaluator, code: op.code, cursorPos: op.cursor_pos });
      this.send({ op: "complete_reply", id: op.id, ...reply, metadata: {} });
    } catch (err) {
      this.log(`complete failed: ${String(err)}`);
      this.send({ op: "complete_reply", id: op.id, matches: [], cursor_start: op.cursor_pos, cursor_end: op.cursor_pos, metadata: {} });
    }
  }

  private async inspect(op: InspectOp): Promise<void> {
    try {
      const reply = await inspectAt({ evaluator: this.evaluator, code: op.code, cursorPos: op.cursor_pos, detailLevel: op.detail_level });
      this.send({ op: "inspect_reply", id: op.id, ...reply });
    } catch (err) {
      this.log(`inspect failed: ${String(err)}`);
      this.send({ op: "inspect_reply", id: op.id, found: false, data: {} });
    }
  }

  private shutdown(code: number): void {
    // Already exiting (process.exit from a cell runs dispose from the 'exit' handler): keep its code.
    if (this.disposed) return;
    this.dispose();
    process.exit(code);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const [id, pending] of this.pendingInputs) {
      this.pendingInputs.delete(id);
      pending.reject(new DisposedError("the runtime"));
    }
    if (!this.channel.isClosed) {
      try {
        this.output.flush();
      } catch (err) {
        this.log(`could not flush output at exit: ${String(err)}`);
      }
    }
    this.comms.dispose();
    this.fastConsole?.dispose();
    this.plainConsole.dispose();
    this.output.dispose();
    this.magics.dispose();
    this.pipes.dispose();
    this.interrupts.dispose();
    this.evaluator.dispose();
    this.compiler.dispose();
    this.tracker.dispose();
    this.channel.dispose();
  }
}
