// Real Jupyter for tests: private Jupyter directories, the tsnb kernelspec, and a real classic Notebook 6
// server (`/usr/bin/jupyter notebook`) on a random loopback port.
//
// Everything lives in temp dirs so nothing touches ~/.local/share/jupyter or ~/.jupyter, and every server is
// killed by its handle's `dispose()` (idempotent) — call it from afterAll/afterEach so a failing test still
// cleans up. Typical use:
//
//   const env = await makeJupyterEnv();                  // temp JUPYTER_* dirs with the tsnb kernelspec
//   const server = await startNotebookServer({ env, notebookDir });
//   await server.api("POST", "/api/kernels", { name: "tsnb" });
//   ...
//   await server.dispose(); await env.dispose();
//
// Options cover what the comms tests need later: a base_url (JupyterHub-style paths) and https with a
// self-signed certificate made by `openssl`.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the repository root. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Debian's Jupyter. Called by full path: the first `python3`/`jupyter` on PATH may be another interpreter. */
export const JUPYTER = "/usr/bin/jupyter";
export const PYTHON = "/usr/bin/python3";

/** Name under which the tests install the tsnb kernelspec. */
export const TSNB_KERNEL_NAME = "tsnb";

/** Thrown when a deadline passes; the message says what was being waited for. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/** Thrown by a helper whose handle was already disposed. */
export class DisposedError extends Error {
  override name = "DisposedError";
}

// ---- Jupyter directories + kernelspecs -----------------------------------------------------------------

export interface JupyterEnv {
  /** Root temp dir holding everything below. */
  root: string;
  /** Directory given as JUPYTER_PATH; its `kernels/` holds the kernelspecs installed by this env. */
  jupyterPath: string;
  /** Environment for child processes (jupyter, python, the kernels): process.env plus the JUPYTER_* dirs. */
  vars: NodeJS.ProcessEnv;
  /** How the tsnb kernelspec was made: the real `tsnb install`, or a hand-written kernel.json fallback. */
  tsnbSpec: "installed" | "hand-written";
  /** Removes the temp dirs. Idempotent. Dispose servers using this env first. */
  dispose(): Promise<void>;
}

export interface MakeJupyterEnvOptions {
  /** Install the tsnb kernelspec under this name (default "tsnb"). `false`: install nothing. */
  tsnbKernelName?: string | false;
  /** Extra environment variables for processes started with this env. */
  extraVars?: NodeJS.ProcessEnv;
}

/**
 * Creates private JUPYTER_PATH / JUPYTER_DATA_DIR / JUPYTER_CONFIG_DIR / JUPYTER_RUNTIME_DIR (and HOME-free
 * IPython dir) in a temp dir and installs the tsnb kernelspec there. ipykernel's `python3` spec stays
 * visible because Debian installs it system-wide.
 */
