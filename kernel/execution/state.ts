// The executor's lifecycle as one closed union and one transition function. One program at a time; a cell
// runs only on a program that said hello; a program's exit always leads back to `no_program`, from which
// the executor (or the next cell) spawns a fresh one. Generic over the program so it is testable alone.

export interface ReadyWaiter {
  resolve(): void;
  reject(err: Error): void;
}

export type ExecutorState<P, C> =
  /** Nothing running: never started, or the last program died (a cell or start() spawns the next). */
  | { type: "no_program" }
  /** Spawned, waiting for its hello; cells that need it wait in `waiters`. */
  | { type: "starting"; program: P; waiters: Set<ReadyWaiter> }
  | { type: "ready"; program: P }
  | { type: "running"; program: P; cell: C }
  | { type: "disposed" };

export type ExecutorEvent<P, C> =
  | { type: "spawned"; program: P }
  | { type: "hello" }
  | { type: "cell_started"; cell: C }
  | { type: "cell_finished" }
  | { type: "program_exited" }
  | { type: "dispose" };

/** Returns the next state; an event that does not apply in a state leaves it unchanged. */
export function executorTransition<P, C>(state: ExecutorState<P, C>, event: ExecutorEvent<P, C>): ExecutorState<P, C> {
  if (state.type === "disposed") return state;
  switch (event.type) {
    case "dispose":
      return { type: "disposed" };
    case "spawned":
      return state.type === "no_program" ? { type: "starting", program: event.program, waiters: new Set() } : state;
    case "hello":
      return state.type === "starting" ? { type: "ready", program: state.program } : state;
    case "cell_started":
      return state.type === "ready" ? { type: "running", program: state.program, cell: event.cell } : state;
    case "cell_finished":
      return state.type === "running" ? { type: "ready", program: state.program } : state;
    case "program_exited":
      return state.type === "no_program" ? state : { type: "no_program" };
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

export function programOf<P, C>(state: ExecutorState<P, C>): P | null {
  switch (state.type) {
    case "starting":
    case "ready":
    case "running":
      return state.program;
    case "no_program":
    case "disposed":
      return null;
    default: {
      const unreachable: never = state;
      return unreachable;
    }
  }
}
