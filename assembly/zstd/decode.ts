// zstd decoder (RFC 8878): any frame without a dictionary, into a buffer of declared size.
// Over 600 lines on purpose: one decoder in the format's reading order (frame, block,
// literals, Huffman and FSE tables, sequences), sections marked below.
//
// The whole output is one flat buffer, so matches reach back to the frame's start directly
// (no window ring). Corrupt input gives a status code; errOffset is the input offset of
// the part that was being decoded (frame header, block header, literals, sequences).
//
// Memory contract (the JS wrapper keeps it): 32 readable bytes after the input and 32
// writable scratch bytes after the output (8- and 16-byte copies run up to 15 bytes past
// a copy's end and read up to 16 bytes past the literals; nothing beyond dstLen is ever
// part of the result).
//
// Speed (64 KiB clusters of binary data, level 3): literals are decoded four Huffman
// streams at a time from a 2^11-entry table, in rounds of passes whose input and output
// bounds are checked once per round; sequences are decoded in chunks into seqBuf (a tight
// loop over the bitstream and the FSE tables at fixed addresses, again with the stream's
// bounds checked once per round, then a careful loop for its last bytes) and then
// executed, every length and offset checked before anything is copied.

import { E_CORRUPT, E_OVERFLOW, E_TRUNCATED, E_NOTSUP, E_CHECKSUM } from '../shared/common';
import {
  LL_BASE, LL_BITS, ML_BASE, ML_BITS, LL_DEFAULT, ML_DEFAULT, OF_DEFAULT, LL_DEFAULT_LOG, ML_DEFAULT_LOG, OF_DEFAULT_LOG,
  MAGIC, SKIPPABLE_MASK, SKIPPABLE_MAGIC, BLOCK_MAX, highbit, spreadSymbols, xxh64,
} from './common';

/** Stop successfully once the output is full (qcow2 clusters: trailing input is padding). */
export const FLAG_CLUSTER: i32 = 1;

let errOffset: i32 = -1;
let inBase: usize = 0;

/** Input offset at which the last error was detected (-1 if none). */
export function errorOffset(): i32 {
  return errOffset;
}

@inline function fail(status: i32, at: usize): i32 {
  errOffset = <i32>(at - inBase);
  return status;
}

// ---------------------------------------------------------------------------------------
// Working memory

const LIT_BUF_SIZE: i32 = BLOCK_MAX + 64;
const litBuf = memory.data(LIT_BUF_SIZE, 16);
/** Huffman decoding table: 2^maxBits u16 entries (symbol << 8 | bits). */
const hufTable = memory.data(2048 * 2, 16);
const weights = memory.data(256 + 16, 16);
const rankCount = memory.data(16 * 4, 16);
const rankStart = memory.data(16 * 4, 16);
// FSE decoding tables, u64 entries: next-state baseline (16) | state bits (8) << 16 |
// extra bits (8) << 24 | value baseline (32) << 32.
const llTableC = memory.data(512 * 8, 16);
const mlTableC = memory.data(512 * 8, 16);
const ofTableC = memory.data(256 * 8, 16);
const llTableD = memory.data(64 * 8, 16);
const mlTableD = memory.data(64 * 8, 16);
const ofTableD = memory.data(32 * 8, 16);
const wTable = memory.data(64 * 8, 16);
const norm = memory.data(64 * 2, 16);
const cells = memory.data(512, 16);
const symNext = memory.data(64 * 2, 16);
const symHi = memory.data(64 * 8, 16);

const K_LL: i32 = 0;
const K_ML: i32 = 1;
const K_OF: i32 = 2;
const K_W: i32 = 3;

let defaultsBuilt = false;

// Per-frame state.
/** Index bits of the Huffman decoding table (the longest code zstd allows). */
const HUF_LOG: u32 = 11;
let hufValid = false;
let llLog: u32 = 0;
let mlLog: u32 = 0;
let ofLog: u32 = 0;
let seqValid = false;
let rep0: u32 = 1;
let rep1: u32 = 4;
let rep2: u32 = 8;
let blockMax: u32 = 0;

// Literals of the current block.
let litPtr: usize = 0;
let litSize: u32 = 0;

/**
 * Builds an FSE decoding table from `norm` (nSym symbols, accuracy `log`).
 * Returns false for a distribution that does not fill the table.
 */
function buildFse(nSym: u32, log: u32, table: usize, kind: i32): bool {
  if (!spreadSymbols(norm, nSym, log, cells)) return false;
  const size: u32 = 1 << log;
  // Per symbol: its first state count and the entry's symbol part (extra bits, value
  // baseline).
  for (let s: u32 = 0; s < nSym; s++) {
    const n = <i32>load<i16>(norm + (<usize>s << 1));
    store<u16>(symNext + (<usize>s << 1), <u16>(n == -1 ? 1 : n));
    let base: u64;
    let extra: u64;
    if (kind == K_LL) {
      base = <u64>unchecked(LL_BASE[s]);
      extra = <u64>unchecked(LL_BITS[s]);
    } else if (kind == K_ML) {
      base = <u64>unchecked(ML_BASE[s]);
      extra = <u64>unchecked(ML_BITS[s]);
    } else if (kind == K_OF) {
      base = (<u64>1) << s;
      extra = <u64>s;
    } else {
      base = <u64>s;
      extra = 0;
    }
    store<u64>(symHi + (<usize>s << 3), (extra << 24) | (base << 32));
  }
  for (let u: u32 = 0; u < size; u++) {
    const s = <usize>load<u8>(cells + u);
    const x = <u32>load<u16>(symNext + (s << 1));
    store<u16>(symNext + (s << 1), <u16>(x + 1));
    const nb = log - highbit(x);
    const next = (x << nb) - size;
    store<u64>(table + (<usize>u << 3), load<u64>(symHi + (s << 3)) | <u64>(next | (nb << 16)));
  }
  return true;
}

function buildDefaults(): void {
  for (let i = 0; i < 36; i++) store<i16>(norm + (<usize>i << 1), unchecked(LL_DEFAULT[i]));
  buildFse(36, LL_DEFAULT_LOG, llTableD, K_LL);
  for (let i = 0; i < 53; i++) store<i16>(norm + (<usize>i << 1), unchecked(ML_DEFAULT[i]));
  buildFse(53, ML_DEFAULT_LOG, mlTableD, K_ML);
  for (let i = 0; i < 29; i++) store<i16>(norm + (<usize>i << 1), unchecked(OF_DEFAULT[i]));
  buildFse(29, OF_DEFAULT_LOG, ofTableD, K_OF);
  defaultsBuilt = true;
}

