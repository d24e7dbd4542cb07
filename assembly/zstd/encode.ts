// zstd encoder: one frame per call, single segment with the content size, no checksum.
// Over 600 lines on purpose: one encoder in the order a block is built (matches, literals,
// sequences and their tables, block output).
//
// Matches: LZ over a 128 KiB window with a hash chain (depth by level), the most recent
// offset tried first, one-step lazy matching from level 4. Literals: Huffman (1 or 4
// streams; weights FSE-compressed or direct) when it pays, else raw / RLE. Sequences: per
// symbol type the cheapest of predefined, RLE and a computed FSE table. A block that does
// not shrink is stored raw (and the repeat offsets are restored, as decoders skip it).

import { E_INVAL, E_OVERFLOW } from '../shared/common';
import {
  LL_BASE, LL_BITS, ML_BASE, ML_BITS, LL_DEFAULT, ML_DEFAULT, OF_DEFAULT, LL_DEFAULT_LOG, ML_DEFAULT_LOG, OF_DEFAULT_LOG,
  MAGIC, BLOCK_MAX, highbit, spreadSymbols,
} from './common';

const HLOG: u32 = 16;
const HSIZE: u32 = 1 << HLOG;
const CSIZE: u32 = 1 << 17;
const CMASK: u32 = CSIZE - 1;
const WINDOW: usize = <usize>(CSIZE - 1);
const MAX_SEQ: u32 = BLOCK_MAX / 3 + 16;

const head = memory.data(<i32>HSIZE * 4, 16);
const chain = memory.data(<i32>CSIZE * 4, 16);
const seqLL = memory.data(<i32>MAX_SEQ * 4, 16);
const seqML = memory.data(<i32>MAX_SEQ * 4, 16);
const seqOF = memory.data(<i32>MAX_SEQ * 4, 16);
const seqC = memory.data(<i32>MAX_SEQ * 4, 16); // codes: ll | ml << 8 | of << 16
const lits = memory.data(<i32>BLOCK_MAX + 64, 16);
const litOut = memory.data(<i32>BLOCK_MAX + 2048, 16);
// Room for a literals section larger than the block (it is then dropped for raw).
const blockOut = memory.data(<i32>BLOCK_MAX * 2 + 4096, 16);
const LL_CODE = memory.data(64, 16);
const ML_CODE = memory.data(128, 16);
let codesBuilt = false;

// Huffman.
const hCount = memory.data(256 * 4, 16);
const hWork = memory.data(256 * 4, 16);
const hSorted = memory.data(512 * 4, 16);
const hParent = memory.data(512 * 4, 16);
const hWeightN = memory.data(512 * 4, 16);
const hLen = memory.data(256, 16);
const hCode = memory.data(256 * 2, 16);
const hW = memory.data(256, 16);
const rank = memory.data(16 * 4, 16);

// FSE encoding.
const cells = memory.data(512, 16);
const normA = memory.data(64 * 2, 16);
const countA = memory.data(64 * 4, 16);
const stateTab = memory.data(3 * 512 * 2, 16);
const symTT = memory.data(3 * 64 * 8, 16); // deltaNbBits i32, deltaFind i32 per symbol
const symStart = memory.data(3 * 64 * 2, 16);
const normLL = memory.data(64 * 2, 16);
const normML = memory.data(64 * 2, 16);
const normOF = memory.data(64 * 2, 16);
const cumul = memory.data(64 * 2, 16);

function buildCodes(): void {
  for (let c = 0; c < 36; c++) {
    const b = unchecked(LL_BASE[c]);
    const n: u32 = 1 << unchecked(LL_BITS[c]);
    for (let v = b; v < b + n && v < 64; v++) store<u8>(LL_CODE + v, <u8>c);
  }
  for (let c = 0; c < 53; c++) {
    const b = unchecked(ML_BASE[c]) - 3;
    const n: u32 = 1 << unchecked(ML_BITS[c]);
    for (let v = b; v < b + n && v < 128; v++) store<u8>(ML_CODE + v, <u8>c);
  }
  codesBuilt = true;
}

@inline function llCode(ll: u32): u32 {
  return ll < 64 ? <u32>load<u8>(LL_CODE + ll) : highbit(ll) + 19;
}

@inline function mlCode(mlb: u32): u32 {
  return mlb < 128 ? <u32>load<u8>(ML_CODE + mlb) : highbit(mlb) + 36;
}

// ---------------------------------------------------------------------------------------
// Forward bit writer

let wAcc: u64 = 0;
let wN: u32 = 0;
let wPtr: usize = 0;

@inline function wBits(v: u32, n: u32): void {
  wAcc |= ((<u64>v) & (((<u64>1) << n) - 1)) << wN;
  wN += n;
  if (wN >= 32) {
    store<u32>(wPtr, <u32>wAcc);
    wPtr += 4;
    wAcc >>= 32;
    wN -= 32;
  }
}

