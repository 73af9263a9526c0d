// What the user program costs while it runs cells: esbuild's service process (~11 MB RSS) is started only by
// a cell that needs TypeScript stripped, never by plain JavaScript (including `<` comparisons in loops).
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProgramHarness, resultText } from "./helpers/program-harness.js";

/** Commands of the direct children of a process, from /proc (Linux). */
function childCommands(pid: number): string[] {
  const children: string[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const ids = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
    for (const id of ids === "" ? [] : ids.split(" ")) {
      children.push(readFileSync(`/proc/${id}/cmdline`, "utf8").split("\0").join(" ").trim());
    }
  }
  return children;
}

describe("runtime: resources", () => {
  let program: ProgramHarness;

  beforeAll(async () => {
    program = await ProgramHarness.start();
  });
  afterAll(() => program?.close());

  it("runs plain JavaScript without starting esbuild, and starts it for the first TypeScript cell", async () => {
    const pid = program.child.pid!;
    expect(resultText(await program.execute("1 + 1"))).toBe("2");
    const loop = await program.execute('let seen = 0\nfor (let i = 0; i < 100; i++) seen++\nconsole.log("done", seen)');
    expect(loop.done.status).toBe("ok");
    expect(loop.stdout).toBe("done 100\n");
    // Each cell finished, so a warm-up scheduled on idle would have had its chance too.
    expect(resultText(await program.execute("seen >= 100"))).toBe("true");
    expect(childCommands(pid).filter((c) => c.includes("esbuild"))).toEqual([]);

    expect(resultText(await program.execute("const typed: number = seen * 2\ntyped"))).toBe("200");
    expect(childCommands(pid).filter((c) => c.includes("esbuild"))).toHaveLength(1);
  });
});
