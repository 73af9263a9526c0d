// The ZMTP codec on its own: greetings, frames and commands, fed in every chunking a socket could produce.
// The transport's tests (zmtp-transport.test.ts) and every kernel test then run it against real libzmq peers.

import { describe, expect, it } from "vitest";
import {
  encodeCommand,
  encodeError,
  encodeGreeting,
  encodeMessage,
  encodeReady,
  parseCommand,
  parseGreeting,
  pingReply,
  ZmtpDecoder,
  type DecodeEvent,
  type StreamError,
} from "../protocol/zmtp.js";
import { concatBytes } from "../protocol/bytes.js";

const text = new TextEncoder();

/** Feeds `bytes` in pieces of the given sizes (cycling), collecting every event and the first error. */
function feed(bytes: Uint8Array, sizes: readonly number[], options: { maxFrameBytes?: number } = {}) {
  const decoder = new ZmtpDecoder(options);
  const events: DecodeEvent[] = [];
  let error: StreamError | null = null;
  let at = 0;
  let i = 0;
  while (at < bytes.byteLength && error === null) {
    const n = sizes[i++ % sizes.length]!;
    const result = decoder.push(bytes.subarray(at, at + n));
    events.push(...result.events);
    error = result.error;
    at += n;
  }
  return { events, error };
}

function peerGreeting(overrides: { major?: number; mechanism?: string; first?: number } = {}): Uint8Array {
  const g = encodeGreeting();
  if (overrides.major !== undefined) g[10] = overrides.major;
  if (overrides.first !== undefined) g[0] = overrides.first;
  if (overrides.mechanism !== undefined) {
    g.fill(0, 12, 32);
    g.set(text.encode(overrides.mechanism), 12);
  }
  return g;
}

const frames = [text.encode("id"), new Uint8Array(0), new Uint8Array(255).fill(7), new Uint8Array(256).fill(8), new Uint8Array(70_000).fill(9)];
const stream = concatBytes([encodeGreeting(), encodeReady({ "Socket-Type": "DEALER", Identity: "abc" }), ...encodeMessage(frames), ...encodeMessage([text.encode("last")])]);

