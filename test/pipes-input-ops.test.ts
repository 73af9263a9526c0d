// A pipe client's input_request is validated at the edge (protocol/comms-ops.ts) before the runtime asks the user.

import { describe, expect, it } from "vitest";
import { MAX_PROMPT_LENGTH, parsePipeInputRequest } from "../protocol/comms-ops.js";

describe("parsePipeInputRequest", () => {
  it("accepts a request and fills in the defaults (no prompt, not a password)", () => {
    expect(parsePipeInputRequest({ op: "input_request", id: "q1", prompt: "Name? ", password: true }, 0)).toEqual({
      ok: true,
      message: { op: "input_request", id: "q1", prompt: "Name? ", password: true },
    });
    expect(parsePipeInputRequest({ op: "input_request", id: "q2" }, 0)).toEqual({
      ok: true,
      message: { op: "input_request", id: "q2", prompt: "", password: false },
    });
  });

  it("refuses a missing or empty id, a non-string or oversized prompt, a non-boolean password and binary parts, saying which", () => {
    const error = (header: Record<string, unknown>, buffers = 0) => {
      const parsed = parsePipeInputRequest({ op: "input_request", ...header }, buffers);
      return parsed.ok ? "accepted" : parsed.error;
    };
    expect(error({})).toMatch(/^"input_request" op: "id" must be a non-empty string/);
    expect(error({ id: "" })).toMatch(/"id" must be a non-empty string/);
    expect(error({ id: "q", prompt: 3 })).toMatch(/"prompt" must be a string/);
    expect(error({ id: "q", prompt: "x".repeat(MAX_PROMPT_LENGTH + 1) })).toMatch(/"prompt" must be a string of at most/);
    expect(error({ id: "q", password: "yes" })).toBe('"input_request" op: "password" must be true or false');
    expect(error({ id: "q" }, 1)).toBe('"input_request" op: carries 1 unexpected binary parts');
  });
});
