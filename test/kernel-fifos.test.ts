// The user program's own channel (issue 3, section 1): the kernel gives each program it starts two FIFOs in a
// private directory and a token, the runtime keeps them away from cell code and its children, and the
// directory goes away with the program (crash, restart, shutdown, or a kernel killed outright).

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JupyterMessage } from "../protocol/jupyter.js";
import { sweepStaleProgramFifos } from "../kernel/execution/program-fifos.js";
import { startKernel, type RunningKernel } from "./helpers/kernel-client.js";

const stdout = (msgs: JupyterMessage[]): string =>
  msgs
    .filter((m) => m.header.msg_type === "stream" && m.content.name === "stdout")
    .map((m) => String(m.content.text))
    .join("");

/** A cell that prints what its process was started with: the three variables, their files, and who sees them now. */
const INSPECT_CELL = `
import { readFileSync, statSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { dirname } from "node:path";
const names = ["TSNB_PIPE", "TSNB_PIPE_BACK", "TSNB_PIPE_TOKEN"];
// The runtime removed the variables from process.env; the environment the process started with keeps them.
const started = Object.fromEntries(readFileSync("/proc/self/environ", "utf8").split("\\0").filter((l) => l.includes("="))
  .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
const describe = (path: string) => { const s = statSync(path); return { fifo: s.isFIFO(), directory: s.isDirectory(), mode: (s.mode & 0o777).toString(8), mine: s.uid === process.getuid!() }; };
const childSees = JSON.parse(execFileSync(process.execPath, ["-e", "console.log(JSON.stringify(" + JSON.stringify(names) + ".map((n) => process.env[n] ?? null)))"], { encoding: "utf8" }));
console.log(JSON.stringify({
  pipe: started.TSNB_PIPE, back: started.TSNB_PIPE_BACK, token: started.TSNB_PIPE_TOKEN,
  up: describe(started.TSNB_PIPE), down: describe(started.TSNB_PIPE_BACK), dir: describe(dirname(started.TSNB_PIPE)),
  sameDir: dirname(started.TSNB_PIPE) === dirname(started.TSNB_PIPE_BACK),
  processEnv: names.map((n) => process.env[n] ?? null), childSees,
}));`;

interface Inspected {
  pipe: string;
  back: string;
  token: string;
  up: { fifo: boolean; mode: string; mine: boolean };
  down: { fifo: boolean; mode: string; mine: boolean };
  dir: { directory: boolean; mode: string; mine: boolean };
  sameDir: boolean;
  processEnv: (string | null)[];
  childSees: (string | null)[];
}

async function inspect(kernel: RunningKernel): Promise<Inspected> {
  const { reply, iopub } = await kernel.client.execute(INSPECT_CELL, { deadlineMs: 20_000 });
  expect(reply.content.status, JSON.stringify(iopub.map((m) => m.content))).toBe("ok");
  return JSON.parse(stdout(iopub)) as Inspected;
}

const leftovers = (tmp: string) => readdirSync(tmp).filter((name) => name.startsWith("tsnb-program-") || name.startsWith("tsnb-pipe-"));

describe("the cell program's FIFOs", () => {
  let kernel: RunningKernel | undefined;
  // The kernel and its program get their own TMPDIR, so "nothing left behind" can be checked exactly.
  const tmp = mkdtempSync(join(tmpdir(), "tsnb-fifos-test-"));

  beforeAll(async () => {
    kernel = await startKernel({ env: { ...process.env, TMPDIR: tmp } });
  });

  afterAll(async () => {
    await kernel?.kill();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("are two 0600 FIFOs in a private 0700 directory with a token, which neither cell code nor its children see", async () => {
    const seen = await inspect(kernel!);
    expect(dirname(dirname(seen.pipe))).toBe(tmp);
    expect(seen.sameDir).toBe(true);
    expect(seen.up).toEqual({ fifo: true, directory: false, mode: "600", mine: true });
    expect(seen.down).toEqual({ fifo: true, directory: false, mode: "600", mine: true });
    expect(seen.dir).toEqual({ fifo: false, directory: true, mode: "700", mine: true });
    expect(seen.token).toMatch(/^[0-9a-f]{48}$/);
    expect(seen.processEnv).toEqual([null, null, null]);
    expect(seen.childSees).toEqual([null, null, null]);
    // A !command gets a pair of its own, never the program's.
    const { iopub } = await kernel!.client.execute('!echo "$TSNB_PIPE $TSNB_PIPE_TOKEN"');
    const [commandPipe, commandToken] = stdout(iopub).trim().split(" ");
    expect(commandPipe).toMatch(/\/tsnb-pipe-\d+-[^/]+\/up$/);
    expect(commandPipe).not.toBe(seen.pipe);
    expect(commandToken).toMatch(/^[0-9a-f]{48}$/);
    expect(commandToken).not.toBe(seen.token);
  });

  it("are removed when the program crashes, and the fresh program gets new ones", async () => {
    const before = await inspect(kernel!);
    const crash = await kernel!.client.execute("process.exit(7)");
    expect(crash.reply.content).toMatchObject({ status: "error", ename: "ProgramExited" });
    expect(existsSync(dirname(before.pipe))).toBe(false);
    const after = await inspect(kernel!);
    expect(dirname(after.pipe)).not.toBe(dirname(before.pipe));
    expect(after.token).not.toBe(before.token);
    expect(existsSync(after.pipe)).toBe(true);
    expect(leftovers(tmp)).toEqual([dirname(after.pipe).slice(tmp.length + 1)]);
  });

  it("are removed when the kernel shuts down or restarts", async () => {
    const seen = await inspect(kernel!);
    const { reply } = await kernel!.client.request("control", "shutdown_request", { restart: true });
    expect(reply.content).toEqual({ status: "ok", restart: true });
    expect(await kernel!.exited(10_000)).toBe(0);
    expect(existsSync(dirname(seen.pipe))).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  });
});

describe("FIFO directories of killed kernels", () => {
  it("are removed by the next kernel's sweep; a live kernel's are kept", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "tsnb-fifos-sweep-"));
    try {
      // A pid that certainly belonged to a process that is gone now.
      const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
      const deadPid = await new Promise<number>((resolve) => child.once("exit", () => resolve(child.pid!)));
      mkdirSync(join(tmp, `tsnb-program-${deadPid}-abc`));
      mkdirSync(join(tmp, `tsnb-program-${process.pid}-def`));
      mkdirSync(join(tmp, "unrelated"));
      const logged: string[] = [];
      await sweepStaleProgramFifos({ log: (text) => logged.push(text), tmpDir: tmp });
      expect(readdirSync(tmp).sort()).toEqual([`tsnb-program-${process.pid}-def`, "unrelated"]);
      expect(logged).toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
