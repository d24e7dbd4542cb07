// All-zero detection: detect-zeroes, convert's sparse detection, zero-cluster detection.
//
// Memory contract: the caller places the buffer in this module's memory (see alloc) and
// passes pointer + length. Returns 1 when all bytes are zero, 0 otherwise.

/** Allocates `size` bytes of module memory (16-byte aligned). Never freed (stub runtime). */
export function alloc(size: usize): usize {
  return heap.alloc(size);
}

/** 1 if the `len` bytes at `ptr` are all zero, else 0. Uses 128-bit SIMD, 64 bytes per step. */
export function isZero(ptr: usize, len: usize): i32 {
  let p = ptr;
  const end = ptr + len;
  // Head: bytes up to 16-byte alignment.
  while (p < end && (p & 15) != 0) {
    if (load<u8>(p) != 0) return 0;
    p++;
  }
  // Body: 64 bytes per iteration, OR-ed together, tested once. Early exit every 256 bytes.
  while (p + 256 <= end) {
    let acc = v128.or(
      v128.or(v128.load(p), v128.load(p, 16)),
      v128.or(v128.load(p, 32), v128.load(p, 48)),
    );
    acc = v128.or(acc, v128.or(v128.or(v128.load(p, 64), v128.load(p, 80)), v128.or(v128.load(p, 96), v128.load(p, 112))));
    acc = v128.or(acc, v128.or(v128.or(v128.load(p, 128), v128.load(p, 144)), v128.or(v128.load(p, 160), v128.load(p, 176))));
    acc = v128.or(acc, v128.or(v128.or(v128.load(p, 192), v128.load(p, 208)), v128.or(v128.load(p, 224), v128.load(p, 240))));
    if (v128.any_true(acc)) return 0;
    p += 256;
  }
  while (p + 16 <= end) {
    if (v128.any_true(v128.load(p))) return 0;
    p += 16;
  }
  while (p < end) {
    if (load<u8>(p) != 0) return 0;
    p++;
  }
  return 1;
}

/**
 * Length of the leading run of `len` bytes at `ptr` that is all zero (when `zero` is 1) or
 * not all zero (when `zero` is 0), counted in whole `block`-byte blocks (a power of two;
 * the last block may be short). Used to split a buffer into data and zero extents.
 */
export function runLength(ptr: usize, len: usize, block: usize, zero: i32): usize {
  let off: usize = 0;
  while (off < len) {
    const n = min(block, len - off);
    const z = isZero(ptr + off, n);
    if (z != zero) break;
    off += n;
  }
  return off;
}
