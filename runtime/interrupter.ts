// Worker thread that reads the interrupt channel (fd 4). The main thread may be stuck in `while (true) {}`,
// so interrupts cannot wait for it: the worker first tells the main thread (which acknowledges at once if
// its event loop is free, e.g. in `await new Promise(() => {})`), and only when no acknowledgement comes
// within ACK_TIMEOUT_MS does it stop the running JavaScript with Runtime.terminateExecution. Terminating
// an idle thread would kill the next callback that runs, so the acknowledgement step is not optional.

import net from "node:net";
import inspector from "node:inspector";
import { parentPort, workerData } from "node:worker_threads";
import { FrameDecoder, describeFrameError } from "../protocol/framing.js";
import { ACK_TIMEOUT_MS, SLOT, type InterrupterData, type MainToWorker, type WorkerToMain } from "./interrupt-shared.js";

function main(port: NonNullable<typeof parentPort>, data: InterrupterData): void {
  const shared = new Int32Array(data.shared);
  const session = new inspector.Session();
  session.connectToMainThread();
  const decoder = new FrameDecoder();
  const socket = new net.Socket({ fd: data.fd, readable: true, writable: false });
  const tell = (message: WorkerToMain) => port.postMessage(message);

  const interrupt = () => {
    const seq = Atomics.add(shared, SLOT.requested, 1) + 1;
    tell({ type: "interrupt", seq });
    const deadline = Date.now() + ACK_TIMEOUT_MS;
    for (;;) {
      const acknowledged = Atomics.load(shared, SLOT.acknowledged);
      if (acknowledged >= seq) return;
      const left = deadline - Date.now();
      if (left <= 0) break;
      Atomics.wait(shared, SLOT.acknowledged, acknowledged, left);
    }
    session.post("Runtime.terminateExecution", (err) => {
      if (err) tell({ type: "log", text: `terminateExecution failed: ${err.message}` });
    });
  };

  socket.on("data", (chunk: Buffer) => {
    const { frames, error } = decoder.push(chunk);
    for (const frame of frames) {
      if (frame.header.op === "interrupt") interrupt();
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
