// The liveness state machine of one open comm (one front-end: a tab, a reloaded page, a Node client).
// Pure: time and nonces come in with the events, and what must happen comes out as effects, so tests
// drive it without clocks. A comm is pinged only when a value must go out and the front-end was silent
// for a while (a busy page is not pestered), and is closed when the pong does not come in time: that is
// how reloaded or closed tabs are found, since the Jupyter server does not tell the kernel.

export interface HeartbeatConfig {
  /** Ping when a value must go out and nothing was heard for longer than this. */
  silenceMs: number;
  /** Close the comm when the pong has not arrived this long after the ping. */
  pongTimeoutMs: number;
}

export const DEFAULT_HEARTBEAT: HeartbeatConfig = { silenceMs: 1000, pongTimeoutMs: 500 };

export type HeartbeatState =
  | { state: "live"; lastHeard: number }
  | { state: "pinging"; lastHeard: number; nonce: number; deadline: number }
  | { state: "closed"; reason: string };

export type HeartbeatEvent =
  /** Any message arrived from this front-end. */
  | { type: "heard"; now: number }
  | { type: "pong"; now: number; nonce: number }
  /** Something must be sent to this front-end; `nonce` is used if a ping goes out. */
  | { type: "outgoing"; now: number; nonce: number }
  /** Check liveness now, however recently the front-end was heard (a page may have just been reloaded). */
  | { type: "probe"; now: number; nonce: number }
  /** Time passed (a timer fired). */
  | { type: "tick"; now: number }
  | { type: "close"; reason: string };

export type HeartbeatEffect =
  | { type: "send_ping"; nonce: number }
  /** Call back with a `tick` at `at` (the pong deadline). */
  | { type: "wake_at"; at: number }
  | { type: "closed"; reason: string };

export interface HeartbeatStep {
  state: HeartbeatState;
  effects: HeartbeatEffect[];
}

export function initialHeartbeat(now: number): HeartbeatState {
  return { state: "live", lastHeard: now };
}

export function stepHeartbeat(current: HeartbeatState, event: HeartbeatEvent, config: HeartbeatConfig): HeartbeatStep {
  const stay: HeartbeatStep = { state: current, effects: [] };
  switch (current.state) {
    case "closed":
      // Closed is final: a late pong or message from a comm we closed changes nothing.
      return stay;
    case "live":
      switch (event.type) {
        case "heard":
        case "pong":
          return { state: { state: "live", lastHeard: Math.max(current.lastHeard, event.now) }, effects: [] };
        case "outgoing":
        case "probe": {
          if (event.type === "outgoing" && event.now - current.lastHeard <= config.silenceMs) return stay;
          const deadline = event.now + config.pongTimeoutMs;
          return {
            state: { state: "pinging", lastHeard: current.lastHeard, nonce: event.nonce, deadline },
            effects: [
              { type: "send_ping", nonce: event.nonce },
              { type: "wake_at", at: deadline },
            ],
          };
        }
        case "tick":
          return stay;
        case "close":
          return closed(event.reason);
        default:
          return unreachable(event);
      }
    case "pinging":
      switch (event.type) {
        case "heard":
          // Any traffic proves the front-end is alive, but keep waiting for the pong's nonce only if
          // nothing else arrived: a message is as good as a pong.
          return { state: { state: "live", lastHeard: event.now }, effects: [] };
        case "pong":
          return { state: { state: "live", lastHeard: event.now }, effects: [] };
        case "outgoing":
        case "probe":
          return stay;
        case "tick":
          if (event.now < current.deadline) return { state: current, effects: [{ type: "wake_at", at: current.deadline }] };
          return closed(`no heartbeat reply within ${config.pongTimeoutMs} ms`);
        case "close":
          return closed(event.reason);
        default:
          return unreachable(event);
      }
    default:
      return unreachable(current);
  }
}

function closed(reason: string): HeartbeatStep {
  return { state: { state: "closed", reason }, effects: [{ type: "closed", reason }] };
}

function unreachable(value: never): never {
  throw new Error(`unhandled heartbeat case ${JSON.stringify(value)}`);
}