/** Byte-aligned flush; with `mark` the end-of-stream 1 bit first. Returns the end. */
function wClose(mark: bool): usize {
  if (mark) wBits(1, 1);
  while (wN > 0) {
    store<u8>(wPtr, <u8>wAcc);
    wPtr++;
    wAcc >>= 8;
    wN = wN > 8 ? wN - 8 : 0;
  }
  wAcc = 0;
  return wPtr;
}

@inline function wStart(p: usize): void {
  wAcc = 0;
  wN = 0;
  wPtr = p;
}

// ---------------------------------------------------------------------------------------
// FSE

/** Fixed-point (8 fractional bits) log2 of x >= 1, linear between powers of two. */
@inline function log2fx(x: u32): u32 {
  const h = highbit(x);
  return (h << 8) + (((x << 8) >> h) - 256);
}

/**
 * Normalizes `countA` (nSym symbols, `total` > 0, at least 2 present) to 1 << log into `out`.
 */
function normalize(nSym: u32, total: u32, log: u32, out: usize): void {
  const size: u32 = 1 << log;
  let sum: i32 = 0;
  let big: u32 = 0;
  let bigN: i32 = 0;
  for (let s: u32 = 0; s < nSym; s++) {
    const c = load<u32>(countA + (<usize>s << 2));
    let n: i32 = 0;
    if (c) {
      n = <i32>(((<u64>c << log) + (<u64>total >> 1)) / <u64>total);
      if (n < 1) n = 1;
      if (n > bigN) {
        bigN = n;
        big = s;
      }
    }
    store<i16>(out + (<usize>s << 1), <i16>n);
    sum += n;
  }
  let diff: i32 = <i32>size - sum;
  if (diff > 0) {
    store<i16>(out + (<usize>big << 1), <i16>(bigN + diff));
    return;
  }
  while (diff < 0) {
    // Take from the largest remaining.
    let bs: u32 = 0;
    let bn: i32 = 1;
    for (let s: u32 = 0; s < nSym; s++) {
      const n = <i32>load<i16>(out + (<usize>s << 1));
      if (n > bn) {
        bn = n;
        bs = s;
      }
    }
    let take = bn - 1;
    if (take > -diff) take = -diff;
    if (take == 0) take = 1; // cannot happen when size >= nSym
    store<i16>(out + (<usize>bs << 1), <i16>(bn - take));
    diff += take;
  }
}

/** Writes a table description of `norm` (nSym symbols) at p; returns the end. */
function writeNCount(p: usize, norm: usize, nSym: u32, log: u32): usize {
  wStart(p);
  wBits(log - 5, 4);
  const size: i32 = 1 << log;
  let remaining: i32 = size + 1;
  let threshold: i32 = size;
  let nbBits: u32 = log + 1;
  let s: u32 = 0;
  let prev0 = false;
  while (remaining > 1 && s < nSym) {
    if (prev0) {
      const start = s;
      while (s < nSym && load<i16>(norm + (<usize>s << 1)) == 0) s++;
      let n = s - start;
      while (n >= 3) {
        wBits(3, 2);
        n -= 3;
      }
      wBits(n, 2);
    }
    const c = <i32>load<i16>(norm + (<usize>s << 1));
    let v: i32 = c + 1;
    const max: i32 = 2 * threshold - 1 - remaining;
    if (v >= threshold) v += max;
    wBits(<u32>v, v < max ? nbBits - 1 : nbBits);
    remaining -= c < 0 ? -c : c;
    prev0 = c == 0;
    s++;
    while (remaining < threshold) {
      nbBits--;
      threshold >>= 1;
    }
  }
  return wClose(false);
}

/** Builds encoding table `t` (0..2) from `norm`. */
function buildCTable(t: i32, norm: usize, nSym: u32, log: u32): void {
  spreadSymbols(norm, nSym, log, cells);
  const size: u32 = 1 << log;
  const st = stateTab + <usize>(t * 1024);
  const tt = symTT + <usize>(t * 512);
  const ss = symStart + <usize>(t * 128);
  let c: u32 = 0;
  for (let s: u32 = 0; s < nSym; s++) {
    store<u16>(cumul + (<usize>s << 1), <u16>c);
    store<u16>(ss + (<usize>s << 1), <u16>c);
    const n = <i32>load<i16>(norm + (<usize>s << 1));
    const k: u32 = n == -1 ? 1 : <u32>n;
    if (n != 0) {
      let dnb: i32;
      let dfs: i32;
      if (k == 1) {
        dnb = <i32>(log << 16) - <i32>size;
        dfs = <i32>c - 1;
      } else {
        const mbo = log - highbit(k - 1);
        dnb = <i32>(mbo << 16) - <i32>(k << mbo);
        dfs = <i32>c - <i32>k;
      }
      store<i32>(tt + (<usize>s << 3), dnb);
      store<i32>(tt + (<usize>s << 3), dfs, 4);
    }
    c += k;
  }
  for (let u: u32 = 0; u < size; u++) {
    const s = <usize>load<u8>(cells + u);
    const i = <u32>load<u16>(cumul + (s << 1));
    store<u16>(cumul + (s << 1), <u16>(i + 1));
    store<u16>(st + (<usize>i << 1), <u16>(size + u));
  }
}

