// Fast unit tests of the widget model with an in-memory comms: the program validates and clamps what a
// browser sends, answers each input with an ack (what views use to suppress echoes), calls back once per
// real change and never for echoes or its own sets, and reports callback errors.

import { describe, expect, it } from "vitest";
import { clampToStep, inputAddress, parseWidgetInput, stateAddress, type WidgetStateMessage } from "../protocol/widgets.js";
import type { Comms } from "../runtime/tsnb/comms/comms.js";
import { SnapshotPublisher } from "../runtime/tsnb/widgets/snapshots.js";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { uploadMethod } from "../protocol/upload.js";
import { sendFiles, type UploadSource } from "../frontend-shim/widgets/upload.js";
import { Button, ColorPicker, Dropdown, FileUpload, Output, FloatSlider, HBox, Image, interact, IntRangeSlider, IntSlider, NumberInput, Progress, RadioButtons, Tabs, Text, WidgetDisposedError, WidgetInputError } from "../runtime/tsnb/widgets/widgets.js";

/** Records what the program sends; `input()` plays a browser sending on an input address. */
class FakeComms {
  sent: { address: string; value: unknown }[] = [];
  private readonly subs = new Map<string, Set<(v: unknown, a: string) => void | Promise<void>>>();

  send(address: string, value: unknown): void {
    this.sent.push({ address, value: structuredClone(value) });
  }

  subscribe(address: string, cb: (v: unknown, a: string) => void | Promise<void>) {
    let set = this.subs.get(address);
    if (!set) this.subs.set(address, (set = new Set()));
    set.add(cb);
    return { dispose: () => void set.delete(cb) };
  }

  /** Delivers a browser value like the bridge does; returns what the subscriber returned (its errors). */
  async input(address: string, value: unknown): Promise<void> {
    for (const cb of this.subs.get(address) ?? []) await cb(value, address);
  }

  /** RPC functions the program registered (FileUpload's chunk receiver); `call` plays a page calling one. */
  readonly handlers = new Map<string, (args: unknown, kwargs: { [key: string]: unknown }) => unknown>();
  register(name: string, fn: (args: unknown, kwargs: { [key: string]: unknown }) => unknown) {
    if (this.handlers.has(name)) throw new Error(`${name} is already registered`);
    this.handlers.set(name, fn);
    return { dispose: () => void (this.handlers.get(name) === fn && this.handlers.delete(name)) };
  }
  async call(name: string, args: unknown[]): Promise<unknown> {
    const fn = this.handlers.get(name);
    if (!fn) throw new Error(`no function "${name}" is registered`);
    return await fn(args, {});
  }

  private readonly frontendWatchers = new Set<(ids: readonly string[]) => void>();
  onFrontends(cb: (ids: readonly string[]) => void) {
    this.frontendWatchers.add(cb);
    return { dispose: () => void this.frontendWatchers.delete(cb) };
  }
  setFrontends(ids: string[]): void {
    for (const cb of [...this.frontendWatchers]) cb(ids);
  }

  subscribers(address: string): number {
    return this.subs.get(address)?.size ?? 0;
  }

  states(id: string): WidgetStateMessage[] {
    return this.sent.filter((s) => s.address === stateAddress(id)).map((s) => s.value as WidgetStateMessage);
  }

  last(id: string): WidgetStateMessage {
    const all = this.states(id);
    return all[all.length - 1]!;
  }

  asComms(): Comms {
    return this as unknown as Comms;
  }
}

function setup() {
  const fake = new FakeComms();
  return { fake, comms: fake.asComms() };
}

const set = (value: unknown, seq = 1, client = "view-a") => ({ type: "set", key: "value", value, client, seq });

