// The kernelspec logos, drawn in code so the package ships no binary assets: a blue square with "TS" in
// white, encoded as an RGBA PNG.

import { deflateSync } from "node:zlib";

// 5x7 bitmap glyphs for "T" and "S".
const GLYPHS: Record<"T" | "S", string[]> = {
  T: ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."],
  S: [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
};

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "ascii");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

export function logoPng(size: number): Buffer {
  const rgba = Buffer.alloc(size * size * 4);
  const set = (x: number, y: number, [r, g, b]: [number, number, number]) => {
    const i = (y * size + x) * 4;
    rgba[i] = r;
    rgba[i + 1] = g;
    rgba[i + 2] = b;
    rgba[i + 3] = 255;
  };
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) set(x, y, [49, 120, 198]);
  // Two 5x7 glyphs with a 1-cell gap, scaled to fill the lower right like the TypeScript logo.
  const scale = Math.max(1, Math.floor(size / 16));
  const width = (5 + 1 + 5) * scale;
  const x0 = size - width - 2 * scale;
  const y0 = size - 7 * scale - 2 * scale;
  (["T", "S"] as const).forEach((letter, index) => {
    GLYPHS[letter].forEach((row, gy) => {
      for (let gx = 0; gx < row.length; gx++) {
        if (row[gx] !== "#") continue;
        for (let dy = 0; dy < scale; dy++) {
          for (let dx = 0; dx < scale; dx++) set(x0 + (index * 6 + gx) * scale + dx, y0 + gy * scale + dy, [255, 255, 255]);
        }
      }
    });
  });
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0; // filter: none
    rgba.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", new Uint8Array(0)),
  ]);
}
