// Shared tables and helpers of the zstd decoder and encoder (RFC 8878).

/** Literals length codes 0..35: baseline and number of extra bits. */
export const LL_BASE: StaticArray<u32> = [
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024, 2048, 4096,
  8192, 16384, 32768, 65536,
];
export const LL_BITS: StaticArray<u8> = [
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12,
  13, 14, 15, 16,
];
/** Match length codes 0..52. */
export const ML_BASE: StaticArray<u32> = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
  19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
  35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027, 2051,
  4099, 8195, 16387, 32771, 65539,
];
export const ML_BITS: StaticArray<u8> = [
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11,
  12, 13, 14, 15, 16,
];

/** Predefined distributions (accuracy logs 6, 6, 5). */
export const LL_DEFAULT: StaticArray<i16> = [
  4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
  2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1,
  -1, -1, -1, -1,
];
export const ML_DEFAULT: StaticArray<i16> = [
  1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1,
  -1, -1, -1, -1, -1,
];
export const OF_DEFAULT: StaticArray<i16> = [
  1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1,
];
export const LL_DEFAULT_LOG: u32 = 6;
export const ML_DEFAULT_LOG: u32 = 6;
export const OF_DEFAULT_LOG: u32 = 5;

export const MAGIC: u32 = 0xfd2fb528;
export const SKIPPABLE_MASK: u32 = 0xfffffff0;
export const SKIPPABLE_MAGIC: u32 = 0x184d2a50;
export const BLOCK_MAX: u32 = 128 * 1024;

/** Index of the highest set bit (v > 0). */
@inline export function highbit(v: u32): u32 {
  return 31 - clz<u32>(v);
}

/**
 * Position of each cell of an FSE table (the spread shared by decoder and encoder):
 * fills `cells` (u8 symbol per state) from `norm` (i16 per symbol, -1 = "less than 1").
 * Returns false when the distribution does not fill the table exactly.
 */
export function spreadSymbols(norm: usize, nSym: u32, log: u32, cells: usize): bool {
  const size: i32 = 1 << log;
  let high: i32 = size - 1;
  for (let s: u32 = 0; s < nSym; s++) {
    if (load<i16>(norm + (<usize>s << 1)) == -1) {
      if (high < 0) return false;
      store<u8>(cells + <usize>high, <u8>s);
      high--;
    }
  }
  const step: i32 = (size >> 1) + (size >> 3) + 3;
  const mask: i32 = size - 1;
  let pos: i32 = 0;
  let total: i32 = 0;
  for (let s: u32 = 0; s < nSym; s++) {
    const n = <i32>load<i16>(norm + (<usize>s << 1));
    if (n <= 0) continue;
    total += n;
    if (total > high + 1) return false;
    for (let i = 0; i < n; i++) {
      store<u8>(cells + <usize>pos, <u8>s);
      do {
        pos = (pos + step) & mask;
      } while (pos > high);
    }
  }
  return pos == 0 && total == high + 1;
}

// ---------------------------------------------------------------------------------------
// XXH64 (seed 0): the content checksum is its low 32 bits.

const P1: u64 = 0x9e3779b185ebca87;
const P2: u64 = 0xc2b2ae3d27d4eb4f;
const P3: u64 = 0x165667b19e3779f9;
const P4: u64 = 0x85ebca77c2b2ae63;
const P5: u64 = 0x27d4eb2f165667c5;

@inline function xround(acc: u64, input: u64): u64 {
  acc += input * P2;
  acc = rotl<u64>(acc, 31);
  return acc * P1;
}

@inline function xmerge(acc: u64, val: u64): u64 {
  acc ^= xround(0, val);
  return acc * P1 + P4;
}

export function xxh64(p: usize, len: usize): u64 {
  const end = p + len;
  let h: u64;
  if (len >= 32) {
    let v1: u64 = P1 + P2;
    let v2: u64 = P2;
    let v3: u64 = 0;
    let v4: u64 = 0 - P1;
    const limit = end - 32;
    do {
      v1 = xround(v1, load<u64>(p));
      v2 = xround(v2, load<u64>(p, 8));
      v3 = xround(v3, load<u64>(p, 16));
      v4 = xround(v4, load<u64>(p, 24));
      p += 32;
    } while (p <= limit);
    h = rotl<u64>(v1, 1) + rotl<u64>(v2, 7) + rotl<u64>(v3, 12) + rotl<u64>(v4, 18);
    h = xmerge(h, v1);
    h = xmerge(h, v2);
    h = xmerge(h, v3);
    h = xmerge(h, v4);
  } else {
    h = P5;
  }
  h += <u64>len;
  while (p + 8 <= end) {
    h ^= xround(0, load<u64>(p));
    h = rotl<u64>(h, 27) * P1 + P4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= (<u64>load<u32>(p)) * P1;
    h = rotl<u64>(h, 23) * P2 + P3;
    p += 4;
  }
  while (p < end) {
    h ^= (<u64>load<u8>(p)) * P5;
    h = rotl<u64>(h, 11) * P1;
    p++;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}