// ---------------------------------------------------------------------------------------
// FSE table description (forward bitstream)

let ncLog: u32 = 0;
let ncSyms: u32 = 0;

@inline function peek32(ip: usize, iend: usize, bitPos: u32): u32 {
  const p = ip + (bitPos >> 3);
  let v: u32;
  if (p + 4 <= iend) {
    v = load<u32>(p);
  } else {
    v = 0;
    for (let i: u32 = 0; i < 4; i++) if (p + i < iend) v |= (<u32>load<u8>(p + i)) << (i << 3);
  }
  return v >> (bitPos & 7);
}

/**
 * Reads a normalized distribution into `norm`; returns the bytes used or a status.
 * Sets ncLog and ncSyms.
 */
function readNCount(ip: usize, iend: usize, maxSym: u32, maxLog: u32): i32 {
  if (ip >= iend) return E_TRUNCATED;
  let bitPos: u32 = 0;
  const log = (peek32(ip, iend, 0) & 15) + 5;
  bitPos = 4;
  if (log > maxLog) return E_CORRUPT;
  const size: i32 = 1 << log;
  let remaining: i32 = size + 1;
  let threshold: i32 = size;
  let nbBits: u32 = log + 1;
  let s: u32 = 0;
  let prev0 = false;
  while (remaining > 1) {
    if (prev0) {
      let r: u32;
      do {
        r = peek32(ip, iend, bitPos) & 3;
        bitPos += 2;
        for (let k: u32 = 0; k < r; k++) {
          if (s > maxSym) return E_CORRUPT;
          store<i16>(norm + (<usize>s << 1), 0);
          s++;
        }
      } while (r == 3);
    }
    if (s > maxSym) return E_CORRUPT;
    const max: i32 = 2 * threshold - 1 - remaining;
    const v = <i32>peek32(ip, iend, bitPos);
    let c: i32;
    if ((v & (threshold - 1)) < max) {
      c = v & (threshold - 1);
      bitPos += nbBits - 1;
    } else {
      c = v & (2 * threshold - 1);
      if (c >= threshold) c -= max;
      bitPos += nbBits;
    }
    const prob = c - 1;
    remaining -= prob < 0 ? -prob : prob;
    store<i16>(norm + (<usize>s << 1), <i16>prob);
    s++;
    prev0 = prob == 0;
    if (remaining < 1) return E_CORRUPT;
    while (remaining < threshold) {
      nbBits--;
      threshold >>= 1;
    }
    if ((bitPos >> 3) > <u32>(iend - ip)) return E_TRUNCATED;
  }
  const used = (bitPos + 7) >> 3;
  if (used > <u32>(iend - ip)) return E_TRUNCATED;
  ncLog = log;
  ncSyms = s;
  return <i32>used;
}

// ---------------------------------------------------------------------------------------
// Backward bitstream

let bStart: usize = 0;
let bPtr: usize = 0;
let bC: u64 = 0;
let bN: u32 = 0;

function bInit(start: usize, end: usize): bool {
  if (end <= start) return false;
  const last = <u32>load<u8>(end - 1);
  if (last == 0) return false;
  const h = highbit(last);
  const len = end - start;
  bStart = start;
  if (len >= 8) {
    bPtr = end - 8;
    bC = load<u64>(bPtr);
    bN = 8 - h;
  } else {
    let c: u64 = 0;
    for (let i: usize = 0; i < len; i++) c |= (<u64>load<u8>(start + i)) << (<u64>i << 3);
    bC = c;
    bPtr = start;
    bN = 8 - h + ((8 - <u32>len) << 3);
  }
  return true;
}

@inline function bReload(): void {
  if (bPtr > bStart) {
    let nb = <usize>(bN >> 3);
    const avail = bPtr - bStart;
    if (nb > avail) nb = avail;
    bPtr -= nb;
    bN -= <u32>nb << 3;
    bC = load<u64>(bPtr);
  }
}

/** Reads n (0..32) bits; past the start it yields garbage that bDone() then rejects. */
@inline function bRead(n: u32): u32 {
  const v = <u32>(((bC << (<u64>bN)) >> 1) >> (<u64>(63 - n)));
  bN += n;
  return v;
}

@inline function bDone(): bool {
  return bPtr == bStart && bN == 64;
}

// ---------------------------------------------------------------------------------------
// Huffman