@inline function fseInit(t: i32, s: u32): u32 {
  const i = <u32>load<u16>(symStart + <usize>(t * 128) + (<usize>s << 1));
  return <u32>load<u16>(stateTab + <usize>(t * 1024) + (<usize>i << 1));
}

@inline function fseEncode(t: i32, state: u32, s: u32): u32 {
  const tt = symTT + <usize>(t * 512) + (<usize>s << 3);
  const nb = <u32>(<i32>state + load<i32>(tt)) >> 16;
  wBits(state, nb);
  return <u32>load<u16>(stateTab + <usize>(t * 1024) + (<usize>((state >> nb) + <u32>load<i32>(tt, 4)) << 1));
}

/** Estimated cost (1/256 bits) of coding countA with `norm`; 0xffffffff when impossible. */
function fseCost(nSym: u32, norm: usize, normSyms: u32, log: u32): u64 {
  let cost: u64 = 0;
  for (let s: u32 = 0; s < nSym; s++) {
    const c = load<u32>(countA + (<usize>s << 2));
    if (!c) continue;
    if (s >= normSyms) return 0xffffffffffff;
    let n = <i32>load<i16>(norm + (<usize>s << 1));
    if (n == 0) return 0xffffffffffff;
    if (n < 0) n = 1;
    cost += <u64>c * <u64>((log << 8) - log2fx(<u32>n));
  }
  return cost;
}

// ---------------------------------------------------------------------------------------
// Huffman literals

/** Code lengths for hCount (>= 2 symbols present); returns the longest (<= 11). */
function huffLengths(): u32 {
  memory.copy(hWork, hCount, 256 * 4);
  while (true) {
    // Sort present symbols by count (insertion sort; <= 256 entries).
    let n: u32 = 0;
    for (let s: u32 = 0; s < 256; s++) {
      const c = load<u32>(hWork + (<usize>s << 2));
      if (!c) continue;
      let j = n;
      while (j > 0) {
        const o = load<u32>(hSorted + (<usize>(j - 1) << 2));
        if (load<u32>(hWork + (<usize>o << 2)) <= c) break;
        store<u32>(hSorted + (<usize>j << 2), o);
        j--;
      }
      store<u32>(hSorted + (<usize>j << 2), s);
      n++;
    }
    for (let i: u32 = 0; i < n; i++) store<u32>(hWeightN + (<usize>i << 2), load<u32>(hWork + (<usize>load<u32>(hSorted + (<usize>i << 2)) << 2)));
    // Two-queue Huffman: leaves 0..n-1, internal nodes n..2n-2.
    let li: u32 = 0;
    let ni: u32 = n;
    for (let k = n; k < 2 * n - 1; k++) {
      let a: u32;
      let b: u32;
      if (li < n && (ni >= k || load<u32>(hWeightN + (<usize>li << 2)) <= load<u32>(hWeightN + (<usize>ni << 2)))) a = li++;
      else a = ni++;
      if (li < n && (ni >= k || load<u32>(hWeightN + (<usize>li << 2)) <= load<u32>(hWeightN + (<usize>ni << 2)))) b = li++;
      else b = ni++;
      store<u32>(hWeightN + (<usize>k << 2), load<u32>(hWeightN + (<usize>a << 2)) + load<u32>(hWeightN + (<usize>b << 2)));
      store<u32>(hParent + (<usize>a << 2), k);
      store<u32>(hParent + (<usize>b << 2), k);
    }
    // Depths (reuse hWeightN as depth).
    const root = 2 * n - 2;
    store<u32>(hWeightN + (<usize>root << 2), 0);
    let maxLen: u32 = 0;
    for (let k = <i32>root - 1; k >= 0; k--) {
      const d = load<u32>(hWeightN + (<usize>load<u32>(hParent + (<usize>k << 2)) << 2)) + 1;
      store<u32>(hWeightN + (<usize>k << 2), d);
      if (<u32>k < n && d > maxLen) maxLen = d;
    }
    if (maxLen <= 11) {
      memory.fill(hLen, 0, 256);
      for (let i: u32 = 0; i < n; i++) store<u8>(hLen + load<u32>(hSorted + (<usize>i << 2)), <u8>load<u32>(hWeightN + (<usize>i << 2)));
      return maxLen;
    }
    for (let s: u32 = 0; s < 256; s++) {
      const c = load<u32>(hWork + (<usize>s << 2));
      if (c) store<u32>(hWork + (<usize>s << 2), (c >> 1) | 1);
    }
  }
}