describe("widget model", () => {
  it("publishes its full state when created", () => {
    const { fake, comms } = setup();
    const s = new IntSlider({ comms, description: "Level", value: 3, min: 0, max: 10 });
    expect(fake.last(s.id)).toEqual({
      type: "state",
      id: s.id,
      kind: "IntSlider",
      state: { value: 3, min: 0, max: 10, step: 1, description: "Level", disabled: false },
      ack: null,
    });
    expect(fake.subscribers(inputAddress(s.id))).toBe(1);
  });

  it("clamps and snaps a browser value, acks the input, and calls back once with the stored value", async () => {
    const { fake, comms } = setup();
    const s = new IntSlider({ comms, value: 5, min: 0, max: 10 });
    const changes: unknown[] = [];
    s.on("change", (e) => void changes.push([e.value, e.old]));
    await fake.input(inputAddress(s.id), set(150, 7));
    expect(s.value).toBe(10);
    expect(fake.last(s.id).state.value).toBe(10);
    expect(fake.last(s.id).ack).toEqual({ client: "view-a", seq: 7 });
    await fake.input(inputAddress(s.id), set(3.4, 8));
    expect(s.value).toBe(3);
    expect(changes).toEqual([
      [10, 5],
      [3, 10],
    ]);
  });

  it("does not call back for an input that changes nothing (an echo), but still acks it", async () => {
    const { fake, comms } = setup();
    const s = new IntSlider({ comms, value: 5 });
    let calls = 0;
    s.on("change", () => void calls++);
    await fake.input(inputAddress(s.id), set(5, 1));
    expect(calls).toBe(0);
    expect(fake.last(s.id).ack).toEqual({ client: "view-a", seq: 1 });
  });

  it("does not call back for the program's own sets, and clamps them", () => {
    const { fake, comms } = setup();
    const s = new FloatSlider({ comms, min: 0, max: 1, step: 0.1 });
    let calls = 0;
    s.on("change", () => void calls++);
    s.value = 0.1 + 0.2;
    expect(s.value).toBe(0.3);
    s.value = 7;
    expect(s.value).toBe(1);
    expect(calls).toBe(0);
    expect(fake.last(s.id)).toMatchObject({ state: { value: 1 }, ack: null });
    expect(() => (s.value = Number.NaN)).toThrow(TypeError);
    expect(() => ((s as { value: unknown }).value = "3")).toThrow(/finite number/);
  });

  it("rejects unusable browser input with a clear error, keeps the state and re-sends it to the view", async () => {
    const { fake, comms } = setup();
    const s = new IntSlider({ comms, value: 5 });
    await expect(fake.input(inputAddress(s.id), set("lots", 4))).rejects.toThrow(WidgetInputError);
    await expect(fake.input(inputAddress(s.id), { type: "nonsense", client: "x", seq: 1 })).rejects.toThrow(/unknown widget input type/);
    await expect(fake.input(inputAddress(s.id), { type: "set", key: "max", value: 1e9, client: "x", seq: 2 })).rejects.toThrow(/does not take "max"/);
    expect(s.value).toBe(5);
    expect(s.max).toBe(100);
    expect(fake.last(s.id)).toMatchObject({ state: { value: 5, max: 100 }, ack: { client: "x", seq: 2 } });
  });

  it("ignores input while disabled", async () => {
    const { fake, comms } = setup();
    const t = new Text({ comms, value: "a", disabled: true });
    let calls = 0;
    t.on("change", () => void calls++);
    await fake.input(inputAddress(t.id), set("b"));
    expect(t.value).toBe("a");
    expect(calls).toBe(0);
  });

  it("a click calls every click listener; errors (thrown or rejected) reach the comms to be shown", async () => {
    const { fake, comms } = setup();
    const b = new Button({ comms, description: "Go" });
    const order: string[] = [];
    b.on("click", () => void order.push("first"));
    b.on("click", () => {
      order.push("throws");
      throw new Error("boom");
    });
    b.on("click", async () => void order.push("async"));
    await expect(fake.input(inputAddress(b.id), { type: "click", client: "v", seq: 1 })).rejects.toThrow("boom");
    expect(order).toEqual(["first", "throws", "async"]);
    const sub = b.on("click", () => Promise.reject(new Error("later")));
    await expect(fake.input(inputAddress(b.id), { type: "click", client: "v", seq: 2 })).rejects.toThrow(/2 Button callbacks failed/);
    sub.dispose();
    sub.dispose();
  });

  it("changes() yields each browser change in order and ends on dispose; the widget's dispose rejects a pending next()", async () => {
    const { fake, comms } = setup();
    const t = new Text({ comms });
    const it1 = t.changes<string>();
    await fake.input(inputAddress(t.id), set("x", 1));
    await fake.input(inputAddress(t.id), set("xy", 2));
    expect(await it1.next()).toEqual({ value: "x", done: false });
    expect(await it1.next()).toEqual({ value: "xy", done: false });
    it1.dispose();
    expect(await it1.next()).toEqual({ value: undefined, done: true });
    const it2 = t.changes<string>();
    const pending = it2.next();
    t.dispose();
    t.dispose();
    await expect(pending).rejects.toThrow(WidgetDisposedError);
    expect(fake.subscribers(inputAddress(t.id))).toBe(0);
    expect(() => (t.value = "z")).toThrow(WidgetDisposedError);
  });

  it("validates options and program values with clear errors", () => {
    const { comms } = setup();
    expect(() => new IntSlider({ comms, min: 5, max: 1 })).toThrow(/max \(1\) is below min \(5\)/);
    expect(() => new IntSlider({ comms, step: 0.5 })).toThrow(/integers/);
    expect(() => new Dropdown({ comms, options: [1, 2] as never })).toThrow(/array of strings/);
    const d = new Dropdown({ comms, options: ["a", "b"] });
    expect(d.value).toBe("a");
    expect(() => (d.value = "c")).toThrow(/not one of the options/);
    expect(() => new HBox({ comms, children: [{}] as never })).toThrow(/array of widgets/);
  });

  it("Dropdown, NumberInput and Progress take only valid browser values", async () => {
    const { fake, comms } = setup();
    const d = new Dropdown({ comms, options: ["a", "b"] });
    await expect(fake.input(inputAddress(d.id), set("zzz"))).rejects.toThrow(WidgetInputError);
    await fake.input(inputAddress(d.id), set("b", 2));
    expect(d.value).toBe("b");
    const n = new NumberInput({ comms, integer: true, min: 0, max: 9 });
    await fake.input(inputAddress(n.id), set(12.7));
    expect(n.value).toBe(9);
    const p = new Progress({ comms, value: 30 });
    await expect(fake.input(inputAddress(p.id), set(50))).rejects.toThrow(/read-only/);
    expect(p.value).toBe(30);
  });

  it("renders static HTML with the current values, escaped, and a bootstrap script", () => {
    const { comms } = setup();
    const s = new IntSlider({ comms, description: "<b>", value: 4 });
    const t = new Text({ comms, value: '"quoted" & <tag>' });
    const box = new HBox({ comms, children: [s, t] });
    const bundle = box[Symbol.for("Jupyter.display") as keyof HBox] as unknown as () => { [mime: string]: string };
    const html = bundle.call(box)["text/html"]!;
    expect(html).toContain(`data-tsnb-widget="${box.id}"`);
    expect(html).toContain(`data-tsnb-widget="${s.id}"`);
    expect(html).toContain("&lt;b&gt;");
    expect(html).toContain('value="&quot;quoted&quot; &amp; &lt;tag&gt;"');
    expect(html).toContain("<script>");
    expect(String(s)).toBe('IntSlider(value=4, description="<b>")');
  });
});

