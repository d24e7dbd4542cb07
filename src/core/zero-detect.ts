/**
 * All-zero detection for detect-zeroes and sparse copies.
 *
 * The plain-JS path reads eight bytes at a time through a BigUint64Array view
 * when the buffer is 8-byte aligned (≈ 12 GB/s per PLATFORM-FACTS.md); the WASM
 * module (src/wasm) can replace it through {@link setZeroDetector}.
 */

type ZeroDetector = (buf: Uint8Array) => boolean;

function isZeroPlain(buf: Uint8Array): boolean {
  const len = buf.length;
  let i = 0;
  const misalign = buf.byteOffset & 7;
  if (misalign !== 0) {
    const head = Math.min(len, 8 - misalign);
    for (; i < head; i++) if (buf[i] !== 0) return false;
  }
  const words = (len - i) >>> 3;
  if (words > 0) {
    const view = new BigUint64Array(buf.buffer, buf.byteOffset + i, words);
    for (let w = 0; w < words; w++) if (view[w] !== 0n) return false;
    i += words * 8;
  }
  for (; i < len; i++) if (buf[i] !== 0) return false;
  return true;
}

let detector: ZeroDetector = isZeroPlain;

/** Whether every byte of `buf` is zero. */
export function isZeroBuffer(buf: Uint8Array): boolean {
  return detector(buf);
}

/** The plain TypeScript implementation (reference for tests and fallback). */
export const isZeroBufferPlain: ZeroDetector = isZeroPlain;

/** Installs a faster detector (the WASM one when it wins in this environment). */
export function setZeroDetector(fn: ZeroDetector): void {
  detector = fn;
}