/**
 * Huffman-compresses n literals at `src` into a literals section at `out` (header
 * included); returns its size, or 0 when raw / RLE is better.
 */
function huffLiterals(src: usize, n: u32, out: usize): u32 {
  memory.fill(hCount, 0, 256 * 4);
  for (let i: u32 = 0; i < n; i++) {
    const a = hCount + (<usize>load<u8>(src + i) << 2);
    store<u32>(a, load<u32>(a) + 1);
  }
  let distinct: u32 = 0;
  let last: u32 = 0;
  for (let s: u32 = 0; s < 256; s++) {
    if (load<u32>(hCount + (<usize>s << 2))) {
      distinct++;
      last = s;
    }
  }
  if (distinct < 2) return 0;
  const maxBits = huffLengths();
  // Weights and canonical codes.
  memory.fill(rank, 0, 64);
  for (let s: u32 = 0; s <= last; s++) {
    const l = <u32>load<u8>(hLen + s);
    const w = l ? maxBits + 1 - l : 0;
    store<u8>(hW + s, <u8>w);
    if (w) store<u32>(rank + (<usize>w << 2), load<u32>(rank + (<usize>w << 2)) + 1);
  }
  let pos: u32 = 0;
  for (let w: u32 = 1; w <= maxBits; w++) {
    const c = load<u32>(rank + (<usize>w << 2));
    store<u32>(rank + (<usize>w << 2), pos);
    pos += c << (w - 1);
  }
  for (let s: u32 = 0; s <= last; s++) {
    const w = <u32>load<u8>(hW + s);
    if (!w) continue;
    const start = load<u32>(rank + (<usize>w << 2));
    store<u32>(rank + (<usize>w << 2), start + (1 << (w - 1)));
    store<u16>(hCode + (<usize>s << 1), <u16>(start >> (w - 1)));
  }
  // Tree description at out + 5 (the header is written last, at most 5 bytes).
  const desc = out + 5;
  const nw = last; // weights of symbols 0..last-1
  let descEnd: usize = 0;
  // FSE-compressed weights.
  if (nw >= 2) {
    memory.fill(countA, 0, 16 * 4);
    let dv: u32 = 0;
    for (let i: u32 = 0; i < nw; i++) {
      const a = countA + (<usize>load<u8>(hW + i) << 2);
      if (load<u32>(a) == 0) dv++;
      store<u32>(a, load<u32>(a) + 1);
    }
    if (dv >= 2) {
      const log: u32 = 6;
      normalize(maxBits + 1, nw, log, normA);
      let ns = maxBits + 1;
      while (ns > 0 && load<i16>(normA + (<usize>(ns - 1) << 1)) == 0) ns--;
      const p = writeNCount(desc + 1, normA, ns, log);
      buildCTable(0, normA, ns, log);
      // Two interleaved states; the last two weights initialise them, the one decoded
      // second-to-last must need state bits (the decoder stops on that update's overflow).
      wStart(p);
      const wLast = <u32>load<u8>(hW + nw - 1);
      const wPrev = <u32>load<u8>(hW + nw - 2);
      let sA = fseInit(0, wPrev); // the state of weight nw-2
      let sB = fseInit(0, wLast);
      let i = <i32>nw - 3;
      let toB = true; // weight i goes to the state that does not hold weight i+1
      while (i >= 0) {
        const w = <u32>load<u8>(hW + i);
        if (toB) sB = fseEncode(0, sB, w);
        else sA = fseEncode(0, sA, w);
        toB = !toB;
        i--;
      }
      // Weight 0 is in State1 (read first, written last).
      const s1IsA = (nw & 1) == 0;
      const mask: u32 = (1 << log) - 1;
      if (s1IsA) {
        wBits(sB & mask, log);
        wBits(sA & mask, log);
      } else {
        wBits(sA & mask, log);
        wBits(sB & mask, log);
      }
      const e = wClose(true);
      const csize = e - (desc + 1);
      if (csize < 128) {
        store<u8>(desc, <u8>csize);
        descEnd = e;
      }
    }
  }
  if (nw <= 128) {
    const dsize: usize = 1 + ((<usize>nw + 1) >> 1);
    if (descEnd == 0 || dsize < descEnd - desc) {
      store<u8>(desc, <u8>(127 + nw));
      for (let i: u32 = 0; i < nw; i += 2) {
        const hi = <u32>load<u8>(hW + i);
        const lo = i + 1 < nw ? <u32>load<u8>(hW + i + 1) : 0;
        store<u8>(desc + 1 + (i >> 1), <u8>((hi << 4) | lo));
      }
      descEnd = desc + dsize;
    }
  }
  if (descEnd == 0) return 0;
  // Streams.
  let p = descEnd;
  const single = n < 256;
  if (single) {
    p = huffStream(src, n, p);
  } else {
    const seg = (n + 3) >> 2;
    const jt = p;
    p += 6;
    const e1 = huffStream(src, seg, p);
    const e2 = huffStream(src + seg, seg, e1);
    const e3 = huffStream(src + 2 * seg, seg, e2);
    p = huffStream(src + 3 * seg, n - 3 * seg, e3);
    store<u16>(jt, <u16>(e1 - (jt + 6)));
    store<u16>(jt, <u16>(e2 - e1), 2);
    store<u16>(jt, <u16>(e3 - e2), 4);
  }
  const comp = <u32>(p - desc);
  // Header.
  let hs: u32;
  if (single) {
    if (comp > 1023) return 0;
    hs = 3;
  } else if (n <= 1023 && comp <= 1023) {
    hs = 3;
  } else if (n <= 16383 && comp <= 16383) {
    hs = 4;
  } else {
    hs = 5;
  }
  const total = hs + comp;
  if (total + 16 >= n) return 0; // not worth it
  const h = out + 5 - hs;
  if (hs == 3) {
    const v: u32 = 2 | ((single ? 0 : 1) << 2) | (n << 4) | (comp << 14);
    store<u16>(h, <u16>v);
    store<u8>(h, <u8>(v >> 16), 2);
  } else if (hs == 4) {
    store<u32>(h, 2 | (2 << 2) | (n << 4) | (comp << 18));
  } else {
    const v: u64 = 2 | (3 << 2) | (<u64>n << 4) | (<u64>comp << 22);
    store<u32>(h, <u32>v);
    store<u8>(h, <u8>(v >> 32), 4);
  }
  if (hs < 5) memory.copy(out, h, total);
  return total;
}