describe("more widgets", () => {
  it("IntRangeSlider keeps [low, high] ordered, clamped and integral", async () => {
    const { fake, comms } = setup();
    const r = new IntRangeSlider({ comms, min: 0, max: 10, value: [8, 2] });
    expect(r.value).toEqual([2, 8]);
    await fake.input(inputAddress(r.id), set([12, -3.6]));
    expect(r.value).toEqual([0, 10]);
    await expect(fake.input(inputAddress(r.id), set([1]))).rejects.toThrow(WidgetInputError);
  });

  it("ColorPicker takes only #rrggbb, stored lower-case", async () => {
    const { fake, comms } = setup();
    const c = new ColorPicker({ comms, value: "#FF8800" });
    expect(c.value).toBe("#ff8800");
    await expect(fake.input(inputAddress(c.id), set("red"))).rejects.toThrow(/#rrggbb/);
    await fake.input(inputAddress(c.id), set("#00ff00"));
    expect(c.value).toBe("#00ff00");
  });

  it("RadioButtons options can be replaced; the value follows", () => {
    const { comms } = setup();
    const r = new RadioButtons({ comms, options: ["x", "y"], value: "y" });
    r.options = ["y", "z"];
    expect(r.value).toBe("y");
    r.options = ["p"];
    expect(r.value).toBe("p");
  });

  it("Tabs: the page picks a page within range; the program sets selected", async () => {
    const { fake, comms } = setup();
    const t = new Tabs({ comms, children: [new Text({ comms }), new Text({ comms })], titles: ["one", "two"] });
    await fake.input(inputAddress(t.id), { type: "set", key: "selected", value: 1, client: "v", seq: 1 });
    expect(t.selected).toBe(1);
    await expect(fake.input(inputAddress(t.id), { type: "set", key: "selected", value: 5, client: "v", seq: 2 })).rejects.toThrow(/no page 5/);
    expect(() => (t.selected = 2)).toThrow(RangeError);
    t.selected = 0;
    expect(fake.last(t.id).state.selected).toBe(0);
  });

  it("Image sends its bytes as a data URL", () => {
    const { fake, comms } = setup();
    const img = new Image({ comms, value: new Uint8Array([1, 2, 3]), format: "png" });
    expect(fake.last(img.id).state.src).toBe("data:image/png;base64,AQID");
    img.value = new Uint8Array([255]);
    expect(fake.last(img.id).state.src).toBe("data:image/png;base64,/w==");
    expect(() => new Image({ comms, format: "bmp" })).toThrow(/format/);
  });

  it("interact runs the function at once and after each browser change, never overlapping", async () => {
    const { fake, comms } = setup();
    const a = new IntSlider({ comms, value: 2 });
    const b = new Text({ comms, value: "x" });
    const calls: string[] = [];
    let release: () => void = () => undefined;
    const ui = interact(
      async ({ a, b }) => {
        calls.push(`${b}${a}`);
        if (calls.length === 2) await new Promise<void>((r) => (release = r));
        return `${b}=${a}`;
      },
      { a, b },
      { comms },
    );
    await ui.idle;
    const out = (ui.widget.children[2] as unknown as { value: string });
    expect(out.value).toContain("x=2");
    const first = fake.input(inputAddress(a.id), set(3));
    // Two more changes while the second run is blocked coalesce into one more run with the latest values.
    const second = fake.input(inputAddress(a.id), set(4, 2));
    const third = fake.input(inputAddress(b.id), set("y", 3));
    release();
    await Promise.all([first, second, third]);
    await ui.idle;
    expect(calls).toEqual(["x2", "x3", "y4"]);
    expect(out.value).toContain("y=4");
    ui.dispose();
  });
});

describe("FileUpload", () => {
  it("keeps the bytes in the program and only the names in the shared state", async () => {
    const { fake, comms } = setup();
    const up = new FileUpload({ comms, multiple: false });
    const names: unknown[] = [];
    up.on("change", (e) => void names.push(e.value));
    await fake.input(inputAddress(up.id), set([{ name: "a.bin", type: "x/y", data: new Uint8Array([1, 2]) }]));
    expect(up.value).toEqual([{ name: "a.bin", type: "x/y", size: 2, lastModified: 0, data: new Uint8Array([1, 2]) }]);
    expect(fake.last(up.id).state.value).toEqual(["a.bin"]);
    expect(names).toEqual([["a.bin"]]);
    await expect(fake.input(inputAddress(up.id), set([{ name: "b", type: "", data: "nope" }]))).rejects.toThrow(/Uint8Array data/);
    const two = [1, 2].map((i) => ({ name: `f${i}`, type: "", data: new Uint8Array() }));
    await expect(fake.input(inputAddress(up.id), set(two))).rejects.toThrow(/single-file/);
    expect(up.value).toHaveLength(1);
  });
});

/** A picked file for the page-side sender, backed by bytes; `failAt` makes reading at that offset fail. */
function source(name: string, bytes: Uint8Array, failAt = -1): UploadSource {
  return {
    name,
    type: "application/octet-stream",
    size: bytes.byteLength,
    lastModified: 1234,
    slice: (a, b) => ({
      arrayBuffer: () => (a >= failAt && failAt >= 0 ? Promise.reject(new DOMException("The file could not be read", "NotReadableError")) : Promise.resolve(bytes.slice(a, b).buffer)),
    }),
  };
}

function pattern(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
}

/** Resolves with the widget's next event of `name` (a deadline, not a sleep, bounds the wait). */
function nextEvent<E>(up: FileUpload<"memory" | "file">, name: "change" | "error", ms = 5000): Promise<E> {
  return new Promise<E>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${name} event within ${ms} ms`)), ms);
    const d = up.on(name as "error", (e) => {
      clearTimeout(t);
      d.dispose();
      resolve(e as E);
    });
  });
}

describe("FileUpload in chunks", () => {
  const send = (fake: FakeComms, up: FileUpload<"memory" | "file">, files: UploadSource[], more: Partial<Parameters<typeof sendFiles>[0]> = {}) =>
    sendFiles({ files, method: uploadMethod(up.id), call: (m, op) => fake.call(m, [op]), upload: `u-${Math.random()}`, frontend: "page-1", chunkBytes: 1000, window: 3, ...more });

  it("assembles Uint8Arrays from the announced sizes, with progress events, then one change event", async () => {
    const { fake, comms } = setup();
    const up = new FileUpload({ comms, multiple: true });
    expect(fake.last(up.id).state).toMatchObject({ chunkBytes: 2 * 1024 * 1024, window: 4 });
    const programProgress: number[] = [];
    up.on("progress", (p) => void programProgress.push(p.uploadLoaded));
    const changed = nextEvent<{ value: unknown }>(up, "change");
    const pageProgress: number[] = [];
    const a = pattern(2500, 1);
    const b = pattern(0, 2);
    const c = pattern(1000, 3);
    await send(fake, up, [source("a.bin", a), source("empty", b), source("c.bin", c)], { onProgress: (p) => void pageProgress.push(p.uploadLoaded) });
    expect((await changed).value).toEqual(["a.bin", "empty", "c.bin"]);
    expect(up.value.map((f) => [f.name, f.size, f.lastModified])).toEqual([["a.bin", 2500, 1234], ["empty", 0, 1234], ["c.bin", 1000, 1234]]);
    expect(up.value[0]!.data).toEqual(a);
    expect(up.value[2]!.data).toEqual(c);
    expect(programProgress).toEqual([1000, 2000, 2500, 3500]);
    expect(pageProgress).toEqual([1000, 2000, 2500, 3500]);
    expect(fake.last(up.id).state.value).toEqual(["a.bin", "empty", "c.bin"]);
    expect(up.uploading).toBe(0);
  });

  it('writes to a private temporary file with storage: "file"; a newer upload and dispose remove the files', async () => {
    const { fake, comms } = setup();
    const up = new FileUpload({ comms, storage: "file" });
    const bytes = pattern(4321, 7);
    const first = nextEvent(up, "change");
    await send(fake, up, [source("../../etc/evil name.bin", bytes)]);
    await first;
    const file = up.value[0]!;
    expect(file).not.toHaveProperty("data");
    expect(readFileSync(file.path)).toEqual(Buffer.from(bytes));
    expect(file.path.startsWith(join(tmpdir(), "tsnb-upload-"))).toBe(true);
    expect(basename(file.path)).toBe("0-evil name.bin");
    expect(statSync(dirname(dirname(file.path))).mode & 0o777).toBe(0o700);
    const second = nextEvent(up, "change");
    await send(fake, up, [source("next.bin", pattern(10, 1))]);
    await second;
    expect(existsSync(file.path)).toBe(false);
    const next = up.value[0]!.path;
    expect(existsSync(next)).toBe(true);
    up.dispose();
    expect(existsSync(next)).toBe(false);
    expect(existsSync(dirname(dirname(next)))).toBe(false);
    expect(fake.handlers.size).toBe(0);
  });

  it("a file that cannot be read fails the upload in the page and the program, and leaves no temporary file", async () => {
    const { fake, comms } = setup();
    const up = new FileUpload({ comms, storage: "file" });
    const failed = nextEvent<Error>(up, "error");
    await expect(send(fake, up, [source("big.bin", pattern(5000, 1), 3000)])).rejects.toThrow(/"big\.bin" could not be read at byte 3000 .*NotReadableError/);
    const error = await failed;
    expect(error.name).toBe("UploadError");
    expect(error.message).toMatch(/cancelled in the page: .*could not be read/);
    expect(up.value).toEqual([]);
    const dir = (up as unknown as { dir: { path: string | null } }).dir.path!;
    expect(readdirSync(dir)).toEqual([]);
    up.dispose();
  });

  it("the sending page disconnecting, or silence for too long, fails the upload; late chunks get the reason", async () => {
    const { fake, comms } = setup();
    const up = new FileUpload({ comms, storage: "file" });
    const quiet = new FileUpload({ comms, storage: "file", stallTimeoutMs: 100 });
    const info = { name: "x.bin", type: "", size: 10, lastModified: 0 };
    const method = uploadMethod(up.id);
    await fake.call(method, [{ op: "start", upload: "u1", frontend: "page-1", files: [info] }]);
    await fake.call(method, [{ op: "chunk", upload: "u1", file: 0, offset: 0, data: new Uint8Array(4) }]);
    const gone = nextEvent<Error>(up, "error");
    fake.setFrontends(["page-2"]);
    expect((await gone).message).toMatch(/page sending the upload disconnected/);
    await expect(fake.call(method, [{ op: "chunk", upload: "u1", file: 0, offset: 4, data: new Uint8Array(4) }])).rejects.toThrow(/the upload failed: the page sending the upload disconnected/);
    const stalled = nextEvent<Error>(quiet, "error");
    await fake.call(uploadMethod(quiet.id), [{ op: "start", upload: "u2", frontend: "page-2", files: [info] }]);
    expect((await stalled).message).toMatch(/nothing arrived from the page for 0.1 s/);
    for (const w of [up, quiet]) {
      expect(w.uploading).toBe(0);
      expect(readdirSync((w as unknown as { dir: { path: string | null } }).dir.path!)).toEqual([]);
      w.dispose();
    }
  });

  it("dispose mid-upload removes the partial file and refuses later chunks", async () => {
    const { fake, comms } = setup();
    const up = new FileUpload({ comms, storage: "file" });
    const method = uploadMethod(up.id);
    await fake.call(method, [{ op: "start", upload: "u1", frontend: null, files: [{ name: "x.bin", type: "", size: 10, lastModified: 0 }] }]);
    await fake.call(method, [{ op: "chunk", upload: "u1", file: 0, offset: 0, data: new Uint8Array(4) }]);
    const dir = (up as unknown as { dir: { path: string | null } }).dir.path!;
    expect(readdirSync(join(dir, "u1"))).toEqual(["0-x.bin"]);
    const handler = fake.handlers.get(method)!;
    up.dispose();
    expect(existsSync(dir)).toBe(false);
    await expect(Promise.resolve().then(() => handler([{ op: "chunk", upload: "u1", file: 0, offset: 4, data: new Uint8Array(4) }], {}))).rejects.toThrow(/disposed/);
  });

  it("refuses chunks out of order or beyond the announced size, and what a single-file widget cannot take", async () => {
    const { fake, comms } = setup();
    const up = new FileUpload({ comms });
    const errors: string[] = [];
    up.on("error", (e) => void errors.push(e.message));
    const method = uploadMethod(up.id);
    const info = { name: "x.bin", type: "", size: 10, lastModified: 0 };
    await fake.call(method, [{ op: "start", upload: "u1", frontend: null, files: [info] }]);
    await expect(fake.call(method, [{ op: "chunk", upload: "u1", file: 0, offset: 4, data: new Uint8Array(4) }])).rejects.toThrow(/out of order: expected file 0 at offset 0, got file 0 at offset 4/);
    await fake.call(method, [{ op: "start", upload: "u2", frontend: null, files: [info] }]);
    await expect(fake.call(method, [{ op: "chunk", upload: "u2", file: 0, offset: 0, data: new Uint8Array(11) }])).rejects.toThrow(/does not fit "x.bin" \(10 bytes announced\)/);
    await expect(fake.call(method, [{ op: "start", upload: "u3", frontend: null, files: [info, info] }])).rejects.toThrow(/several files sent to a single-file upload/);
    await expect(fake.call(method, [{ op: "start", upload: "u4", frontend: null, files: [] }])).rejects.toThrow(/files must list 1 to/);
    await fake.call(method, [{ op: "start", upload: "u5", frontend: null, files: [info] }]);
    await expect(fake.call(method, [{ op: "finish", upload: "u5" }])).rejects.toThrow(/finished the upload early: file 0 \("x.bin"\) has 0 of 10 bytes/);
    expect(errors).toHaveLength(4);
    expect(up.value).toEqual([]);
    expect(() => new FileUpload({ comms, chunkBytes: 64 * 1024 * 1024 })).toThrow(/chunkBytes must be an integer from 1 to/);
    expect(() => new FileUpload({ comms, storage: "cloud" as "file" })).toThrow(/storage must be "memory" or "file"/);
    up.dispose();
  });
});

describe("Output", () => {
  it("captures what a synchronous function logs, escaped, and restores the console", () => {
    const { fake, comms } = setup();
    const out = new Output({ comms });
    const before = globalThis.console;
    const result = out.capture(() => {
      console.log("hello <b>");
      console.error("oops");
      return 42;
    });
    expect(result).toBe(42);
    expect(globalThis.console).toBe(before);
    expect(fake.last(out.id).state.value).toBe('<pre class="tsnb-w-out">hello &lt;b&gt;\noops</pre>');
    expect(() =>
      out.capture(() => {
        console.log("before the throw");
        throw new Error("inside");
      }),
    ).toThrow("inside");
    expect(globalThis.console).toBe(before);
    expect(out.html).toContain("before the throw");
    out.clear();
    expect(out.html).toBe("");
  });
});

describe("widget protocol helpers", () => {
  it("clampToStep clamps, snaps from min and removes float noise", () => {
    expect(clampToStep(0.30000000000000004, { min: 0, max: 1, step: 0.1 })).toBe(0.3);
    expect(clampToStep(7.4, { min: 1, max: 10, step: 2 })).toBe(7);
    expect(clampToStep(10, { min: 1, max: 10, step: 2 })).toBe(9);
    expect(clampToStep(-5, { min: 0, max: 10, step: 1 })).toBe(0);
  });

  it("parseWidgetInput says what is wrong", () => {
    expect(parseWidgetInput(null)).toEqual({ ok: false, error: "a widget input must be an object" });
    expect(parseWidgetInput({ type: "click", seq: 1 })).toMatchObject({ ok: false, error: /client/ });
    expect(parseWidgetInput({ type: "click", client: "c", seq: 1.5 })).toMatchObject({ ok: false, error: /seq/ });
    expect(parseWidgetInput({ type: "click", client: "c", seq: 1 })).toEqual({ ok: true, value: { type: "click", client: "c", seq: 1 } });
  });
});

describe("saved-output snapshots (SnapshotPublisher)", () => {
  /** A display handle that records its updates; a manual timer. */
  function harness() {
    const updates: { id: string; html: string }[] = [];
    const armed: { fn: () => void; active: boolean }[] = [];
    const publisher = new SnapshotPublisher({
      throttleMs: 100,
      setTimer: (fn) => {
        const t = { fn, active: true };
        armed.push(t);
        return { dispose: () => void (t.active = false) };
      },
    });
    const timers = { active: () => armed.filter((t) => t.active), fire: () => armed.filter((t) => t.active).forEach((t) => ((t.active = false), t.fn())) };
    const handle = (id: string) => ({
      id,
      update: (v: unknown) => {
        const bundle = (v as { [k: symbol]: () => { [mime: string]: string } })[Symbol.for("Jupyter.display")]!();
        updates.push({ id, html: bundle["text/html"]! });
      },
    });
    return { publisher, updates, timers, handle };
  }

  it("replaces a shown output with the current state once per burst of changes, box children included, never a live one", () => {
    const { fake, comms } = setup();
    const live = new Map<string, number>();
    (fake as unknown as { listeners(a: string): number }).listeners = (a) => live.get(a) ?? 0;
    const { publisher, updates, timers, handle } = harness();
    const s = new IntSlider({ comms, value: 1, max: 10 });
    const box = new HBox({ comms, children: [s] });
    publisher.displayed(s, handle("d-slider"), s.displayBundle());
    publisher.displayed(box, handle("d-box"), box.displayBundle());
    publisher.flush();
    expect(updates).toEqual([]);

    s.value = 4;
    publisher.changed();
    s.value = 5;
    publisher.changed();
    expect(timers.active()).toHaveLength(1);
    timers.fire();
    // One refresh per output for the whole burst, showing the last value; the box shows its child's too.
    expect(updates.map((u) => u.id)).toEqual(["d-slider", "d-box"]);
    expect(updates.every((u) => u.html.includes('value="5"'))).toBe(true);

    // Nothing changed: nothing is sent again.
    publisher.changed();
    publisher.flush();
    expect(updates).toHaveLength(2);

    // A page shows the box live: only the slider's own (not live) output is replaced.
    live.set(stateAddress(box.id), 1);
    s.value = 9;
    publisher.changed();
    publisher.flush();
    expect(updates.slice(2).map((u) => u.id)).toEqual(["d-slider"]);
    expect(timers.active()).toHaveLength(0);

    // A disposed widget's outputs are forgotten.
    publisher.forget(s);
    live.clear();
    box.description = "renamed";
    publisher.changed();
    publisher.flush();
    expect(updates.slice(3).map((u) => u.id)).toEqual(["d-box"]);
    publisher.dispose();
    publisher.changed();
    expect(timers.active()).toHaveLength(0);
  });
});
