// zstd decoder (RFC 8878): any frame without a dictionary, into a buffer of declared size.
//
// The whole output is one flat buffer, so matches reach back to the frame's start directly
// (no window ring). Corrupt input gives a status code; errOffset is the input offset of
// the part that was being decoded (frame header, block header, literals, sequences).
//
// Memory contract (the JS wrapper keeps it): 32 readable bytes after the input and 32
// writable scratch bytes after the output (16-byte copies run past a copy's end; nothing
// beyond dstLen is ever part of the result).

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

const K_LL: i32 = 0;
const K_ML: i32 = 1;
const K_OF: i32 = 2;
const K_W: i32 = 3;

let defaultsBuilt = false;

// Per-frame state.
let hufMaxBits: u32 = 0;
let hufValid = false;
let llT: usize = 0;
let mlT: usize = 0;
let ofT: usize = 0;
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
  for (let s: u32 = 0; s < nSym; s++) {
    const n = <i32>load<i16>(norm + (<usize>s << 1));
    store<u16>(symNext + (<usize>s << 1), <u16>(n == -1 ? 1 : n));
  }
  for (let u: u32 = 0; u < size; u++) {
    const s = <u32>load<u8>(cells + u);
    const x = <u32>load<u16>(symNext + (<usize>s << 1));
    store<u16>(symNext + (<usize>s << 1), <u16>(x + 1));
    const nb = log - highbit(x);
    const next = (x << nb) - size;
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
    store<u64>(table + (<usize>u << 3), <u64>next | (<u64>nb << 16) | (extra << 24) | (base << 32));
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
  let pos: u32 = 0;
  for (let w: u32 = 1; w <= maxBits; w++) {
    store<u32>(rankStart + (<usize>w << 2), pos);
    pos += load<u32>(rankCount + (<usize>w << 2)) << (w - 1);
  }
  for (let s: u32 = 0; s < nSym; s++) {
    const w = <u32>load<u8>(weights + s);
    if (w == 0) continue;
    const start = load<u32>(rankStart + (<usize>w << 2));
    const len: u32 = 1 << (w - 1);
    const entry = <u16>((s << 8) | (maxBits + 1 - w));
    for (let i: u32 = 0; i < len; i++) store<u16>(hufTable + (<usize>(start + i) << 1), entry);
    store<u32>(rankStart + (<usize>w << 2), start + len);
  }
  hufMaxBits = maxBits;
  hufValid = true;
  return <i32>used;
}

/** Decodes one Huffman stream [s, e) into exactly n bytes at op. */
function hufStream(op: usize, n: u32, s: usize, e: usize): bool {
  if (!bInit(s, e)) return false;
  const sh: u64 = 64 - <u64>hufMaxBits;
  const oend = op + n;
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
    const en = <u32>load<u16>(t + (<usize>((bC << <u64>bN) >> sh) << 1));
    bN += en & 0xff;
    store<u8>(op, <u8>(en >> 8));
    op++;
  }
  return bDone();
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
    if (!hufStream(litBuf, seg, p, p2)) return E_CORRUPT;
    if (!hufStream(litBuf + seg, seg, p2, p3)) return E_CORRUPT;
    if (!hufStream(litBuf + 2 * seg, seg, p3, p4)) return E_CORRUPT;
    if (!hufStream(litBuf + 3 * seg, regen - 3 * seg, p4, end)) return E_CORRUPT;
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
  let t: usize;
  let log: u32;
  let used: i32 = 0;
  if (mode == 0) {
    t = kind == K_LL ? llTableD : kind == K_ML ? mlTableD : ofTableD;
    log = kind == K_LL ? LL_DEFAULT_LOG : kind == K_ML ? ML_DEFAULT_LOG : OF_DEFAULT_LOG;
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
    t = custom;
    log = 0;
    used = 1;
  } else if (mode == 2) {
    const r = readNCount(ip, iend, maxSym, maxLog);
    if (r < 0) return r;
    if (!buildFse(ncSyms, ncLog, custom, kind)) return E_CORRUPT;
    t = custom;
    log = ncLog;
    used = r;
  } else {
    if (!seqValid) return E_CORRUPT;
    return 0;
  }
  if (kind == K_LL) {
    llT = t;
    llLog = log;
  } else if (kind == K_ML) {
    mlT = t;
    mlLog = log;
  } else {
    ofT = t;
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

/**
 * Decodes a compressed block [ip, iend) to [op, oend); returns the new output pointer
 * (as a positive offset from frameStart... ) via blkOut, or a status.
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
    const lt = llT;
    const mt = mlT;
    const ot = ofT;
    let llS = bRead(llLog);
    let ofS = bRead(ofLog);
    let mlS = bRead(mlLog);
    let r0 = rep0;
    let r1 = rep1;
    let r2 = rep2;
    for (let i: u32 = 0; i < nbSeq; i++) {
      const llE = load<u64>(lt + (<usize>llS << 3));
      const mlE = load<u64>(mt + (<usize>mlS << 3));
      const ofE = load<u64>(ot + (<usize>ofS << 3));
      bReload();
      const ofv = <u32>(ofE >> 32) + bRead(<u32>(ofE >> 24) & 0xff);
      const ml = <u32>(mlE >> 32) + bRead(<u32>(mlE >> 24) & 0xff);
      bReload();
      const ll = <u32>(llE >> 32) + bRead(<u32>(llE >> 24) & 0xff);
      if (i + 1 < nbSeq) {
        llS = (<u32>llE & 0xffff) + bRead(<u32>(llE >> 16) & 0xff);
        mlS = (<u32>mlE & 0xffff) + bRead(<u32>(mlE >> 16) & 0xff);
        ofS = (<u32>ofE & 0xffff) + bRead(<u32>(ofE >> 16) & 0xff);
      }
      let offset: u32;
      if (ofv > 3) {
        offset = ofv - 3;
        r2 = r1;
        r1 = r0;
        r0 = offset;
      } else {
        const idx = ofv - 1 + <u32>(ll == 0);
        if (idx == 0) {
          offset = r0;
        } else if (idx == 1) {
          offset = r1;
          r1 = r0;
          r0 = offset;
        } else {
          offset = idx == 2 ? r2 : r0 - 1;
          r2 = r1;
          r1 = r0;
          r0 = offset;
        }
      }
      // Literals.
      if (<usize>ll > litEnd - litP) return fail(E_CORRUPT, seqAt);
      if (<usize>ll + <usize>ml > oend - op) return fail(E_OVERFLOW, seqAt);
      if (ll) {
        copy16(op, litP, ll);
        op += ll;
        litP += ll;
      }
      // Match.
      if (offset == 0 || <usize>offset > op - frameStart) return fail(E_CORRUPT, seqAt);
      const src = op - offset;
      if (offset >= 16) {
        copy16(op, src, ml);
      } else if (offset >= 8) {
        let d = op;
        let s = src;
        const e = op + ml;
        do {
          store<u64>(d, load<u64>(s));
          d += 8;
          s += 8;
        } while (d < e);
      } else {
        for (let k: u32 = 0; k < ml; k++) store<u8>(op + k, load<u8>(src + k));
      }
      op += ml;
    }
    if (!bDone()) return fail(E_CORRUPT, seqAt);
    rep0 = r0;
    rep1 = r1;
    rep2 = r2;
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