function huffStream(src: usize, n: u32, out: usize): usize {
  wStart(out);
  for (let i = <i32>n - 1; i >= 0; i--) {
    const s = <usize>load<u8>(src + <usize>i);
    wBits(<u32>load<u16>(hCode + (s << 1)), <u32>load<u8>(hLen + s));
  }
  return wClose(true);
}

function rawLiterals(src: usize, n: u32, out: usize, type: u32): u32 {
  let hs: u32;
  if (n < 32) {
    store<u8>(out, <u8>(type | (n << 3)));
    hs = 1;
  } else if (n < 4096) {
    store<u16>(out, <u16>(type | (1 << 2) | (n << 4)));
    hs = 2;
  } else {
    const v = type | (3 << 2) | (n << 4);
    store<u16>(out, <u16>v);
    store<u8>(out, <u8>(v >> 16), 2);
    hs = 3;
  }
  if (type == 1) {
    store<u8>(out + hs, load<u8>(src));
    return hs + 1;
  }
  memory.copy(out + hs, src, n);
  return hs + n;
}

// ---------------------------------------------------------------------------------------
// Sequences section

/** Chooses and writes the table of one symbol type; returns the mode, sets up table t. */
function seqMode(t: i32, nSym: u32, maxLog: u32, nbSeq: u32, defNorm: usize, defSyms: u32, defLog: u32, normOut: usize): u32 {
  // countA holds the histogram.
  let distinct: u32 = 0;
  let lastS: u32 = 0;
  for (let s: u32 = 0; s < nSym; s++) {
    if (load<u32>(countA + (<usize>s << 2))) {
      distinct++;
      lastS = s;
    }
  }
  if (distinct == 1) {
    store<u8>(tabPtr, <u8>lastS);
    tabPtr++;
    return 1;
  }
  const defCost = fseCost(lastS + 1, defNorm, defSyms, defLog);
  let log = nbSeq > 1 ? highbit(nbSeq - 1) : 0;
  if (log > maxLog) log = maxLog;
  const minLog = highbit(distinct) + 2;
  if (log < minLog) log = minLog;
  if (log < 5) log = 5;
  if (log > maxLog) log = maxLog;
  normalize(lastS + 1, nbSeq, log, normOut);
  const hdrEnd = writeNCount(tabPtr, normOut, lastS + 1, log);
  const fseC = fseCost(lastS + 1, normOut, lastS + 1, log) + (<u64>(hdrEnd - tabPtr) << 11);
  if (defCost <= fseC) {
    buildCTable(t, defNorm, defSyms, defLog);
    seqLogs[t] = defLog;
    return 0;
  }
  buildCTable(t, normOut, lastS + 1, log);
  seqLogs[t] = log;
  tabPtr = hdrEnd;
  return 2;
}

let tabPtr: usize = 0;
const seqLogs = new StaticArray<u32>(3);
const modes = new StaticArray<u32>(3);
const defaultNorms = memory.data(3 * 64 * 2, 16);
let defaultsCopied = false;

