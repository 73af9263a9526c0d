// HMAC-SHA256 over the four JSON frames exactly as they were received, compared in constant time.

import { createHmac, timingSafeEqual } from "node:crypto";
import type { Signer } from "../../protocol/wire.js";

export class HmacSigner implements Signer {
  private readonly key: Buffer;

  constructor(key: string) {
    this.key = Buffer.from(key, "utf8");
  }

  sign(parts: readonly (Uint8Array | string)[]): string {
    // Jupyter defines an empty key as "signing disabled": the signature frame is empty.
    if (this.key.length === 0) return "";
    const hmac = createHmac("sha256", this.key);
    for (const part of parts) hmac.update(part);
    return hmac.digest("hex");
  }

  verify(signature: string, parts: readonly Uint8Array[]): boolean {
    if (this.key.length === 0) return signature === "";
    const expected = Buffer.from(this.sign(parts), "latin1");
    const given = Buffer.from(signature, "latin1");
    // Length is not secret (always 64 hex digits); only the content comparison must be constant-time.
    if (given.length !== expected.length) return false;
    return timingSafeEqual(given, expected);
  }
}
