// The `tsnb` command: `kernel` (what the kernelspec runs), `install`, `uninstall`.

import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { KernelComms } from "./comms/kernel-comms.js";
import { kernelIdFromConnectionFile, shimSourceReader } from "./comms/shim-display.js";
import { KernelIO } from "./core/io.js";
import { defaultHistoryFile, History } from "./core/history.js";
import { KernelCore } from "./core/kernel.js";
import { Executor } from "./execution/executor.js";
import type { Location } from "./install.js";
import { errorMessage, stderrLog } from "./log.js";
import { ConnectionFileError, readConnectionFile } from "./transport/connection.js";
import { ZmtpTransport } from "./transport/zmtp-transport.js";
import { TSNB_VERSION } from "./version.js";

const HELP = `tsnb ${TSNB_VERSION}: a Jupyter kernel for TypeScript

Usage:
  tsnb install [--user | --sys-prefix | --prefix DIR] [--name NAME] [--display-name TEXT]
      Register the kernel with Jupyter (default: --user). Pick "TypeScript (tsnb)" in Jupyter afterwards.
  tsnb uninstall [--user | --sys-prefix | --prefix DIR] [--name NAME]
      Remove the kernelspec that install wrote.
  tsnb kernel --connection-file FILE
      Run the kernel (Jupyter does this, using the kernelspec).
  tsnb --help
`;

/** Exit codes: 0 ok, 1 failure, 2 bad usage or bad input file. */
class UsageError extends Error {}

function fail(message: string, code: number): never {
  process.stderr.write(`tsnb: ${message}\n`);
  process.exit(code);
}

async function runKernel(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { "connection-file": { type: "string", short: "f" } }, strict: true });
  const file = values["connection-file"];
  if (!file) throw new UsageError("kernel needs --connection-file FILE");
  let connection;
  try {
    connection = readConnectionFile(file);
  } catch (err) {
    if (err instanceof ConnectionFileError) fail(err.message, 2);
    throw err;
  }
  const log = stderrLog();
  let transport: ZmtpTransport;
  try {
    transport = await ZmtpTransport.bind({ connection, log });
  } catch (err) {
    fail(`cannot bind the kernel's sockets on ${connection.ip}: ${errorMessage(err)}`, 1);
  }
  const io = new KernelIO(transport);
  // The browser shim needs the id Jupyter gave this kernel, which only the connection file name carries.
  const kernelId = kernelIdFromConnectionFile(file);
  const shimSource = shimSourceReader();
  if (kernelId === null) log.warn(`no kernel id in the connection file name ${file}: the browser comms shim will not be injected`);
  if (shimSource === null) log.warn("dist/shim.js is missing: the browser comms shim will not be injected");
  const comms = new KernelComms({
    io,
    log,
    bridge: { shim: kernelId !== null && shimSource !== null ? { kernelId, source: shimSource } : null },
  });
  const executor = new Executor({
    io,
    log,
    programPath: fileURLToPath(new URL("./program.js", import.meta.url)),
    cwd: process.cwd(),
    extension: comms,
    // Widget outputs name their kernel, so a page without the shim (JupyterLab, a reload) can ask it for one.
    env: (): Record<string, string> => (kernelId !== null ? { TSNB_KERNEL_ID: kernelId } : {}),
  });
  comms.attach(executor);
  const history = new History({ file: defaultHistoryFile(process.env), log });
  // Appends are deferred off the execute path (core/history.ts); whatever way the process ends, they land.
  process.once("exit", () => history.dispose());
  let stopping: Promise<void> | null = null;
  const stop = (exitCode: number) => {
    stopping ??= (async () => {
      core.stop();
      await Promise.allSettled([executor.dispose(), Promise.resolve(comms.dispose())]);
      // Held IOPub messages (the last cell's reply burst) must reach the transport before it closes.
      io.dispose();
      await transport.close({ graceMs: 1000 });
      process.exit(exitCode);
    })();
    return stopping;
  };
  const core = new KernelCore({
    transport,
    execution: executor,
    comms,
    history,
    log,
    io,
    // The kernel process always exits: on a restart, Jupyter's kernel manager waits for the process to end and
    // starts a fresh one (with a new session id); a kernel that stayed up would be killed after a timeout.
    onShutdown: () => void stop(0),
  });
  core.start();
  // Spawning forks the process; doing it after the first turn lets an early kernel_info be answered first.
  setImmediate(() => executor.start());
  // A bug in one handler must cost that request, not the notebook's kernel: log it loudly and keep serving.
  process.on("uncaughtException", (err) => log.error(`uncaught exception (kernel bug): ${err.stack ?? err.message}`));
  process.on("unhandledRejection", (reason) =>
    log.error(`unhandled rejection (kernel bug): ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}`),
  );
  watchParent({ log, onGone: () => void stop(0) });
  process.on("SIGINT", () => executor.interrupt());
  process.on("SIGTERM", () => void stop(0));
  process.on("SIGHUP", () => void stop(0));
}

