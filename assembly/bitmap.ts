// Hierarchical dirty bitmap (QEMU's HBitmap is the model).
// A little over 600 lines: the levels and the skip table are kept exact by every update,
// and the update paths read best side by side.
//
// Level 0 holds one bit per granule in 64-bit words; bit j of level k+1 is set iff word j
// of level k is non-zero. The top level is a single word. next-dirty walks up until it
// finds a non-zero word and back down: O(log64 n) words touched.
//
// Bitmaps of fewer than 2^31 bits can also keep a skip table (built on demand by buildSkip,
// for bitmaps that are walked): one u16 per level-0 word i, the
// distance from the end of word i (bit 64(i+1)) to the first set bit after word i, or
// SKIP_NONE when words i+1 .. i+SKIP_WORDS are all clear. next-dirty then needs two
// independent loads (the start's level-0 word and its skip entry) instead of a chain of
// dependent ones (summary word, then the level-0 word it points to). Updates keep it
// exact: the entries of the changed words and of the empty words before them, at most
// SKIP_WORDS + 1 words back (see refreshSkip). Memory: a quarter of level 0.
//
// Bit i of level 0 is bit i % 8 of byte i / 8 (words are little-endian), which is exactly
// the qcow2 persistent-bitmap data layout, so (de)serialization is a copy.
//
// Bit indices and counts cross the boundary as f64 (exact below 2^53).

import { E_INVAL, E_NOMEM } from './shared/common';

const MAX_LEVELS: i32 = 8;
// Header: nbits u64 @0, count u64 @8, levels u32 @16, skip table u32 @20 (0 if none), then
// per level: ptr u32, words u32.
const H_NBITS = 0;
const H_COUNT = 8;
const H_LEVELS = 16;
const H_SKIP = 20;
const H_LV = 24;
const HEADER_SIZE: usize = 24 + MAX_LEVELS * 8;

/** Bitmaps below this many bits get a skip table (and the i32 fast path). */
const SKIP_LIMIT: u64 = 1 << 31;
/** Words a skip entry looks ahead. */
const SKIP_WORDS: u64 = 255;
/** Skip entry: words i+1 .. i+SKIP_WORDS are clear. Also the first distance it cannot hold. */
const SKIP_NONE: u64 = SKIP_WORDS << 6; // 0x3fc0
/** SKIP_NONE in every u16 of a u64. */
const SKIP_NONE_X4: u64 = SKIP_NONE * 0x0001000100010001;

export function alloc(size: usize): usize {
  return heap.alloc(size);
}

export function release(ptr: usize): void {
  heap.free(ptr);
}

@inline function nbitsOf(h: usize): u64 { return load<u64>(h, H_NBITS); }
@inline function levelsOf(h: usize): i32 { return load<i32>(h, H_LEVELS); }
@inline function skipOf(h: usize): usize { return <usize>load<u32>(h, H_SKIP); }
@inline function skipEntry(skip: usize, i: u64): u64 { return <u64>load<u16>(skip + (<usize>i << 1)); }
@inline function lvPtr(h: usize, k: i32): usize { return <usize>load<u32>(h + H_LV + (<usize>k << 3)); }
@inline function lvWords(h: usize, k: i32): u64 { return <u64>load<u32>(h + H_LV + (<usize>k << 3), 4); }
@inline function word(p: usize, i: u64): u64 { return load<u64>(p + (<usize>i << 3)); }
@inline function setWord(p: usize, i: u64, v: u64): void { store<u64>(p + (<usize>i << 3), v); }

/** Sets `n` skip entries to SKIP_NONE (nothing set). */
function fillSkipNone(skip: usize, n: u64): void {
  let i: u64 = 0;
  for (; i + 4 <= n; i += 4) store<u64>(skip + (<usize>i << 1), SKIP_NONE_X4);
  for (; i < n; i++) store<u16>(skip + (<usize>i << 1), <u16>SKIP_NONE);
}

