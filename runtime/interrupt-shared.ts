// Layout of the SharedArrayBuffer between the main thread and the interrupter worker, and the messages
// they exchange. Interrupts are numbered so a late notification can never hit the cell after the one
// it was meant for: a cell records the number current when it started and only a higher one stops it.

export const SLOT = {
  /** Incremented by the worker for every interrupt request from the kernel. */
  requested: 0,
  /** Highest request number the main thread has seen: the worker waits for it before forcing. */
  acknowledged: 1,
  /** Set to 1 by the worker once its inspector session is disconnected (at shutdown). */
  released: 2,
} as const;

export const SHARED_SLOTS = 3;

/** How long the worker waits for the main thread to acknowledge before it terminates running JS. */
export const ACK_TIMEOUT_MS = 100;

export type WorkerToMain = { type: "interrupt"; seq: number } | { type: "log"; text: string };

export type MainToWorker = { type: "release" };

export interface InterrupterData {
  shared: SharedArrayBuffer;
  fd: number;
}
