/**
 * All-zero detection for detect-zeroes and sparse copies.
 *
 * The check {@link isZeroBuffer} uses is the plain-JS loop below until another
 * one is installed with {@link setZeroDetector}: src/wasm/hot-paths.ts installs
 * the WASM detector (measured faster in Node and in Chromium, bench/wasm/zero.ts;
 * figures in README) when the Node entry is loaded or the block worker starts.
 * The plain loop looks at the first 16 bytes (real data almost always has a
 * non-zero byte there, and this skips creating a typed-array view), then reads
 * eight bytes at a time through a BigUint64Array view when the buffer is 8-byte
 * aligned. It serves engines without SIMD and DISKWORKER_ZERO=js.
 */

type ZeroDetector = (buf: Uint8Array) => boolean;

/** Bytes looked at one by one before the word loop. */
const HEAD = 16;

function isZeroPlain(buf: Uint8Array): boolean {
  const len = buf.length;
  const head = Math.min(len, HEAD);
  for (let k = 0; k < head; k++) if (buf[k] !== 0) return false;
  if (head === len) return true;
  let i = 0;
  const misalign = buf.byteOffset & 7;
  if (misalign !== 0) {
    const lead = Math.min(len, 8 - misalign);
    for (; i < lead; i++) if (buf[i] !== 0) return false;
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

let detector: ZeroDetector | undefined;
let detectorKind: ZeroDetectorKind = 'plain JS';

/** Which check {@link isZeroBuffer} uses: the WASM detector, the plain loop, or another one set by the caller. */
export type ZeroDetectorKind = 'wasm' | 'plain JS' | 'custom';

/** Whether every byte of `buf` is zero. */
export function isZeroBuffer(buf: Uint8Array): boolean {
  return (detector ??= isZeroPlain)(buf);
}

/** Which check {@link isZeroBuffer} uses (picking it now if it has not been picked). */
export function zeroDetectorKind(): ZeroDetectorKind {
  detector ??= isZeroPlain;
  return detectorKind;
}

/** The plain TypeScript implementation (reference for tests and fallback). */
export const isZeroBufferPlain: ZeroDetector = isZeroPlain;

/**
 * Installs a faster detector (the WASM one when it wins in this environment; say so with
 * `kind`), or the plain one again when given undefined.
 */
export function setZeroDetector(fn: ZeroDetector | undefined, kind: ZeroDetectorKind = 'custom'): void {
  detector = fn ?? isZeroPlain;
  detectorKind = fn ? kind : 'plain JS';
}

/**
 * Length in bytes of the leading run of whole `block`-byte blocks of `buf` (the last one may
 * be short) that are all zero (`zero` true) or that each hold a non-zero byte (`zero`
 * false). Plain TypeScript, with the same answers as WasmZero.runLength; unlike a loop over
 * subarrays it creates at most one typed-array view per call.
 */
export function zeroRunLength(buf: Uint8Array, block: number, zero: boolean): number {
  const len = buf.length;
  if (!zero) {
    let off = 0;
    while (off < len) {
      const end = Math.min(len, off + block);
      const quick = Math.min(end, off + HEAD);
      let nonZero = false;
      for (let i = off; i < quick; i++) {
        if (buf[i] !== 0) {
          nonZero = true;
          break;
        }
      }
      if (!nonZero && (quick === end || isZeroPlain(buf.subarray(quick, end)))) break;
      off = end;
    }
    return off;
  }
  // A zero run ends at the block holding the first non-zero byte.
  const first = firstNonZero(buf);
  return first === len ? len : first - (first % block);
}

/** Index of the first non-zero byte of `buf`, or its length. */
function firstNonZero(buf: Uint8Array): number {
  const len = buf.length;
  let i = 0;
  const lead = Math.min(len, (8 - (buf.byteOffset & 7)) & 7);
  for (; i < lead; i++) if (buf[i] !== 0) return i;
  const words = (len - i) >>> 3;
  if (words > 0) {
    const view = new BigUint64Array(buf.buffer, buf.byteOffset + i, words);
    let w = 0;
    while (w < words && view[w] === 0n) w++;
    i += w * 8;
    if (w < words) {
      while (buf[i] === 0) i++;
      return i;
    }
  }
  for (; i < len; i++) if (buf[i] !== 0) return i;
  return len;
}