/** Reads a Huffman tree description and builds hufTable; returns bytes used or a status. */
function readHuffman(ip: usize, iend: usize): i32 {
  if (ip >= iend) return E_TRUNCATED;
  const hb = <u32>load<u8>(ip);
  let n: u32 = 0;
  let used: u32;
  if (hb >= 128) {
    n = hb - 127;
    used = 1 + ((n + 1) >> 1);
    if (<usize>used > iend - ip) return E_TRUNCATED;
    for (let i: u32 = 0; i < n; i += 2) {
      const b = <u32>load<u8>(ip + 1 + (i >> 1));
      store<u8>(weights + i, <u8>(b >> 4));
      store<u8>(weights + i + 1, <u8>(b & 15));
    }
  } else {
    if (hb == 0) return E_CORRUPT;
    used = 1 + hb;
    if (<usize>used > iend - ip) return E_TRUNCATED;
    const p = ip + 1;
    const e = p + hb;
    const r = readNCount(p, e, 15, 6);
    if (r < 0) return r;
    const log = ncLog;
    if (!buildFse(ncSyms, log, wTable, K_W)) return E_CORRUPT;
    if (!bInit(p + <usize>r, e)) return E_CORRUPT;
    let s1 = bRead(log);
    let s2 = bRead(log);
    bReload();
    if (bN > 64) return E_CORRUPT;
    while (true) {
      if (n >= 254) return E_CORRUPT;
      let en = load<u64>(wTable + (<usize>s1 << 3));
      store<u8>(weights + n, <u8>(en >> 32));
      n++;
      s1 = (<u32>en & 0xffff) + bRead(<u32>(en >> 16) & 0xff);
      bReload();
      if (bN > 64) {
        store<u8>(weights + n, <u8>(load<u64>(wTable + (<usize>s2 << 3)) >> 32));
        n++;
        break;
      }
      en = load<u64>(wTable + (<usize>s2 << 3));
      store<u8>(weights + n, <u8>(en >> 32));
      n++;
      s2 = (<u32>en & 0xffff) + bRead(<u32>(en >> 16) & 0xff);
      bReload();
      if (bN > 64) {
        store<u8>(weights + n, <u8>(load<u64>(wTable + (<usize>s1 << 3)) >> 32));
        n++;
        break;
      }
    }
  }
  // Weights -> table.
  memory.fill(rankCount, 0, 16 * 4);
  let sum: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const w = <u32>load<u8>(weights + i);
    if (w > 11) return E_CORRUPT;
    if (w) {
      sum += 1 << (w - 1);
      store<u32>(rankCount + (<usize>w << 2), load<u32>(rankCount + (<usize>w << 2)) + 1);
    }
  }
  if (sum == 0) return E_CORRUPT;
  const maxBits = highbit(sum) + 1;
  if (maxBits > 11) return E_CORRUPT;
  const rest = (<u32>1 << maxBits) - sum;
  if (rest & (rest - 1)) return E_CORRUPT;
  const lastW = highbit(rest) + 1;
  store<u8>(weights + n, <u8>lastW);
  store<u32>(rankCount + (<usize>lastW << 2), load<u32>(rankCount + (<usize>lastW << 2)) + 1);
  const nSym = n + 1;
  if (load<u32>(rankCount + 4) < 2) return E_CORRUPT;
  // The table always has 2^HUF_LOG entries (a code of maxBits < HUF_LOG bits fills
  // 2^(HUF_LOG - maxBits) times as many), so the decoders shift by a constant.
  const scale = HUF_LOG - maxBits;
  let pos: u32 = 0;
  for (let w: u32 = 1; w <= maxBits; w++) {
    store<u32>(rankStart + (<usize>w << 2), pos);
    pos += load<u32>(rankCount + (<usize>w << 2)) << (w - 1 + scale);
  }
  for (let s: u32 = 0; s < nSym; s++) {
    const w = <u32>load<u8>(weights + s);
    if (w == 0) continue;
    const start = load<u32>(rankStart + (<usize>w << 2));
    const len: u32 = 1 << (w - 1 + scale);
    const entry = <u16>((s << 8) | (maxBits + 1 - w));
    const at = hufTable + (<usize>start << 1);
    if (len >= 4) {
      const e4 = <u64>entry * 0x0001000100010001;
      for (let i: u32 = 0; i < len; i += 4) store<u64>(at + (<usize>i << 1), e4);
    } else {
      for (let i: u32 = 0; i < len; i++) store<u16>(at + (<usize>i << 1), entry);
    }
    store<u32>(rankStart + (<usize>w << 2), start + len);
  }
  hufValid = true;
  return <i32>used;
}

/**
 * Finishes one Huffman stream from the bitstream globals (bStart / bPtr / bC / bN) into
 * [op, oend), carefully; true when the stream ends exactly there.
 */
function hufTail(op: usize, oend: usize): bool {
  const sh: u64 = 64 - <u64>HUF_LOG;
  const t = hufTable;
  while (op + 4 <= oend) {
    bReload();
    let en = <u32>load<u16>(t + (<usize>((bC << <u64>bN) >> sh) << 1));
    bN += en & 0xff;
    store<u8>(op, <u8>(en >> 8));
    en = <u32>load<u16>(t + (<usize>((bC << <u64>bN) >> sh) << 1));
    bN += en & 0xff;
    store<u8>(op, <u8>(en >> 8), 1);
    en = <u32>load<u16>(t + (<usize>((bC << <u64>bN) >> sh) << 1));
    bN += en & 0xff;
    store<u8>(op, <u8>(en >> 8), 2);
    en = <u32>load<u16>(t + (<usize>((bC << <u64>bN) >> sh) << 1));
    bN += en & 0xff;
    store<u8>(op, <u8>(en >> 8), 3);
    op += 4;
    if (bN > 64) return false;
  }
  while (op < oend) {
    bReload();
    if (bN > 64) return false;
    const en = <u32>load<u16>(t + (<usize>((bC << <u64>bN) >> sh) << 1));
    bN += en & 0xff;
    store<u8>(op, <u8>(en >> 8));
    op++;
  }
  return bDone();
}

/** Decodes one Huffman stream [s, e) into exactly n bytes at op. */
function hufStream(op: usize, n: u32, s: usize, e: usize): bool {
  if (!bInit(s, e)) return false;
  return hufTail(op, op + n);
}

// One Huffman table entry for the bits at the top of a left-aligned container x: the
// index is below 2^HUF_LOG whatever the bits are.
// @ts-ignore: decorator
@inline function hufEnt(x: u64): u32 {
  return <u32>load<u16>(hufTable + (<usize>(x >> (64 - <u64>HUF_LOG)) << 1));
}

/**
 * Decodes the four Huffman streams [s1, s2), [s2, s3), [s3, s4), [s4, e) into `regen`
 * bytes at op (segments of `seg` bytes, the last one the rest), interleaved: a fast loop
 * runs while every stream has at least 8 bytes of input left to reload from and the
 * shortest segment has 4 bytes of room, then each stream ends in hufTail.
 */
