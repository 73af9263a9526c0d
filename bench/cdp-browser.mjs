// A minimal Chromium driver for the browser benchmarks: Debian's Chromium started with a DevTools port, and
// pages driven through the DevTools protocol's Runtime domain only.
//
// Why not playwright-core, which the tests use: playwright enables the Network domain on every page, and with
// it Chromium copies every websocket message it receives or sends into a DevTools event (binary ones as
// base64) for the driver to read. That is what a user's browser never does, and it is not small: receiving
// 100 MB over a plain websocket from a local server takes Chromium about 2.2 CPU seconds and 1.2-1.4 s under
// playwright, and 0.22 CPU seconds and 0.19 s without it (`node bench/ceiling.mjs` measures both).
// Driving the page through Runtime alone measures the browser as its user has it. `--driver playwright` on the
// benchmarks keeps the old way for comparison.
//
// The page object has the few methods the benchmarks use, with playwright's shapes: goto, evaluate(fn, arg),
// waitForFunction(fn, arg, {timeout}), close; and `cdp` for the page's DevTools session.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { WebSocket } from "ws";

/** Added to the test helpers' flags (test/helpers/browser.ts CHROMIUM_ARGS): headless, and their viewport. */
const CDP_ONLY_ARGS = ["--headless=new", "--window-size=1280,900"];
const POLL_MS = 20;

class CdpError extends Error {}

/** Pids of live processes whose command line contains `text`. */
function processesWith(text) {
  const pids = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text) && !readFileSync(`/proc/${entry}/stat`, "utf8").includes(") Z ")) pids.push(Number(entry));
    } catch {
      continue; // exited while we listed it
    }
  }
  return pids;
}

/**
 * Starts Chromium (`executablePath` with `args`: pass test/helpers/browser.ts's CHROMIUM and CHROMIUM_ARGS, which
 * the benches get from lib.mjs's loadHelpers); `dispose()` (idempotent) closes it and removes its profile.
 */
export async function launchCdpBrowser({ executablePath, args }) {
  const profile = mkdtempSync(join(tmpdir(), "tsnb-bench-chromium-"));
  const child = spawn(executablePath, [...args, ...CDP_ONLY_ARGS, "--remote-debugging-port=0", `--user-data-dir=${profile}`, "about:blank"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const consoleLines = [];
  let stderr = "";
  let disposed = false;
  const dispose = async () => {
    if (disposed) return;
    disposed = true;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      // Browser.close lets Chromium shut its helpers down and finish writing the profile; signals are the fallback.
      if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ id: 0, method: "Browser.close" }));
      else child.kill("SIGTERM");
      await Promise.race([exited, delay(5000).then(() => child.kill("SIGKILL"))]);
    }
    socket?.close();
    // Helper processes (renderer, network service...) can outlive the browser process for a moment and still
    // write into the profile (bench:comms runs died with ENOTEMPTY removing it): wait for them, then remove.
    const helpers = () => processesWith(`--user-data-dir=${profile}`);
    const deadline = Date.now() + 5000;
    while (helpers().length > 0 && Date.now() < deadline) await delay(50);
    for (const pid of helpers()) process.kill(pid, "SIGKILL");
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  };
  let socket;
  try {
    const endpoint = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new CdpError(`Chromium printed no DevTools endpoint in 30 s:\n${stderr}`)), 30_000);
      child.stderr.on("data", (chunk) => {
        stderr += chunk;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new CdpError(`Chromium exited (${code}) before its DevTools endpoint was up:\n${stderr}`));
      });
    });
    socket = new WebSocket(endpoint, { maxPayload: 2 ** 31 - 1, perMessageDeflate: false });
    await new Promise((resolve, reject) => {
      socket.once("open", resolve);
      socket.once("error", reject);
    });
  } catch (err) {
    await dispose();
    throw err;
  }

  let nextId = 1;
  const pending = new Map();
  /** One-shot listeners for DevTools events: "sessionId method" -> callbacks. */
  const eventWaiters = new Map();
  socket.on("message", (data) => {
    const msg = JSON.parse(String(data));
    if (msg.id !== undefined) {
      const call = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) call?.reject(new CdpError(`${call.method}: ${msg.error.message}`));
      else call?.resolve(msg.result);
    } else if (eventWaiters.has(`${msg.sessionId} ${msg.method}`)) {
      const key = `${msg.sessionId} ${msg.method}`;
      const waiters = eventWaiters.get(key);
      eventWaiters.delete(key);
      for (const waiter of waiters) waiter(msg.params);
    } else if (msg.method === "Runtime.consoleAPICalled") {
      const text = msg.params.args.map((a) => a.value ?? a.description ?? a.type).join(" ");
      consoleLines.push(`[console.${msg.params.type}] ${text}`);
    } else if (msg.method === "Runtime.exceptionThrown") {
      consoleLines.push(`[pageerror] ${msg.params.exceptionDetails.exception?.description ?? msg.params.exceptionDetails.text}`);
    }
  });
  socket.on("close", () => {
    for (const call of pending.values()) call.reject(new CdpError(`${call.method}: Chromium's DevTools connection closed`));
    pending.clear();
  });
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { method, resolve, reject });
      socket.send(JSON.stringify({ id, method, params, sessionId }));
    });

  async function newPage() {
    const { targetId } = await send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
    // Runtime only: console messages and exceptions for failure reports. Never Network.
    await send("Runtime.enable", {}, sessionId);

    const evaluateExpression = async (expression) => {
      const { result, exceptionDetails } = await send(
        "Runtime.evaluate",
        { expression, awaitPromise: true, returnByValue: true, userGesture: true },
        sessionId,
      );
      if (exceptionDetails) throw new CdpError(exceptionDetails.exception?.description ?? exceptionDetails.text);
      return result.value;
    };
    const page = {
      /** Runs `fn(arg)` in the page (as playwright's page.evaluate: fn is sent as source, arg as JSON; a string is an expression). */
      evaluate: (fn, arg) =>
        typeof fn === "string" ? evaluateExpression(fn) : evaluateExpression(`(${fn.toString()})(${arg === undefined ? "" : JSON.stringify(arg)})`),
      async waitForFunction(fn, arg, { timeout = 30_000 } = {}) {
        const deadline = Date.now() + timeout;
        for (;;) {
          const value = await page.evaluate(fn, arg);
          if (value) return value;
          if (Date.now() > deadline) throw new CdpError(`waitForFunction: not true within ${timeout} ms: ${fn}`);
          await delay(POLL_MS);
        }
      },
      async goto(url, { timeout = 30_000 } = {}) {
        // A mark on the old document tells it from the new one (the server may redirect, so not by URL).
        await page.evaluate(() => { window.benchOldDocument = true; });
        const { errorText } = await send("Page.navigate", { url }, sessionId);
        if (errorText) throw new CdpError(`goto ${url}: ${errorText}`);
        await page.waitForFunction(() => !window.benchOldDocument && document.readyState === "complete", undefined, { timeout });
      },
      close: () => send("Target.closeTarget", { targetId }),
      /** The page's own DevTools session, for profilers (bench/profile-transfer.mjs), in playwright's CDPSession shape. */
      cdp: {
        send: (method, params) => send(method, params, sessionId),
        once(method, callback) {
          const key = `${sessionId} ${method}`;
          eventWaiters.set(key, [...(eventWaiters.get(key) ?? []), callback]);
        },
      },
    };
    return page;
  }

  return { newPage, consoleLog: () => consoleLines.join("\n"), dispose };
}
