// The user program's channel (PIPES.md section 3): two FIFOs in a private directory the kernel creates for
// each program it starts, `TSNB_PIPE` (program -> kernel) and `TSNB_PIPE_BACK` (kernel -> program), and a
// random `TSNB_PIPE_TOKEN` the program's hello must carry.
//
// FIFO mechanics (Linux), as in runtime/pipes.ts: opening a FIFO blocks until the other end is opened,
// unless it is non-blocking. The kernel opens the read end of `up` non-blocking and also holds a write end
// of it (the keep-alive), so it reads no end-of-file before the program opened its end; once the program
// exited, `endOfWrites()` closes the keep-alive and end-of-file then means everything the program wrote
// has been read. `down` is opened read-write, which never blocks on Linux, so frames for the program queue
// in the FIFO before it opened its end, and the program opens its ends without ever blocking either.
// No open here can stall the kernel's event loop.

import { execFile } from "node:child_process";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { closeSync, constants as fsConstants, openSync, rmSync } from "node:fs";
import { chmod, mkdtemp, readdir, rm } from "node:fs/promises";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Disposable } from "../../protocol/disposable.js";

export interface ProgramFifoEnv {
  TSNB_PIPE: string;
  TSNB_PIPE_BACK: string;
  TSNB_PIPE_TOKEN: string;
}

/** The pid in the name lets a later kernel remove the directory of a kernel that was killed (SIGKILL). */
const DIR_PREFIX = "tsnb-program-";
const STALE_DIR = /^tsnb-program-(\d+)-/;

function mkfifo(paths: string[]): Promise<void> {
  // The kernel cannot run a single cell without these FIFOs: also look where mkfifo always is, in case the
  // kernelspec's environment has an odd PATH.
  const PATH = [process.env.PATH, "/usr/bin", "/bin"].filter((p) => p).join(":");
  return new Promise((resolve, reject) => {
    execFile("mkfifo", ["-m", "600", ...paths], { env: { ...process.env, PATH } }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`mkfifo failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

export class ProgramFifos implements Disposable {
  private keepAlive: number | null;
  private disposed = false;

  private constructor(
    readonly dir: string,
    readonly env: ProgramFifoEnv,
    /** Frames from the program (`up`). */
    readonly reader: Socket,
    keepAlive: number,
    /** Frames to the program (`down`). */
    readonly writer: Socket,
  ) {
    this.keepAlive = keepAlive;
  }

  /** Creates the directory (0700), the FIFOs (0600) and the token, and opens the kernel's ends. */
  static async create(options: { tmpDir?: string } = {}): Promise<ProgramFifos> {
    const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), `${DIR_PREFIX}${process.pid}-`));
    const fds: number[] = [];
    try {
      // mkdtemp already makes it 0700 unless the umask is odd; being explicit costs nothing.
      await chmod(dir, 0o700);
      const up = join(dir, "up");
      const down = join(dir, "down");
      await mkfifo([up, down]);
      const readFd = openSync(up, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      fds.push(readFd);
      const keepAlive = openSync(up, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
      fds.push(keepAlive);
      const writeFd = openSync(down, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
      fds.push(writeFd);
      const reader = new Socket({ fd: readFd, readable: true, writable: false });
      const writer = new Socket({ fd: writeFd, readable: false, writable: true });
      const env: ProgramFifoEnv = { TSNB_PIPE: up, TSNB_PIPE_BACK: down, TSNB_PIPE_TOKEN: randomBytes(24).toString("hex") };
      return new ProgramFifos(dir, env, reader, keepAlive, writer);
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Constant-time: a wrong token must not tell how much of it was right. */
  tokenMatches(token: unknown): boolean {
    if (typeof token !== "string") return false;
    const a = Buffer.from(token);
    const b = Buffer.from(this.env.TSNB_PIPE_TOKEN);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** The program is gone: the reader sees end-of-file once it has read everything the program wrote. */
  endOfWrites(): void {
    if (this.keepAlive === null) return;
    const fd = this.keepAlive;
    this.keepAlive = null;
    closeSync(fd);
  }

  /** Closes both ends and removes the directory. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.reader.destroy();
    this.writer.destroy();
    this.endOfWrites();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Removes program FIFO directories left by kernels that no longer run (a SIGKILL skips every cleanup). */
export async function sweepStaleProgramFifos(options: { log(text: string): void; tmpDir?: string }): Promise<void> {
  const dir = options.tmpDir ?? tmpdir();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    options.log(`could not list ${dir} for stale program FIFO directories: ${String(err)}`);
    return;
  }
  for (const name of names) {
    const match = STALE_DIR.exec(name);
    if (!match || Number(match[1]) === process.pid || processAlive(Number(match[1]))) continue;
    await rm(join(dir, name), { recursive: true, force: true }).catch((err: unknown) =>
      options.log(`could not remove the stale program FIFO directory ${name}: ${String(err)}`),
    );
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
