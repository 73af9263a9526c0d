// The wire codec with the kernel's HMAC signer: what jupyter_client sends must verify and round-trip, and
// anything tampered with, truncated or malformed must be refused before parsing.

import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DELIMITER, decodeFrames, describeDecodeError, encodeFrames, encodeWireFrames } from "../protocol/wire.js";
import { HmacSigner } from "../kernel/transport/signer.js";
import { isoDate } from "../protocol/jupyter.js";

const enc = new TextEncoder();
const signer = new HmacSigner("secret-key");
const header = { msg_id: "m1", session: "s", username: "u", date: "2024-01-01T00:00:00Z", msg_type: "execute_request", version: "5.3" };

function frames(overrides: { content?: string; signature?: string } = {}) {
  const parts = [JSON.stringify(header), "{}", "{}", overrides.content ?? JSON.stringify({ code: "1+1" })].map((p) => enc.encode(p));
  return [enc.encode("client-id"), enc.encode(DELIMITER), enc.encode(overrides.signature ?? signer.sign(parts)), ...parts];
}

describe("HmacSigner", () => {
  it("signs exactly like jupyter_client: hex HMAC-SHA256 over the four JSON frames", () => {
    const parts = ["a", "b", "c", "d"].map((p) => enc.encode(p));
    const expected = createHmac("sha256", "secret-key").update("abcd").digest("hex");
    expect(signer.sign(parts)).toBe(expected);
    expect(signer.verify(expected, parts)).toBe(true);
    expect(signer.verify(expected.replace(/.$/, (c) => (c === "0" ? "1" : "0")), parts)).toBe(false);
    expect(signer.verify("short", parts)).toBe(false);
    expect(signer.verify("", parts)).toBe(false);
  });

  it("uses empty signatures when the key is empty, and accepts only those", () => {
    const unsigned = new HmacSigner("");
    expect(unsigned.sign([enc.encode("x")])).toBe("");
    expect(unsigned.verify("", [enc.encode("x")])).toBe(true);
    expect(unsigned.verify("abc", [enc.encode("x")])).toBe(false);
  });
});

describe("decodeFrames / encodeFrames", () => {
  it("decodes a signed message with its identities and buffers", () => {
    const buffer = new Uint8Array([1, 2, 3]);
    const result = decodeFrames([...frames(), buffer], signer);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(new TextDecoder().decode(result.message.identities[0])).toBe("client-id");
    expect(result.message.header.msg_type).toBe("execute_request");
    expect(result.message.content).toEqual({ code: "1+1" });
    expect(Array.from(result.message.buffers[0]!)).toEqual([1, 2, 3]);
  });

  it("round-trips what the kernel encodes", () => {
    const encoded = encodeFrames({ identities: [enc.encode("id")], header, parent_header: {}, metadata: { a: 1 }, content: { text: "é\u0000" }, buffers: [] }, signer);
    const decoded = decodeFrames(encoded, signer);
    expect(decoded.ok && decoded.message.content).toEqual({ text: "é\u0000" });
    expect(decoded.ok && decoded.message.metadata).toEqual({ a: 1 });
  });

  it("signs string frames as the UTF-8 bytes a receiver verifies (astral characters and lone surrogates too)", () => {
    const content = { text: "é😀\ud800" };
    const wire = encodeWireFrames({ identities: [], header, parent_header: {}, metadata: {}, content, buffers: [] }, signer);
    expect(wire.slice(0, 6).every((f) => typeof f === "string")).toBe(true);
    const bytes = wire.map((f) => (typeof f === "string" ? enc.encode(f) : f));
    const decoded = decodeFrames(bytes, signer);
    expect(decoded.ok && decoded.message.content).toEqual(content);
  });

  it("refuses a bad signature before looking at the JSON", () => {
    const result = decodeFrames(frames({ signature: "0".repeat(64), content: "{broken" }), signer);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.type).toBe("bad_signature");
  });

  it("refuses tampered content", () => {
    const good = frames();
    good[6] = enc.encode(JSON.stringify({ code: "evil()" }));
    const result = decodeFrames(good, signer);
    expect(!result.ok && result.error.type).toBe("bad_signature");
  });

  it("reports truncated messages, missing delimiters and invalid JSON clearly", () => {
    const truncated = decodeFrames(frames().slice(0, 4), signer);
    expect(!truncated.ok && describeDecodeError(truncated.error)).toBe("truncated message: 2 frames after the delimiter, need at least 5");
    const noDelimiter = decodeFrames([enc.encode("x"), enc.encode("y")], signer);
    expect(!noDelimiter.ok && noDelimiter.error.type).toBe("no_delimiter");
    const badJson = decodeFrames(frames({ content: "{not json" }), signer);
    expect(!badJson.ok && describeDecodeError(badJson.error)).toMatch(/^invalid JSON in the content frame/);
    const notObject = decodeFrames(frames({ content: "[1]" }), signer);
    expect(!notObject.ok && describeDecodeError(notObject.error)).toBe("invalid JSON in the content frame: not a JSON object");
  });

  it("refuses a header without msg_type", () => {
    const parts = [JSON.stringify({ msg_id: "x" }), "{}", "{}", "{}"].map((p) => enc.encode(p));
    const result = decodeFrames([enc.encode(DELIMITER), enc.encode(signer.sign(parts)), ...parts], signer);
    expect(!result.ok && describeDecodeError(result.error)).toBe('invalid header: "msg_type" must be a non-empty string');
  });
});

describe("isoDate (header dates)", () => {
  it("matches Date.prototype.toISOString", () => {
    const samples = [
      0, 1, 999, 1000, -1, Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(1999, 11, 31, 23, 59, 59, 5),
      Date.UTC(2026, 0, 1), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(0, 0, 1) - 86_400_000 * 365 * 1900, Date.now(),
    ];
    // A spread of ordinary clock readings, every field width exercised.
    for (let ms = Date.UTC(1970, 0, 1); ms < Date.UTC(2100, 0, 1); ms += 86_400_000 * 37 + 3_723_456) samples.push(ms);
    for (const ms of samples) expect(isoDate(ms)).toBe(new Date(ms).toISOString());
  });

  it("falls back to toISOString outside years 0-9999", () => {
    expect(isoDate(Date.UTC(10000, 0, 1))).toBe("+010000-01-01T00:00:00.000Z");
    expect(isoDate(-62_198_755_200_000)).toBe(new Date(-62_198_755_200_000).toISOString());
    expect(() => isoDate(Number.NaN)).toThrow(RangeError);
  });
});
