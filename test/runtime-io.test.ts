// Output of the real user program: live streams tagged with their cell, order across op kinds, display
// handles, clear_output, input over input_request/input_reply, and a 50 MB burst with bounded memory.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProgramToKernel } from "../protocol/program.js";
import { ProgramHarness, resultText } from "./helpers/program-harness.js";

type Op<K extends ProgramToKernel["op"]> = Extract<ProgramToKernel, { op: K }>;

describe("runtime: output and input", () => {
  let program: ProgramHarness;

  beforeAll(async () => {
    program = await ProgramHarness.start();
  });
  afterAll(() => program?.close());

  const replyInput = (request: Op<"input_request">, value: string) =>
    program.send({ op: "input_reply", id: request.id, status: "ok", value });

  it("streams each line while the cell is still running", async () => {
    const started = program.startExecute(
      "for (let i = 0; i < 3; i++) {\n  console.log(`line ${i}`)\n  await input(`continue ${i}`)\n}\n'finished'",
      { allowStdin: true },
    );
    for (let i = 0; i < 3; i++) {
      const line = await program.waitFor<Op<"stream">>((op) => op.op === "stream" && op.text === `line ${i}\n`, { from: started.from, what: `line ${i}` });
      expect(line.cell).toBe(started.id);
      const request = await program.waitFor<Op<"input_request">>((op) => op.op === "input_request" && op.prompt === `continue ${i}`, { from: started.from });
      // The cell is blocked on input: it cannot have completed, yet its line is already here.
      expect(program.received.slice(started.from).some((op) => op.op === "execute_done")).toBe(false);
      replyInput(request, "");
    }
    expect(resultText(await program.finish(started))).toBe("'finished'");
  });

  it("streams timer output live, before the cell completes", async () => {
    const started = program.startExecute("for (let i = 0; i < 3; i++) { console.log(`tick ${i}`); await new Promise((r) => setTimeout(r, 30)) }");
    await program.waitFor((op) => op.op === "stream" && op.text.includes("tick 0"), { from: started.from, what: "tick 0" });
    const doneIndex = () => program.received.findIndex((op, i) => i >= started.from && op.op === "execute_done");
    expect(doneIndex()).toBe(-1);
    const run = await program.finish(started);
    expect(run.stdout).toBe("tick 0\ntick 1\ntick 2\n");
  });

  it("tags output from callbacks that fire after the cell finished with that cell", async () => {
    const first = await program.execute("setTimeout(() => { console.log('late line'); console.error('late error') }, 20)\n'scheduled'");
    expect(resultText(first)).toBe("'scheduled'");
    const finishedAt = performance.now();
    // A second cell is running (blocked on input) when the first cell's timer fires.
    const second = program.startExecute("await input('wait')", { allowStdin: true });
    const late = await program.waitFor<Op<"stream">>((op) => op.op === "stream" && op.text.includes("late line"), { from: first.outputs.length, what: "late line" });
    const lateError = await program.waitFor<Op<"stream">>((op) => op.op === "stream" && op.text.includes("late error"), { what: "late error" });
    expect(late.cell).toBe(first.done.id);
    // Printed 20 ms after the cell; batching must not hold it back (an unref'd flush once cost ~1 s).
    expect(performance.now() - finishedAt).toBeLessThan(500);
    expect(lateError).toMatchObject({ cell: first.done.id, name: "stderr" });
    const request = await program.waitFor<Op<"input_request">>((op) => op.op === "input_request" && op.prompt === "wait", { from: second.from });
    replyInput(request, "ok");
    expect(resultText(await program.finish(second))).toBe("'ok'");
  });

  it("keeps order between prints and displays", async () => {
    const run = await program.execute("console.log('before')\ndisplay(123)\nprocess.stdout.write('after')\nconsole.error('err')");
    const kinds = run.outputs.map((op) => (op.op === "stream" ? `${op.name}:${op.text}` : op.op === "display" ? `display:${op.data["text/plain"]}` : op.op));
    expect(kinds).toEqual(["stdout:before\n", "display:123", "stdout:after", "stderr:err\n"]);
  });

  it("display variants, handle.update and clearOutput", async () => {
    const run = await program.execute(
      [
        "const h = display.html('<b>one</b>')",
        "h.update('<b>two</b>')",
        "display.markdown('# title')",
        "display.svg('<svg xmlns=\"http://www.w3.org/2000/svg\"/>')",
        "display.png(new Uint8Array([137, 80, 78, 71]))",
        "display.jpeg('/9j/base64')",
        "display.json({ a: [1, 2] })",
        "display.latex('$x^2$')",
        "display({ [Symbol.for('Jupyter.display')]: () => ({ 'text/html': '<i>rich</i>' }) })",
        "clearOutput({ wait: true })",
        "clearOutput()",
        "h.id",
      ].join("\n"),
    );
    const id = resultText(run);
    const displays = run.outputs.filter((op): op is Op<"display"> => op.op === "display");
    const update = run.outputs.find((op): op is Op<"update_display"> => op.op === "update_display");
    expect(displays[0]).toMatchObject({ data: { "text/html": "<b>one</b>" }, transient: { display_id: JSON.parse(id!.replace(/'/g, '"')) } });
    expect(update).toMatchObject({ data: { "text/html": "<b>two</b>" }, transient: { display_id: displays[0]!.transient.display_id } });
    expect(displays[1]!.data["text/markdown"]).toBe("# title");
    expect(displays[2]!.data["image/svg+xml"]).toContain("<svg");
    expect(displays[3]!.data["image/png"]).toBe(Buffer.from([137, 80, 78, 71]).toString("base64"));
    expect(displays[4]!.data["image/jpeg"]).toBe("/9j/base64");
    expect(displays[5]!.data["application/json"]).toEqual({ a: [1, 2] });
    expect(displays[6]!.data["text/latex"]).toBe("$x^2$");
    expect(displays[7]!.data["text/html"]).toBe("<i>rich</i>");
    // Each display gets its own id.
    expect(new Set(displays.map((d) => d.transient.display_id)).size).toBe(displays.length);
    const clears = run.outputs.filter((op): op is Op<"clear_output"> => op.op === "clear_output");
    expect(clears.map((c) => c.wait)).toEqual([true, false]);
  });

  it("shows a display call as the cell's last line once, without the handle as a result", async () => {
    const run = await program.execute("display.html('<p>once</p>');");
    expect(run.outputs.filter((op) => op.op === "display")).toHaveLength(1);
    expect(run.done).toMatchObject({ status: "ok", result: null });
  });

  it("rejects bad display input with a clear error", async () => {
    const run = await program.execute("display.png(42 as any)");
    expect(run.done).toMatchObject({ status: "error", ename: "DisplayError" });
  });

  it("reads input and passwords through input_request / input_reply", async () => {
    const started = program.startExecute("const who = await input('Name? ')\nconst secret = await input.password('Password: ');\n`${who}:${secret.length}`", { allowStdin: true });
    const first = await program.waitFor<Op<"input_request">>((op) => op.op === "input_request", { from: started.from });
    expect(first).toMatchObject({ prompt: "Name? ", password: false, cell: started.id });
    replyInput(first, "Ada");
    const second = await program.waitFor<Op<"input_request">>((op) => op.op === "input_request" && op.password, { from: started.from });
    expect(second.prompt).toBe("Password: ");
    replyInput(second, "hunter2");
    expect(resultText(await program.finish(started))).toBe("'Ada:7'");
  });

  it("fails input() clearly when the front-end does not allow stdin, or when the kernel answers with an error", async () => {
    const refused = await program.execute("await input('x')", { allowStdin: false });
    expect(refused.done).toMatchObject({ status: "error", ename: "InputError" });
    if (refused.done.status === "error") expect(refused.done.evalue).toContain("allow_stdin");
    const started = program.startExecute("await input('y')", { allowStdin: true });
    const request = await program.waitFor<Op<"input_request">>((op) => op.op === "input_request" && op.prompt === "y", { from: started.from });
    program.send({ op: "input_reply", id: request.id, status: "error", ename: "Interrupted", evalue: "no input" });
    const run = await program.finish(started);
    expect(run.done).toMatchObject({ status: "error", ename: "InputError" });
  });

  it("delivers a 50 MB stdout burst completely and in order with bounded memory", async () => {
    const run = await program.execute(
      "const chunk = 'x'.repeat(1017)\nfor (let i = 0; i < 51200; i++) process.stdout.write(String(i).padStart(6, '0') + chunk + '\\n')",
      { timeoutMs: 60_000 },
    );
    expect(run.done.status).toBe("ok");
    expect(run.stdout.length).toBe(51200 * 1024);
    // Spot-check order: line numbers ascend.
    for (const i of [0, 1, 25_000, 51_199]) expect(run.stdout.slice(i * 1024, i * 1024 + 6)).toBe(String(i).padStart(6, "0"));
    // Batched, not one frame per write.
    const frames = run.outputs.filter((op) => op.op === "stream").length;
    expect(frames).toBeLessThan(2000);
    const peakKb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${program.child.pid}/status`, "utf8"))?.[1]);
    expect(peakKb).toBeLessThan(250 * 1024);
  });
});