function huf4(op: usize, regen: u32, seg: u32, s1: usize, s2: usize, s3: usize, s4: usize, e: usize): bool {
  if (!bInit(s1, s2)) return false;
  let c1 = bC;
  let n1 = bN;
  let q1 = bPtr;
  if (!bInit(s2, s3)) return false;
  let c2 = bC;
  let n2 = bN;
  let q2 = bPtr;
  if (!bInit(s3, s4)) return false;
  let c3 = bC;
  let n3 = bN;
  let q3 = bPtr;
  if (!bInit(s4, e)) return false;
  let c4 = bC;
  let n4 = bN;
  let q4 = bPtr;
  let o1 = op;
  const d1 = <usize>seg;
  const d2 = d1 + d1;
  const d3 = d2 + d1;
  const e4 = op + <usize>regen;
  // Rounds of passes without checks. A pass reads at most 5 * 11 bits per stream after a
  // reload left n <= 7, so n stays below 63 and a reload moves a pointer back at most 7
  // bytes: a round has as many passes as every stream has 7 bytes left, and room for 5
  // more bytes in the shortest (last) segment. x = c << n: the unread bits at the top
  // (a shift by a table entry uses its low 6 bits: the code length).
  for (let round = 0; round < 64; round++) {
    let passes = (e4 - (o1 + d3)) / 5;
    let p = (q1 - s1) / 7;
    if (p < passes) passes = p;
    p = (q2 - s2) / 7;
    if (p < passes) passes = p;
    p = (q3 - s3) / 7;
    if (p < passes) passes = p;
    p = (q4 - s4) / 7;
    if (p < passes) passes = p;
    if (passes == 0 || n1 > 63 || n2 > 63 || n3 > 63 || n4 > 63) break;
    do {
      q1 -= <usize>(n1 >> 3);
      n1 &= 7;
      let x1 = load<u64>(q1) << <u64>n1;
      q2 -= <usize>(n2 >> 3);
      n2 &= 7;
      let x2 = load<u64>(q2) << <u64>n2;
      q3 -= <usize>(n3 >> 3);
      n3 &= 7;
      let x3 = load<u64>(q3) << <u64>n3;
      q4 -= <usize>(n4 >> 3);
      n4 &= 7;
      let x4 = load<u64>(q4) << <u64>n4;
      const e10 = hufEnt(x1);
      x1 <<= <u64>e10;
      n1 += e10 & 0xff;
      store<u8>(o1, <u8>(e10 >> 8), 0);
      const e20 = hufEnt(x2);
      x2 <<= <u64>e20;
      n2 += e20 & 0xff;
      store<u8>(o1 + d1, <u8>(e20 >> 8), 0);
      const e30 = hufEnt(x3);
      x3 <<= <u64>e30;
      n3 += e30 & 0xff;
      store<u8>(o1 + d2, <u8>(e30 >> 8), 0);
      const e40 = hufEnt(x4);
      x4 <<= <u64>e40;
      n4 += e40 & 0xff;
      store<u8>(o1 + d3, <u8>(e40 >> 8), 0);
      const e11 = hufEnt(x1);
      x1 <<= <u64>e11;
      n1 += e11 & 0xff;
      store<u8>(o1, <u8>(e11 >> 8), 1);
      const e21 = hufEnt(x2);
      x2 <<= <u64>e21;
      n2 += e21 & 0xff;
      store<u8>(o1 + d1, <u8>(e21 >> 8), 1);
      const e31 = hufEnt(x3);
      x3 <<= <u64>e31;
      n3 += e31 & 0xff;
      store<u8>(o1 + d2, <u8>(e31 >> 8), 1);
      const e41 = hufEnt(x4);
      x4 <<= <u64>e41;
      n4 += e41 & 0xff;
      store<u8>(o1 + d3, <u8>(e41 >> 8), 1);
      const e12 = hufEnt(x1);
      x1 <<= <u64>e12;
      n1 += e12 & 0xff;
      store<u8>(o1, <u8>(e12 >> 8), 2);
      const e22 = hufEnt(x2);
      x2 <<= <u64>e22;
      n2 += e22 & 0xff;
      store<u8>(o1 + d1, <u8>(e22 >> 8), 2);
      const e32 = hufEnt(x3);
      x3 <<= <u64>e32;
      n3 += e32 & 0xff;
      store<u8>(o1 + d2, <u8>(e32 >> 8), 2);
      const e42 = hufEnt(x4);
      x4 <<= <u64>e42;
      n4 += e42 & 0xff;
      store<u8>(o1 + d3, <u8>(e42 >> 8), 2);
      const e13 = hufEnt(x1);
      x1 <<= <u64>e13;
      n1 += e13 & 0xff;
      store<u8>(o1, <u8>(e13 >> 8), 3);
      const e23 = hufEnt(x2);
      x2 <<= <u64>e23;
      n2 += e23 & 0xff;
      store<u8>(o1 + d1, <u8>(e23 >> 8), 3);
      const e33 = hufEnt(x3);
      x3 <<= <u64>e33;
      n3 += e33 & 0xff;
      store<u8>(o1 + d2, <u8>(e33 >> 8), 3);
      const e43 = hufEnt(x4);
      x4 <<= <u64>e43;
      n4 += e43 & 0xff;
      store<u8>(o1 + d3, <u8>(e43 >> 8), 3);
      const e14 = hufEnt(x1);
      x1 <<= <u64>e14;
      n1 += e14 & 0xff;
      store<u8>(o1, <u8>(e14 >> 8), 4);
      const e24 = hufEnt(x2);
      x2 <<= <u64>e24;
      n2 += e24 & 0xff;
      store<u8>(o1 + d1, <u8>(e24 >> 8), 4);
      const e34 = hufEnt(x3);
      x3 <<= <u64>e34;
      n3 += e34 & 0xff;
      store<u8>(o1 + d2, <u8>(e34 >> 8), 4);
      const e44 = hufEnt(x4);
      x4 <<= <u64>e44;
      n4 += e44 & 0xff;
      store<u8>(o1 + d3, <u8>(e44 >> 8), 4);
      o1 += 5;
    } while (--passes);
    c1 = load<u64>(q1);
    c2 = load<u64>(q2);
    c3 = load<u64>(q3);
    c4 = load<u64>(q4);
  }
  const o2 = o1 + d1;
  const o3 = o1 + d2;
  const o4 = o1 + d3;
  bStart = s1;
  bPtr = q1;
  bC = c1;
  bN = n1;
  if (!hufTail(o1, op + <usize>seg)) return false;
  bStart = s2;
  bPtr = q2;
  bC = c2;
  bN = n2;
  if (!hufTail(o2, op + 2 * <usize>seg)) return false;
  bStart = s3;
  bPtr = q3;
  bC = c3;
  bN = n3;
  if (!hufTail(o3, op + 3 * <usize>seg)) return false;
  bStart = s4;
  bPtr = q4;
  bC = c4;
  bN = n4;
  return hufTail(o4, e4);
}

