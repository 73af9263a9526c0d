// A FIFO pair with a token in a private directory: the one mechanism behind both channels of PIPES.md, the
// kernel's channel to its user program (section 3, kernel/execution/program-fifos.ts) and each `!command`'s
// pipes, which the program serves (section 6, runtime/pipes.ts). Node-only, so it lives outside protocol/;
// both bundles (dist/cli.js and dist/program.js) share it.
//
// The directory is 0700 and the FIFOs 0600: `up` (TSNB_PIPE, the other side -> us) and `down` (TSNB_PIPE_BACK,
// us -> the other side), with a random TSNB_PIPE_TOKEN the other side's first frame must carry.
//
// FIFO mechanics (Linux): opening a FIFO blocks until the other end is opened, unless it is non-blocking. We
// open the read end of `up` non-blocking and also hold a write end of it ourselves (the keep-alive), so the
// reader sees no end-of-file before the other side opened its end, nor between two of its opens. Once the
// other side exited, `endOfWrites()` closes the keep-alive: end-of-file then means everything it wrote has
// been read. `down` is opened read-write, which never blocks on Linux, so frames for the other side queue in
// the FIFO before it opened its end. No open here can stall the event loop.
//
// node:child_process and node:crypto are imported on first use, not at start: they cost the user program
// about 1 MB RSS for its whole life, and a session without `!` commands never needs them there (the kernel
// has loaded both already, so for it the import is free).

import { closeSync, constants as fsConstants, openSync, rmSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Disposable } from "../protocol/disposable.js";

/** What the other side is given: a type alias, not an interface, so it spreads into any environment record. */
export type FifoEnv = {
  TSNB_PIPE: string;
  TSNB_PIPE_BACK: string;
  TSNB_PIPE_TOKEN: string;
};

export interface FifoPairOptions {
  /**
   * Starts the directory's name; this process's pid and `-` follow, so that `sweepStaleDirs` (stale-dirs.ts) with
   * the same prefix can remove the directory after this process was killed (a SIGKILL skips every cleanup).
   */
  prefix: string;
  /** Where the directory goes; the system's temp directory (TMPDIR) if not given. */
  tmpDir?: string;
  /**
   * Also look for mkfifo where it always is (/usr/bin, /bin) after PATH: for a channel nothing works without,
   * in case the kernelspec's environment has an odd PATH. Without it, only PATH is searched.
   */
  systemMkfifo: boolean;
}

async function mkfifo(paths: string[], options: { systemMkfifo: boolean }): Promise<void> {
  const { execFile } = await import("node:child_process");
  const env = options.systemMkfifo ? { ...process.env, PATH: [process.env.PATH, "/usr/bin", "/bin"].filter((p) => p).join(":") } : process.env;
  return new Promise((resolve, reject) => {
    execFile("mkfifo", ["-m", "600", ...paths], { env }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`mkfifo failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

/**
 * Compares without an early exit, so the time taken says nothing about where a wrong token differs (what
 * crypto.timingSafeEqual does, without loading node:crypto for it).
 */
function sameToken(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export class FifoPair implements Disposable {
  private keepAlive: number | null;
  private disposed = false;

  private constructor(
    readonly dir: string,
    readonly env: FifoEnv,
    /** Frames from the other side (`up`). */
    readonly reader: Socket,
    keepAlive: number,
    /** Frames to the other side (`down`). */
    readonly writer: Socket,
  ) {
    this.keepAlive = keepAlive;
  }

  /** Creates the directory (0700), the FIFOs (0600) and the token, and opens our ends. */
  static async create(options: FifoPairOptions): Promise<FifoPair> {
    const { randomBytes } = await import("node:crypto");
    const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), `${options.prefix}${process.pid}-`));
    const fds: number[] = [];
    try {
      // mkdtemp already makes it 0700 unless the umask is odd; being explicit costs nothing.
      await chmod(dir, 0o700);
      const up = join(dir, "up");
      const down = join(dir, "down");
      await mkfifo([up, down], options);
      const readFd = openSync(up, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      fds.push(readFd);
      const keepAlive = openSync(up, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
      fds.push(keepAlive);
      const writeFd = openSync(down, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
      fds.push(writeFd);
      const reader = new Socket({ fd: readFd, readable: true, writable: false });
      const writer = new Socket({ fd: writeFd, readable: false, writable: true });
      const env: FifoEnv = { TSNB_PIPE: up, TSNB_PIPE_BACK: down, TSNB_PIPE_TOKEN: randomBytes(24).toString("hex") };
      return new FifoPair(dir, env, reader, keepAlive, writer);
    } catch (err) {
      // An open that failed after others succeeded (EMFILE, say) must not leak the ones that did.
      for (const fd of fds) closeSync(fd);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Whether `token` is this pair's; constant-time, so a wrong token does not tell how much of it was right. */
  tokenMatches(token: unknown): boolean {
    return typeof token === "string" && sameToken(token, this.env.TSNB_PIPE_TOKEN);
  }

  /** The other side is gone: the reader sees end-of-file once it has read everything written. Idempotent. */
  endOfWrites(): void {
    if (this.keepAlive === null) return;
    const fd = this.keepAlive;
    this.keepAlive = null;
    closeSync(fd);
  }

  /** Closes both ends at once (no drain) and removes the directory. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.reader.destroy();
    this.writer.destroy();
    this.endOfWrites();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