/** Creates a bitmap of `nbits` bits, all clear. Returns a handle, or 0 (bad size / no memory). */
export function create(nbitsF: f64): usize {
  // Up to 2^34 bits: level 0 is then 2 GiB, and larger sizes would not fit (or would wrap)
  // in 32-bit module memory.
  if (!(nbitsF >= 1) || nbitsF > 17179869184.0) return 0;
  const nbits = <u64>nbitsF;
  const h = heap.alloc(HEADER_SIZE);
  if (!h) return 0;
  memory.fill(h, 0, HEADER_SIZE);
  store<u64>(h, nbits, H_NBITS);
  let words = (nbits + 63) >> 6;
  // No skip table yet (buildSkip): bitmaps that are only loaded, merged and stored never
  // walk, and its memory would be touched for nothing.
  let k: i32 = 0;
  while (true) {
    const p = k < MAX_LEVELS ? heap.alloc(<usize>(words << 3)) : 0;
    if (!p) {
      store<i32>(h, k, H_LEVELS);
      destroy(h);
      return 0;
    }
    memory.fill(p, 0, <usize>(words << 3));
    store<u32>(h + H_LV + (<usize>k << 3), <u32>p);
    store<u32>(h + H_LV + (<usize>k << 3), <u32>words, 4);
    k++;
    if (words == 1) break;
    words = (words + 63) >> 6;
  }
  store<i32>(h, k, H_LEVELS);
  return h;
}

/**
 * Gives a bitmap of fewer than 2^31 bits its skip table (for nextDirtyFast), built from
 * level 0. Returns its address (also when it already had one), or 0 (too large, or no
 * memory: the bitmap works without it).
 */
export function buildSkip(h: usize): usize {
  const have = skipOf(h);
  if (have) return have;
  const nbits = nbitsOf(h);
  if (nbits >= SKIP_LIMIT) return 0;
  const words = lvWords(h, 0);
  const skip = heap.alloc(<usize>(words << 1));
  if (!skip) return 0;
  store<u32>(h, <u32>skip, H_SKIP);
  store<u16>(skip + (<usize>(words - 1) << 1), <u16>SKIP_NONE);
  refreshSkip(h, 0, words - 1);
  return skip;
}

/** Frees a bitmap. */
export function destroy(h: usize): void {
  if (!h) return;
  const n = levelsOf(h);
  for (let k = 0; k < n; k++) heap.free(lvPtr(h, k));
  const skip = skipOf(h);
  if (skip) heap.free(skip);
  heap.free(h);
}

export function size(h: usize): f64 {
  return <f64>nbitsOf(h);
}

export function count(h: usize): f64 {
  return <f64>load<u64>(h, H_COUNT);
}

/** Recomputes the summary bits for words [a, b] of level k, up to the top. */
function refreshUp(h: usize, a: u64, b: u64): void {
  const n = levelsOf(h);
  for (let k = 0; k < n - 1; k++) {
    const lo = lvPtr(h, k);
    const up = lvPtr(h, k + 1);
    // Bits a..b of level k+1, word by word.
    let j = a;
    while (j <= b) {
      const uw = j >> 6;
      const last = min<u64>(b, (uw << 6) + 63);
      let v = word(up, uw);
      for (let i = j; i <= last; i++) {
        const bit = (<u64>1) << (i & 63);
        if (word(lo, i) != 0) v |= bit;
        else v &= ~bit;
      }
      setWord(up, uw, v);
      j = last + 1;
    }
    a >>= 6;
    b >>= 6;
  }
}

/**
 * Recomputes the skip entries that depend on level-0 words [w0, w1] after they changed.
 * Entry w1 only depends on words after w1: still valid. Entries w0 .. w1 - 1 are redone
 * from the words. Entry w0 - 1 and those of the clear words right before it all point at
 * the same bit (the first set one from word w0 on): if entry w0 - 1 comes out unchanged,
 * so do they; otherwise they are rewritten down to the last non-empty word before w0
 * (found through level 1), at most SKIP_WORDS + 1 entries: those further back do not look
 * as far as word w0. No level-0 loads for that part: it stays cheap in sparse bitmaps.
 * Level 1 must be up to date below w0 (it is: those words did not change).
 */
