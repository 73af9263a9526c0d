// Widgets end to end in real Chromium against the real Notebook 6 server, the real kernel and the real
// user program: clicks and slider drags reach program callbacks, program changes reach every page, a
// second page and a reloaded page come alive (with the kernel's current values) without running a cell,
// and nbconvert of an executed notebook shows the last values as static HTML.

import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Locator, Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { useBrowserFixture } from "./helpers/browser-fixture.js";
import { createNotebook, PYTHON, repoRoot, runProcess, TSNB_KERNEL_NAME } from "./helpers/jupyter.js";
import { openNotebook, runCell, cellText, cellOutput } from "./helpers/notebook-page.js";

interface TestWindow {
  Jupyter?: {
    notebook?: {
      get_cell(i: number): { set_text(t: string): void } | null;
      execute_cells(indices: number[]): void;
      save_notebook(): Promise<unknown>;
      kernel?: { id: string; is_connected(): boolean; info_reply?: { implementation?: string } } | null;
    };
  };
  tsnb_comm?: unknown;
}

const CELLS = {
  setup: `
import { Button, IntSlider, HBox } from "tsnb";
const seen: number[] = [];
const button = new Button({ description: "Press me" });
const failing = new Button({ description: "Fail" });
const slider = new IntSlider({ description: "Level", value: 10, min: 0, max: 20 });
let changes = 0;
slider.on("change", (e) => { changes++; seen.push(e.value as number); });
failing.on("click", () => { throw new Error("boom from a callback"); });
let clicks = 0;
const twoClicks = new Promise<void>((resolve) => button.on("click", () => {
  clicks++;
  console.log("clicked " + clicks);
  if (clicks === 2) resolve();
}));
display(new HBox({ children: [button, failing, slider] }));
await twoClicks;
console.log("setup done");`,
  report: `console.log("seen [" + seen.join(",") + "] value " + slider.value + " changes " + changes);`,
  programSets: `slider.value = 5; slider.description = "Lvl"; "set to " + slider.value;`,
  programSetsAgain: `slider.value = 17; "set to " + slider.value;`,
};

/** The live (mounted) slider view of cell 0. */
function liveSlider(page: Page): Locator {
  return cellOutput(page, 0).locator('[data-tsnb-mounted][data-tsnb-kind="IntSlider"] input[type=range]');
}

async function sliderShows(page: Page, value: number, timeout = 30_000): Promise<void> {
  await page.waitForFunction(
    (value) => {
      const input = document.querySelector<HTMLInputElement>('#notebook-container .cell [data-tsnb-mounted][data-tsnb-kind="IntSlider"] input[type=range]');
      const readout = input?.parentElement?.querySelector("output");
      return input?.value === String(value) && readout?.textContent === String(value);
    },
    value,
    { timeout },
  );
}

