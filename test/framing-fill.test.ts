// Large binary parts arriving in many small chunks (what a pipe or a chunked browser upload delivers) are
// filled into one buffer of their final size as they arrive, so the decoder never holds a part twice.

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { encodeFrame, FrameDecoder } from "../protocol/framing.js";
import { concatBytes } from "../protocol/bytes.js";

function pattern(n: number, seed: number): Uint8Array {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * 31 + seed) & 0xff;
  return a;
}

describe("FrameDecoder with large parts in small chunks", () => {
  it("delivers each part intact, in its own exact-size buffer, with small parts and a following frame", () => {
    const big = pattern(3 * 1024 * 1024 + 5, 1);
    const small = pattern(100, 2);
    const big2 = pattern(2 * 1024 * 1024, 3);
    const firstFrame = encodeFrame({ op: "comm_send", n: 1 }, [small, big, big2]);
    const headerBytes = firstFrame[0]!.byteLength + firstFrame[1]!.byteLength;
    const stream = concatBytes([
      ...firstFrame,
      ...encodeFrame({ op: "after" }, [small]),
    ]);
    const decoder = new FrameDecoder();
    const frames = [];
    let fed = 0;
    // 64 KiB reads, plus odd sizes so chunk edges fall inside headers and between parts.
    for (let off = 0; off < stream.byteLength; ) {
      const size = off === 0 ? 3 : 65_536 - (off % 7);
      const chunk = stream.subarray(off, Math.min(stream.byteLength, off + size));
      off += chunk.byteLength;
      fed += chunk.byteLength;
      const out = decoder.push(chunk);
      expect(out.error).toBeNull();
      frames.push(...out.frames);
      if (frames.length === 0) {
        // Every binary byte fed is accounted for (the parsed header is not): nothing lost, nothing counted twice.
        if (fed >= headerBytes) expect(decoder.bufferedBytes).toBe(fed - headerBytes);
      }
    }
    expect(frames.map((f) => f.header.op)).toEqual(["comm_send", "after"]);
    const [first, second] = frames;
    expect(first!.buffers.map((b) => b.byteLength)).toEqual([100, big.byteLength, big2.byteLength]);
    expect(first!.buffers[0]).toEqual(small);
    expect(Buffer.compare(first!.buffers[1]!, big)).toBe(0);
    expect(Buffer.compare(first!.buffers[2]!, big2)).toBe(0);
    // Filled in place: the big parts own exactly their bytes (no larger concatenation behind them).
    expect(first!.buffers[1]!.buffer.byteLength).toBe(big.byteLength);
    expect(first!.buffers[2]!.buffer.byteLength).toBe(big2.byteLength);
    expect(second!.buffers[0]).toEqual(small);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it("does not keep the chunks of a part that is still arriving (they are copied into the part and dropped)", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const part = pattern(4 * 1024 * 1024, 4);
    const [prefix, json] = encodeFrame({ op: "big" }, [part]);
    const decoder = new FrameDecoder();
    expect(decoder.push(concatBytes([prefix!, json!])).frames).toEqual([]);
    // Fresh chunk objects, as a socket hands out; feed all but the last one.
    const step = 65_536;
    const refs: WeakRef<Uint8Array>[] = [];
    for (let off = 0; off + step < part.byteLength; off += step) {
      const chunk = part.slice(off, off + step);
      refs.push(new WeakRef(chunk));
      expect(decoder.push(chunk).frames).toEqual([]);
    }
    // WeakRefs made in this job stay alive until it ends: let it end, then collect.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    // (The newest chunk may still be referenced from the test's own stack frame.)
    const alive = refs.slice(0, -1).filter((r) => r.deref() !== undefined).length;
    expect(alive).toBe(0);
    const last = decoder.push(part.slice(part.byteLength - step));
    expect(last.frames).toHaveLength(1);
    expect(Buffer.compare(last.frames[0]!.buffers[0]!, part)).toBe(0);
  });

  it("still refuses a frame over the limits before allocating anything for its parts", () => {
    const decoder = new FrameDecoder({ maxHeaderBytes: 1024, maxBufferBytes: 1024 * 1024 });
    const [prefix, json] = encodeFrame({ op: "x" }, [new Uint8Array(2 * 1024 * 1024)]);
    const out = decoder.push(concatBytes([prefix!, json!, new Uint8Array(10)]));
    expect(out.error?.type).toBe("buffers_too_large");
    expect(decoder.bufferedBytes).toBe(0);
  });
});
