// Line magics and shell commands. The compiler turns `%name args` and `!command` lines into awaited calls
// of these helpers, so they run in order with the TypeScript around them and inside the cell's context.

import type { ChildProcess } from "node:child_process";
import { homedir } from "node:os";
import { resolve } from "node:path";
import type { Disposable } from "../protocol/disposable.js";

export class MagicError extends Error {
  override readonly name = "MagicError";
}

export interface MagicsOptions {
  write(name: "stdout" | "stderr", text: string): void;
}

const HELP = `tsnb: TypeScript in Jupyter

Magics (one per line, may be mixed with TypeScript lines):
  !command         run a shell command (/bin/sh -c) with live output; a failing exit code is reported
  %cd [DIR]        change the working directory (default: home) and print it; imports resolve from it
  %env             list environment variables
  %env NAME        print one variable
  %env NAME=value  set a variable (also seen by later !commands)
  %help            this help
  name?  ?name     help on a name in the pager: its type and value, or a function's signature
  name??           the same, with more detail (a function's source)

Globals in every cell (also exported by the "tsnb" module: import { display } from "tsnb"):
  display(value)                 show a value (rich if it has [Symbol.for("Jupyter.display")]())
  display.html/markdown/svg/latex(text), display.png/jpeg(bytes or base64), display.json(value)
                                 each returns a handle: handle.update(newValue), handle.id
  clearOutput({ wait })          clear this cell's output
  await input(prompt)            read a line from the user; input.password(prompt) hides it
  require(id)                    CommonJS require from the notebook directory

The value of a cell's last expression is shown as its result. Interrupt stops the running cell and
keeps every variable.
`;

export class Magics implements Disposable {
  private readonly children = new Set<ChildProcess>();

  constructor(private readonly options: MagicsOptions) {}

  async magic(name: string, args: string): Promise<void> {
    switch (name) {
      case "cd": {
        const target = args === "" ? homedir() : resolve(args.replace(/^~(?=$|\/)/, homedir()));
        try {
          process.chdir(target);
        } catch (err) {
          throw new MagicError(`%cd: cannot change to ${target}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
        }
        this.options.write("stdout", `${process.cwd()}\n`);
        return;
      }
      case "env":
        return this.env(args);
      case "help":
        this.options.write("stdout", HELP);
        return;
      default:
        throw new MagicError(`Unknown magic %${name}. Available: %cd, %env, %help (and !command for the shell).`);
    }
  }

  private env(args: string): void {
    if (args === "") {
      const lines = Object.keys(process.env)
        .sort()
        .map((key) => `${key}=${process.env[key] ?? ""}`);
      this.options.write("stdout", lines.join("\n") + "\n");
      return;
    }
    const eq = args.indexOf("=");
    if (eq < 0) {
      const value = process.env[args];
      if (value === undefined) throw new MagicError(`%env: ${args} is not set`);
      this.options.write("stdout", `${value}\n`);
      return;
    }
    const key = args.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new MagicError(`%env: invalid variable name ${JSON.stringify(key)}`);
    process.env[key] = args.slice(eq + 1).trim();
    this.options.write("stdout", `env: ${key}=${process.env[key]}\n`);
  }

  /**
   * Runs `command` with /bin/sh, streaming output into the cell; resolves with the exit code. `env` is
   * added to the environment (the command's TSNB_PIPE variables).
   */
  shell(command: string, options: { write?: MagicsOptions["write"]; env?: Record<string, string> } = {}): Promise<number> {
    const write = options.write ?? this.options.write;
    // child_process (with dgram and the socket list under it) is loaded by the first command, not at start-up:
    // about 0.5 MB RSS a session without `!` commands never needs.
    return import("node:child_process").then(({ spawn }) => new Promise((resolvePromise, reject) => {
      const env = options.env ? { ...process.env, ...options.env } : process.env;
      const child = spawn("/bin/sh", ["-c", command], { stdio: ["ignore", "pipe", "pipe"], cwd: process.cwd(), env });
      this.children.add(child);
      child.stdout.setEncoding("utf8");
      child.stderr.setEncoding("utf8");
      child.stdout.on("data", (text: string) => write("stdout", text));
      child.stderr.on("data", (text: string) => write("stderr", text));
      child.on("error", (err) => {
        this.children.delete(child);
        reject(new MagicError(`!${command}: ${err.message}`));
      });
      child.on("close", (code, signal) => {
        this.children.delete(child);
        if (code !== 0) write("stderr", signal ? `[killed by ${signal}]\n` : `[exit code ${code}]\n`);
        resolvePromise(code ?? 128);
      });
    }));
  }

  /** Stops running shell commands (on interrupt). */
  killChildren(): void {
    for (const child of this.children) child.kill("SIGTERM");
  }

  dispose(): void {
    this.killChildren();
    this.children.clear();
  }
}
