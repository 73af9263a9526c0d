// The pipe framing between kernel and program: frames split across arbitrary chunk boundaries reassemble,
// limits are enforced before allocating, and garbage fails the stream once and for all.

import { describe, expect, it } from "vitest";
import { encodeFrame, FrameDecoder, describeFrameError, sliceParts } from "../protocol/framing.js";
import { concatBytes } from "../protocol/bytes.js";

describe("pipe framing", () => {
  it("round-trips frames with binary parts, fed one byte at a time", () => {
    const bytes = concatBytes([
      ...encodeFrame({ op: "stream", cell: "c1", name: "stdout", text: "héllo\n" }),
      ...encodeFrame({ op: "display", cell: null }, [new Uint8Array([1, 2]), new Uint8Array([]), new Uint8Array([3])]),
    ]);
    const decoder = new FrameDecoder();
    const frames = [];
    for (let i = 0; i < bytes.byteLength; i++) {
      const { frames: out, error } = decoder.push(bytes.subarray(i, i + 1));
      expect(error).toBeNull();
      frames.push(...out);
    }
    expect(frames).toHaveLength(2);
    expect(frames[0]!.header).toEqual({ v: 1, op: "stream", cell: "c1", name: "stdout", text: "héllo\n" });
    expect(frames[1]!.buffers.map((b) => Array.from(b))).toEqual([[1, 2], [], [3]]);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it("decodes many frames from one chunk, and keeps a partial one for later", () => {
    const many = concatBytes(Array.from({ length: 100 }, (_, i) => encodeFrame({ op: "stream", text: String(i) })).flat());
    const decoder = new FrameDecoder();
    const cut = many.byteLength - 3;
    const first = decoder.push(many.subarray(0, cut));
    expect(first.frames).toHaveLength(99);
    expect(decoder.bufferedBytes).toBeGreaterThan(0);
    const rest = decoder.push(many.subarray(cut));
    expect(rest.frames.map((f) => f.header.text)).toEqual(["99"]);
  });

  it("rejects a header length over the limit before buffering it", () => {
    const decoder = new FrameDecoder({ maxHeaderBytes: 16, maxBufferBytes: 1024 });
    const { error } = decoder.push(new Uint8Array([0, 0, 1, 0]));
    expect(error && describeFrameError(error)).toBe("frame header of 256 bytes exceeds the 16-byte limit");
  });

  it("rejects binary parts over the limit", () => {
    const decoder = new FrameDecoder({ maxHeaderBytes: 1024, maxBufferBytes: 4 });
    const { error } = decoder.push(concatBytes(encodeFrame({ op: "x" }, [new Uint8Array(5)])));
    expect(error?.type).toBe("buffers_too_large");
  });

  it("fails on garbage and stays failed (the stream cannot be resynchronised)", () => {
    const decoder = new FrameDecoder();
    const bad = decoder.push(new Uint8Array([0, 0, 0, 3, 0x7b, 0x21, 0x21]));
    expect(bad.error?.type).toBe("bad_json");
    const after = decoder.push(concatBytes(encodeFrame({ op: "fine" })));
    expect(after.frames).toEqual([]);
    expect(after.error?.type).toBe("bad_json");
  });

  it("rejects wrong versions, missing ops and bad buffer lists", () => {
    const enc = new TextEncoder();
    const frame = (json: string) => {
      const body = enc.encode(json);
      const prefix = new Uint8Array(4);
      new DataView(prefix.buffer).setUint32(0, body.byteLength);
      return concatBytes([prefix, body]);
    };
    expect(new FrameDecoder().push(frame('{"v":2,"op":"x"}')).error?.type).toBe("bad_header");
    expect(new FrameDecoder().push(frame('{"v":1}')).error?.type).toBe("bad_header");
    expect(new FrameDecoder().push(frame('{"v":1,"op":"x","buffers":[-1]}')).error?.type).toBe("bad_header");
    expect(new FrameDecoder().push(frame("[1]")).error?.type).toBe("bad_header");
  });
});

describe("sliceParts", () => {
  it("cuts a frame's parts into chunks: views inside one part, copies only across parts, every byte once", () => {
    const payload = new Uint8Array(1000).map((_, i) => i % 251);
    const parts = encodeFrame({ op: "x" }, [payload, new Uint8Array(0), payload.subarray(0, 10)]);
    const whole = concatBytes(parts);
    const pieces: Uint8Array[] = [];
    let at = { partIndex: 0, partOffset: 0 };
    for (let sent = 0; sent < whole.byteLength; ) {
      const n = Math.min(300, whole.byteLength - sent);
      const slice = sliceParts(parts, n, at);
      expect(slice.bytes.byteLength).toBe(n);
      pieces.push(slice.bytes);
      at = slice.at;
      sent += n;
    }
    expect(concatBytes(pieces)).toEqual(whole);
    // The chunks inside the 1000-byte payload share its memory; the ones spanning parts are their own.
    const shared = pieces.filter((p) => p.buffer === payload.buffer);
    expect(shared.length).toBeGreaterThan(0);
    expect(pieces.filter((p) => p.buffer !== payload.buffer).every((p) => p.byteOffset === 0 && p.byteLength === p.buffer.byteLength)).toBe(true);
  });
});
