// Fast unit tests of the widget model with an in-memory comms: the program validates and clamps what a
// browser sends, answers each input with an ack (what views use to suppress echoes), calls back once per
// real change and never for echoes or its own sets, and reports callback errors.

import { describe, expect, it } from "vitest";
import { clampToStep, inputAddress, parseWidgetInput, stateAddress, type WidgetStateMessage } from "../protocol/widgets.js";
import type { Comms } from "../runtime/tsnb/comms/comms.js";
import { SnapshotPublisher } from "../runtime/tsnb/widgets/snapshots.js";
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
    expect(up.value).toEqual([{ name: "a.bin", type: "x/y", size: 2, data: new Uint8Array([1, 2]) }]);
    expect(fake.last(up.id).state.value).toEqual(["a.bin"]);
    expect(names).toEqual([["a.bin"]]);
    await expect(fake.input(inputAddress(up.id), set([{ name: "b", type: "", data: "nope" }]))).rejects.toThrow(/Uint8Array data/);
    const two = [1, 2].map((i) => ({ name: `f${i}`, type: "", data: new Uint8Array() }));
    await expect(fake.input(inputAddress(up.id), set(two))).rejects.toThrow(/single-file/);
    expect(up.value).toHaveLength(1);
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