function copyDefaults(): void {
  for (let i = 0; i < 36; i++) store<i16>(defaultNorms + (<usize>i << 1), unchecked(LL_DEFAULT[i]));
  for (let i = 0; i < 53; i++) store<i16>(defaultNorms + 128 + (<usize>i << 1), unchecked(ML_DEFAULT[i]));
  for (let i = 0; i < 29; i++) store<i16>(defaultNorms + 256 + (<usize>i << 1), unchecked(OF_DEFAULT[i]));
  defaultsCopied = true;
}

const T_LL: i32 = 0;
const T_OF: i32 = 1;
const T_ML: i32 = 2;

/** Writes the sequences section at p (limit: end); returns its end or 0 when it overflows. */
function writeSequences(p: usize, end: usize, nbSeq: u32): usize {
  if (nbSeq < 128) {
    store<u8>(p, <u8>nbSeq);
    p++;
  } else if (nbSeq < 0x7f00) {
    store<u8>(p, <u8>((nbSeq >> 8) + 0x80));
    store<u8>(p, <u8>nbSeq, 1);
    p += 2;
  } else {
    store<u8>(p, 255);
    store<u16>(p, <u16>(nbSeq - 0x7f00), 1);
    p += 3;
  }
  if (nbSeq == 0) return p;
  // Codes and histograms.
  for (let i: u32 = 0; i < nbSeq; i++) {
    const o = <usize>i << 2;
    const c = llCode(load<u32>(seqLL + o)) | (mlCode(load<u32>(seqML + o) - 3) << 8) | (highbit(load<u32>(seqOF + o)) << 16);
    store<u32>(seqC + o, c);
  }
  const modesAt = p;
  tabPtr = p + 1;
  for (let t = 0; t < 3; t++) {
    const nSym: u32 = t == T_LL ? 36 : t == T_ML ? 53 : 32;
    const shift: u32 = t == T_LL ? 0 : t == T_ML ? 8 : 16;
    memory.fill(countA, 0, 64 * 4);
    for (let i: u32 = 0; i < nbSeq; i++) {
      const a = countA + (<usize>((load<u32>(seqC + (<usize>i << 2)) >> shift) & 0xff) << 2);
      store<u32>(a, load<u32>(a) + 1);
    }
    if (t == T_LL) modes[t] = seqMode(t, nSym, 9, nbSeq, defaultNorms, 36, LL_DEFAULT_LOG, normLL);
    else if (t == T_OF) modes[t] = seqMode(t, nSym, 8, nbSeq, defaultNorms + 256, 29, OF_DEFAULT_LOG, normOF);
    else modes[t] = seqMode(t, nSym, 9, nbSeq, defaultNorms + 128, 53, ML_DEFAULT_LOG, normML);
  }
  store<u8>(modesAt, <u8>((modes[T_LL] << 6) | (modes[T_OF] << 4) | (modes[T_ML] << 2)));
  const rleLL = modes[T_LL] == 1;
  const rleOF = modes[T_OF] == 1;
  const rleML = modes[T_ML] == 1;
  // Bitstream, last sequence first.
  wStart(tabPtr);
  let i = nbSeq - 1;
  let c = load<u32>(seqC + (<usize>i << 2));
  let sLL = rleLL ? 0 : fseInit(T_LL, c & 0xff);
  let sML = rleML ? 0 : fseInit(T_ML, (c >> 8) & 0xff);
  let sOF = rleOF ? 0 : fseInit(T_OF, c >> 16);
  while (true) {
    const o = <usize>i << 2;
    const lc = c & 0xff;
    const mc = (c >> 8) & 0xff;
    const oc = c >> 16;
    wBits(load<u32>(seqLL + o) - unchecked(LL_BASE[lc]), <u32>unchecked(LL_BITS[lc]));
    wBits(load<u32>(seqML + o) - unchecked(ML_BASE[mc]), <u32>unchecked(ML_BITS[mc]));
    wBits(load<u32>(seqOF + o) - (1 << oc), oc);
    if (wPtr > end) return 0;
    if (i == 0) break;
    i--;
    c = load<u32>(seqC + (<usize>i << 2));
    if (!rleOF) sOF = fseEncode(T_OF, sOF, c >> 16);
    if (!rleML) sML = fseEncode(T_ML, sML, (c >> 8) & 0xff);
    if (!rleLL) sLL = fseEncode(T_LL, sLL, c & 0xff);
  }
  if (!rleML) wBits(sML, seqLogs[T_ML]);
  if (!rleOF) wBits(sOF, seqLogs[T_OF]);
  if (!rleLL) wBits(sLL, seqLogs[T_LL]);
  const e = wClose(true);
  return e > end ? 0 : e;
}

// ---------------------------------------------------------------------------------------
// Match finding

let rep0: u32 = 1;
let rep1: u32 = 4;
let rep2: u32 = 8;
let nSeq: u32 = 0;
let nLit: u32 = 0;
let bestLen: u32 = 0;
let bestOff: u32 = 0;
let base: usize = 0;
let insNext: usize = 0;

