// Widgets through JupyterLab's own output rendering (issue 4, "The JupyterLab output-area test page renders and
// drives the same widgets"): the page of test/lab-page/ (@jupyterlab/services, OutputArea, RenderMimeRegistry with
// the javascript extension's renderer) runs cells against the real Notebook 6 server and the real tsnb kernel in
// real Chromium. A slider, a button, a text box and a label in boxes are driven with mouse and keyboard; a second
// page, opened on the same kernel with the first page's saved outputs (the reload path: nothing runs a cell
// there), comes alive with the kernel's current values and stays in sync both ways without echo loops; a kernel
// restart shows every view disconnected in both pages. Controls are found by role and accessible name.

import type { Locator, Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { useBrowserFixture } from "./helpers/browser-fixture.js";
import { openLabPage, serveLabPage, type LabPage } from "./helpers/lab-page.js";
import type { LabPageGlobals } from "./lab-page/main.js";

type TestWindow = LabPageGlobals & { tsnb_comm?: unknown };

const SETUP = `
import { Button, IntSlider, Text, Label, HBox, VBox } from "tsnb";
const slider = new IntSlider({ description: "Level", value: 10, min: 0, max: 20 });
const button = new Button({ description: "Press me" });
const who = new Text({ description: "Name" });
const greeting = new Label({ value: "nobody yet" });
const seen: number[] = [];
const typed: string[] = [];
let clicks = 0;
slider.on("change", (e) => void seen.push(e.value as number));
who.on("change", (e) => { typed.push(String(e.value)); greeting.value = "hello " + String(e.value); });
button.on("click", () => { clicks++; greeting.value = "clicked " + clicks; });
display(new VBox({ children: [new HBox({ children: [button, slider] }), who, greeting] }));`;

const REPORT = `console.log(JSON.stringify({ seen, typed, clicks, value: slider.value, name: who.value }))`;

interface Report {
  seen: number[];
  typed: string[];
  clicks: number;
  value: number;
  name: string;
}

/** A live (mounted) view's control: the static HTML of a saved output has the same look but is inert. */
function live(tab: Page): Locator {
  return tab.locator("#lab-output [data-tsnb-mounted]").first();
}

function slider(tab: Page): Locator {
  return live(tab).getByRole("slider", { name: "Level" });
}

function nameBox(tab: Page): Locator {
  return live(tab).getByRole("textbox", { name: "Name" });
}

/** The slider's value as the page shows it: the native value, or aria-valuenow on a custom slider. */
async function sliderShows(tab: Page, value: number, timeout = 30_000): Promise<void> {
  const control = slider(tab);
  await control.waitFor({ timeout });
  await tab.waitForFunction(
    ({ el, value }) => (el!.getAttribute("aria-valuenow") ?? (el as HTMLInputElement).value) === String(value),
    { el: await control.elementHandle({ timeout }), value },
    { timeout },
  );
}

async function shows(tab: Page, text: string, timeout = 30_000): Promise<void> {
  await live(tab).getByText(text, { exact: true }).waitFor({ timeout });
}

async function report(tab: Page): Promise<Report> {
  const printed = await tab.evaluate((code) => (window as unknown as TestWindow).runQuiet(code), REPORT);
  return JSON.parse(printed) as Report;
}

describe("widgets in JupyterLab's OutputArea (the lab test page)", () => {
  // The page lives on another origin, so the server must accept its requests and websockets.
  const setup = useBrowserFixture({ label: "widgets-lab", server: { extraArgs: ["--NotebookApp.allow_origin=*"] } });
  let lab: LabPage | undefined;

  beforeAll(async () => {
    const { server, onDispose } = setup();
    const served = await serveLabPage(server);
    lab = served;
    onDispose(() => served.close());
  }, 120_000);

  it("renders, drives, reloads into a second page in sync, and shows a restart as disconnected", async () => {
    const { browser, server, diagnose } = setup();
    const first = await browser.newPage();
    const second = await browser.newPage();
    // The failure message carries a screenshot of the first page, both pages' comm state and the second's outputs.
    const commState = (tab: Page) =>
      tab.evaluate(() => {
        const comm = (window as unknown as { tsnb_comm?: { status?: string; id?: string | null } }).tsnb_comm;
        const views = document.querySelectorAll("#lab-output .tsnb-w-view").length;
        const disconnected = document.querySelectorAll("#lab-output [data-tsnb-disconnected]").length;
        return `tsnb_comm ${comm === undefined ? "missing" : `${comm.status} (comm ${comm.id ?? "none"})`}, ${views} views, ${disconnected} disconnected`;
      });
    const pageState = async () =>
      `first page: ${await commState(first)}; second page: ${await commState(second)}; ` +
      (await second.evaluate(() => document.getElementById("lab-output")?.outerHTML.slice(0, 2000) ?? "(no output area)"));
    await diagnose(first, server, async () => {
      const kernelId = await openLabPage(first, lab!.url());
      expect(await first.evaluate((code) => (window as unknown as TestWindow).runCell(code), SETUP)).toBe("ok");

      // Mouse: two clicks, two callbacks; the page shows what the callback set.
      const press = live(first).getByRole("button", { name: "Press me" });
      await press.click({ timeout: 60_000 });
      await shows(first, "clicked 1");
      await press.click();
      await shows(first, "clicked 2");

      // Keyboard on the slider, then a mouse drag far past its right end.
      await sliderShows(first, 10);
      await slider(first).focus();
      for (let i = 0; i < 3; i++) await first.keyboard.press("ArrowRight");
      await sliderShows(first, 13);
      const box = (await slider(first).boundingBox())!;
      const y = box.y + box.height / 2;
      await first.mouse.move(box.x + box.width * (13 / 20), y);
      await first.mouse.down();
      for (const f of [0.8, 0.9, 1.0, 1.4]) await first.mouse.move(box.x + box.width * f, y, { steps: 3 });
      await first.mouse.up();
      await sliderShows(first, 20);

      // Typing: one change per key, and the label the program sets from it.
      await nameBox(first).pressSequentially("Ann");
      await shows(first, "hello Ann");

      // The program's own set is clamped by the program, and the page shows the clamped value.
      await first.evaluate((code) => (window as unknown as TestWindow).runQuiet(code), "slider.value = -5;");
      await sliderShows(first, 0);

      const r1 = await report(first);
      expect(r1.clicks).toBe(2);
      expect(r1.typed).toEqual(["A", "An", "Ann"]);
      expect(r1.seen.slice(0, 3)).toEqual([11, 12, 13]);
      expect(r1.seen[r1.seen.length - 1]).toBe(20);
      // Once per value the user went through: an echo would have repeated one.
      expect(new Set(r1.seen).size).toBe(r1.seen.length);
      expect(r1.value).toBe(0);

      // The reload path: a fresh page on the same kernel renders what the first page would save. Nothing runs
      // a cell there; the outputs' own script fetches the shim from the kernel and the views mount.
      const saved = await first.evaluate(() => (window as unknown as TestWindow).outputs());
      const savedHtml = JSON.stringify(saved);
      expect(savedHtml).toContain("data-tsnb-widget");
      await openLabPage(second, lab!.url({ kernel: kernelId }));
      const t0 = Date.now();
      await second.evaluate((outputs) => (window as unknown as TestWindow).restoreOutputs(outputs), saved);
      await sliderShows(second, 0);
      console.info(`restored lab page: widgets live ${Date.now() - t0} ms after its outputs were rendered`);
      await expect.poll(() => nameBox(second).inputValue(), { timeout: 10_000 }).toBe("Ann");
      await shows(second, "hello Ann");

      // Two pages in sync both ways; each action reaches the program once.
      await slider(second).focus();
      await second.keyboard.press("ArrowRight");
      await sliderShows(second, 1);
      await sliderShows(first, 1);
      await nameBox(first).press("End");
      await nameBox(first).pressSequentially("e");
      await shows(first, "hello Anne");
      await shows(second, "hello Anne");
      await expect.poll(() => nameBox(second).inputValue(), { timeout: 10_000 }).toBe("Anne");
      await live(second).getByRole("button", { name: "Press me" }).click();
      await shows(first, "clicked 3");
      await shows(second, "clicked 3");
      const r2 = await report(second);
      expect(r2.seen).toEqual([...r1.seen, 1]);
      expect(r2.typed).toEqual([...r1.typed, "Anne"]);
      expect(r2.clicks).toBe(3);
      expect(r2.value).toBe(1);

      // Restart from the first page: the new kernel knows none of these widgets; both pages say so.
      await first.evaluate(() => (window as unknown as TestWindow).restartKernel());
      for (const tab of [first, second]) {
        await tab.locator('#lab-output [data-tsnb-disconnected][data-tsnb-kind="IntSlider"]').waitFor({ state: "attached", timeout: 30_000 });
        await tab.locator('#lab-output [data-tsnb-disconnected][data-tsnb-kind="Text"]').waitFor({ state: "attached", timeout: 30_000 });
      }

      const log = browser.consoleLog();
      expect(log.split("\n").filter((l) => l.startsWith("[pageerror]"))).toEqual([]);
      expect(log.split("\n").filter((l) => l.includes("tsnb widgets"))).toEqual([]);
    }, { pageState });
    await first.close();
    await second.close();
  }, 300_000);
});