describe("ZmtpDecoder", () => {
  for (const sizes of [[1], [2, 7], [63, 1, 1000], [65_536], [stream.byteLength]]) {
    it(`reads greeting, READY and frames in chunks of ${sizes.join("/")} bytes`, () => {
      const { events, error } = feed(stream, sizes);
      expect(error).toBeNull();
      expect(events[0]).toEqual({ type: "greeting", greeting: { major: 3, minor: 0, mechanism: "NULL" } });
      const ready = events[1];
      expect(ready?.type === "command" && ready.command.type === "READY" ? Object.fromEntries(ready.command.properties) : null).toEqual({
        "socket-type": text.encode("DEALER"),
        identity: text.encode("abc"),
      });
      const got = events.slice(2).map((e) => (e.type === "frame" ? { more: e.more, body: Array.from(e.body) } : e));
      expect(got).toEqual([...frames, text.encode("last")].map((f, i) => ({ more: i < frames.length - 1, body: Array.from(f) })));
    });
  }

  it("does not keep a whole read chunk alive for a small frame inside it", () => {
    const chunk = concatBytes([encodeGreeting(), ...encodeMessage([text.encode("tiny")]), new Uint8Array(60_000)]);
    const { events } = new ZmtpDecoder().push(chunk);
    const frame = events.find((e) => e.type === "frame");
    expect(frame?.type === "frame" ? frame.body.buffer.byteLength : -1).toBe(4);
  });

  it("answers an HTTP request at its first byte instead of waiting for a 64-byte greeting", () => {
    const { events, error } = new ZmtpDecoder().push(text.encode("G"));
    expect(events).toEqual([]);
    expect(error).toEqual({ type: "greeting", error: { type: "not_zmtp" } });
  });

  it("refuses ZMTP 2 (zeromq 3.x) and the PLAIN and CURVE mechanisms", () => {
    expect(feed(peerGreeting({ major: 1 }), [64]).error).toEqual({ type: "greeting", error: { type: "old_version", major: 1 } });
    expect(feed(peerGreeting({ mechanism: "CURVE" }), [64]).error).toEqual({ type: "greeting", error: { type: "mechanism", mechanism: "CURVE" } });
    expect(parseGreeting(peerGreeting({ mechanism: "PLAIN" }))).toEqual({ ok: false, error: { type: "mechanism", mechanism: "PLAIN" } });
  });

  it("refuses a frame over the limit from its header, before allocating its body", () => {
    const header = Uint8Array.of(0x02, 0, 0, 0, 0, 0x40, 0, 0, 0); // a 1 GiB frame
    for (const sizes of [[1], [100]]) {
      const { error } = feed(concatBytes([encodeGreeting(), header]), sizes, { maxFrameBytes: 1024 });
      expect(error).toEqual({ type: "too_large", size: 0x40000000, limit: 1024 });
    }
  });

  it("refuses reserved flag bits and a command frame too short to name itself", () => {
    expect(feed(concatBytes([encodeGreeting(), Uint8Array.of(0x10, 0)]), [65]).error).toEqual({ type: "reserved_flags", flags: 0x10 });
    expect(feed(concatBytes([encodeGreeting(), Uint8Array.of(0x04, 2, 9, 1)]), [1]).error).toEqual({ type: "bad_command" });
  });

  it("lets a reader put a large frame's bytes straight into its body, then goes on with push()", () => {
    const body = Uint8Array.from({ length: 200_000 }, (_, i) => i & 0xff);
    const decoder = new ZmtpDecoder();
    const [header] = encodeMessage([new Uint8Array(200_000)]).slice(0, 1);
    const start = decoder.push(concatBytes([encodeGreeting(), header!.subarray(0, 9), body.subarray(0, 1000)]));
    expect(start.events.map((e) => e.type)).toEqual(["greeting"]);
    // Small rests are not worth a direct read; 199,000 bytes are.
    expect(decoder.inPlaceTarget(300_000)).toBeNull();
    const first = decoder.inPlaceTarget(64 * 1024)!;
    expect(first.byteLength).toBe(199_000);
    first.set(body.subarray(1000, 150_000));
    expect(decoder.pushedInPlace(149_000)).toEqual({ events: [], error: null });
    const rest = decoder.inPlaceTarget(1)!;
    rest.set(body.subarray(150_000));
    const done = decoder.pushedInPlace(rest.byteLength);
    expect(done.error).toBeNull();
    expect(done.events).toHaveLength(1);
    const frame = done.events[0]!;
    expect(frame.type === "frame" && frame.more === false && Buffer.from(frame.body).equals(Buffer.from(body))).toBe(true);
    expect(decoder.inPlaceTarget(1)).toBeNull();
    expect(decoder.push(concatBytes(encodeMessage([text.encode("next")]))).events).toEqual([{ type: "frame", more: false, body: text.encode("next") }]);
  });

  it("copies every frame out of a transient chunk (a reader's reused scratch buffer)", () => {
    const chunk = concatBytes([encodeGreeting(), ...encodeMessage([new Uint8Array(20_000).fill(3)])]);
    const frame = new ZmtpDecoder().push(chunk, { transient: true }).events.find((e) => e.type === "frame");
    chunk.fill(0);
    expect(frame?.type === "frame" && frame.body.every((b) => b === 3)).toBe(true);
  });

  it("stays failed: nothing after an error is read", () => {
    const decoder = new ZmtpDecoder();
    expect(decoder.push(text.encode("GET /")).error).not.toBeNull();
    expect(decoder.push(concatBytes([encodeGreeting(), ...encodeMessage([text.encode("x")])]))).toEqual({ events: [], error: null });
  });
});

describe("ZMTP commands", () => {
  it("PING is answered with a PONG carrying its context", () => {
    const ping = parseCommand(encodeCommand("PING", Uint8Array.of(0, 10, 1, 2, 3)).subarray(2));
    expect(ping).toEqual({ type: "PING", ttlDeciseconds: 10, context: Uint8Array.of(1, 2, 3) });
    if (ping?.type !== "PING") throw new Error("not a PING");
    expect(parseCommand(pingReply(ping).subarray(2))).toEqual({ type: "PONG", context: Uint8Array.of(1, 2, 3) });
  });

  it("ERROR carries its reason; SUBSCRIBE and CANCEL their topic (ZMTP 3.1)", () => {
    expect(parseCommand(encodeError("no thanks").subarray(2))).toEqual({ type: "ERROR", reason: "no thanks" });
    expect(parseCommand(encodeCommand("SUBSCRIBE", text.encode("kernel.")).subarray(2))).toEqual({ type: "SUBSCRIBE", topic: text.encode("kernel.") });
    expect(parseCommand(encodeCommand("CANCEL").subarray(2))).toEqual({ type: "CANCEL", topic: new Uint8Array(0) });
  });

  it("a READY whose property overruns the frame is malformed", () => {
    const ready = encodeReady({ "Socket-Type": "DEALER" });
    expect(parseCommand(ready.subarray(2, ready.byteLength - 1))).toBeNull();
  });

  it("large frames use the 8-byte length form, and bodies of 16 KiB or more are written without a copy", () => {
    const big = new Uint8Array(20_000);
    const chunks = encodeMessage([text.encode("a"), big]);
    expect(chunks).toHaveLength(2);
    expect(chunks[1]).toBe(big);
    expect(Array.from(chunks[0]!)).toEqual([0x01, 1, 97, 0x02, 0, 0, 0, 0, 0, 0, 0x4e, 0x20]);
  });
});