function refreshSkip(h: usize, w0: u64, w1: u64): void {
  const skip = skipOf(h);
  if (!skip) return;
  const p = lvPtr(h, 0);
  const d = skipEntry(skip, w1);
  // First set bit from word j on, while j walks down (u64 max: none within reach).
  let next: u64 = d == SKIP_NONE ? <u64>-1 : ((w1 + 1) << 6) + d;
  for (let j = w1; j > w0; j--) {
    const v = word(p, j);
    if (v != 0) next = (j << 6) + <u64>ctz(v);
    store<u16>(skip + (<usize>(j - 1) << 1), skipDist(next - (j << 6)));
  }
  const v = word(p, w0);
  if (v != 0) next = (w0 << 6) + <u64>ctz(v);
  if (w0 == 0 || load<u16>(skip + (<usize>(w0 - 1) << 1)) == skipDist(next - (w0 << 6))) return;
  const floor = w0 > SKIP_WORDS ? w0 - 1 - SKIP_WORDS : 0;
  fillSkip(skip, lastSetWordBefore(h, w0, floor), w0, next);
}

/**
 * Entries lo .. w0 - 1 of the skip table, for clear words lo + 1 .. w0 - 1 followed by
 * `next`, the first set bit from word w0 on: entry i gets skipDist(next - 64(i+1)).
 * Four entries per store where it can.
 */
function fillSkip(skip: usize, lo: u64, w0: u64, next: u64): void {
  let i = w0; // entries lo .. i - 1 are left; entry i - 1 gets next - 64 i
  while (i > lo && (i & 3) != 0) {
    store<u16>(skip + (<usize>(i - 1) << 1), skipDist(next - (i << 6)));
    i--;
  }
  // Aligned groups i-4 .. i-1 while all four hold distances: entry i-1 gets d, i-2 d+64, ...
  while (i >= lo + 4) {
    const d = next - (i << 6);
    if (d + 192 >= SKIP_NONE) break;
    store<u64>(skip + (<usize>(i - 4) << 1), d * 0x0001000100010001 + 0x00000040008000c0);
    i -= 4;
  }
  while (i > lo && next - (i << 6) < SKIP_NONE) {
    store<u16>(skip + (<usize>(i - 1) << 1), <u16>(next - (i << 6)));
    i--;
  }
  // The rest is out of reach.
  while (i > lo && (i & 3) != 0) {
    store<u16>(skip + (<usize>(i - 1) << 1), <u16>SKIP_NONE);
    i--;
  }
  while (i >= lo + 4) {
    store<u64>(skip + (<usize>(i - 4) << 1), SKIP_NONE_X4);
    i -= 4;
  }
  while (i > lo) {
    store<u16>(skip + (<usize>(i - 1) << 1), <u16>SKIP_NONE);
    i--;
  }
}

/** A skip entry for the given distance. */
@inline function skipDist(dist: u64): u16 {
  return <u16>(dist < SKIP_NONE ? dist : SKIP_NONE);
}

/**
 * The last non-empty level-0 word before word w (w >= 1), from level 1; `floor` if it is
 * below `floor` or there is none.
 */
function lastSetWordBefore(h: usize, w: u64, floor: u64): u64 {
  const l1 = lvPtr(h, 1);
  let b = w - 1;
  while (true) {
    const q = b >> 6;
    const m = word(l1, q) & maskTo(b);
    if (m != 0) return max<u64>((q << 6) + 63 - <u64>clz(m), floor);
    if ((q << 6) <= floor) return floor;
    b = (q << 6) - 1;
  }
}

@inline function maskFrom(bit: u64): u64 { return (<u64>-1) << (bit & 63); }
@inline function maskTo(bitInclusive: u64): u64 {
  const s = bitInclusive & 63;
  return s == 63 ? <u64>-1 : ((<u64>1) << (s + 1)) - 1;
}

/** The bits of word `w` inside [start, last], for a range over words w0..w1. */
@inline function rangeMask(w: u64, w0: u64, w1: u64, start: u64, last: u64): u64 {
  let m: u64 = <u64>-1;
  if (w == w0) m &= maskFrom(start);
  if (w == w1) m &= maskTo(last);
  return m;
}

