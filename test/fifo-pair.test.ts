// node/fifo-pair.ts on its own, with real FIFOs and a real child process on the other side: the one mechanism
// behind the kernel's channel to its program and every `!command`'s pipes (test/kernel-fifos.test.ts and
// test/pipes-kernel.test.ts test it through those).

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FifoPair } from "../node/fifo-pair.js";

const openFds = () => readdirSync("/proc/self/fd").length;

/** Runs `script` with /bin/sh and the pair's variables; resolves with its exit code (deadline 10 s). */
function runOtherSide(pair: FifoPair, script: string): Promise<number | null> {
  const child = spawn("/bin/sh", ["-c", script], { env: { ...process.env, ...pair.env }, stdio: "ignore" });
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the other side did not exit within 10 s: ${script}`));
    }, 10_000);
    child.once("exit", (code) => {
      clearTimeout(deadline);
      resolve(code);
    });
  });
}

/** Everything the reader yields until end-of-file (deadline 10 s). */
function readToEnd(pair: FifoPair): Promise<string> {
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`no end-of-file within 10 s; read so far: ${Buffer.concat(chunks).toString()}`)), 10_000);
    pair.reader.on("data", (chunk: Buffer) => chunks.push(chunk));
    pair.reader.once("end", () => {
      clearTimeout(deadline);
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

describe("a FIFO pair", () => {
  const tmps: string[] = [];
  const pairs: FifoPair[] = [];
  const tmp = () => {
    const dir = mkdtempSync(join(tmpdir(), "tsnb-fifo-pair-test-"));
    tmps.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const pair of pairs.splice(0)) pair.dispose();
    for (const dir of tmps.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("is two 0600 FIFOs in a 0700 directory named prefix + pid, with a 48-hex-digit token only it matches", async () => {
    const root = tmp();
    const pair = await FifoPair.create({ prefix: "tsnb-test-", tmpDir: root, systemMkfifo: false });
    pairs.push(pair);
    expect(readdirSync(root)).toEqual([pair.dir.slice(root.length + 1)]);
    expect(pair.dir.slice(root.length + 1)).toMatch(new RegExp(`^tsnb-test-${process.pid}-`));
    expect((statSync(pair.dir).mode & 0o777).toString(8)).toBe("700");
    expect(pair.env.TSNB_PIPE).toBe(join(pair.dir, "up"));
    expect(pair.env.TSNB_PIPE_BACK).toBe(join(pair.dir, "down"));
    for (const path of [pair.env.TSNB_PIPE, pair.env.TSNB_PIPE_BACK]) {
      expect(statSync(path).isFIFO()).toBe(true);
      expect((statSync(path).mode & 0o777).toString(8)).toBe("600");
    }
    const token = pair.env.TSNB_PIPE_TOKEN;
    expect(token).toMatch(/^[0-9a-f]{48}$/);
    expect(pair.tokenMatches(token)).toBe(true);
    expect(pair.tokenMatches(token.slice(0, -1) + (token.endsWith("0") ? "1" : "0"))).toBe(false);
    expect(pair.tokenMatches(token.slice(1))).toBe(false);
    expect(pair.tokenMatches(token + "0")).toBe(false);
    expect(pair.tokenMatches(undefined)).toBe(false);
    expect(pair.tokenMatches(Buffer.from(token))).toBe(false);
    const other = await FifoPair.create({ prefix: "tsnb-test-", tmpDir: root, systemMkfifo: false });
    pairs.push(other);
    expect(other.env.TSNB_PIPE_TOKEN).not.toBe(token);
    expect(other.tokenMatches(token)).toBe(false);
  });

  it("carries both ways, queues frames before the other side opens, and ends only after all it wrote was read", async () => {
    const pair = await FifoPair.create({ prefix: "tsnb-test-", tmpDir: tmp(), systemMkfifo: false });
    pairs.push(pair);
    // Written before the other side exists: the read-write open of `down` holds it in the FIFO.
    pair.writer.write("ping\n");
    const read = readToEnd(pair);
    // Two opens one after the other: the keep-alive means no end-of-file between them.
    const code = await runOtherSide(
      pair,
      'read line < "$TSNB_PIPE_BACK"; printf "got %s," "$line" > "$TSNB_PIPE"; printf "%s" "$TSNB_PIPE_TOKEN" > "$TSNB_PIPE"',
    );
    expect(code).toBe(0);
    pair.endOfWrites();
    pair.endOfWrites();
    expect(await read).toBe(`got ping,${pair.env.TSNB_PIPE_TOKEN}`);
  });

  it("closes every fd it opened and removes its directory on dispose, once however often it is called", async () => {
    const root = tmp();
    const before = openFds();
    const pair = await FifoPair.create({ prefix: "tsnb-test-", tmpDir: root, systemMkfifo: false });
    expect(openFds()).toBe(before + 3);
    // Socket.destroy closes its fd on a later tick, then says "close".
    const socketsClosed = Promise.all([pair.reader, pair.writer].map((socket) => new Promise((resolve) => socket.once("close", resolve))));
    pair.dispose();
    pair.dispose();
    expect(existsSync(pair.dir)).toBe(false);
    expect(readdirSync(root)).toEqual([]);
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([
      socketsClosed,
      new Promise((_, reject) => {
        deadline = setTimeout(() => reject(new Error("the pair's sockets did not close within 5 s")), 5_000);
      }),
    ]).finally(() => clearTimeout(deadline));
    expect(openFds()).toBe(before);
  });

  describe("when mkfifo cannot be found", () => {
    const savedPath = process.env.PATH;
    afterEach(() => {
      process.env.PATH = savedPath;
    });

    it("fails with mkfifo's reason and leaves no directory and no fd behind", async () => {
      const root = tmp();
      const before = openFds();
      process.env.PATH = "/nonexistent";
      await expect(FifoPair.create({ prefix: "tsnb-test-", tmpDir: root, systemMkfifo: false })).rejects.toThrow(/^mkfifo failed: .*ENOENT/);
      expect(readdirSync(root)).toEqual([]);
      expect(openFds()).toBe(before);
    });

    it("is still found in /usr/bin or /bin with systemMkfifo (the kernel's channel)", async () => {
      process.env.PATH = "/nonexistent";
      const pair = await FifoPair.create({ prefix: "tsnb-test-", tmpDir: tmp(), systemMkfifo: true });
      pairs.push(pair);
      expect(statSync(pair.env.TSNB_PIPE).isFIFO()).toBe(true);
    });
  });
});
