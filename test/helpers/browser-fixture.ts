// The setup every browser test file shares: private Jupyter directories with the tsnb kernelspec, a notebook
// directory, one Chromium, optionally one Notebook 6 server, and whatever else the file starts. `dispose()`
// tears all of it down (also after a failed setup or test, also when one part fails to stop), and `diagnose`
// turns a failure into one message with a screenshot, the page console and the server's log.
//
//   const setup = useBrowserFixture({ label: "rpc-browser", server: {} });   // beforeAll + afterAll
//   it("...", async () => {
//     const { browser, server, diagnose } = setup();
//     const page = await browser.newPage();
//     await diagnose(page, server, async () => { ... });
//   });

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll } from "vitest";
import { launchBrowser, type TestBrowser } from "./browser.js";
import { makeJupyterEnv, startNotebookServer, type JupyterEnv, type MakeJupyterEnvOptions, type NotebookServer, type NotebookServerOptions } from "./jupyter.js";

export type ServerOptions = Omit<NotebookServerOptions, "env" | "notebookDir">;

export interface BrowserFixtureOptions {
  /** Names the temp directory and failure screenshots, e.g. "comms-browser". */
  label: string;
  /** Start one notebook server with the fixture (`fixture.server`); without it, tests call `startServer`. */
  server?: ServerOptions;
  jupyterEnv?: MakeJupyterEnvOptions;
}

export interface DiagnoseOptions {
  /** More of the page's state for the failure message (evaluated only on failure; its own failure is reported instead). */
  pageState?: (page: Page) => Promise<string>;
}

export interface BrowserFixture {
  env: JupyterEnv;
  /** The directory the servers serve. */
  notebookDir: string;
  browser: TestBrowser;
  /** The server started with the fixture; throws when the options asked for none. */
  readonly server: NotebookServer;
  /** Starts another server on the same env and directory; the fixture stops it on dispose. */
  startServer(options?: ServerOptions): Promise<NotebookServer>;
  /** Runs `fn`; a failure is rethrown with a screenshot of `page`, the browser console and `server`'s log (tails). */
  diagnose<T>(page: Page, server: NotebookServer, fn: () => Promise<T>, options?: DiagnoseOptions): Promise<T>;
  /** Something else to clean up on dispose, before the browser and servers (last added, first run). */
  onDispose(cleanup: () => unknown): void;
  /** Stops and removes everything, each part even when another fails (the first failure is thrown). Idempotent. */
  dispose(): Promise<void>;
}

/** How much of the console and the server log a failure message keeps. */
const DIAGNOSTIC_TAIL_CHARS = 6000;

export async function startBrowserFixture(options: BrowserFixtureOptions): Promise<BrowserFixture> {
  const cleanups: (() => unknown)[] = [];
  const servers: NotebookServer[] = [];
  let disposed: Promise<void> | undefined;
  const dispose = (): Promise<void> =>
    (disposed ??= (async () => {
      let firstError: unknown;
      const attempt = async (step: () => unknown) => {
        try {
          await step();
        } catch (err) {
          firstError ??= err;
        }
      };
      for (const cleanup of cleanups.splice(0).reverse()) await attempt(cleanup);
      if (firstError !== undefined) throw firstError;
    })());
  try {
    const notebookDir = mkdtempSync(join(tmpdir(), `tsnb-${options.label}-`));
    cleanups.push(() => rmSync(notebookDir, { recursive: true, force: true }));
    const env = await makeJupyterEnv(options.jupyterEnv);
    cleanups.push(() => env.dispose());
    // Servers stop after the browser has closed its pages (cleanups run last-added first).
    cleanups.push(async () => {
      for (const s of servers.splice(0)) await s.dispose();
    });
    const browser = await launchBrowser();
    cleanups.push(() => browser.dispose());
    const extraCleanups: (() => unknown)[] = [];
    cleanups.push(async () => {
      for (const cleanup of extraCleanups.splice(0).reverse()) await cleanup();
    });
    const startServer = async (serverOptions: ServerOptions = {}): Promise<NotebookServer> => {
      if (disposed !== undefined) throw new Error(`the ${options.label} fixture was already disposed`);
      const server = await startNotebookServer({ ...serverOptions, env, notebookDir });
      servers.push(server);
      return server;
    };
    const first = options.server === undefined ? undefined : await startServer(options.server);
    return {
      env,
      notebookDir,
      browser,
      get server(): NotebookServer {
        if (first === undefined) throw new Error(`the ${options.label} fixture was set up without a server: call startServer()`);
        return first;
      },
      startServer,
      async diagnose<T>(page: Page, server: NotebookServer, fn: () => Promise<T>, diagnoseOptions: DiagnoseOptions = {}): Promise<T> {
        try {
          return await fn();
        } catch (err) {
          const shot = await browser.screenshotOnFailure(page, options.label);
          const state = diagnoseOptions.pageState === undefined ? undefined : await diagnoseOptions.pageState(page).catch((e: unknown) => `(unavailable: ${String(e)})`);
          const message = err instanceof Error ? err.message : String(err);
          throw new Error(
            `${message}${state === undefined ? "" : `\npage state: ${state}`}\nscreenshot: ${shot}\n--- browser console ---\n${browser.consoleLog().slice(-DIAGNOSTIC_TAIL_CHARS)}\n--- server output (tail) ---\n${server.log().slice(-DIAGNOSTIC_TAIL_CHARS)}`,
            { cause: err },
          );
        }
      },
      onDispose: (cleanup) => void extraCleanups.push(cleanup),
      dispose,
    };
  } catch (err) {
    // Setup failed halfway: undo what was made, then report the setup failure.
    await dispose().catch((cleanupError: unknown) => console.error(`cleaning up the failed ${options.label} setup also failed`, cleanupError));
    throw err;
  }
}

/**
 * Sets the fixture up in `beforeAll` and disposes it in `afterAll` of the enclosing describe block. Returns
 * an accessor for tests, which throws when the setup did not complete.
 */
export function useBrowserFixture(options: BrowserFixtureOptions & { setupTimeoutMs?: number }): () => BrowserFixture {
  let fixture: BrowserFixture | undefined;
  beforeAll(async () => {
    fixture = await startBrowserFixture(options);
  }, options.setupTimeoutMs ?? 120_000);
  afterAll(async () => {
    await fixture?.dispose();
  });
  return () => {
    if (fixture === undefined) throw new Error(`the ${options.label} browser fixture was not set up (its beforeAll failed)`);
    return fixture;
  };
}