/** Sets (value 1) or clears (value 0) bits [start, start + n). Returns 0 or E_INVAL. */
export function setRange(h: usize, startF: f64, nF: f64, value: i32): i32 {
  const nbits = nbitsOf(h);
  if (!(startF >= 0) || !(nF >= 0) || startF + nF > <f64>nbits) return E_INVAL;
  const n = <u64>nF;
  if (n == 0) return 0;
  const start = <u64>startF;
  const last = start + n - 1;
  const p = lvPtr(h, 0);
  const w0 = start >> 6;
  const w1 = last >> 6;
  let cnt = load<u64>(h, H_COUNT);
  for (let w = w0; w <= w1; w++) {
    const m = rangeMask(w, w0, w1, start, last);
    const old = word(p, w);
    const nw = value ? old | m : old & ~m;
    if (nw != old) {
      cnt = cnt - <u64>popcnt(old) + <u64>popcnt(nw);
      setWord(p, w, nw);
    }
  }
  store<u64>(h, cnt, H_COUNT);
  refreshUp(h, w0, w1);
  refreshSkip(h, w0, w1);
  return 0;
}

/** 1 if bit i is set, 0 if not, E_INVAL out of range. */
export function get(h: usize, iF: f64): i32 {
  if (!(iF >= 0) || iF >= <f64>nbitsOf(h)) return E_INVAL;
  const i = <u64>iF;
  return <i32>((word(lvPtr(h, 0), i >> 6) >> (i & 63)) & 1);
}

/** Bits strictly above bit `b & 63` of a word. */
@inline function maskAbove(b: u64): u64 { return ((<u64>-1) << (b & 63)) << 1; }

/** First set bit at or after `from` (any level-0 position), or nbits if none. */
function findSet(h: usize, from: u64): u64 {
  const nbits = nbitsOf(h);
  if (from >= nbits) return nbits;
  const skip = skipOf(h);
  if (skip) {
    const w = from >> 6;
    const v = word(lvPtr(h, 0), w) & maskFrom(from);
    if (v != 0) return (w << 6) + <u64>ctz(v);
    const d = skipEntry(skip, w);
    if (d != SKIP_NONE) return ((w + 1) << 6) + d;
    // Words w+1 .. w+SKIP_WORDS are clear: the summary levels take it from there (there are
    // at least three, the bitmap being that long).
    if (((w + 1 + SKIP_WORDS) << 6) >= nbits) return nbits;
    return findSetWalk(h, w + 1 + SKIP_WORDS, 1, nbits);
  }
  if (levelsOf(h) < 2) return findSetWalk(h, from, 0, nbits);
  return findSetNear(h, lvPtr(h, 0), lvPtr(h, 1), lvWords(h, 1) - 1, from, nbits);
}

/**
 * findSet for bitmaps of two or more levels without a skip table (level-0 and level-1
 * pointers and the last level-1 word index passed in), shaped for the common case: the
 * answer lies under the start's level-1 word or the next one. The level-1 summary is
 * consulted first (it is small and stays in cache; level 0 is large and a random word of
 * it is a cache miss), and the choice between the two level-1 words is made with selects
 * instead of a branch, since which of them holds the answer is a coin toss on a realistic
 * bitmap. Anything farther goes through the general walk, O(log64 n).
 */
@inline function findSetNear(h: usize, l0: usize, l1: usize, last1: u64, from: u64, nbits: u64): u64 {
  const w = from >> 6; // level-0 word of the start = its bit index in level 1
  const a1 = w >> 6; // level-1 word covering it
  const s1 = word(l1, a1);
  if ((s1 >> (w & 63)) & 1) {
    const v = word(l0, w) & maskFrom(from);
    if (v != 0) return (w << 6) + <u64>ctz(v);
  }
  const m1 = s1 & maskAbove(w); // later non-empty level-0 words under the same level-1 word
  const more = a1 < last1;
  const b1 = select<u64>(a1 + 1, last1, more); // clamped, so the load stays in bounds
  const n1 = select<u64>(word(l1, b1), 0, more);
  if ((m1 | n1) == 0) return findSetWalk(h, (b1 + 1) << 6, 1, nbits);
  const j1 = select<u64>((a1 << 6) + <u64>ctz(m1), (b1 << 6) + <u64>ctz(n1), m1 != 0);
  return (j1 << 6) + <u64>ctz(word(l0, j1));
}