/** Decodes the literals section; returns bytes used or a status. Sets litPtr / litSize. */
function decodeLiterals(ip: usize, iend: usize): i32 {
  if (ip >= iend) return E_TRUNCATED;
  const b0 = <u32>load<u8>(ip);
  const type = b0 & 3;
  const sf = (b0 >> 2) & 3;
  if (type <= 1) {
    let size: u32;
    let hs: u32;
    if (sf == 0 || sf == 2) {
      size = b0 >> 3;
      hs = 1;
    } else if (sf == 1) {
      if (ip + 2 > iend) return E_TRUNCATED;
      size = (b0 >> 4) | ((<u32>load<u8>(ip, 1)) << 4);
      hs = 2;
    } else {
      if (ip + 3 > iend) return E_TRUNCATED;
      size = (b0 >> 4) | ((<u32>load<u8>(ip, 1)) << 4) | ((<u32>load<u8>(ip, 2)) << 12);
      hs = 3;
    }
    if (size > blockMax) return E_CORRUPT;
    litSize = size;
    if (type == 0) {
      if (<usize>(hs + size) > iend - ip) return E_TRUNCATED;
      litPtr = ip + hs;
      return <i32>(hs + size);
    }
    if (<usize>(hs + 1) > iend - ip) return E_TRUNCATED;
    memory.fill(litBuf, load<u8>(ip + hs), size);
    litPtr = litBuf;
    return <i32>(hs + 1);
  }
  let regen: u32;
  let comp: u32;
  let hs: u32;
  if (sf <= 1) {
    if (ip + 3 > iend) return E_TRUNCATED;
    const v = b0 | ((<u32>load<u8>(ip, 1)) << 8) | ((<u32>load<u8>(ip, 2)) << 16);
    regen = (v >> 4) & 0x3ff;
    comp = (v >> 14) & 0x3ff;
    hs = 3;
  } else if (sf == 2) {
    if (ip + 4 > iend) return E_TRUNCATED;
    const v = load<u32>(ip);
    regen = (v >> 4) & 0x3fff;
    comp = v >> 18;
    hs = 4;
  } else {
    if (ip + 5 > iend) return E_TRUNCATED;
    const v = (<u64>load<u32>(ip)) | ((<u64>load<u8>(ip, 4)) << 32);
    regen = <u32>(v >> 4) & 0x3ffff;
    comp = <u32>(v >> 22) & 0x3ffff;
    hs = 5;
  }
  if (regen > blockMax) return E_CORRUPT;
  if (<usize>(hs + comp) > iend - ip) return E_TRUNCATED;
  let p = ip + hs;
  const end = p + comp;
  if (type == 2) {
    const r = readHuffman(p, end);
    if (r < 0) return r;
    p += <usize>r;
  } else if (!hufValid) {
    return E_CORRUPT;
  }
  if (sf == 0) {
    if (!hufStream(litBuf, regen, p, end)) return E_CORRUPT;
  } else {
    if (p + 6 > end) return E_CORRUPT;
    const s1 = <usize>load<u16>(p);
    const s2 = <usize>load<u16>(p, 2);
    const s3 = <usize>load<u16>(p, 4);
    p += 6;
    if (s1 + s2 + s3 >= end - p) return E_CORRUPT;
    const seg = (regen + 3) >> 2;
    if (seg * 3 > regen) return E_CORRUPT;
    const p2 = p + s1;
    const p3 = p2 + s2;
    const p4 = p3 + s3;
    if (!huf4(litBuf, regen, seg, p, p2, p3, p4, end)) return E_CORRUPT;
  }
  litPtr = litBuf;
  litSize = regen;
  return <i32>(hs + comp);
}

// ---------------------------------------------------------------------------------------
// Sequences

/** Sets up one symbol type's table from its mode; returns bytes used or a status. */
function seqTable(mode: u32, ip: usize, iend: usize, kind: i32): i32 {
  const maxSym: u32 = kind == K_LL ? 35 : kind == K_ML ? 52 : 31;
  const maxLog: u32 = kind == K_OF ? 8 : 9;
  const custom = kind == K_LL ? llTableC : kind == K_ML ? mlTableC : ofTableC;
  let log: u32;
  let used: i32 = 0;
  if (mode == 0) {
    // The predefined table, copied into the active one (the decoding loop reads the
    // active tables at fixed addresses).
    log = kind == K_LL ? LL_DEFAULT_LOG : kind == K_ML ? ML_DEFAULT_LOG : OF_DEFAULT_LOG;
    memory.copy(custom, kind == K_LL ? llTableD : kind == K_ML ? mlTableD : ofTableD, (<usize>8) << log);
  } else if (mode == 1) {
    if (ip >= iend) return E_TRUNCATED;
    const s = <u32>load<u8>(ip);
    if (s > maxSym) return E_CORRUPT;
    store<i16>(norm, 1);
    for (let i: u32 = 0; i < s; i++) store<i16>(norm + (<usize>i << 1), 0);
    store<i16>(norm + (<usize>s << 1), 1);
    // A one-state table: the symbol, no state bits.
    let base: u64;
    let extra: u64;
    if (kind == K_LL) {
      base = <u64>unchecked(LL_BASE[s]);
      extra = <u64>unchecked(LL_BITS[s]);
    } else if (kind == K_ML) {
      base = <u64>unchecked(ML_BASE[s]);
      extra = <u64>unchecked(ML_BITS[s]);
    } else {
      base = (<u64>1) << s;
      extra = <u64>s;
    }
    store<u64>(custom, (extra << 24) | (base << 32));
    log = 0;
    used = 1;
  } else if (mode == 2) {
    const r = readNCount(ip, iend, maxSym, maxLog);
    if (r < 0) return r;
    if (!buildFse(ncSyms, ncLog, custom, kind)) return E_CORRUPT;
    log = ncLog;
    used = r;
  } else {
    if (!seqValid) return E_CORRUPT;
    return 0;
  }
  if (kind == K_LL) {
    llLog = log;
  } else if (kind == K_ML) {
    mlLog = log;
  } else {
    ofLog = log;
  }
  return used;
}

@inline function copy16(d: usize, s: usize, n: usize): void {
  const e = d + n;
  do {
    store<u64>(d, load<u64>(s));
    store<u64>(d, load<u64>(s, 8), 8);
    d += 16;
    s += 16;
  } while (d < e);
}

// Sequences are decoded in chunks into seqBuf (literals length, match length, offset:
// u32 each), then executed: two tight loops instead of one with too many live values.
const SEQ_CHUNK: u32 = 1024;
const seqBuf = memory.data(SEQ_CHUNK * 12, 16);
// FSE states between chunks.
let sLL: u32 = 0;
let sML: u32 = 0;
let sOF: u32 = 0;

/**
 * Decodes `count` (>= 1) sequences into seqBuf from the bitstream globals, the states and
 * the repeat offsets; `last`: the block's last one updates no state. Reads only bits
 * (garbage past the stream's start, which bDone() then rejects) and writes only seqBuf.
 */
