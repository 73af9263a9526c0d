// The Jupyter test helpers' own failure paths: a server that cannot start must fail fast and say why,
// instead of making every test that uses it time out.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpFetch, makeJupyterEnv, startNotebookServer, type JupyterEnv } from "./helpers/jupyter.js";
import { createServer, type Server } from "node:net";

describe("test helpers: Jupyter server", () => {
  let env: JupyterEnv | undefined;
  let silent: Server | undefined;

  beforeAll(async () => {
    env = await makeJupyterEnv({ tsnbKernelName: false });
  });

  afterAll(async () => {
    silent?.close();
    await env?.dispose();
  });

  it("rejects with the server's own output when jupyter exits during start-up", async () => {
    if (env === undefined) throw new Error("beforeAll failed");
    const started = Date.now();
    const attempt = startNotebookServer({ env, notebookDir: "/nonexistent/tsnb-notebooks" });
    await expect(attempt).rejects.toThrow(/exited before it was ready[\s\S]*server output[\s\S]*\/nonexistent\/tsnb-notebooks/);
    // Well before the 60 s readiness deadline: the exit itself is the signal.
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 60_000);

  it("httpFetch gives up at its deadline on a server that never answers", async () => {
    // A TCP listener that accepts and never responds.
    silent = createServer(() => undefined);
    await new Promise<void>((res) => silent?.listen(0, "127.0.0.1", res));
    const addr = silent.address();
    if (addr === null || typeof addr !== "object") throw new Error("no address");
    await expect(httpFetch(`http://127.0.0.1:${addr.port}/api`, { deadlineMs: 300 })).rejects.toThrow(/no response within 300 ms/);
  });
});