/**
 * The general search: from bit `pos` of level `k` upwards until a non-empty word, then
 * down to level 0. Inlined: in nextDirtyFast a call would cost every call a stack check.
 */
@inline function findSetWalk(h: usize, pos: u64, k: i32, nbits: u64): u64 {
  const n = levelsOf(h);
  let found: u64 = 0;
  while (true) {
    const words = lvWords(h, k);
    const w = pos >> 6;
    if (w >= words) return nbits;
    const v = word(lvPtr(h, k), w) & maskFrom(pos);
    if (v != 0) {
      found = (w << 6) + <u64>ctz(v);
      break;
    }
    // Nothing more in this word: continue with the next word, found through the level above.
    k++;
    if (k >= n) return nbits;
    pos = w + 1;
  }
  // Descend: bit `found` of level k says word `found` of level k-1 is non-zero.
  while (k > 0) {
    k--;
    const v = word(lvPtr(h, k), found);
    found = (found << 6) + <u64>ctz(v);
  }
  return found < nbits ? found : nbits;
}

/** First set bit in [start, end), or -1. */
export function nextDirty(h: usize, startF: f64, endF: f64): f64 {
  const nbits = nbitsOf(h);
  if (!(startF >= 0)) return -1;
  const end = endF > <f64>nbits ? nbits : <u64>max<f64>(endF, 0);
  const start = <u64>startF;
  if (start >= end) return -1;
  const r = findSet(h, start);
  return r < end ? <f64>r : -1;
}

/**
 * nextDirty for bitmaps with a skip table (fewer than 2^31 bits), for calls from JS: i32
 * arguments, level 0 and the skip table passed in (levelPtr, skipPtr), `end` at most the
 * bitmap's size. First set bit in [start, end), or -1.
 *
 * The start's level-0 word and its skip entry are loaded independently and the result is
 * picked with a select: no dependent loads and, on this path, no calls (with the walk
 * inlined, the function needs no stack check or spills on entry).
 */
export function nextDirtyFast(h: usize, l0: usize, skip: usize, start: u32, end: u32): i32 {
  if (start >= end) return -1;
  const w = start >> 6;
  const v = load<u64>(l0 + (<usize>w << 3)) & maskFrom(<u64>start);
  const d = <u32>load<u16>(skip + (<usize>w << 1));
  const after = (start | 63) + 1; // first bit of the next word (start < 2^31: no overflow)
  let r = select<u32>((start & ~63) + <u32>ctz(v), after + d, v != 0);
  if (r >= end) return -1; // also right for SKIP_NONE: the answer is at least `after + d`
  if (r == after + <u32>SKIP_NONE) {
    // Words w+1 .. w+SKIP_WORDS are clear: the walk from word w+SKIP_WORDS+1 = r / 64, on
    // level 1 (r < end <= nbits: the bitmap has at least three levels).
    r = <u32>findSetWalk(h, <u64>(r >> 6), 1, nbitsOf(h));
    if (r >= end) return -1;
  }
  return <i32>r;
}

/** Address of the skip table (for nextDirtyFast), or 0 if the bitmap has none. */
export function skipPtr(h: usize): usize {
  return skipOf(h);
}

/** Address of level k's words (level 0 for nextDirtyFast), or 0 past the top. */
export function levelPtr(h: usize, k: i32): usize {
  return k >= 0 && k < levelsOf(h) ? lvPtr(h, k) : 0;
}

/** Number of 64-bit words in level k, or 0 past the top. */
export function levelWords(h: usize, k: i32): u32 {
  return k >= 0 && k < levelsOf(h) ? <u32>lvWords(h, k) : 0;
}

