// Worker thread that reads the interrupt channel (fd 4). The main thread may be stuck in `while (true) {}`,
// so interrupts cannot wait for it: the worker first tells the main thread (which acknowledges at once if
// its event loop is free, e.g. in `await new Promise(() => {})`). Without an acknowledgement within
// ACK_TIMEOUT_MS it asks V8, through the inspector, whether the main thread is running JavaScript right
// now (an inspector command runs on top of whatever JS is executing, so a stack deeper than the probe
// itself means busy) and only then stops it with Runtime.terminateExecution. Terminating an idle thread
// would kill the next callback that runs, which is why a slow acknowledgement (a loaded machine) alone is
// never taken as "busy".

import { writeSync } from "node:fs";
import net from "node:net";
import inspector from "node:inspector";
import { parentPort, workerData } from "node:worker_threads";
import { FrameDecoder, describeFrameError } from "../protocol/framing.js";
import { ACK_TIMEOUT_MS, SLOT, type InterrupterData, type MainToWorker, type WorkerToMain } from "./interrupt-shared.js";

const POLL_MS = 5;
/**
 * Evaluated on the main thread: the number of lines in a fresh stack trace. "Error" plus the probe's own
 * frame is 2 when the thread is idle; more when the probe interrupted running JavaScript.
 */
const BUSY_PROBE =
  "{ const limit = Error.stackTraceLimit; Error.stackTraceLimit = 4; const stack = String(new Error().stack); Error.stackTraceLimit = limit; stack.split('\\n').length }";

function main(port: NonNullable<typeof parentPort>, data: InterrupterData): void {
  const shared = new Int32Array(data.shared);
  const session = new inspector.Session();
  session.connectToMainThread();
  const decoder = new FrameDecoder();
  const socket = new net.Socket({ fd: data.fd, readable: true, writable: false });
  const tell = (message: WorkerToMain) => port.postMessage(message);

  const acknowledged = (seq: number) => Atomics.load(shared, SLOT.acknowledged) >= seq;

  const mainThreadIsRunningJs = () =>
    new Promise<boolean>((resolve) => {
      session.post("Runtime.evaluate", { expression: BUSY_PROBE, silent: true }, (err, result) => {
        if (err) {
          tell({ type: "log", text: `busy probe failed: ${err.message}` });
          resolve(false);
          return;
        }
        const value = (result as { result?: { value?: unknown } }).result?.value;
        resolve(typeof value === "number" && value > 2);
      });
    });

  // Diagnostics straight to fd 2: the main thread, which would relay log messages, may be the stuck one.
  const dbg = (text: string) => {
    if (process.env.TSNB_DEBUG_INTERRUPT) writeSync(2, `[tsnb interrupter] ${text}\n`);
  };
  const interrupt = async () => {
    const seq = Atomics.add(shared, SLOT.requested, 1) + 1;
    tell({ type: "interrupt", seq });
    let deadline = Date.now() + ACK_TIMEOUT_MS;
    while (!acknowledged(seq)) {
      if (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        continue;
      }
      const busy = await mainThreadIsRunningJs();
      dbg(`probe busy=${busy} acked=${acknowledged(seq)}`);
      if (acknowledged(seq)) return;
      if (busy) {
        session.post("Runtime.terminateExecution", (err) => {
          dbg(`terminate result: ${err ? err.message : "ok"}`);
          if (err) tell({ type: "log", text: `terminateExecution failed: ${err.message}` });
        });
        return;
      }
      // Idle but the notification is not handled yet: the loop is just slow. Keep waiting.
      deadline = Date.now() + ACK_TIMEOUT_MS;
    }
  };

  socket.on("data", (chunk: Buffer) => {
    const { frames, error } = decoder.push(chunk);
    for (const frame of frames) {
      if (frame.header.op === "interrupt") void interrupt();
      else tell({ type: "log", text: `ignored op ${JSON.stringify(frame.header.op)} on the interrupt channel` });
    }
    if (error) {
      tell({ type: "log", text: `interrupt channel: ${describeFrameError(error)}` });
      socket.destroy();
    }
  });
  socket.on("error", (err) => tell({ type: "log", text: `interrupt channel error: ${err.message}` }));

  port.on("message", (message: MainToWorker) => {
    switch (message.type) {
      case "release":
        // Disconnect before the process exits, or Node prints "Waiting for the debugger to disconnect...".
        socket.destroy();
        session.disconnect();
        Atomics.store(shared, SLOT.released, 1);
        Atomics.notify(shared, SLOT.released);
        port.close();
        break;
      default: {
        const unreachable: never = message.type;
        tell({ type: "log", text: `unknown message ${String(unreachable)}` });
      }
    }
  });
}

if (parentPort && workerData) main(parentPort, workerData as InterrupterData);
