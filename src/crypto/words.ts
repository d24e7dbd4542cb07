/** 32-bit little-endian words in byte arrays, as the Twofish and Serpent specifications lay out blocks and keys. */

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