/** First clear bit in [start, end), or -1. Linear in the words scanned. */
export function nextClear(h: usize, startF: f64, endF: f64): f64 {
  const nbits = nbitsOf(h);
  if (!(startF >= 0)) return -1;
  const end = endF > <f64>nbits ? nbits : <u64>max<f64>(endF, 0);
  let pos = <u64>startF;
  if (pos >= end) return -1;
  const p = lvPtr(h, 0);
  let w = pos >> 6;
  let v = ~word(p, w) & maskFrom(pos);
  while (v == 0) {
    w++;
    if ((w << 6) >= end) return -1;
    v = ~word(p, w);
  }
  const r = (w << 6) + <u64>ctz(v);
  return r < end ? <f64>r : -1;
}

let areaLen: f64 = 0;

/** Length of the area found by the last nextDirtyArea(). */
export function areaLength(): f64 {
  return areaLen;
}

/**
 * First run of set bits in [start, end), at most maxLen long: returns its start (or -1),
 * areaLength() gives its length.
 */
export function nextDirtyArea(h: usize, startF: f64, endF: f64, maxLenF: f64): f64 {
  areaLen = 0;
  const s = nextDirty(h, startF, endF);
  if (s < 0) return -1;
  const nbits = <f64>nbitsOf(h);
  let e = min<f64>(min<f64>(endF, nbits), s + maxLenF);
  const c = nextClear(h, s, e);
  if (c >= 0) e = c;
  areaLen = e - s;
  return s;
}

/** Number of set bits in [start, start + n). */
export function countRange(h: usize, startF: f64, nF: f64): f64 {
  const nbits = nbitsOf(h);
  if (!(startF >= 0) || !(nF >= 0) || startF + nF > <f64>nbits) return E_INVAL;
  const n = <u64>nF;
  if (n == 0) return 0;
  const start = <u64>startF;
  const last = start + n - 1;
  const p = lvPtr(h, 0);
  const w0 = start >> 6;
  const w1 = last >> 6;
  let c: u64 = 0;
  for (let w = w0; w <= w1; w++) {
    const m = rangeMask(w, w0, w1, start, last);
    c += <u64>popcnt(word(p, w) & m);
  }
  return <f64>c;
}

/** Rebuilds count and all summary levels from level 0. */
function rebuild(h: usize): void {
  const p = lvPtr(h, 0);
  const words = lvWords(h, 0);
  let c: u64 = 0;
  for (let w: u64 = 0; w < words; w++) c += <u64>popcnt(word(p, w));
  store<u64>(h, c, H_COUNT);
  const n = levelsOf(h);
  for (let k = 1; k < n; k++) {
    const lo = lvPtr(h, k - 1);
    const loWords = lvWords(h, k - 1);
    const up = lvPtr(h, k);
    const upWords = lvWords(h, k);
    for (let j: u64 = 0; j < upWords; j++) {
      let v: u64 = 0;
      const base = j << 6;
      const lim = min<u64>(64, loWords - base);
      for (let b: u64 = 0; b < lim; b++) if (word(lo, base + b) != 0) v |= (<u64>1) << b;
      setWord(up, j, v);
    }
  }
  const skip = skipOf(h);
  if (skip) {
    store<u16>(skip + (<usize>(words - 1) << 1), <u16>SKIP_NONE);
    refreshSkip(h, 0, words - 1);
  }
}

/**
 * dst |= src (op 0) or dst &= ~src (op 1). Both must have the same size. Returns 0 or E_INVAL.
 */
export function merge(dst: usize, src: usize, op: i32): i32 {
  if (nbitsOf(dst) != nbitsOf(src) || op < 0 || op > 1) return E_INVAL;
  const a = lvPtr(dst, 0);
  const b = lvPtr(src, 0);
  const words = lvWords(dst, 0);
  // Only words where src has bits change: walk src's set words via its summary.
  let w: u64 = 0;
  let lo: u64 = words;
  let hi: u64 = 0;
  while (w < words) {
    const bit = findSet(src, w << 6);
    if (bit >= nbitsOf(src)) break;
    w = bit >> 6;
    const sv = word(b, w);
    const dv = word(a, w);
    setWord(a, w, op == 0 ? dv | sv : dv & ~sv);
    if (w < lo) lo = w;
    hi = w;
    w++;
  }
  if (lo <= hi) {
    // Recount and refresh only the touched span.
    let c: u64 = 0;
    for (let i: u64 = 0; i < words; i++) c += <u64>popcnt(word(a, i));
    store<u64>(dst, c, H_COUNT);
    refreshUp(dst, lo, hi);
    refreshSkip(dst, lo, hi);
  }
  return 0;
}

