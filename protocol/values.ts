// Values with binary parts: any JSON value that may hold ArrayBuffers, DataViews and typed arrays anywhere.
// The binary parts travel beside the JSON (pipe frame parts, comm buffers, websocket binary frames) and
// the JSON holds a placeholder `{"$tsnb_buffer": index, "kind": "Float32Array"}`, so nothing is base64.
// Pure and browser-safe.

import type { JsonValue } from "./jupyter.js";

export const BUFFER_KEY = "$tsnb_buffer";

export const TYPED_ARRAY_KINDS = [
  "ArrayBuffer",
  "DataView",
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
] as const;

export type BinaryKind = (typeof TYPED_ARRAY_KINDS)[number];

export interface EncodedValue {
  json: JsonValue;
  buffers: Uint8Array[];
}

export class ValueEncodeError extends Error {
  override name = "ValueEncodeError";
}

function binaryKind(value: object): BinaryKind | null {
  if (value instanceof ArrayBuffer) return "ArrayBuffer";
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor?.name;
    return (TYPED_ARRAY_KINDS as readonly string[]).includes(name) ? (name as BinaryKind) : "Uint8Array";
  }
  return null;
}

/** Bytes of a binary value, as a view (no copy). */
function bytesOf(value: ArrayBuffer | ArrayBufferView): Uint8Array {
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * Splits binary parts out of a value. Throws ValueEncodeError for what JSON cannot carry faithfully
 * (functions, symbols, bigint, cycles), naming the path, so the sender hears about it at the call site.
 */
export function encodeValue(value: unknown): EncodedValue {
  const buffers: Uint8Array[] = [];
  const seen = new Set<object>();
  const walk = (v: unknown, path: string): JsonValue => {
    if (v === null) return null;
    switch (typeof v) {
      case "string":
      case "boolean":
        return v;
      case "number":
        if (!Number.isFinite(v)) throw new ValueEncodeError(`${path} is ${v}, which JSON cannot carry`);
        return v;
      case "undefined":
        return null;
      case "bigint":
      case "function":
      case "symbol":
        throw new ValueEncodeError(`${path} is a ${typeof v}, which cannot be sent`);
      case "object": {
        const kind = binaryKind(v);
        if (kind !== null) {
          buffers.push(bytesOf(v as ArrayBuffer | ArrayBufferView));
          return { [BUFFER_KEY]: buffers.length - 1, kind };
        }
        if (seen.has(v)) throw new ValueEncodeError(`${path} is a circular reference`);
        seen.add(v);
        try {
          if (Array.isArray(v)) return v.map((item, i) => walk(item, `${path}[${i}]`));
          if (v instanceof Date) return v.toISOString();
          if (v instanceof Map || v instanceof Set) {
            throw new ValueEncodeError(`${path} is a ${v.constructor.name}; convert it to an object or array first`);
          }
          const out: { [key: string]: JsonValue } = {};
          for (const [key, item] of Object.entries(v)) {
            if (item === undefined) continue;
            out[key] = walk(item, `${path}.${key}`);
          }
          return out;
        } finally {
          seen.delete(v);
        }
      }
      default:
        throw new ValueEncodeError(`${path} cannot be sent`);
    }
  };
  return { json: walk(value, "value"), buffers };
}

function isPlaceholder(v: JsonValue): v is { [BUFFER_KEY]: number; kind: string } {
  return (
    v !== null &&
    typeof v === "object" &&
    !Array.isArray(v) &&
    typeof v[BUFFER_KEY] === "number" &&
    typeof v.kind === "string" &&
    Object.keys(v).length === 2
  );
}

/** The view each kind names, by its constructor; a typed array's element size is its BYTES_PER_ELEMENT. */
const VIEWS: { [K in Exclude<BinaryKind, "ArrayBuffer">]: { new (buffer: ArrayBuffer, byteOffset: number, length: number): ArrayBufferView; BYTES_PER_ELEMENT?: number } } = {
  DataView,
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
};

export class ValueDecodeError extends Error {
  override name = "ValueDecodeError";
}

/** Rebuilds a typed array of `kind` over `bytes`, copying only when alignment demands it. */
export function makeBinary(kind: BinaryKind, bytes: Uint8Array): ArrayBuffer | ArrayBufferView {
  const View = kind === "ArrayBuffer" ? null : VIEWS[kind];
  if (View === undefined) throw new ValueDecodeError(`unknown binary kind ${JSON.stringify(kind)}`);
  // ArrayBuffer and DataView count in bytes.
  const size = View?.BYTES_PER_ELEMENT ?? 1;
  if (bytes.byteLength % size !== 0) {
    throw new ValueDecodeError(`${bytes.byteLength} bytes is not a whole number of ${kind} elements`);
  }
  let source = bytes;
  // Copy with the Uint8Array constructor: `slice()` on a Node Buffer (what sockets hand out) is a view
  // at the same misaligned offset, not a copy.
  if (bytes.byteOffset % size !== 0) source = new Uint8Array(bytes);
  const buffer = source.buffer as ArrayBuffer;
  if (View === null) {
    return source.byteOffset === 0 && source.byteLength === buffer.byteLength
      ? buffer
      : buffer.slice(source.byteOffset, source.byteOffset + source.byteLength);
  }
  // A typed array's third argument counts elements, a DataView's bytes (size 1): the same number.
  return new View(buffer, source.byteOffset, source.byteLength / size);
}

/** Inverse of encodeValue. Throws ValueDecodeError on a placeholder that names a missing buffer. */
export function decodeValue(json: JsonValue, buffers: readonly Uint8Array[]): unknown {
  const walk = (v: JsonValue): unknown => {
    if (v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map(walk);
    if (isPlaceholder(v)) {
      const bytes = buffers[v[BUFFER_KEY]];
      if (bytes === undefined) throw new ValueDecodeError(`value refers to missing binary part ${v[BUFFER_KEY]}`);
      if (!(TYPED_ARRAY_KINDS as readonly string[]).includes(v.kind)) {
        throw new ValueDecodeError(`unknown binary kind ${JSON.stringify(v.kind)}`);
      }
      return makeBinary(v.kind as BinaryKind, bytes);
    }
    const out: { [key: string]: unknown } = {};
    for (const [key, item] of Object.entries(v)) out[key] = walk(item);
    return out;
  };
  return walk(json);
}
