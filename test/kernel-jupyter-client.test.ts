// The kernel as Jupyter itself runs it: installed with `tsnb install`, started and restarted from its
// kernelspec by jupyter_client's KernelManager (Debian's python3-jupyter-client).

import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/kernel-client.js";

const SCRIPT = String.raw`
import json, os, sys, time
from jupyter_client.manager import KernelManager

km = KernelManager(kernel_name="tsnb-jc-test", transport=os.environ["TRANSPORT"])
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=30)
def report_pid():
    print("PID %d" % km.provisioner.pid, flush=True)
report_pid()
out = {}
try:
    with open(km.connection_file) as f:
        out["transport"] = json.load(f)["transport"]
    first_results = []
    first = kc.execute_interactive("const answer: number = 6 * 7; answer", timeout=30, output_hook=lambda m: first_results.append(m["content"]) if m["msg_type"] == "execute_result" else None)
    out["first"] = first["content"]["status"]
    out["first_result"] = first_results[0]["data"]["text/plain"] if first_results else None
    out["session_before"] = kc.kernel_info(reply=True, timeout=10)["header"]["session"]
    started = time.monotonic()
    km.restart_kernel(now=False)
    report_pid()
    kc.wait_for_ready(timeout=30)
    out["restart_seconds"] = time.monotonic() - started
    out["session_after"] = kc.kernel_info(reply=True, timeout=10)["header"]["session"]
    results = []
    after = kc.execute_interactive("typeof answer", timeout=30, output_hook=lambda m: results.append(m["content"]) if m["msg_type"] == "execute_result" else None)
    out["after"] = after["content"]["status"]
    out["after_result"] = results[0]["data"]["text/plain"] if results else None
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    out["alive_after_shutdown"] = km.is_alive()
print("RESULT " + json.dumps(out))
`;

describe("jupyter_client drives the installed kernelspec", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsnb-jc-"));
  /** Kernel pids the driver reported: killed here even if the driver itself died half-way. */
  const kernelPids = new Set<number>();
  afterAll(() => {
    for (const pid of kernelPids) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch (err) {
        // ESRCH: the kernel (and its process group) already exited, as it should have.
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** Installs the kernelspec with `tsnbBin`, then drives it through jupyter_client; returns what the driver saw. */
  async function installAndDrive(options: { tsnbBin: string; transport: "tcp" | "ipc"; label: string }) {
    const prefix = join(dir, `prefix-${options.label}`);
    await run(process.execPath, [options.tsnbBin, "install", "--prefix", prefix, "--name", "tsnb-jc-test"], {});
    const script = join(dir, "drive.py");
    writeFileSync(script, SCRIPT);
    // IPC endpoints are relative paths ("kernel-ipc-<port>"): the driver's cwd, which the kernel inherits.
    const { stdout } = await run("/usr/bin/python3", [script], { JUPYTER_PATH: join(prefix, "share", "jupyter"), TRANSPORT: options.transport }, dir, (out) => {
      for (const m of out.matchAll(/^PID (\d+)$/gm)) kernelPids.add(Number(m[1]));
    });
    const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
    expect(line, stdout).toBeDefined();
    const result = JSON.parse(line!.slice("RESULT ".length));
    expect(result.transport).toBe(options.transport);
    expect(result.first).toBe("ok");
    expect(result.first_result).toBe("42");
    expect(result.after).toBe("ok");
    expect(result.after_result).toBe("'undefined'");
    expect(result.session_after).not.toBe(result.session_before);
    // The kernel exits on its own, so the manager never waits out its kill timeout (5 s by default).
    expect(result.restart_seconds).toBeLessThan(3);
    expect(result.alive_after_shutdown).toBe(false);
  }

  // "ipc" is what `jupyter ... --transport ipc` gives a kernel: Unix sockets named from the connection file.
  it.each(["tcp", "ipc"] as const)("over %s: starts, runs a cell, restarts quickly with a new session and fresh state, and shuts down", async (transport) => {
    await installAndDrive({ tsnbBin: join(REPO_ROOT, "bin", "tsnb.mjs"), transport, label: transport });
  }, 90_000);

  // What a user gets from npm: the packed tarball (the build in dist/, no sources), with esbuild as its only
  // dependency: no native addon to build or download for the kernel.
  it("works from the npm package, installed globally and into a project", async () => {
    const npmFlags = ["--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"];
    // --ignore-scripts: dist/ is already built (npm test builds first); rebuilding it here would rewrite files
    // that kernels of tests running alongside are loading.
    await run("npm", ["pack", "--ignore-scripts", "--pack-destination", dir, ...npmFlags], {}, REPO_ROOT);
    const tarball = join(dir, readdirSync(dir).find((f) => f.endsWith(".tgz"))!);
    const globalPrefix = join(dir, "npm-global");
    const project = join(dir, "project");
    await run("npm", ["install", "--global", "--prefix", globalPrefix, tarball, ...npmFlags], {}, dir);
    await run("npm", ["install", "--prefix", project, tarball, ...npmFlags], {}, dir);
    const installed = join(globalPrefix, "lib", "node_modules", "tsnb");
    expect(readdirSync(join(installed, "node_modules")).filter((name) => name !== ".bin").sort()).toEqual(["@esbuild", "esbuild"]);
    await installAndDrive({ tsnbBin: join(globalPrefix, "bin", "tsnb"), transport: "tcp", label: "npm-global" });
    await installAndDrive({ tsnbBin: join(project, "node_modules", ".bin", "tsnb"), transport: "tcp", label: "npm-project" });
  }, 120_000);
});

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd?: string,
  onStdout: (stdout: string) => void = () => {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, cwd, timeout: 80_000 }, (err, stdout, stderr) => {
      onStdout(stdout);
      if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}