/**
 * Jupyter's launcher sets JPY_PARENT_PID. If that process dies without shutting the kernel down (the server
 * was killed), we are reparented; exit rather than linger with a user program nobody can reach.
 */
function watchParent(options: { log: ReturnType<typeof stderrLog>; onGone: () => void }): void {
  const expected = Number(process.env.JPY_PARENT_PID);
  if (!Number.isInteger(expected) || expected <= 0 || process.ppid !== expected) return;
  const timer = setInterval(() => {
    if (process.ppid === expected) return;
    clearInterval(timer);
    options.log.warn(`the Jupyter process that started this kernel (pid ${expected}) is gone: shutting down`);
    options.onGone();
  }, 1000);
  timer.unref();
}

function location(values: { user?: boolean; "sys-prefix"?: boolean; prefix?: string }): Location {
  const chosen = [values.user, values["sys-prefix"], values.prefix !== undefined].filter(Boolean).length;
  if (chosen > 1) throw new UsageError("choose only one of --user, --sys-prefix and --prefix DIR");
  if (values.prefix !== undefined) return { type: "prefix", dir: values.prefix };
  if (values["sys-prefix"]) return { type: "sys-prefix" };
  return { type: "user" };
}

async function runInstall(args: string[], remove: boolean): Promise<void> {
  // Loaded only for these commands: the install code and its logo (node:zlib) are never needed by a kernel.
  const { dataDir, findJupyter, install, uninstall } = await import("./install.js");
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      user: { type: "boolean" },
      "sys-prefix": { type: "boolean" },
      prefix: { type: "string" },
      name: { type: "string" },
      "display-name": { type: "string" },
    },
  });
  const name = values.name ?? "tsnb";
  const warn = (message: string) => process.stderr.write(`tsnb: warning: ${message}\n`);
  const dir = dataDir(location(values), { jupyter: findJupyter(), warn });
  if (remove) {
    const removed = uninstall({ name, dataDir: dir });
    if (removed) process.stdout.write(`Removed the kernelspec ${name} from ${removed}\n`);
    else process.stdout.write(`No kernelspec named ${name} in ${dir}/kernels: nothing to remove\n`);
    return;
  }
  const installed = install({
    name,
    displayName: values["display-name"] ?? "TypeScript (tsnb)",
    binPath: fileURLToPath(new URL("../bin/tsnb.mjs", import.meta.url)),
    nodePath: process.execPath,
    dataDir: dir,
  });
  process.stdout.write(`Installed the kernelspec ${name} in ${installed}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "kernel":
        await runKernel(rest);
        return;
      case "install":
        await runInstall(rest, false);
        return;
      case "uninstall":
        await runInstall(rest, true);
        return;
      case undefined:
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(HELP);
        return;
      case "--version":
        process.stdout.write(`${TSNB_VERSION}\n`);
        return;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      fail(`${errorMessage(err)}\n\n${HELP}`, 2);
    }
    // InstallError, by name: install.js is loaded lazily (see runInstall).
    if (err instanceof Error && err.name === "InstallError") fail(err.message, 1);
    fail(err instanceof Error ? err.stack ?? err.message : String(err), 1);
  }
}

void main(process.argv.slice(2));
