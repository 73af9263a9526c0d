import { describe, expect, it } from "vitest";
import { BUFFER_KEY, TYPED_ARRAY_KINDS, ValueDecodeError, ValueEncodeError, decodeValue, encodeValue } from "../protocol/values.js";

describe("binary values", () => {
  it("keeps falsy JSON values as they are", () => {
    for (const value of [0, "", false, null, [], {}]) {
      const encoded = encodeValue(value);
      expect(encoded.buffers).toEqual([]);
      expect(decodeValue(encoded.json, encoded.buffers)).toEqual(value);
    }
  });

  it("moves typed arrays out of the JSON without copying and restores their type", () => {
    const samples = new Float32Array([1.5, -2, 3.25]);
    const raw = new Uint8Array([1, 2, 3]).buffer;
    const encoded = encodeValue({ nested: { samples }, list: [raw, 7] });
    expect(encoded.buffers).toHaveLength(2);
    expect(encoded.buffers[0]!.buffer).toBe(samples.buffer);
    expect(JSON.stringify(encoded.json)).not.toMatch(/AAAA|base64/);
    const decoded = decodeValue(encoded.json, encoded.buffers) as { nested: { samples: Float32Array }; list: [ArrayBuffer, number] };
    expect(decoded.nested.samples).toBeInstanceOf(Float32Array);
    expect(Array.from(decoded.nested.samples)).toEqual([1.5, -2, 3.25]);
    expect(decoded.list[0]).toBeInstanceOf(ArrayBuffer);
    expect(Array.from(new Uint8Array(decoded.list[0]))).toEqual([1, 2, 3]);
    expect(decoded.list[1]).toBe(7);
  });

  it("sends only the viewed bytes of a subarray", () => {
    const whole = new Int16Array([10, 20, 30, 40]);
    const encoded = encodeValue(whole.subarray(1, 3));
    expect(encoded.buffers[0]!.byteLength).toBe(4);
    expect(Array.from(decodeValue(encoded.json, encoded.buffers) as Int16Array)).toEqual([20, 30]);
  });

  it("realigns a typed array whose bytes arrive at an odd offset", () => {
    const bytes = new Uint8Array(9);
    new Float64Array(bytes.buffer.slice(0, 8))[0] = 0;
    const payload = new Uint8Array(new Float64Array([Math.PI]).buffer);
    bytes.set(payload, 1);
    const decoded = decodeValue({ [BUFFER_KEY]: 0, kind: "Float64Array" }, [bytes.subarray(1)]) as Float64Array;
    expect(decoded[0]).toBe(Math.PI);
  });

  it("restores every binary kind with its type, length and contents, at any offset", () => {
    // 16 bytes: a whole number of elements of every kind.
    const bytes = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
    for (const kind of TYPED_ARRAY_KINDS) {
      for (const offset of [0, 1]) {
        const arrived = new Uint8Array(16 + offset);
        arrived.set(bytes, offset);
        const decoded = decodeValue({ [BUFFER_KEY]: 0, kind }, [arrived.subarray(offset)]) as ArrayBuffer | ArrayBufferView;
        expect(decoded.constructor.name, kind).toBe(kind);
        expect(decoded.byteLength, kind).toBe(16);
        const view = decoded instanceof ArrayBuffer ? new Uint8Array(decoded) : new Uint8Array(decoded.buffer, decoded.byteOffset, decoded.byteLength);
        expect(Array.from(view), `${kind} at offset ${offset}`).toEqual(Array.from(bytes));
      }
    }
  });

  it("names the path of what JSON cannot carry", () => {
    expect(() => encodeValue({ a: [1, () => 2] })).toThrow(new ValueEncodeError("value.a[1] is a function, which cannot be sent"));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encodeValue(cyclic)).toThrow(/value.self is a circular reference/);
    expect(() => encodeValue(Number.NaN)).toThrow(/NaN/);
  });

  it("rejects placeholders that point at missing or misaligned data", () => {
    expect(() => decodeValue({ [BUFFER_KEY]: 3, kind: "Uint8Array" }, [])).toThrow(ValueDecodeError);
    expect(() => decodeValue({ [BUFFER_KEY]: 0, kind: "Float32Array" }, [new Uint8Array(3)])).toThrow(/whole number/);
    expect(() => decodeValue({ [BUFFER_KEY]: 0, kind: "Nope" }, [new Uint8Array(3)])).toThrow(/unknown binary kind/);
  });
});
