// The user program's channel (PIPES.md section 3): two FIFOs in a private directory the kernel creates for
// each program it starts, `TSNB_PIPE` (program -> kernel) and `TSNB_PIPE_BACK` (kernel -> program), and a
// random `TSNB_PIPE_TOKEN` the program's hello must carry. The mechanics (and why no open here can stall the
// kernel's event loop) are node/fifo-pair.ts's, shared with the program's pipes for `!commands`; the
// program opens its ends without ever blocking either.

import { FifoPair } from "../../node/fifo-pair.js";
import { sweepStaleDirs } from "../../node/stale-dirs.js";

export type ProgramFifos = FifoPair;

/** The kernel's pid follows it, so a later kernel can remove the directory of a kernel that was killed. */
const DIR_PREFIX = "tsnb-program-";

/** Creates the directory (0700), the FIFOs (0600) and the token, and opens the kernel's ends. */
export function createProgramFifos(options: { tmpDir?: string } = {}): Promise<ProgramFifos> {
  // The kernel cannot run a single cell without these FIFOs.
  return FifoPair.create({ prefix: DIR_PREFIX, systemMkfifo: true, ...options });
}

/** Removes program FIFO directories left by kernels that no longer run (a SIGKILL skips every cleanup). */
export function sweepStaleProgramFifos(options: { log(text: string): void; tmpDir?: string }): Promise<void> {
  return sweepStaleDirs({ prefix: DIR_PREFIX, kind: "program FIFO", ...options });
}
