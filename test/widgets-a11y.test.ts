// The widget views as a keyboard or screen-reader user meets them, in real Chromium through the real
// Notebook 6 server, kernel and user program: every control found by its ARIA role and accessible name,
// sliders (one thumb and two) and buttons operated with the keyboard alone and the values reaching the
// program, a cleared or replaced output taking its views' comm listeners down, and the views' colours
// following JupyterLab's dark theme variables (and Notebook 6's look without them).

import type { Locator, Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { useBrowserFixture } from "./helpers/browser-fixture.js";
import { createNotebook, TSNB_KERNEL_NAME } from "./helpers/jupyter.js";
import { cellOutput, cellText, openNotebook, runCell } from "./helpers/notebook-page.js";

/** Program-side helper for report cells: resolves when `ready()` holds, fails after 10 s. */
const UNTIL = `
const until = (ready: () => boolean, what: string) => new Promise<void>((resolve, reject) => {
  const t0 = Date.now();
  const tick = () => ready() ? resolve() : Date.now() - t0 > 10000 ? reject(new Error("not within 10 s: " + what)) : setTimeout(tick, 10);
  tick();
});`;

const CONTROLS = `
import { Button, Checkbox, Dropdown, IntRangeSlider, IntSlider, NumberInput, Output, Progress, RadioButtons, Select, Tabs, Text, ToggleButton, VBox, Accordion, Label } from "tsnb";
${UNTIL}
const volume = new IntSlider({ description: "Volume", value: 50, min: 0, max: 100, step: 5 });
const years = new IntRangeSlider({ description: "Years", value: [20, 60], min: 0, max: 100 });
const bold = new ToggleButton({ description: "Bold" });
const go = new Button({ description: "Go" });
const agree = new Checkbox({ description: "Agree" });
const seen = { volume: [] as number[], years: [] as string[], bold: [] as boolean[], go: 0, agree: [] as boolean[] };
volume.on("change", (e) => void seen.volume.push(e.value as number));
years.on("change", (e) => void seen.years.push((e.value as number[]).join("-")));
bold.on("change", (e) => void seen.bold.push(e.value as boolean));
agree.on("change", (e) => void seen.agree.push(e.value as boolean));
go.on("click", () => void seen.go++);
const more = new Tabs({
  titles: ["Choices", "Numbers"],
  children: [
    new VBox({ children: [new Dropdown({ description: "Fruit", options: ["apple", "pear"] }), new RadioButtons({ description: "Size", options: ["s", "m"] }), new Select({ description: "Pick", options: ["x", "y"] }), new Text({ description: "Name" })] }),
    new VBox({ children: [new NumberInput({ description: "Count" }), new Progress({ description: "Loading", value: 30, min: 10, max: 110 }), new Output()] }),
  ],
});
const acc = new Accordion({ titles: ["First", "Second"], children: [new Label({ value: "one" }), new Label({ value: "two" })] });
display(new VBox({ children: [volume, years, bold, go, agree, new IntSlider(), more, acc] }));`;

interface A11yWindow {
  tsnbWidgets?: { liveViews: number };
  Jupyter: { notebook: { get_cell(i: number): { clear_output(): void } } };
}

/** The red, green and blue of a computed rgb()/rgba() colour. */
function channels(colour: string): number[] {
  const m = /^rgba?\((\d+), (\d+), (\d+)/.exec(colour);
  if (!m) throw new Error(`not a computed colour: ${colour}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/**
 * Each widget's view mounts when its own state arrives, so a control next to one already shown may still be on
 * its way: wait (with a deadline) for `count` of them, then check there are exactly that many.
 */
async function expectCount(locator: Locator, count: number): Promise<void> {
  await locator.nth(count - 1).waitFor({ state: "attached", timeout: 10_000 });
  expect(await locator.count()).toBe(count);
}

async function isFocused(locator: Locator): Promise<boolean> {
  return locator.evaluate((el) => el === document.activeElement);
}

describe("widget views: roles, keyboard, disposal and theme in real Chromium through Notebook 6", () => {
  const setup = useBrowserFixture({ label: "widgets-a11y", server: {} });

  function diagnose<T>(page: Page, fn: () => Promise<T>): Promise<T> {
    const fixture = setup();
    return fixture.diagnose(page, fixture.server, fn);
  }

  it("every control has its role and name; sliders, the range slider's thumbs and buttons work from the keyboard alone", async () => {
    const path = await createNotebook(setup().server, { path: "a11y.ipynb", kernelName: TSNB_KERNEL_NAME, cells: ["", "", ""] });
    const page = await setup().browser.newPage();
    await diagnose(page, async () => {
      await openNotebook(page, setup().server, path);
      await runCell(page, 0, CONTROLS);
      const out = cellOutput(page, 0);
      const volume = out.getByRole("slider", { name: "Volume" });
      await volume.waitFor({ timeout: 60_000 });

      // Roles and accessible names (what getByRole finds is what a screen reader announces).
      const low = out.getByRole("slider", { name: "Years low" });
      const high = out.getByRole("slider", { name: "Years high" });
      expect(await low.getAttribute("aria-valuenow")).toBe("20");
      expect(await low.getAttribute("aria-valuemin")).toBe("0");
      expect(await low.getAttribute("aria-valuemax")).toBe("60");
      expect(await high.getAttribute("aria-valuemin")).toBe("20");
      expect(await high.getAttribute("aria-valuemax")).toBe("100");
      await expectCount(out.getByRole("group", { name: "Years" }), 1);
      expect(await out.getByRole("button", { name: "Bold" }).getAttribute("aria-pressed")).toBe("false");
      await expectCount(out.getByRole("button", { name: "Go" }), 1);
      await expectCount(out.getByRole("checkbox", { name: "Agree" }), 1);
      // A slider without a description is still named.
      await expectCount(out.getByRole("slider", { name: "Slider", exact: true }), 1);
      await expectCount(out.getByRole("tablist"), 1);
      expect(await out.getByRole("tab").allInnerTexts()).toEqual(["Choices", "Numbers"]);
      expect(await out.getByRole("tab", { name: "Choices" }).getAttribute("aria-selected")).toBe("true");
      const choices = out.getByRole("tabpanel", { name: "Choices" });
      await expectCount(choices.getByRole("combobox", { name: "Fruit" }), 1);
      await expectCount(choices.getByRole("radiogroup", { name: "Size" }).getByRole("radio"), 2);
      await expectCount(choices.getByRole("listbox", { name: "Pick" }), 1);
      await expectCount(choices.getByRole("textbox", { name: "Name" }), 1);
      await expectCount(out.getByRole("tabpanel"), 1);
      // Tabs from the keyboard: arrow to the next tab, Enter selects it and shows its panel.
      await out.getByRole("tab", { name: "Choices" }).focus();
      await page.keyboard.press("ArrowRight");
      expect(await isFocused(out.getByRole("tab", { name: "Numbers" }))).toBe(true);
      await page.keyboard.press("Enter");
      const numbers = out.getByRole("tabpanel", { name: "Numbers" });
      await numbers.waitFor({ timeout: 10_000 });
      await expectCount(numbers.getByRole("spinbutton", { name: "Count" }), 1);
      const progress = numbers.getByRole("progressbar", { name: "Loading" });
      expect([await progress.getAttribute("aria-valuemin"), await progress.getAttribute("aria-valuemax"), await progress.getAttribute("aria-valuenow")]).toEqual(["10", "110", "30"]);
      await expectCount(numbers.getByRole("log", { name: "Output" }), 1);
      const first = out.getByRole("button", { name: "First" });
      expect(await first.getAttribute("aria-expanded")).toBe("true");
      await expectCount(out.getByRole("region", { name: "First" }), 1);
      expect(await out.getByRole("region", { name: "Second" }).count()).toBe(0);

      // The one-thumb slider: arrows step by the widget's step, PageUp/PageDown by a tenth, Home/End to the ends.
      await volume.focus();
      for (const key of ["ArrowRight", "PageUp", "End", "PageDown", "Home", "ArrowUp"]) await page.keyboard.press(key);
      // Focus order follows the layout: Tab goes from the slider to the range's low thumb, then its high thumb.
      await page.keyboard.press("Tab");
      expect(await isFocused(low)).toBe(true);
      for (const key of ["ArrowRight", "ArrowRight", "PageUp", "End", "Home"]) await page.keyboard.press(key);
      await page.keyboard.press("Tab");
      expect(await isFocused(high)).toBe(true);
      for (const key of ["ArrowLeft", "PageDown", "Home", "End"]) await page.keyboard.press(key);
      expect(await out.locator(".tsnb-w-kind-intrangeslider output").textContent()).toBe("0 – 100");
      expect([await high.getAttribute("aria-valuenow"), await low.getAttribute("aria-valuemax")]).toEqual(["100", "100"]);
      // Buttons: Space toggles, Enter clicks; Tab reaches them in order.
      await page.keyboard.press("Tab");
      await page.keyboard.press("Space");
      await page.keyboard.press("Tab");
      await page.keyboard.press("Enter");
      await page.keyboard.press("Tab");
      await page.keyboard.press("Space");
      expect(await out.getByRole("button", { name: "Bold" }).getAttribute("aria-pressed")).toBe("true");

      // A press on the range slider's track moves the nearer thumb there.
      const track = out.getByRole("group", { name: "Years" });
      const box = (await track.boundingBox())!;
      await page.mouse.click(box.x + box.width * 0.75, box.y + box.height / 2);
      await high.and(page.locator('[aria-valuenow="75"]')).waitFor({ timeout: 10_000 });

      await runCell(page, 1, `
await until(() => seen.go === 1 && seen.agree.length === 1 && years.value[1] === 75, "the keyboard's last actions");
console.log("seen " + JSON.stringify(seen) + " values " + JSON.stringify([volume.value, years.value, bold.value, agree.value]));`);
      const report = await cellText(page, 1, /seen |not within/);
      expect(report).toMatch(/seen \{/);
      const seen = JSON.parse(/seen (\{.*\}) values/.exec(report)![1]!) as { volume: number[]; years: string[]; bold: boolean[]; go: number; agree: boolean[] };
      expect(seen.volume).toEqual([55, 65, 100, 90, 0, 5]);
      expect(seen.years).toEqual(["21-60", "22-60", "32-60", "60-60", "0-60", "0-59", "0-49", "0-0", "0-100", "0-75"]);
      expect(seen.bold).toEqual([true]);
      expect(seen.go).toBe(1);
      expect(seen.agree).toEqual([true]);
      expect(report).toContain('values [5,[0,75],true,true]');

      // Nothing in the page threw, and no widget code logged an error.
      const log = setup().browser.consoleLog();
      expect(log.split("\n").filter((l) => l.startsWith("[pageerror]"))).toEqual([]);
      expect(log.split("\n").filter((l) => l.includes("tsnb widgets"))).toEqual([]);
    });
    await page.close();
  }, 240_000);

  it("a replaced or cleared output disposes its views: the program sees the page stop listening", async () => {
    const path = await createNotebook(setup().server, { path: "dispose.ipynb", kernelName: TSNB_KERNEL_NAME, cells: ["", "", ""] });
    const page = await setup().browser.newPage();
    await diagnose(page, async () => {
      await openNotebook(page, setup().server, path);
      await runCell(page, 1, `
import { HBox, IntSlider, Tabs, Text, comms } from "tsnb";
${UNTIL}
const generations: { id: string }[][] = [];
const make = () => {
  const s = new IntSlider({ description: "S" }), t = new Text({ description: "T" });
  const all = [new HBox({ children: [s, new Tabs({ children: [t], titles: ["only"] })] }), s, t];
  generations.push(all);
  return all[0];
};
const listening = (ws: { id: string }[]) => ws.map((w) => comms.listeners("tsnb.widget/" + w.id + "/state"));
"ready"`);
      await cellText(page, 1, /ready/);
      const live = () => page.evaluate(() => (window as unknown as A11yWindow).tsnbWidgets?.liveViews ?? -1);
      await runCell(page, 0, "make()");
      await cellOutput(page, 0).getByRole("textbox", { name: "T" }).waitFor({ timeout: 60_000 });
      expect(await live()).toBe(4); // HBox, slider, Tabs, and the Text in its panel
      await runCell(page, 2, `await until(() => listening(generations[0]).every((n) => n === 1), "listeners"); console.log("first " + listening(generations[0]))`);
      expect(await cellText(page, 2, /first |not within/)).toContain("first 1,1,1");

      // Running the cell again replaces its output: the old views go, the new ones listen.
      await runCell(page, 0, "make()");
      await runCell(page, 2, `await until(() => listening(generations[0]).every((n) => n === 0) && listening(generations[1]).every((n) => n === 1), "replaced");
console.log("replaced " + listening(generations[0]) + " / " + listening(generations[1]))`);
      expect(await cellText(page, 2, /replaced |not within/)).toContain("replaced 0,0,0 / 1,1,1");
      expect(await live()).toBe(4);

      // Clearing the output disposes every view, children included.
      await page.evaluate(() => (window as unknown as A11yWindow).Jupyter.notebook.get_cell(0).clear_output());
      await runCell(page, 2, `await until(() => listening(generations[1]).every((n) => n === 0), "cleared"); console.log("cleared " + listening(generations[1]))`);
      expect(await cellText(page, 2, /cleared |not within/)).toContain("cleared 0,0,0");
      expect(await live()).toBe(0);
    });
    await page.close();
  }, 240_000);

  it("colours follow JupyterLab's light and dark theme variables and fall back to Notebook 6's look", async () => {
    const path = await createNotebook(setup().server, { path: "theme.ipynb", kernelName: TSNB_KERNEL_NAME, cells: [""] });
    const page = await setup().browser.newPage();
    await diagnose(page, async () => {
      await openNotebook(page, setup().server, path);
      await runCell(page, 0, `
import { Button, Text, HBox } from "tsnb";
new HBox({ children: [new Text({ description: "Name", value: "x" }), new Button({ description: "Go" })] })`);
      const input = cellOutput(page, 0).getByRole("textbox", { name: "Name" });
      await input.waitFor({ timeout: 60_000 });
      const button = cellOutput(page, 0).getByRole("button", { name: "Go" });
      const label = cellOutput(page, 0).locator(".tsnb-w-label", { hasText: "Name" });
      const colour = (l: Locator, property: "color" | "backgroundColor") => l.evaluate((el, p) => getComputedStyle(el)[p], property);
      const colours = async () => ({
        inputBackground: await colour(input, "backgroundColor"),
        inputText: await colour(input, "color"),
        label: await colour(label, "color"),
        buttonBackground: await colour(button, "backgroundColor"),
        buttonText: await colour(button, "color"),
      });
      // Notebook 6: its own colours, or (where ipywidgets' notebook extension is installed, which defines
      // the --jp variables of JupyterLab's light theme on :root) those: white inputs, dark text either way.
      const light = await colours();
      expect([light.inputBackground, light.buttonBackground]).toEqual(["rgb(255, 255, 255)", "rgb(238, 238, 238)"]);
      for (const c of [light.inputText, light.label, light.buttonText]) expect(channels(c).every((v) => v < 64), c).toBe(true);
      // JupyterLab's dark theme (values of @jupyterlab/theme-dark-extension's variables.css). JupyterLab's
      // themes define them on :root, as does ipywidgets for its own --jp-widgets-* names built from them,
      // so they are set there: on body they would not reach ipywidgets' names, already resolved at :root.
      await page.evaluate(() => {
        const dark: Record<string, string> = {
          "--jp-layout-color0": "#111111",
          "--jp-layout-color1": "#212121",
          "--jp-layout-color2": "#424242",
          "--jp-layout-color3": "#616161",
          "--jp-ui-font-color0": "rgba(255, 255, 255, 1)",
          "--jp-ui-font-color1": "rgba(255, 255, 255, 0.87)",
          "--jp-ui-font-color2": "rgba(255, 255, 255, 0.54)",
          "--jp-content-font-color0": "rgba(255, 255, 255, 1)",
          "--jp-content-font-color1": "rgba(255, 255, 255, 1)",
          "--jp-ui-inverse-font-color1": "rgba(0, 0, 0, 0.8)",
          "--jp-border-color1": "#616161",
          "--jp-brand-color1": "#1976d2",
        };
        for (const [name, value] of Object.entries(dark)) document.documentElement.style.setProperty(name, value);
      });
      const dark = await colours();
      expect([dark.inputBackground, dark.inputText, dark.buttonBackground]).toEqual(["rgb(33, 33, 33)", "rgba(255, 255, 255, 0.87)", "rgb(66, 66, 66)"]);
      for (const c of [dark.label, dark.buttonText]) expect(channels(c).every((v) => v > 200), c).toBe(true);
      // ipywidgets' own variables (jupyterlab_widgets) win over the core ones where a page has them.
      await page.evaluate(() => document.documentElement.style.setProperty("--jp-widgets-input-background-color", "#303030"));
      expect((await colours()).inputBackground).toBe("rgb(48, 48, 48)");
    });
    await page.close();
  }, 240_000);
});