function seqDecode(count: u32, last: bool): void {
  const bs = bStart;
  let q = bPtr;
  let c = bC;
  let n = bN;
  let llS = sLL;
  let mlS = sML;
  let ofS = sOF;
  let r0 = rep0;
  let r1 = rep1;
  let r2 = rep2;
  let w = seqBuf;
  // Sequences that update the states: all but the block's last one.
  const wm = seqBuf + <usize>(last ? count - 1 : count) * 12;
  // Rounds of fast passes: a pass moves q back at most 14 bytes (n <= 64 at the first
  // reload: 8 bytes; n <= 7 + 47 at the second one: 6 bytes), so `passes` passes with
  // 14 bytes each before q never reach the stream's start.
  for (let round = 0; round < 64; round++) {
    let passes = (wm - w) / 12;
    const p = (q - bs) / 14;
    if (p < passes) passes = p;
    if (passes == 0) break;
    do {
      // Table entries (8 bytes): next-state baseline u16, state bits u8, extra bits u8,
      // value baseline u32; read field by field.
      const llE = llTableC + (<usize>llS << 3);
      const mlE = mlTableC + (<usize>mlS << 3);
      const ofE = ofTableC + (<usize>ofS << 3);
      // Reload: at most 7 + 31 + 16 bits are read before the second one, 7 + 16 + 26 after
      // (9 + 9 + 8 state bits at most).
      q -= <usize>(n >> 3);
      n &= 7;
      c = load<u64>(q);
      let k = <u32>load<u8>(ofE, 3);
      const ofv = load<u32>(ofE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
      n += k;
      k = <u32>load<u8>(mlE, 3);
      const ml = load<u32>(mlE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
      n += k;
      const kl = <u32>load<u8>(llE, 3);
      if (n + kl <= 64 - 26) {
        // enough bits left for the literals length and the three states
      } else {
        q -= <usize>(n >> 3);
        n &= 7;
        c = load<u64>(q);
      }
      const ll = load<u32>(llE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - kl)));
      n += kl;
      // The states.
      {
        k = <u32>load<u8>(llE, 2);
        llS = <u32>load<u16>(llE) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
        n += k;
        k = <u32>load<u8>(mlE, 2);
        mlS = <u32>load<u16>(mlE) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
        n += k;
        k = <u32>load<u8>(ofE, 2);
        ofS = <u32>load<u16>(ofE) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
        n += k;
      }
      // Repeat offsets, branch-free: idx 0..2 = rep0..rep2, 3 = rep0 - 1 (RFC 8878
      // 3.1.1.5); a new offset (ofv > 3) shifts like idx >= 2. An offset of 0 (rep0 - 1)
      // is rejected when executed.
      const idx = ofv - 1 + <u32>(ll == 0);
      const offset = select<u32>(ofv - 3,
        select<u32>(r0 - 1, select<u32>(r2, select<u32>(r1, r0, idx == 1), idx == 2), idx == 3), ofv > 3);
      r2 = select<u32>(r1, r2, idx >= 2);
      r1 = select<u32>(r0, r1, idx >= 1);
      r0 = offset;
      store<u32>(w, ll);
      store<u32>(w, ml, 4);
      store<u32>(w, offset, 8);
      w += 12;
    } while (--passes);
  }
  // Careful loop: the stream's last bytes.
  while (w < wm) {
    // Table entries (8 bytes): next-state baseline u16, state bits u8, extra bits u8,
    // value baseline u32; read field by field.
    const llE = llTableC + (<usize>llS << 3);
    const mlE = mlTableC + (<usize>mlS << 3);
    const ofE = ofTableC + (<usize>ofS << 3);
    // Reload: at most 7 + 31 + 16 bits are read before the second one, 7 + 16 + 26 after
    // (9 + 9 + 8 state bits at most).
    if (q >= bs + 8) {
      q -= <usize>(n >> 3);
      n &= 7;
      c = load<u64>(q);
    } else if (q > bs) {
      let nb = <usize>(n >> 3);
      const avail = q - bs;
      if (nb > avail) nb = avail;
      q -= nb;
      n -= <u32>nb << 3;
      c = load<u64>(q);
    }
    let k = <u32>load<u8>(ofE, 3);
    const ofv = load<u32>(ofE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
    n += k;
    k = <u32>load<u8>(mlE, 3);
    const ml = load<u32>(mlE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
    n += k;
    const kl = <u32>load<u8>(llE, 3);
    if (n + kl <= 64 - 26) {
      // enough bits left for the literals length and the three states
    } else if (q >= bs + 8) {
      q -= <usize>(n >> 3);
      n &= 7;
      c = load<u64>(q);
    } else if (q > bs) {
      let nb = <usize>(n >> 3);
      const avail = q - bs;
      if (nb > avail) nb = avail;
      q -= nb;
      n -= <u32>nb << 3;
      c = load<u64>(q);
    }
    const ll = load<u32>(llE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - kl)));
    n += kl;
    // The states.
    {
      k = <u32>load<u8>(llE, 2);
      llS = <u32>load<u16>(llE) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
      n += k;
      k = <u32>load<u8>(mlE, 2);
      mlS = <u32>load<u16>(mlE) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
      n += k;
      k = <u32>load<u8>(ofE, 2);
      ofS = <u32>load<u16>(ofE) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
      n += k;
    }
    // Repeat offsets, branch-free: idx 0..2 = rep0..rep2, 3 = rep0 - 1 (RFC 8878
    // 3.1.1.5); a new offset (ofv > 3) shifts like idx >= 2. An offset of 0 (rep0 - 1)
    // is rejected when executed.
    const idx = ofv - 1 + <u32>(ll == 0);
    const offset = select<u32>(ofv - 3,
      select<u32>(r0 - 1, select<u32>(r2, select<u32>(r1, r0, idx == 1), idx == 2), idx == 3), ofv > 3);
    r2 = select<u32>(r1, r2, idx >= 2);
    r1 = select<u32>(r0, r1, idx >= 1);
    r0 = offset;
    store<u32>(w, ll);
    store<u32>(w, ml, 4);
    store<u32>(w, offset, 8);
    w += 12;
  }
  if (last) {
    // Table entries (8 bytes): next-state baseline u16, state bits u8, extra bits u8,
    // value baseline u32; read field by field.
    const llE = llTableC + (<usize>llS << 3);
    const mlE = mlTableC + (<usize>mlS << 3);
    const ofE = ofTableC + (<usize>ofS << 3);
    // Reload: at most 7 + 31 + 16 bits are read before the second one, 7 + 16 + 26 after
    // (9 + 9 + 8 state bits at most).
    if (q >= bs + 8) {
      q -= <usize>(n >> 3);
      n &= 7;
      c = load<u64>(q);
    } else if (q > bs) {
      let nb = <usize>(n >> 3);
      const avail = q - bs;
      if (nb > avail) nb = avail;
      q -= nb;
      n -= <u32>nb << 3;
      c = load<u64>(q);
    }
    let k = <u32>load<u8>(ofE, 3);
    const ofv = load<u32>(ofE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
    n += k;
    k = <u32>load<u8>(mlE, 3);
    const ml = load<u32>(mlE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - k)));
    n += k;
    const kl = <u32>load<u8>(llE, 3);
    if (n + kl <= 64 - 26) {
      // enough bits left for the literals length and the three states
    } else if (q >= bs + 8) {
      q -= <usize>(n >> 3);
      n &= 7;
      c = load<u64>(q);
    } else if (q > bs) {
      let nb = <usize>(n >> 3);
      const avail = q - bs;
      if (nb > avail) nb = avail;
      q -= nb;
      n -= <u32>nb << 3;
      c = load<u64>(q);
    }
    const ll = load<u32>(llE, 4) + <u32>(((c << (<u64>n)) >> 1) >> (<u64>(63 - kl)));
    n += kl;
    // The block's last sequence updates no state.
    // Repeat offsets, branch-free: idx 0..2 = rep0..rep2, 3 = rep0 - 1 (RFC 8878
    // 3.1.1.5); a new offset (ofv > 3) shifts like idx >= 2. An offset of 0 (rep0 - 1)
    // is rejected when executed.
    const idx = ofv - 1 + <u32>(ll == 0);
    const offset = select<u32>(ofv - 3,
      select<u32>(r0 - 1, select<u32>(r2, select<u32>(r1, r0, idx == 1), idx == 2), idx == 3), ofv > 3);
    r2 = select<u32>(r1, r2, idx >= 2);
    r1 = select<u32>(r0, r1, idx >= 1);
    r0 = offset;
    store<u32>(w, ll);
    store<u32>(w, ml, 4);
    store<u32>(w, offset, 8);
    w += 12;
  }
  bPtr = q;
  bC = c;
  bN = n;
  sLL = llS;
  sML = mlS;
  sOF = ofS;
  rep0 = r0;
  rep1 = r1;
  rep2 = r2;
}

