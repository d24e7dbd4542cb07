/** 32-bit little-endian words in byte arrays, as the Twofish and Serpent specifications lay out blocks and keys. */
import { BlockError } from '../core/errors.js';

if (new Uint8Array(Uint32Array.of(1).buffer)[0] !== 1) {
  // The block ciphers view byte buffers as little-endian 32-bit words.
  throw new BlockError('ENOTSUP', 'The block ciphers need a little-endian platform');
}

/** The word at byte `at` of `b`. */
export function readLe(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
}

/** Stores `v` as the word at byte `at` of `b`. */
export function writeLe(b: Uint8Array, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
  b[at + 2] = v >>> 16;
  b[at + 3] = v >>> 24;
}

/** The byte-swapped `v` (a big-endian word read through a little-endian view, or back). */
export function bswap(v: number): number {
  return (v << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
}

/**
 * Runs `fn` over `b` seen as little-endian 32-bit words (its length a
 * multiple of 4): a view of `b` itself when 4-byte aligned, else an aligned
 * copy whose words are copied back after. Whole buffers go through the
 * ciphers this way, one word load per four bytes and no per-block work.
 */
export function onWords(b: Uint8Array, fn: (w: Int32Array) => void): void {
  if ((b.byteOffset & 3) === 0) {
    fn(new Int32Array(b.buffer, b.byteOffset, b.length >> 2));
    return;
  }
  const copy = new Uint8Array(b.length);
  copy.set(b);
  fn(new Int32Array(copy.buffer, 0, b.length >> 2));
  b.set(copy);
  copy.fill(0);
}
