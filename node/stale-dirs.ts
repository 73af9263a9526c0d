// Temporary directories named `${prefix}${pid}-...` belong to the process with that pid, which removes them
// when it ends; a SIGKILL skips every cleanup, so a later process removes the ones whose owner no longer runs.
// Used for the kernel's program FIFOs, the program's `!command` pipes (node/fifo-pair.ts) and FileUpload's
// temp files (runtime/tsnb/widgets/upload.ts).

import { readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Whether `name` is `${prefix}${pid}-...` for a pid that is neither this process nor any other live one. */
export function isStaleDirName(name: string, prefix: string): boolean {
  if (!name.startsWith(prefix)) return false;
  const match = /^(\d+)-/.exec(name.slice(prefix.length));
  if (!match) return false;
  const pid = Number(match[1]);
  return pid !== process.pid && !processAlive(pid);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else (not ours to sweep either).
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the directories `prefix` names that processes which no longer run left in the temp directory (a
 * SIGKILL skips every cleanup). Never throws: what it cannot do it logs, as `stale ${kind} directories`.
 */
export async function sweepStaleDirs(options: { prefix: string; kind: string; log(text: string): void; tmpDir?: string }): Promise<void> {
  const dir = options.tmpDir ?? tmpdir();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    options.log(`could not list ${dir} for stale ${options.kind} directories: ${String(err)}`);
    return;
  }
  for (const name of names) {
    if (!isStaleDirName(name, options.prefix)) continue;
    await rm(join(dir, name), { recursive: true, force: true }).catch((err: unknown) =>
      options.log(`could not remove the stale ${options.kind} directory ${name}: ${String(err)}`),
    );
  }
}