@inline function hash4(v: u32): u32 {
  return (v * 2654435761) >> (32 - HLOG);
}

@inline function insert(p: usize): void {
  const idx = <u32>(p - base) + 1;
  const h = hash4(load<u32>(p));
  store<u32>(chain + (<usize>((idx - 1) & CMASK) << 2), load<u32>(head + (<usize>h << 2)));
  store<u32>(head + (<usize>h << 2), idx);
}

@inline function insertUpTo(p: usize): void {
  while (insNext < p) {
    insert(insNext);
    insNext++;
  }
}

@inline function countMatch(a: usize, b: usize, aEnd: usize): u32 {
  const start = a;
  while (a + 8 <= aEnd) {
    const x = load<u64>(a) ^ load<u64>(b);
    if (x) return <u32>(a - start) + <u32>(ctz<u64>(x) >> 3);
    a += 8;
    b += 8;
  }
  while (a < aEnd && load<u8>(a) == load<u8>(b)) {
    a++;
    b++;
  }
  return <u32>(a - start);
}

/** Longest match at p (candidates before p) into bestLen / bestOff. */
function search(p: usize, end: usize, depth: u32): void {
  bestLen = 0;
  bestOff = 0;
  const v = load<u32>(p);
  let cand = load<u32>(head + (<usize>hash4(v) << 2));
  while (cand != 0 && depth > 0) {
    depth--;
    const c = base + <usize>cand - 1;
    const dist = p - c;
    if (dist > WINDOW || dist == 0) break;
    if (load<u32>(c) == v && load<u8>(c + bestLen) == load<u8>(p + bestLen)) {
      const l = countMatch(p, c, end);
      if (l > bestLen) {
        bestLen = l;
        bestOff = <u32>dist;
        if (p + l >= end) break;
      }
    }
    const next = load<u32>(chain + (<usize>((cand - 1) & CMASK) << 2));
    if (next >= cand) break;
    cand = next;
  }
}

function emit(anchor: usize, p: usize, ml: u32, off: u32): void {
  const ll = <u32>(p - anchor);
  memory.copy(lits + nLit, anchor, ll);
  nLit += ll;
  let ofv: u32;
  if (ll > 0) {
    if (off == rep0) {
      ofv = 1;
    } else if (off == rep1) {
      ofv = 2;
      rep1 = rep0;
      rep0 = off;
    } else if (off == rep2) {
      ofv = 3;
      rep2 = rep1;
      rep1 = rep0;
      rep0 = off;
    } else {
      ofv = off + 3;
      rep2 = rep1;
      rep1 = rep0;
      rep0 = off;
    }
  } else {
    if (off == rep1) {
      ofv = 1;
      rep1 = rep0;
      rep0 = off;
    } else if (off == rep2) {
      ofv = 2;
      rep2 = rep1;
      rep1 = rep0;
      rep0 = off;
    } else if (off == rep0 - 1) {
      ofv = 3;
      rep2 = rep1;
      rep1 = rep0;
      rep0 = off;
    } else {
      ofv = off + 3;
      rep2 = rep1;
      rep1 = rep0;
      rep0 = off;
    }
  }
  const o = <usize>nSeq << 2;
  store<u32>(seqLL + o, ll);
  store<u32>(seqML + o, ml);
  store<u32>(seqOF + o, ofv);
  nSeq++;
}

function parseBlock(bs: usize, be: usize, level: i32): void {
  nSeq = 0;
  nLit = 0;
  let p = bs;
  let anchor = bs;
  const depth: u32 = level <= 1 ? 1 : level == 2 ? 2 : level == 3 ? 6 : level <= 5 ? 12 : level <= 7 ? 24 : level <= 9 ? 48 : level <= 12 ? 96 : level <= 15 ? 192 : 384;
  const full = level >= 3;
  const lazy = level >= 4;
  if (be - bs >= 16) {
    const limit = be - 8;
    while (p < limit) {
      if (full) insertUpTo(p);
      // The most recent offset first (cheapest to code).
      let rl: u32 = 0;
      if (<usize>rep0 <= p - base && p > anchor) {
        rl = countMatch(p, p - rep0, be);
      }
      search(p, be, depth);
      if (!full) insert(p);
      let ml = bestLen;
      let off = bestOff;
      if (rl >= 4 && rl + 1 >= ml) {
        ml = rl;
        off = rep0;
      }
      if (ml < 4) {
        p += full ? 1 : 1 + ((p - anchor) >> 7);
        continue;
      }
      if (lazy && p + 1 < limit) {
        if (full) insertUpTo(p + 1);
        search(p + 1, be, depth);
        if (bestLen > ml + 1) {
          p++;
          ml = bestLen;
          off = bestOff;
        }
      }
      // Extend backwards.
      let m = p - <usize>off;
      while (p > anchor && m > base && load<u8>(p - 1) == load<u8>(m - 1)) {
        p--;
        m--;
        ml++;
      }
      emit(anchor, p, ml, off);
      p += ml;
      anchor = p;
      if (!full && p - 2 < limit && p - 2 > bs) insert(p - 2);
      if (nSeq >= MAX_SEQ - 1) break;
    }
  }
  const rest = <u32>(be - anchor);
  memory.copy(lits + nLit, anchor, rest);
  nLit += rest;
}

