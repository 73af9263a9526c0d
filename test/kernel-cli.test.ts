// The `tsnb` command as a user runs it: kernel start-up errors, install/uninstall where Jupyter looks.

import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dataDir } from "../kernel/install.js";
import { REPO_ROOT } from "./helpers/kernel-client.js";

const BIN = join(REPO_ROOT, "bin", "tsnb.mjs");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function tsnb(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function jupyter(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile("/usr/bin/jupyter", args, { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr });
    });
  });
}

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tsnb-cli-"));
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("tsnb kernel", () => {
  it("exits with code 2 and a clear message when the connection file is missing", async () => {
    const missing = join(tempDir(), "nope.json");
    const run = await tsnb(["kernel", "--connection-file", missing]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`cannot read connection file ${missing}: no such file`);
  });

  it("exits with code 2 when the connection file is not JSON", async () => {
    const file = join(tempDir(), "bad.json");
    writeFileSync(file, "{ this is not json");
    const run = await tsnb(["kernel", "--connection-file", file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/connection file .*bad\.json is not valid JSON/);
  });

  it("exits with code 2 when a port is missing or wrong", async () => {
    const file = join(tempDir(), "ports.json");
    writeFileSync(file, JSON.stringify({ ip: "127.0.0.1", key: "k", shell_port: 1, iopub_port: 2, stdin_port: 3, control_port: "x", hb_port: 5 }));
    const run = await tsnb(["kernel", "--connection-file", file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('"control_port" must be a port number between 1 and 65535, got "x"');
  });

  it("exits with code 2 without --connection-file, and prints usage", async () => {
    const run = await tsnb(["kernel"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("kernel needs --connection-file FILE");
    expect(run.stderr).toContain("Usage:");
  });

  it("prints help", async () => {
    const run = await tsnb(["--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("tsnb install [--user | --sys-prefix | --prefix DIR]");
  });
});

describe("tsnb install", () => {
  it("writes a kernelspec with absolute paths and logos under --prefix, which Jupyter lists; uninstall removes it", async () => {
    const prefix = tempDir();
    const run = await tsnb(["install", "--prefix", prefix, "--name", "tsnb-test"]);
    expect(run.code).toBe(0);
    const dir = join(prefix, "share", "jupyter", "kernels", "tsnb-test");
    const spec = JSON.parse(readFileSync(join(dir, "kernel.json"), "utf8"));
    expect(spec).toMatchObject({
      argv: [process.execPath, "--jitless", "--no-expose-wasm", "--max-semi-space-size=1", BIN, "kernel", "--connection-file", "{connection_file}"],
      display_name: "TypeScript (tsnb)",
      language: "typescript",
      interrupt_mode: "message",
    });
    for (const size of [32, 64]) {
      const png = readFileSync(join(dir, `logo-${size}x${size}.png`));
      expect(png.subarray(1, 4).toString()).toBe("PNG");
      expect(png.readUInt32BE(16)).toBe(size);
    }
    const listed = await jupyter(["kernelspec", "list", "--json"], { JUPYTER_PATH: join(prefix, "share", "jupyter") });
    expect(listed.code).toBe(0);
    const specs = JSON.parse(listed.stdout).kernelspecs;
    expect(specs["tsnb-test"].spec.display_name).toBe("TypeScript (tsnb)");

    const removed = await tsnb(["uninstall", "--prefix", prefix, "--name", "tsnb-test"]);
    expect(removed.code).toBe(0);
    expect(existsSync(dir)).toBe(false);
  });

  it("installs for the user into Jupyter's data dir (as `jupyter --data-dir` reports it)", async () => {
    const data = tempDir();
    const run = await tsnb(["install", "--user", "--display-name", "TS here"], { JUPYTER_DATA_DIR: data });
    expect(run.code).toBe(0);
    const spec = JSON.parse(readFileSync(join(data, "kernels", "tsnb", "kernel.json"), "utf8"));
    expect(spec.display_name).toBe("TS here");
  });

  it("says so clearly when Jupyter is not found, and still installs with --prefix or into the user dir", async () => {
    const data = tempDir();
    const run = await tsnb(["install"], { TSNB_JUPYTER: "none", JUPYTER_DATA_DIR: data });
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/Jupyter was not found/);
    expect(existsSync(join(data, "kernels", "tsnb", "kernel.json"))).toBe(true);
    const sys = await tsnb(["install", "--sys-prefix"], { TSNB_JUPYTER: "none" });
    expect(sys.code).toBe(1);
    expect(sys.stderr).toMatch(/--sys-prefix needs Jupyter, and none was found/);
  });

  it("resolves --sys-prefix to sys.prefix of the Python that runs jupyter", () => {
    const warnings: string[] = [];
    const prefix = execFileSync("/usr/bin/python3", ["-c", "import sys; print(sys.prefix)"], { encoding: "utf8" }).trim();
    expect(dataDir({ type: "sys-prefix" }, { jupyter: "/usr/bin/jupyter", warn: (m) => warnings.push(m) })).toBe(join(prefix, "share", "jupyter"));
    expect(warnings).toEqual([]);
  });

  it("rejects conflicting locations and bad names", async () => {
    const a = await tsnb(["install", "--user", "--prefix", tempDir()]);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("choose only one of --user, --sys-prefix and --prefix DIR");
    const b = await tsnb(["install", "--prefix", tempDir(), "--name", "../evil"]);
    expect(b.code).toBe(1);
    expect(b.stderr).toContain('invalid kernel name "../evil"');
  });
});
