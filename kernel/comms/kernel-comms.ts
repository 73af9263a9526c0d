// Plugs the comms hub (bridge.ts) into the kernel: it is the core's `Comms` (comm_open/msg/close,
// comm_info) and the executor's `ProgramExtension` (the program's comm ops on its channel).
//
// Latency: when a browser value goes to the program, the handler waits a few milliseconds for the
// program's answer before returning, so `busy`, the answer and `idle` leave the kernel together and the
// Jupyter server writes them to the browser in one go (REFERENCE.md section 5: otherwise the answer waits
// for the browser's delayed ACK, ~40 ms). The answer itself goes first, ahead of the held busy/idle: the
// server's first write leaves at once, later ones wait for an ACK (see KernelIO's overtakeStatus).

import { disposable } from "../../protocol/disposable.js";
import type { CommCloseContent, CommMsgContent, CommOpenContent, JsonObject } from "../../protocol/jupyter.js";
import { isProgramCommOp } from "../../protocol/comms-ops.js";
import type { CommContext, Comms } from "../core/comms.js";
import type { KernelIO, ParentHeader } from "../core/io.js";
import type { ProgramExtension } from "../execution/executor.js";
import type { Log } from "../log.js";
import { CommsBridge, type BridgeOptions, type Disposable } from "./bridge.js";

/** What the comms need from the executor. */
export interface ProgramLink {
  sendToProgram(header: JsonObject & { op: string }, buffers?: Uint8Array[]): boolean;
  parentForCell(cell: string | null): ParentHeader;
  holdReading(reason: string, hold: boolean): void;
}

export interface KernelCommsOptions {
  io: KernelIO;
  log: Log;
  bridge?: Partial<BridgeOptions>;
  /** How long a comm_msg handler waits for the program's answer before publishing idle. */
  answerWaitMs?: number;
}

export class KernelComms implements Comms, ProgramExtension {
  private readonly bridge: CommsBridge;
  private program: ProgramLink | null = null;
  private readonly answerWaiters = new Set<() => void>();
  private deliveredToProgram = false;
  private readonly congestion: Disposable;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly immediates = new Set<NodeJS.Immediate>();
  private idCounter = 0;

  constructor(private readonly options: KernelCommsOptions) {
    const { io, log } = options;
    this.bridge = new CommsBridge(
      {
        // Not performance.now(): the first use of the `performance` global loads perf_hooks and its eight
        // internal modules, 0.75 MB RSS in a process that otherwise never needs them.
        now: () => Number(process.hrtime.bigint()) / 1e6,
        setTimer: (ms, fn) => {
          // A flush "now" while a browser message waits for the program's answer (the echo path) must not
          // cost Node's 1 ms minimum timeout: run it after the current I/O instead. Only then: for a program
          // streaming values, the 1 ms lets batches fill (fewer, larger comm messages).
          if (ms <= 0 && this.answerWaiters.size > 0) {
            const im = setImmediate(() => {
              this.immediates.delete(im);
              fn();
            });
            this.immediates.add(im);
            let cleared = false;
            return {
              dispose: () => {
                if (cleared) return;
                cleared = true;
                clearImmediate(im);
                this.immediates.delete(im);
              },
            };
          }
          const t = setTimeout(() => {
            this.timers.delete(t);
            fn();
          }, ms);
          this.timers.add(t);
          return disposable(() => {
            clearTimeout(t);
            this.timers.delete(t);
          });
        },
        publish: (m) => {
          // The answer a waiting browser message asked for (an echo, an RPC reply) leaves ahead of that
          // message's busy/idle (KernelIO PublishOptions.overtakeStatus).
          const answer = m.msg_type === "comm_msg" && this.answerWaiters.size > 0;
          io.publish({ msgType: m.msg_type, content: m.content, parent: m.parent, buffers: m.buffers, overtakeStatus: answer });
          if (m.msg_type === "comm_msg") for (const w of [...this.answerWaiters]) w();
        },
        toProgram: (op, buffers) => {
          // A delivered value or call usually gets an answer within milliseconds: wait for it (see above).
          if (op.op === "comm_deliver" || op.op === "comm_rpc_call") this.deliveredToProgram = true;
          return this.program?.sendToProgram(op as unknown as JsonObject & { op: string }, buffers) ?? false;
        },
        parentForCell: (cell) => this.program?.parentForCell(cell) ?? {},
        newId: () => `${process.pid}-${Date.now().toString(36)}-${++this.idCounter}`,
        log,
      },
      options.bridge,
    );
    this.congestion = this.bridge.onCongestion((congested) => this.program?.holdReading("comms", congested));
  }

  /** Connects the executor (created after this object, since it takes it as its extension). */
  attach(program: ProgramLink): void {
    this.program = program;
  }

  // ---- Comms (kernel core) -------------------------------------------------------------------------

  info(targetName: string | undefined): { [commId: string]: { target_name: string } } {
    return this.bridge.commInfo(targetName);
  }

  open(ctx: CommContext<CommOpenContent>): void {
    this.bridge.commOpen(ctx.request as never);
  }

  message(ctx: CommContext<CommMsgContent>): void | Promise<void> {
    this.deliveredToProgram = false;
    this.bridge.commMsg(ctx.request as never);
    if (!this.deliveredToProgram) return;
    const ms = this.options.answerWaitMs ?? 5;
    if (ms <= 0) return;
    return new Promise<void>((resolve) => {
      const done = () => {
        this.answerWaiters.delete(done);
        clearTimeout(timer);
        this.timers.delete(timer);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.timers.add(timer);
      this.answerWaiters.add(done);
    });
  }

  close(ctx: CommContext<CommCloseContent>): void {
    this.bridge.commClose(ctx.request as never);
  }

  dispose(): void {
    this.congestion.dispose();
    this.bridge.dispose();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const im of this.immediates) clearImmediate(im);
    this.immediates.clear();
    for (const w of [...this.answerWaiters]) w();
  }

  // ---- ProgramExtension (executor) -----------------------------------------------------------------

  handles(op: string): boolean {
    return isProgramCommOp(op);
  }

  onOp(header: JsonObject & { op: string }, buffers: Uint8Array[]): string | null {
    return this.bridge.programOp(header, buffers);
  }

  programStarted(): void {
    this.bridge.programStarted();
  }

  programStopped(): void {
    this.bridge.programStopped();
  }

  cellFinished(cell: string): void {
    this.bridge.cellFinished(cell);
  }
}