export async function makeJupyterEnv(options: MakeJupyterEnvOptions = {}): Promise<JupyterEnv> {
  const root = mkdtempSync(join(tmpdir(), "tsnb-jupyter-"));
  const prefix = join(root, "prefix");
  const jupyterPath = join(prefix, "share", "jupyter");
  const dirs = {
    JUPYTER_PATH: jupyterPath,
    JUPYTER_DATA_DIR: join(root, "data"),
    JUPYTER_CONFIG_DIR: join(root, "config"),
    JUPYTER_RUNTIME_DIR: join(root, "runtime"),
    IPYTHONDIR: join(root, "ipython"),
  };
  for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });
  const vars: NodeJS.ProcessEnv = {
    ...process.env,
    ...dirs,
    // The kernels and servers must never prompt or open anything.
    BROWSER: "true",
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
    // The kernel's input history goes here instead of the user's ~/.local/share/tsnb.
    TSNB_HISTORY_FILE: join(root, "tsnb-history.jsonl"),
    ...options.extraVars,
  };
  let tsnbSpec: JupyterEnv["tsnbSpec"] = "hand-written";
  const name = options.tsnbKernelName ?? TSNB_KERNEL_NAME;
  if (name !== false) tsnbSpec = installTsnbKernelspec({ prefix, name, vars });
  let disposed = false;
  return {
    root,
    jupyterPath,
    vars,
    tsnbSpec,
    async dispose() {
      if (disposed) return;
      disposed = true;
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * Installs the tsnb kernelspec into PREFIX/share/jupyter/kernels/NAME with the real
 * `tsnb install --prefix`, once the kernel CLI has been built; before that, writes the same kernel.json by
 * hand so the harnesses can be developed while the kernel is being written.
 */
export function installTsnbKernelspec(opts: { prefix: string; name: string; vars: NodeJS.ProcessEnv }): JupyterEnv["tsnbSpec"] {
  const bin = join(repoRoot, "bin", "tsnb.mjs");
  if (existsSync(join(repoRoot, "dist", "cli.js"))) {
    const res = spawnSync(process.execPath, [bin, "install", "--prefix", opts.prefix, "--name", opts.name], {
      env: opts.vars,
      encoding: "utf8",
      timeout: 30_000,
    });
    const specFile = join(opts.prefix, "share", "jupyter", "kernels", opts.name, "kernel.json");
    if (res.status !== 0 || !existsSync(specFile)) {
      throw new Error(
        `tsnb install --prefix ${opts.prefix} --name ${opts.name} failed (exit ${res.status}, signal ${res.signal}):\n` +
          `${res.stdout}\n${res.stderr}`,
      );
    }
    return "installed";
  }
  const dir = join(opts.prefix, "share", "jupyter", "kernels", opts.name);
  mkdirSync(dir, { recursive: true });
  const spec = {
    argv: [process.execPath, bin, "kernel", "--connection-file", "{connection_file}"],
    display_name: "TypeScript (tsnb)",
    language: "typescript",
    interrupt_mode: "message",
  };
  writeFileSync(join(dir, "kernel.json"), JSON.stringify(spec, null, 2));
  return "hand-written";
}

// ---- ports, certificates, HTTP ----------------------------------------------------------------------

/** A free TCP port on 127.0.0.1 (bound then released; the caller binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr !== null && typeof addr === "object") resolvePort(addr.port);
        else reject(new Error(`could not read the port of a probe listener: ${String(addr)}`));
      });
    });
  });
}

/** A self-signed certificate for 127.0.0.1/localhost, made with Debian's openssl into `dir`. */
export function makeSelfSignedCert(dir: string): { certfile: string; keyfile: string } {
  const certfile = join(dir, "cert.pem");
  const keyfile = join(dir, "key.pem");
  const res = spawnSync(
    "openssl",
    [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
      "-keyout", keyfile, "-out", certfile,
      "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { encoding: "utf8", timeout: 30_000 },
  );
  if (res.status !== 0) throw new Error(`openssl failed to make a self-signed certificate:\n${res.stderr}`);
  return { certfile, keyfile };
}

export interface HttpResponse {
  status: number;
  headers: IncomingMessage["headers"];
  body: string;
  /** The body parsed as JSON; throws with the body in the message if it is not JSON. */
  json(): unknown;
}

/**
 * One HTTP(S) request with a deadline. Self-signed certificates are accepted because the test servers make
 * their own. (Node's fetch cannot turn certificate checks off per request, so this uses node:http/https.)
 */
export function httpFetch(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string; deadlineMs?: number } = {},
): Promise<HttpResponse> {
  const u = new URL(url);
  const requester = u.protocol === "https:" ? httpsRequest : httpRequest;
  const deadlineMs = opts.deadlineMs ?? 10_000;
  return new Promise((resolveRes, reject) => {
    const req = requester(
      u,
      { method: opts.method ?? "GET", headers: opts.headers, rejectUnauthorized: false, timeout: deadlineMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          resolveRes({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json() {
              try {
                return JSON.parse(body) as unknown;
              } catch (err) {
                throw new Error(`expected JSON from ${opts.method ?? "GET"} ${url}, got: ${body.slice(0, 500)}`, { cause: err });
              }
            },
          });
        });
      },
    );
    req.on("timeout", () => req.destroy(new DeadlineError(`${opts.method ?? "GET"} ${url}: no response within ${deadlineMs} ms`)));
    req.on("error", reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

// ---- the Notebook server ---------------------------------------------------------------------------

export interface NotebookServerOptions {
  /** Jupyter dirs and kernelspecs (from makeJupyterEnv). */
  env: JupyterEnv;
  /** Directory the server serves (the notebook tree). */
  notebookDir: string;
  /** URL prefix, e.g. "/user/alice/" as under JupyterHub. Default "/". */
  baseUrl?: string;
  /** Serve https with a fresh self-signed certificate. */
  https?: boolean;
  /** Auth token; default a random one. Pass "" for no auth (xsrf checks are then disabled too). */
  token?: string;
  /** Deadline for the server to answer /api. Default 60 s (a cold start on a busy 2-core machine is slow). */
  startDeadlineMs?: number;
  /** Extra `jupyter notebook` arguments, e.g. "--NotebookApp.iopub_msg_rate_limit=0". */
  extraArgs?: string[];
}

export interface NotebookServer {
  /** Origin plus base URL, ending in "/", e.g. "http://127.0.0.1:41234/user/x/". */
  url: string;
  /** Same as url with http(s) replaced by ws(s): the websocket base. */
  wsUrl: string;
  origin: string;
  baseUrl: string;
  port: number;
  token: string;
  https: boolean;
  process: ChildProcess;
  /** Everything the server printed so far (stdout + stderr), for failure messages. */
  log(): string;
  /** A URL of the server with the token in the query, for the browser: `pageUrl("notebooks/a.ipynb")`. */
  pageUrl(path: string): string;
  /** A JSON REST call relative to the base URL (`api("POST", "api/kernels", {name})`); throws on HTTP >= 400. */
  api(method: string, path: string, body?: unknown): Promise<unknown>;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it to exit. Idempotent. */
  dispose(): Promise<void>;
}

/**
 * Starts `/usr/bin/jupyter notebook` on 127.0.0.1 and a random free port, and resolves once GET /api answers
 * (polled with a deadline). If the process exits before that, or the deadline passes, the server is killed and
 * the error carries its output.
 */
export async function startNotebookServer(opts: NotebookServerOptions): Promise<NotebookServer> {
  const port = await freePort();
  const token = opts.token ?? randomBytes(16).toString("hex");
  const baseUrl = normalizeBaseUrl(opts.baseUrl ?? "/");
  const useHttps = opts.https ?? false;
  const args = [
    "notebook",
    "--no-browser",
    "--ip=127.0.0.1",
    `--port=${port}`,
    "--port-retries=0",
    `--notebook-dir=${opts.notebookDir}`,
    `--NotebookApp.token=${token}`,
    "--NotebookApp.password=",
    `--NotebookApp.base_url=${baseUrl}`,
    // Tests open notebooks in a fresh profile: no "are you sure" dialogs, no update checks.
    "--NotebookApp.open_browser=False",
    "--MappingKernelManager.cull_idle_timeout=0",
  ];
  if (token === "") args.push("--NotebookApp.disable_check_xsrf=True");
  if (process.getuid?.() === 0) args.push("--allow-root");
  if (useHttps) {
    const { certfile, keyfile } = makeSelfSignedCert(mkdtempSync(join(opts.env.root, "cert-")));
    args.push(`--certfile=${certfile}`, `--keyfile=${keyfile}`);
  }
  args.push(...(opts.extraArgs ?? []));

  const child = spawn(JUPYTER, args, {
    // Not the notebook dir: if that is missing, jupyter should say so rather than spawn() failing obscurely.
    cwd: opts.env.root,
    env: opts.env.vars,
    stdio: ["ignore", "pipe", "pipe"],
    // Own process group: dispose() kills the server and every kernel it started, even if the server hangs.
    detached: true,
  });
  let output = "";
  const append = (chunk: Buffer): void => {
    output += chunk.toString("utf8");
    // Keep failure messages readable: the head (startup) and the tail (latest) matter.
    if (output.length > 200_000) output = output.slice(0, 50_000) + "\n[...]\n" + output.slice(-100_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once("exit", (code, signal) => res({ code, signal }));
    // spawn() itself failed (e.g. jupyter not installed): there will be no "exit" event.
    child.once("error", (err) => {
      append(Buffer.from(`spawn ${JUPYTER} failed: ${err.message}\n`));
      res({ code: null, signal: null });
    });
  });
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((info) => {
    exitInfo = info;
  });

  const origin = `${useHttps ? "https" : "http"}://127.0.0.1:${port}`;
  const url = origin + baseUrl;
  let disposed = false;
  const dispose = async (): Promise<void> => {
    if (disposed) return;
    disposed = true;
    if (exitInfo === undefined) {
      killGroup(child, "SIGTERM");
      const timer = setTimeout(() => killGroup(child, "SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    // Kernels live in the server's process group; make sure none outlives the server.
    killGroup(child, "SIGKILL");
  };

  const authHeaders = (): Record<string, string> => (token === "" ? {} : { Authorization: `token ${token}` });
  const server: NotebookServer = {
    url,
    wsUrl: url.replace(/^http/, "ws"),
    origin,
    baseUrl,
    port,
    token,
    https: useHttps,
    process: child,
    log: () => output,
    pageUrl(path: string) {
      const u = new URL(path.replace(/^\//, ""), url);
      if (token !== "") u.searchParams.set("token", token);
      return u.toString();
    },
    async api(method: string, path: string, body?: unknown) {
      if (disposed) throw new DisposedError("the notebook server was already disposed");
      const res = await httpFetch(new URL(path.replace(/^\//, ""), url).toString(), {
        method,
        headers: { ...authHeaders(), "Content-Type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        deadlineMs: 30_000,
      });
      if (res.status >= 400) throw new Error(`${method} ${path} -> HTTP ${res.status}: ${res.body.slice(0, 1000)}`);
      return res.body === "" ? null : res.json();
    },
    dispose,
  };

  const deadlineMs = opts.startDeadlineMs ?? 60_000;
  const deadline = Date.now() + deadlineMs;
  let lastProblem = "no answer yet";
  try {
    for (;;) {
      if (exitInfo !== undefined) {
        throw new Error(`jupyter notebook exited before it was ready (code ${exitInfo.code}, signal ${exitInfo.signal})`);
      }
      if (Date.now() > deadline) throw new DeadlineError(`jupyter notebook did not answer ${url}api within ${deadlineMs} ms (${lastProblem})`);
      try {
        const res = await httpFetch(`${url}api`, { headers: authHeaders(), deadlineMs: 2_000 });
        if (res.status === 200) break;
        lastProblem = `HTTP ${res.status}`;
      } catch (err) {
        lastProblem = err instanceof Error ? err.message : String(err);
      }
      // Polling interval, not a stand-in for an event: the server offers no readiness signal but /api.
      await Promise.race([delay(100), exited]);
    }
  } catch (err) {
    await dispose();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- server output ---\n${output}`, { cause: err });
  }
  return server;
}

/** Creates a notebook through the contents API and returns its path relative to the server root. */
export async function createNotebook(
  server: NotebookServer,
  opts: { path: string; kernelName: string; cells?: string[] },
): Promise<string> {
  const nb = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: opts.kernelName, display_name: opts.kernelName, language: opts.kernelName === "python3" ? "python" : "typescript" },
    },
    cells: (opts.cells ?? [""]).map((source, i) => ({
      cell_type: "code",
      id: `cell-${i}`,
      metadata: {},
      source,
      outputs: [],
      execution_count: null,
    })),
  };
  await server.api("PUT", `api/contents/${encodeURI(opts.path)}`, { type: "notebook", format: "json", content: nb });
  return opts.path;
}

function normalizeBaseUrl(base: string): string {
  let b = base.startsWith("/") ? base : `/${base}`;
  if (!b.endsWith("/")) b += "/";
  return b;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch (err) {
    // ESRCH: the group is already gone, which is the goal.
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

// ---- child processes with deadlines ------------------------------------------------------------------

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunningProcess {
  /** Resolves when the process exits; rejects with DeadlineError (after killing it) when the deadline passes. */
  result: Promise<RunResult>;
  /** Kills the process and its group now. Idempotent; safe after exit. */
  dispose(): void;
}

/**
 * Runs a command (in its own process group, so kernels it starts die with it) with a deadline, collecting
 * its output. Call `dispose()` from afterAll/afterEach so a failed test never leaves it running.
 */
export function runProcess(
  command: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; deadlineMs: number; input?: string },
): RunningProcess {
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: opts.env,
    stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    detached: true,
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  if (opts.input !== undefined) child.stdin?.end(opts.input);
  const dispose = (): void => {
    // Group kill even after the leader exited: grandchildren (kernels) may linger in the group.
    killGroup(child, "SIGKILL");
  };
  const result = new Promise<RunResult>((resolveRun, reject) => {
    const timer = setTimeout(() => {
      dispose();
      reject(
        new DeadlineError(
          `${command} ${args.join(" ")} did not finish within ${opts.deadlineMs} ms\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`,
        ),
      );
    }, opts.deadlineMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // "close", not "exit": by then stdout/stderr have been read to the end.
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr });
    });
  });
  return { result, dispose };
}