/** Clears everything. */
export function clear(h: usize): void {
  const n = levelsOf(h);
  for (let k = 0; k < n; k++) memory.fill(lvPtr(h, k), 0, <usize>(lvWords(h, k) << 3));
  const skip = skipOf(h);
  if (skip) fillSkipNone(skip, lvWords(h, 0));
  store<u64>(h, 0, H_COUNT);
}

/**
 * Copies bits [start, start + n) into `out` in the qcow2 bitmap data layout (bit i at
 * byte i/8, bit i%8 from the least significant). `start` must be a multiple of 8;
 * writes ceil(n / 8) bytes, with bits past the bitmap's end as zero.
 */
export function serialize(h: usize, startF: f64, nF: f64, out: usize): i32 {
  const nbits = nbitsOf(h);
  if (!(startF >= 0) || !(nF >= 0)) return E_INVAL;
  const start = <u64>startF;
  const n = <u64>nF;
  if ((start & 7) != 0 || start > nbits) return E_INVAL;
  const bytes = (n + 7) >> 3;
  const avail = ((nbits + 7) >> 3) - (start >> 3);
  const copy = min<u64>(bytes, avail);
  memory.copy(out, lvPtr(h, 0) + <usize>(start >> 3), <usize>copy);
  if (copy < bytes) memory.fill(out + <usize>copy, 0, <usize>(bytes - copy));
  // Bits past start + n in the last byte stay as they are in the bitmap; clear them.
  if ((n & 7) != 0) {
    const lastP = out + <usize>(bytes - 1);
    store<u8>(lastP, <u8>(<u32>load<u8>(lastP) & ((1 << <u32>(n & 7)) - 1)));
  }
  return 0;
}

/**
 * Loads bits [start, start + n) from `inp` (qcow2 layout). `start` must be a multiple of 8.
 * Bits past the end of the bitmap are ignored.
 */
export function deserialize(h: usize, startF: f64, nF: f64, inp: usize): i32 {
  const nbits = nbitsOf(h);
  if (!(startF >= 0) || !(nF >= 0)) return E_INVAL;
  const start = <u64>startF;
  if ((start & 7) != 0 || start > nbits) return E_INVAL;
  let n = <u64>nF;
  if (start + n > nbits) n = nbits - start;
  if (n == 0) return 0;
  const p = lvPtr(h, 0);
  const last = start + n - 1;
  const w0 = start >> 6;
  const w1 = last >> 6;
  let cnt = load<u64>(h, H_COUNT);
  // Word by word: take the new bits under the mask, keep the others.
  for (let w = w0; w <= w1; w++) {
    const m = rangeMask(w, w0, w1, start, last);
    // Gather 64 bits from the input stream starting at bit (w*64 - start) (a multiple of 8 away).
    let v: u64 = 0;
    const firstBit = w << 6;
    if (firstBit >= start && firstBit + 63 <= last) {
      // A whole word of input: the layout is little-endian bit order, so one load holds it.
      v = load<u64>(inp + <usize>((firstBit - start) >> 3));
    } else for (let b: u64 = 0; b < 8; b++) {
      const bit = firstBit + (b << 3);
      if (bit < start || bit > last) continue;
      v |= (<u64>load<u8>(inp + <usize>((bit - start) >> 3))) << (b << 3);
    }
    const old = word(p, w);
    const nw = (old & ~m) | (v & m);
    if (nw != old) {
      cnt = cnt - <u64>popcnt(old) + <u64>popcnt(nw);
      setWord(p, w, nw);
    }
  }
  store<u64>(h, cnt, H_COUNT);
  refreshUp(h, w0, w1);
  refreshSkip(h, w0, w1);
  return 0;
}