/**
 * Decodes a compressed block [ip, iend) to [op, oend); returns 0 and the new output
 * pointer in blkOut, or a status.
 */
let blkOut: usize = 0;

function decodeBlock(ip: usize, iend: usize, op: usize, oend: usize, frameStart: usize): i32 {
  const blockStart = op;
  const r = decodeLiterals(ip, iend);
  if (r < 0) return fail(r, ip);
  ip += <usize>r;
  if (ip >= iend) return fail(E_TRUNCATED, ip);
  const seqAt = ip;
  let nbSeq = <u32>load<u8>(ip);
  ip++;
  if (nbSeq >= 128) {
    if (nbSeq == 255) {
      if (ip + 2 > iend) return fail(E_TRUNCATED, seqAt);
      nbSeq = <u32>load<u16>(ip) + 0x7f00;
      ip += 2;
    } else {
      if (ip >= iend) return fail(E_TRUNCATED, seqAt);
      nbSeq = ((nbSeq - 0x80) << 8) + <u32>load<u8>(ip);
      ip++;
    }
  }
  let litP = litPtr;
  const litEnd = litPtr + litSize;
  if (nbSeq > 0) {
    if (ip >= iend) return fail(E_TRUNCATED, seqAt);
    const modes = <u32>load<u8>(ip);
    ip++;
    if (modes & 3) return fail(E_CORRUPT, seqAt);
    let u = seqTable(modes >> 6, ip, iend, K_LL);
    if (u < 0) return fail(u, ip);
    ip += <usize>u;
    u = seqTable((modes >> 4) & 3, ip, iend, K_OF);
    if (u < 0) return fail(u, ip);
    ip += <usize>u;
    u = seqTable((modes >> 2) & 3, ip, iend, K_ML);
    if (u < 0) return fail(u, ip);
    ip += <usize>u;
    seqValid = true;
    if (!bInit(ip, iend)) return fail(ip >= iend ? E_TRUNCATED : E_CORRUPT, ip);
    sLL = bRead(llLog);
    sOF = bRead(ofLog);
    sML = bRead(mlLog);
    const litCap = litEnd;
    let left = nbSeq;
    do {
      const m = left < SEQ_CHUNK ? left : SEQ_CHUNK;
      left -= m;
      seqDecode(m, left == 0);
      // Execute the chunk: every length and offset checked against the literals, the
      // output and the frame's start before anything is copied.
      let sp = seqBuf;
      const se = seqBuf + <usize>m * 12;
      do {
        const ll = <usize>load<u32>(sp);
        const ml = <usize>load<u32>(sp, 4);
        const offset = <usize>load<u32>(sp, 8);
        sp += 12;
        if (ll > litCap - litP) return fail(E_CORRUPT, seqAt);
        if (ll + ml > oend - op) return fail(E_OVERFLOW, seqAt);
        // Literals: 16 bytes at a time (may write up to 15 bytes past their end, into
        // the match or the scratch after the output; may read past them, within the
        // literals buffer's or the input's slack).
        store<u64>(op, load<u64>(litP));
        store<u64>(op, load<u64>(litP, 8), 8);
        if (ll > 16) copy16(op + 16, litP + 16, ll - 16);
        op += ll;
        litP += ll;
        // Match.
        if (offset - 1 >= op - frameStart) return fail(E_CORRUPT, seqAt);
        const src = op - offset;
        if (offset >= 8) {
          // Each 8-byte load reads bytes that are all before its store (offset >= 8),
          // already written when they are part of this match.
          store<u64>(op, load<u64>(src));
          store<u64>(op, load<u64>(src, 8), 8);
          if (ml > 16) copy16(op + 16, src + 16, ml - 16);
        } else if ((offset & (offset - 1)) == 0) {
          // Period 1, 2 or 4: the pattern (read before anything is written) repeated in
          // 8-byte stores.
          const v = load<u64>(src);
          const pat = offset == 1 ? (v & 0xff) * 0x0101010101010101
            : offset == 2 ? (v & 0xffff) * 0x0001000100010001
            : (v & 0xffffffff) * 0x0000000100000001;
          let d = op;
          const e = op + ml;
          do {
            store<u64>(d, pat);
            d += 8;
          } while (d < e);
        } else {
          // Period 3, 5, 6 or 7: the first 16 bytes one by one, then 8-byte copies from a
          // multiple of the period at least 8 back.
          const first = ml < 16 ? ml : 16;
          for (let j: usize = 0; j < first; j++) store<u8>(op + j, load<u8>(src + j));
          if (ml > 16) {
            const dist = offset * ((8 + offset - 1) / offset);
            let d = op + 16;
            const e = op + ml;
            do {
              store<u64>(d, load<u64>(d - dist));
              d += 8;
            } while (d < e);
          }
        }
        op += ml;
      } while (sp < se);
    } while (left > 0);
    if (!bDone()) return fail(E_CORRUPT, seqAt);
  } else if (ip != iend) {
    return fail(E_CORRUPT, seqAt);
  }
  const rest = litEnd - litP;
  if (rest > oend - op) return fail(E_OVERFLOW, seqAt);
  memory.copy(op, litP, rest);
  op += rest;
  if (op - blockStart > <usize>blockMax) return fail(E_CORRUPT, seqAt);
  blkOut = op;
  return 0;
}

