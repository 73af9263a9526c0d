// The injection state machine's "cell_done" step: with no front-end connected when the cell that injected
// the shim ends, the script is blanked once, before that cell's idle (headless clients stop reading there).

import { describe, expect, it } from "vitest";
import { stepInjection, type InjectionState } from "../kernel/comms/shim-display.js";

const config = { retryMs: 10_000, probeWindowMs: 2_500 };

describe("blanking an unconnected shim when its cell ends", () => {
  it("blanks once under the finishing cell, and still accepts a late connection", () => {
    const injected = stepInjection({ state: "none" }, { type: "used", now: 0, displayId: "d1", cell: "cell-1" }, config);
    expect(injected.effects[0]).toEqual({ type: "inject", displayId: "d1", cell: "cell-1" });
    const done = stepInjection(injected.state, { type: "cell_done", cell: "cell-1" }, config);
    expect(done.effects).toEqual([{ type: "blank", displayId: "d1", cell: "cell-1" }]);
    // A second cell ending does not publish another update.
    expect(stepInjection(done.state, { type: "cell_done", cell: "cell-2" }, config).effects).toEqual([]);
    // A browser that ran the script before the blank arrived still connects.
    const connected = stepInjection(done.state, { type: "frontends", now: 50, count: 1, heartbeat: false }, config);
    expect(connected.state.state).toBe("connected");
  });

  it("does nothing when no shim was injected or one is connected", () => {
    const none: InjectionState = { state: "none" };
    expect(stepInjection(none, { type: "cell_done", cell: "cell-1" }, config)).toEqual({ state: none, effects: [] });
    const connected: InjectionState = { state: "connected", displayId: "d1", lastUse: null, probedCell: undefined };
    expect(stepInjection(connected, { type: "cell_done", cell: "cell-1" }, config).effects).toEqual([]);
  });
});