/** Compresses one block into blockOut; returns its size or 0 when raw is at least as small. */
function compressBlock(bs: usize, be: usize, level: i32): u32 {
  const size = <u32>(be - bs);
  parseBlock(bs, be, level);
  let p = blockOut;
  let lsz = huffLiterals(lits, nLit, p);
  if (lsz == 0) {
    let rle = nLit > 1;
    const b0 = nLit ? load<u8>(lits) : 0;
    for (let i: u32 = 1; rle && i < nLit; i++) if (load<u8>(lits + i) != b0) rle = false;
    lsz = rawLiterals(lits, nLit, p, rle ? 1 : 0);
  }
  p += lsz;
  if (lsz >= size) return 0;
  const e = writeSequences(p, blockOut + size, nSeq);
  if (e == 0) return 0;
  const n = <u32>(e - blockOut);
  return n < size ? n : 0;
}

/**
 * Compresses [src, src + srcLen) at `level` (1..19) into one zstd frame at
 * [dst, dst + dstLen). Returns the frame size, E_OVERFLOW when it does not fit, E_INVAL for
 * a bad level. 32 readable bytes must follow the input.
 */
export function compress(src: usize, srcLen: u32, dst: usize, dstLen: u32, level: i32): i32 {
  if (level < 1 || level > 19) return E_INVAL;
  if (!codesBuilt) buildCodes();
  if (!defaultsCopied) copyDefaults();
  memory.fill(head, 0, HSIZE * 4);
  base = src;
  insNext = src;
  rep0 = 1;
  rep1 = 4;
  rep2 = 8;
  let op = dst;
  const oend = dst + dstLen;
  // Frame header: single segment, content size.
  let fcsFlag: u32;
  let fcsSize: u32;
  if (srcLen < 256) {
    fcsFlag = 0;
    fcsSize = 1;
  } else if (srcLen < 65536 + 256) {
    fcsFlag = 1;
    fcsSize = 2;
  } else {
    fcsFlag = 2;
    fcsSize = 4;
  }
  if (dstLen < 5 + fcsSize) return E_OVERFLOW;
  store<u32>(op, MAGIC);
  store<u8>(op, <u8>((fcsFlag << 6) | (1 << 5)), 4);
  op += 5;
  const fcs = fcsSize == 2 ? srcLen - 256 : srcLen;
  for (let i: u32 = 0; i < fcsSize; i++) store<u8>(op + i, <u8>(fcs >> (i << 3)));
  op += fcsSize;
  let ip = src;
  const iend = src + srcLen;
  do {
    const bs = ip;
    let be = bs + BLOCK_MAX;
    if (be > iend) be = iend;
    const size = <u32>(be - bs);
    const last: u32 = be == iend ? 1 : 0;
    // All one byte: an RLE block.
    let same = size > 0;
    if (same) {
      const b0 = load<u8>(bs);
      let q = bs + 1;
      while (q < be && load<u8>(q) == b0) q++;
      same = q == be;
    }
    if (same) {
      if (op + 4 > oend) return E_OVERFLOW;
      const bh = last | (1 << 1) | (size << 3);
      store<u16>(op, <u16>bh);
      store<u8>(op, <u8>(bh >> 16), 2);
      store<u8>(op, load<u8>(bs), 3);
      op += 4;
    } else {
      const s0 = rep0;
      const s1 = rep1;
      const s2 = rep2;
      const n = size >= 32 ? compressBlock(bs, be, level) : 0;
      if (n > 0) {
        if (op + 3 + n > oend) return E_OVERFLOW;
        const bh = last | (2 << 1) | (n << 3);
        store<u16>(op, <u16>bh);
        store<u8>(op, <u8>(bh >> 16), 2);
        memory.copy(op + 3, blockOut, n);
        op += 3 + n;
      } else {
        // Raw: decoders do not see its sequences, so the repeat offsets stay.
        rep0 = s0;
        rep1 = s1;
        rep2 = s2;
        if (op + 3 + size > oend) return E_OVERFLOW;
        const bh = last | (size << 3);
        store<u16>(op, <u16>bh);
        store<u8>(op, <u8>(bh >> 16), 2);
        memory.copy(op + 3, bs, size);
        op += 3 + size;
      }
    }
    ip = be;
  } while (ip < iend);
  return <i32>(op - dst);
}
