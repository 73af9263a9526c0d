import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startKernel, type RunningKernel } from "./helpers/kernel-client.js";

describe("help requests (`name?`) go to the pager", () => {
  let kernel: RunningKernel;
  beforeAll(async () => {
    kernel = await startKernel();
  });
  afterAll(async () => {
    await kernel?.kill();
  });

  it("answers `name?` with a page payload holding the signature, and `name??` with the source too", async () => {
    await kernel.client.execute("function area(width: number, height: number) { return width * height }");
    const brief = await kernel.client.execute("area?");
    expect(brief.reply.content.status).toBe("ok");
    const payload = brief.reply.content.payload as Array<{ source: string; data: Record<string, string> }>;
    expect(payload).toHaveLength(1);
    expect(payload[0]!.source).toBe("page");
    expect(payload[0]!.data["text/plain"]).toMatch(/area\(width, height\)/);
    expect(payload[0]!.data["text/plain"]).not.toMatch(/return width \* height/);
    // Help is not a result: nothing is shown in the cell.
    expect(brief.iopub.filter((m) => m.header.msg_type === "execute_result")).toEqual([]);

    const detailed = await kernel.client.execute("??area");
    const detailedPayload = detailed.reply.content.payload as Array<{ data: Record<string, string> }>;
    expect(detailedPayload[0]!.data["text/plain"]).toMatch(/return width \* height/);
  });

  it("says so in the cell when the name does not exist", async () => {
    const { reply, iopub } = await kernel.client.execute("noSuchThing?");
    expect(reply.content).toMatchObject({ status: "ok", payload: [] });
    const text = iopub.filter((m) => m.header.msg_type === "stream").map((m) => m.content.text).join("");
    expect(text).toBe("Object `noSuchThing` not found.\n");
  });

  it("leaves conditional expressions and optional chaining alone", async () => {
    const { reply, iopub } = await kernel.client.execute("const maybe: { x?: number } = {}; maybe?.x ?? 'none'");
    expect(reply.content).toMatchObject({ status: "ok", payload: [] });
    expect(iopub.find((m) => m.header.msg_type === "execute_result")?.content.data).toMatchObject({ "text/plain": "'none'" });
  });
});
