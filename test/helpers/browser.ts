// Real Chromium for tests: Debian's /usr/bin/chromium driven by playwright-core (which never downloads a
// browser). One persistent profile in a temp dir per launch; `dispose()` closes the browser and removes the
// profile, idempotently — call it from afterAll/afterEach.
//
//   const browser = await launchBrowser();
//   const page = await browser.newPage();
//   await page.goto(server.pageUrl("notebooks/x.ipynb"));
//   ...
//   await browser.screenshotOnFailure(page, "x");   // in a catch/afterEach: writes a PNG, returns its path
//   await browser.dispose();

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** Flags that keep Chromium quiet and working as root in a container, without network side traffic. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface LaunchBrowserOptions {
  /** Accept self-signed certificates (for the https notebook server). Default true: test servers make their own. */
  ignoreHTTPSErrors?: boolean;
  /** Viewport size; default 1280x900 so the notebook toolbar and outputs fit. */
  viewport?: { width: number; height: number };
  /** Collect page console messages and page errors into `consoleLog()`. Default true. */
  captureConsole?: boolean;
}

export interface TestBrowser {
  context: BrowserContext;
  /** A new tab (console capture attached). */
  newPage(): Promise<Page>;
  /** Console messages and uncaught page errors of every tab so far, one per line, for failure messages. */
  consoleLog(): string;
  /** Writes a full-page screenshot to a temp file and returns its path (never throws: it runs on failure paths). */
  screenshotOnFailure(page: Page, label: string): Promise<string>;
  /** Closes Chromium and deletes its profile. Idempotent. */
  dispose(): Promise<void>;
}

export async function launchBrowser(options: LaunchBrowserOptions = {}): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), "tsnb-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      ignoreHTTPSErrors: options.ignoreHTTPSErrors ?? true,
      viewport: options.viewport ?? { width: 1280, height: 900 },
      timeout: 60_000,
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  const lines: string[] = [];
  const capture = options.captureConsole ?? true;
  const attach = (page: Page): void => {
    if (!capture) return;
    page.on("console", (msg) => lines.push(`[console.${msg.type()}] ${msg.text()}`));
    page.on("pageerror", (err) => lines.push(`[pageerror] ${err.message}`));
  };
  context.pages().forEach(attach);
  context.on("page", attach);

  let disposed = false;
  const handedOut = new Set<Page>();
  return {
    context,
    async newPage() {
      if (disposed) throw new Error("the browser was already disposed");
      // A persistent context opens with one blank tab; hand that out first instead of leaving it idle.
      const blank = context.pages().find((p) => p.url() === "about:blank" && !handedOut.has(p));
      const page = blank ?? (await context.newPage());
      handedOut.add(page);
      return page;
    },
    consoleLog: () => lines.join("\n"),
    async screenshotOnFailure(page: Page, label: string) {
      const file = join(mkdtempSync(join(tmpdir(), "tsnb-shot-")), `${label.replace(/[^\w.-]+/g, "_")}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true, timeout: 10_000 });
        return file;
      } catch (err) {
        return `(screenshot failed: ${err instanceof Error ? err.message : String(err)})`;
      }
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      try {
        await context.close();
      } finally {
        rmSync(profile, { recursive: true, force: true });
      }
    },
  };
}