// ---------------------------------------------------------------------------------------
// Frames

let frameIn: usize = 0;
let frameOut: usize = 0;

/** Decodes the frame at ip (magic checked); sets frameIn / frameOut. */
function decodeFrame(ip: usize, iend: usize, op: usize, oend: usize): i32 {
  const frameAt = ip;
  if (ip + 5 > iend) return fail(E_TRUNCATED, frameAt);
  const fhd = <u32>load<u8>(ip, 4);
  ip += 5;
  if (fhd & 8) return fail(E_CORRUPT, frameAt + 4);
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const didFlag = fhd & 3;
  const didSize: u32 = didFlag == 3 ? 4 : didFlag;
  const fcsSize: u32 = fcsFlag == 0 ? single : (<u32>1 << fcsFlag);
  if (ip + (1 - single) + didSize + fcsSize > iend) return fail(E_TRUNCATED, frameAt);
  let windowSize: u64 = 0;
  if (!single) {
    const wd = <u32>load<u8>(ip);
    ip++;
    const base = (<u64>1) << (10 + (wd >> 3));
    windowSize = base + (base >> 3) * <u64>(wd & 7);
  }
  let did: u32 = 0;
  for (let i: u32 = 0; i < didSize; i++) did |= (<u32>load<u8>(ip + i)) << (i << 3);
  ip += didSize;
  if (did != 0) return fail(E_NOTSUP, frameAt + 5);
  let fcs: u64 = 0;
  for (let i: u32 = 0; i < fcsSize; i++) fcs |= (<u64>load<u8>(ip + i)) << (<u64>i << 3);
  ip += fcsSize;
  if (fcsSize == 2) fcs += 256;
  if (single) windowSize = fcs;
  blockMax = windowSize < <u64>BLOCK_MAX ? <u32>windowSize : BLOCK_MAX;
  if (fcsSize && fcs > <u64>(oend - op)) return fail(E_OVERFLOW, frameAt);
  const frameStart = op;
  hufValid = false;
  seqValid = false;
  rep0 = 1;
  rep1 = 4;
  rep2 = 8;
  while (true) {
    if (ip + 3 > iend) return fail(E_TRUNCATED, ip);
    const bh = <u32>load<u16>(ip) | ((<u32>load<u8>(ip, 2)) << 16);
    const blockAt = ip;
    ip += 3;
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >> 3;
    if (size > blockMax) return fail(E_CORRUPT, blockAt);
    if (type == 0) {
      if (<usize>size > iend - ip) return fail(E_TRUNCATED, blockAt);
      if (<usize>size > oend - op) return fail(E_OVERFLOW, blockAt);
      memory.copy(op, ip, size);
      ip += size;
      op += size;
    } else if (type == 1) {
      if (ip >= iend) return fail(E_TRUNCATED, blockAt);
      if (<usize>size > oend - op) return fail(E_OVERFLOW, blockAt);
      memory.fill(op, load<u8>(ip), size);
      ip++;
      op += size;
    } else if (type == 2) {
      if (<usize>size > iend - ip) return fail(E_TRUNCATED, blockAt);
      if (size == 0) return fail(E_CORRUPT, blockAt);
      const r = decodeBlock(ip, ip + size, op, oend, frameStart);
      if (r < 0) return r;
      op = blkOut;
      ip += size;
    } else {
      return fail(E_CORRUPT, blockAt);
    }
    if (last) break;
  }
  if (fcsSize && <u64>(op - frameStart) != fcs) return fail(E_CORRUPT, frameAt);
  if (checksum) {
    if (ip + 4 > iend) return fail(E_TRUNCATED, ip);
    const h = <u32>xxh64(frameStart, op - frameStart);
    if (h != load<u32>(ip)) return fail(E_CHECKSUM, ip);
    ip += 4;
  }
  frameIn = ip;
  frameOut = op;
  return 0;
}

/**
 * Decodes the zstd frames (and skippable frames) at [src, src + srcLen) into
 * [dst, dst + dstLen). Returns the number of bytes written or a negative status:
 * E_CORRUPT, E_TRUNCATED, E_OVERFLOW (the data holds more than dstLen bytes),
 * E_CHECKSUM, E_NOTSUP (a dictionary).
 *
 * Without flags every input byte must belong to a frame. With FLAG_CLUSTER decoding stops
 * as soon as the output is full at the end of a frame and the rest of the input is
 * ignored (QEMU's qcow2_zstd_decompress); a frame that would go beyond it is E_OVERFLOW.
 */
export function decompress(src: usize, srcLen: u32, dst: usize, dstLen: u32, flags: i32): i32 {
  errOffset = -1;
  inBase = src;
  if (!defaultsBuilt) buildDefaults();
  const cluster = (flags & FLAG_CLUSTER) != 0;
  let ip = src;
  const iend = src + srcLen;
  let op = dst;
  const oend = dst + dstLen;
  let frames = 0;
  while (true) {
    if (cluster && op == oend) break;
    if (ip == iend) {
      if (frames > 0) break;
      return fail(E_TRUNCATED, ip);
    }
    if (ip + 4 > iend) return fail(E_TRUNCATED, ip);
    const magic = load<u32>(ip);
    if ((magic & SKIPPABLE_MASK) == SKIPPABLE_MAGIC) {
      if (ip + 8 > iend) return fail(E_TRUNCATED, ip);
      const size = <usize>load<u32>(ip, 4);
      if (size > iend - ip - 8) return fail(E_TRUNCATED, ip);
      ip += 8 + size;
      frames++;
      continue;
    }
    if (magic != MAGIC) return fail(E_CORRUPT, ip);
    const r = decodeFrame(ip, iend, op, oend);
    if (r < 0) return r;
    ip = frameIn;
    op = frameOut;
    frames++;
  }
  return <i32>(op - dst);
}