describe("widgets in real Chromium through the real Notebook 6 server", () => {
  const setup = useBrowserFixture({ label: "widgets-browser" });

  it("clicks, mouse and keyboard slider input, program updates, a second page and a reload", async () => {
    const { browser, diagnose, startServer } = setup();
    const server = await startServer();
    const path = await createNotebook(server, { path: "widgets.ipynb", kernelName: TSNB_KERNEL_NAME, cells: ["", "", "", "", ""] });
    const page = await browser.newPage();
    await diagnose(page, server, async () => {
      await openNotebook(page, server, path);
      await runCell(page, 0, CELLS.setup);

      // Clicks reach the program while the cell runs; what the callback prints shows under the cell, and
      // an error thrown in a callback is shown there too.
      const press = cellOutput(page, 0).locator("[data-tsnb-mounted] button", { hasText: "Press me" });
      await press.waitFor({ timeout: 60_000 });
      await press.click();
      await cellText(page, 0, /clicked 1/);
      await cellOutput(page, 0).locator("[data-tsnb-mounted] button", { hasText: "Fail" }).click();
      await cellText(page, 0, /boom from a callback/);
      await press.click();
      const out0 = await cellText(page, 0, /setup done/);
      expect(out0).toMatch(/clicked 1[\s\S]*clicked 2[\s\S]*setup done/);
      // The callback keeps working after its cell finished, and still prints under that cell.
      await press.click();
      expect(await cellText(page, 0, /clicked 3/)).toMatch(/setup done[\s\S]*clicked 3/);

      // Keyboard: native range input, so arrow keys step by the widget's step.
      const slider = liveSlider(page);
      await slider.focus();
      for (let i = 0; i < 3; i++) await page.keyboard.press("ArrowRight");
      await sliderShows(page, 13);
      // Mouse: drag the thumb far past the right end; the value ends at max.
      const box = (await slider.boundingBox())!;
      const y = box.y + box.height / 2;
      const thumbX = box.x + box.width * (13 / 20);
      await page.mouse.move(thumbX, y);
      await page.mouse.down();
      for (const f of [0.8, 0.9, 1.0, 1.3]) await page.mouse.move(box.x + box.width * f, y, { steps: 3 });
      await page.mouse.up();
      await sliderShows(page, 20);
      await runCell(page, 1, CELLS.report);
      const report = await cellText(page, 1, /seen \[/);
      expect(report).toMatch(/seen \[11,12,13,[\d,]*20\] value 20 changes \d+/);
      // One change per value the user went through: no echo ever called back.
      const seenList = /seen \[([\d,]+)\]/.exec(report)![1]!.split(",").map(Number);
      expect(Number(/changes (\d+)/.exec(report)![1])).toBe(seenList.length);
      expect(new Set(seenList).size).toBe(seenList.length);

      // The program sets the value and the description: the page follows.
      await runCell(page, 2, CELLS.programSets);
      await cellText(page, 2, /set to 5/);
      await sliderShows(page, 5);
      await cellOutput(page, 0).locator("[data-tsnb-mounted] label", { hasText: "Lvl" }).waitFor({ timeout: 30_000 });

      // A second page on the same notebook (saved, so trusted, with the widget output): it comes alive with
      // the kernel's current value without running a cell; a change there shows in the first page, and the
      // program's handler fires once for it.
      await page.evaluate(() => (window as unknown as TestWindow).Jupyter!.notebook!.save_notebook());
      // The saved notebook shows the widget's last value (5, "Lvl"), not the one it had when displayed.
      const saved = (await server.api("GET", `api/contents/${path}`)) as { content: { cells: { outputs: { data?: { "text/html"?: string | string[] } }[] }[] } };
      const savedHtml = saved.content.cells[0]!.outputs.map((o) => [o.data?.["text/html"] ?? ""].flat().join("")).join("\n");
      expect(savedHtml).toMatch(/>Lvl<\/label><input[^>]* type="range"[^>]* value="5"[^>]*><output[^>]*>5<\/output>/);
      expect(savedHtml).not.toContain("data-tsnb-mounted");
      const second = await browser.newPage();
      await openNotebook(second, server, path);
      const t0 = Date.now();
      await sliderShows(second, 5, 2_000);
      console.info(`second page: widgets live ${Date.now() - t0} ms after the kernel connected`);
      await liveSlider(second).focus();
      await second.keyboard.press("ArrowLeft");
      await sliderShows(second, 4);
      await sliderShows(page, 4);
      // Page-to-page latency, timed inside the browser (both pages share its clock): from the key going
      // down in the second page to the first page's readout showing the new value.
      await page.evaluate(() => {
        const w = window as unknown as { shownAt: Record<string, number> };
        w.shownAt = {};
        const readout = document.querySelector('#notebook-container .cell [data-tsnb-mounted][data-tsnb-kind="IntSlider"] output')!;
        new MutationObserver(() => void (w.shownAt[readout.textContent ?? ""] ??= Date.now())).observe(readout, { childList: true, characterData: true, subtree: true });
      });
      await second.evaluate(() => {
        const w = window as unknown as { pressedAt: number[] };
        w.pressedAt = [];
        addEventListener("keydown", () => w.pressedAt.push(Date.now()), { capture: true });
      });
      for (let v = 5; v <= 14; v++) {
        await second.keyboard.press("ArrowRight");
        await page.waitForFunction((v) => (window as unknown as { shownAt: Record<string, number> }).shownAt[String(v)] !== undefined, v, { timeout: 10_000 });
      }
      const shownAt = await page.evaluate(() => (window as unknown as { shownAt: Record<string, number> }).shownAt);
      const pressedAt = await second.evaluate(() => (window as unknown as { pressedAt: number[] }).pressedAt);
      const latencies = pressedAt.map((t, i) => shownAt[String(5 + i)]! - t).sort((a, b) => a - b);
      const median = latencies[Math.floor(latencies.length / 2)]!;
      console.info(`page-to-page latency over ${latencies.length} key presses: median ${median} ms, max ${latencies[latencies.length - 1]} ms; all: ${latencies.join(",")}`);
      expect(latencies).toHaveLength(10);
      // The 100 ms target is a benchmark figure (npm run bench:widgets), not a pass/fail line on a loaded CI machine.
      await runCell(page, 1, CELLS.report);
      const after = await cellText(page, 1, /value 14 /);
      expect(Number(/changes (\d+)/.exec(after)![1])).toBe(seenList.length + 11);
      await second.close();

      // Reload: the injected shim is gone; the saved output's bootstrap brings widgets back with the
      // kernel's current value (14, while the saved static HTML says 10) without running a cell.
      await page.reload();
      await openNotebook(page, server, path);
      const t1 = Date.now();
      await sliderShows(page, 14, 2_000);
      console.info(`reload: widgets live ${Date.now() - t1} ms after the kernel connected`);
      await runCell(page, 3, CELLS.programSetsAgain);
      await sliderShows(page, 17);
      await cellOutput(page, 0).locator("[data-tsnb-mounted] button", { hasText: "Press me" }).waitFor({ timeout: 10_000 });

      // Kernel restart: the new kernel knows nothing of these widgets; the views say they are disconnected.
      expect(await cellOutput(page, 0).locator("[data-tsnb-disconnected]").count()).toBe(0);
      await page.evaluate(() => void (window as unknown as { Jupyter: { notebook: { kernel: { restart(): void } } } }).Jupyter.notebook.kernel.restart());
      await cellOutput(page, 0).locator('[data-tsnb-disconnected][data-tsnb-kind="IntSlider"]').waitFor({ state: "attached", timeout: 30_000 });
      await cellOutput(page, 0).locator('[data-tsnb-disconnected][data-tsnb-kind="Button"]').first().waitFor({ state: "attached", timeout: 30_000 });
      // Nothing in the page threw, and no widget code logged an error, through all of the above.
      const log = browser.consoleLog();
      expect(log.split("\n").filter((l) => l.startsWith("[pageerror]"))).toEqual([]);
      expect(log.split("\n").filter((l) => l.includes("tsnb widgets"))).toEqual([]);
    });
    await page.close();
  }, 300_000);

  it("typing, selecting, radio buttons, tabs, file uploads and interact reach the program", async () => {
    const { browser, diagnose, startServer } = setup();
    const server = await startServer();
    const path = await createNotebook(server, { path: "choices.ipynb", kernelName: TSNB_KERNEL_NAME, cells: ["", "", "", "", ""] });
    const page = await browser.newPage();
    await diagnose(page, server, async () => {
      await openNotebook(page, server, path);
      await runCell(page, 0, `
import { Dropdown, RadioButtons, Tabs, Text } from "tsnb";
const dd = new Dropdown({ description: "Fruit", options: ["apple", "pear"] });
const rb = new RadioButtons({ description: "Size", options: ["s", "m", "l"], value: "m" });
const tx = new Text({ description: "Name" });
const tabs = new Tabs({ children: [dd, rb, tx], titles: ["Fruit", "Size", "Name"] });
const log: string[] = [];
for (const w of [dd, rb, tx]) w.on("change", (e) => void log.push(String(e.value)));
tabs`);
      const out = cellOutput(page, 0);
      const select = out.locator("[data-tsnb-mounted] select");
      await select.waitFor({ timeout: 60_000 });
      await select.selectOption("pear");
      await out.getByRole("tab", { name: "Size" }).click();
      await out.getByRole("radio", { name: "l" }).check();
      await out.getByRole("tab", { name: "Name" }).click();
      // The label is tied to the input, so it is found by its accessible name.
      await out.getByRole("textbox", { name: "Name" }).pressSequentially("Ann");
      await runCell(page, 1, 'console.log(JSON.stringify({ log, tab: tabs.selected, name: tx.value, fruit: dd.value, size: rb.value }))');
      const text = await cellText(page, 1, /"log"/);
      expect(JSON.parse(text.slice(text.indexOf("{")))).toEqual({ log: ["pear", "l", "A", "An", "Ann"], tab: 2, name: "Ann", fruit: "pear", size: "l" });
      // Only the selected tab's panel is visible.
      expect(await out.getByRole("tabpanel").count()).toBe(1);

      // Clearing the output disposes the views: the page stops listening on every widget's address.
      await runCell(page, 1, 'console.log("listening: " + [tabs, dd, rb, tx].map((w) => comms.listeners("tsnb.widget/" + w.id + "/state")).join(","))');
      expect(await cellText(page, 1, /listening: /)).toContain("listening: 1,1,1,1");
      await page.evaluate(() => (window as unknown as { Jupyter: { notebook: { get_cell(i: number): { clear_output(): void } } } }).Jupyter.notebook.get_cell(0).clear_output());
      await runCell(page, 1, `
const ids = [tabs, dd, rb, tx].map((w) => "tsnb.widget/" + w.id + "/state");
await Promise.all(ids.map((a) => comms.listeners(a) === 0 ? null : new Promise<void>((resolve, reject) => {
  const t = setTimeout(() => reject(new Error("still listened after 10 s: " + a)), 10000);
  const w = comms.onListeners(a, (n) => { if (n === 0) { clearTimeout(t); w.dispose(); resolve(); } });
})));
console.log("after clear: " + ids.map((a) => comms.listeners(a)).join(","))`);
      expect(await cellText(page, 1, /after clear: /)).toContain("after clear: 0,0,0,0");

      // Files: picked in the page, bytes intact in the program (3 MiB, so the comms chunk them).
      await runCell(page, 2, 'import { FileUpload } from "tsnb";\nconst up = new FileUpload({ description: "Pick files", multiple: true });\nup');
      const big = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 255;
      const sum = (b: Uint8Array) => b.reduce((a, x) => (a * 31 + x) >>> 0, 0);
      const picker = cellOutput(page, 2).locator("[data-tsnb-mounted] input[type=file]");
      await picker.waitFor({ state: "attached", timeout: 60_000 });
      await picker.setInputFiles([
        { name: "big.bin", mimeType: "application/octet-stream", buffer: big },
        { name: "note.txt", mimeType: "text/plain", buffer: Buffer.from("hello") },
      ]);
      await runCell(page, 3, `
const files = up.value.length > 0 ? up.value : await new Promise<typeof up.value>((resolve, reject) => {
  const t = setTimeout(() => reject(new Error("no files within 30 s")), 30000);
  const d = up.on("change", () => { clearTimeout(t); d.dispose(); resolve(up.value); });
});
console.log("files: " + files.map((f) => f.name + ":" + f.type + ":" + f.size + ":" + f.data.reduce((a, x) => (a * 31 + x) >>> 0, 0)).join(" "));`);
      expect(await cellText(page, 3, /files: /)).toContain(`files: big.bin:application/octet-stream:${big.length}:${sum(big)} note.txt:text/plain:5:${sum(Buffer.from("hello"))}`);
      await cellOutput(page, 2).locator("[data-tsnb-mounted] .tsnb-w-text", { hasText: "big.bin, note.txt" }).waitFor({ timeout: 10_000 });

      // interact: a key press on its slider re-runs the function in the program; the page shows the result.
      await runCell(page, 4, `
import { interact, IntSlider, Text } from "tsnb";
const ui = interact(({ n, word }) => word.repeat(n), { n: new IntSlider({ description: "times", value: 2, max: 5 }), word: new Text({ description: "word", value: "ab" }) });
await ui.idle;
ui.widget`);
      const result = cellOutput(page, 4).locator("[data-tsnb-mounted] .tsnb-w-result");
      await result.filter({ hasText: /^abab$/ }).waitFor({ timeout: 60_000 });
      await cellOutput(page, 4).getByRole("slider", { name: "times" }).focus();
      await page.keyboard.press("ArrowRight");
      await result.filter({ hasText: /^ababab$/ }).waitFor({ timeout: 10_000 });
      await cellOutput(page, 4).getByRole("textbox", { name: "word" }).fill("xy");
      await result.filter({ hasText: /^xyxyxy$/ }).waitFor({ timeout: 10_000 });
    });
    await page.close();
  }, 300_000);

  it("nbconvert --to html of an executed notebook shows the widgets' values as static HTML", async () => {
    const { env, notebookDir, onDispose } = setup();
    const dir = mkdtempSync(join(notebookDir, "nbconvert-"));
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: TSNB_KERNEL_NAME, display_name: "tsnb", language: "typescript" } },
      cells: [
        `import { IntSlider, Checkbox, Text, Dropdown, VBox } from "tsnb";
const s = new IntSlider({ description: "Speed", value: 42, min: 0, max: 50 });
s.value = 77;
new VBox({ children: [s, new Checkbox({ description: "On", value: true }), new Text({ value: "hello <world>" }), new Dropdown({ options: ["a", "b"], value: "b" })] })`,
        // Later cells change what earlier cells displayed: the saved outputs follow (update_display_data).
        `import { Progress, Label } from "tsnb";
const bar = new Progress({ description: "Work", value: 0, max: 10 });
const status = new Label({ value: "starting" });
display(bar);
display(status);
for (let i = 1; i <= 10; i++) { bar.value = i; await new Promise((r) => setTimeout(r, 60)); }
"looped"`,
        `s.value = 7;
status.value = "all <done>";
s.description = "Final speed";`,
        // A widget disposed before it changes keeps its last snapshot; the others are unaffected.
        `const gone = new Label({ value: "first" });
display(gone);
gone.dispose();
"disposed"`,
      ].map((source, i) => ({ cell_type: "code", id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null })),
    };
    writeFileSync(join(dir, "static.ipynb"), JSON.stringify(nb));
    const run = runProcess(PYTHON, ["-m", "nbconvert", "--to", "html", "--execute", "--ExecutePreprocessor.timeout=120", "static.ipynb"], { cwd: dir, env: env.vars, deadlineMs: 180_000 });
    onDispose(() => run.dispose());
    const result = await run.result;
    expect(result.code, result.stderr).toBe(0);
    const html = readFileSync(join(dir, "static.html"), "utf8");
    // The slider was displayed at 50 (77 clamped); a later cell set it to 7 and renamed it: the output shows that.
    expect(html).toMatch(/<label class="tsnb-w-label">Final speed<\/label><input type="range" min="0" max="50" step="1" value="7" disabled> <output class="tsnb-w-readout">7<\/output>/);
    expect(html).not.toContain(">Speed</label>");
    expect(html).toContain('<progress min="0" max="10" value="10">10</progress>');
    expect(html).toContain('<span class="tsnb-w-text">all &lt;done&gt;</span>');
    expect(html).not.toContain(">starting</span>");
    expect(html).toContain('<span class="tsnb-w-text">first</span>');
    // Each widget output is still one output (replaced in place, not appended).
    expect(html.match(/<input type="range"/g)).toHaveLength(1);
    expect(html.match(/<progress /g)).toHaveLength(1);
    expect(html).toContain('<input type="checkbox" checked disabled> On');
    expect(html).toContain('value="hello &lt;world&gt;"');
    expect(html).toContain("<option selected>b</option>");
  }, 240_000);

  it("notebooks/widgets.ipynb executes under nbconvert and every widget shows as static HTML", async () => {
    const { env, notebookDir, onDispose } = setup();
    const dir = mkdtempSync(join(notebookDir, "tour-"));
    copyFileSync(join(repoRoot, "notebooks", "widgets.ipynb"), join(dir, "tour.ipynb"));
    const run = runProcess(PYTHON, ["-m", "nbconvert", "--to", "html", "--execute", "--allow-errors", "--ExecutePreprocessor.timeout=120", "tour.ipynb"], { cwd: dir, env: env.vars, deadlineMs: 180_000 });
    onDispose(() => run.dispose());
    const result = await run.result;
    expect(result.code, result.stderr).toBe(0);
    const html = readFileSync(join(dir, "tour.html"), "utf8");
    for (const kind of ["Checkbox", "ToggleButton", "FloatSlider", "Textarea", "Dropdown", "NumberInput", "Progress", "Label widget", "<i>HTML</i> widget"]) expect(html).toContain(kind);
    expect(html).toContain("<option selected>green</option>");
    // The tour's second cell sets the first cell's slider to 42, clamped to 10: the first output shows that.
    expect(html).toMatch(/>Level<\/label><input type="range" min="0" max="10" step="1" value="10" disabled>/);
    expect(html).toContain('<progress min="0" max="100" value="60">');
    expect(html).toContain("no browser typed within 1 s");
    expect(html).toContain("hahaha");
    expect(html).toContain('<pre class="tsnb-w-out">captured: 1 + 1 = 2</pre>');
    expect(html).toContain('<img src="data:image/png;base64,iVBOR');
    expect(html).toContain('<input type="color" value="#1976d2" disabled>');
    expect(html).toMatch(/RangeError[\s\S]{0,400}is not one of the options/);
  }, 240_000);
});
