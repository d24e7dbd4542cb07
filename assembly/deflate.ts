// Raw deflate (RFC 1951) for qcow2 compressed clusters.
// Over 600 lines on purpose: inflate and deflate share the code tables and the bit I/O of
// one WASM module; the two halves are marked below.
//
// inflate: decodes into a buffer of declared size and never writes beyond it; with
//   FLAG_PARTIAL it stops successfully when the buffer is full, even if the stream goes on
//   (QEMU's rule for compressed clusters, whose stored size is rounded up to sectors).
// deflate: levels 1..9, a window of 4 KiB (all distances <= 4096, like QEMU's window bits
//   12), dynamic / fixed / stored blocks, whichever is smallest.
//
// Pointer + length in, integer status out (see shared/common.ts). Corrupt or truncated streams
// return an error code; errorOffset() gives the input byte offset where it was detected.

import { E_INVAL, E_CORRUPT, E_OVERFLOW, E_TRUNCATED } from './shared/common';

export function alloc(size: usize): usize {
  return heap.alloc(size);
}

/** Stop successfully when the output is full, even if the stream continues. */
export const FLAG_PARTIAL: i32 = 1;

// ---------------------------------------------------------------------------------------
// Shared constants

const LEN_BASE: StaticArray<u16> = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA: StaticArray<u8> = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: StaticArray<u16> = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA: StaticArray<u8> = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CLEN_ORDER: StaticArray<u8> = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

let errOffset: i32 = -1;

/** Input offset at which the last error was detected (-1 if none). */
export function errorOffset(): i32 {
  return errOffset;
}

// ---------------------------------------------------------------------------------------
// Inflate
//
// Decoding tables: a root table indexed by the next `root` input bits (LSB first), with
// second-level tables for longer codes. An entry (u32):
//   bits 0..7   bits to consume for this entry
//   bits 8..15  kind: T_LIT, T_END, T_BAD, T_LINK (bits 0..7 = sub-table bits then), or the
//               number of extra bits of a length / distance base
//   bits 16..31 literal byte, base value, or sub-table start index

const T_LIT: u32 = 0x80;
const T_END: u32 = 0x40;
const T_BAD: u32 = 0x20;
const T_LINK: u32 = 0x10;

const LIT_ROOT: u32 = 10;
const DIST_ROOT: u32 = 8;
const CLEN_ROOT: u32 = 7;
const LIT_TABLE_ENTRIES: i32 = 1024 + 288 * 32;
const DIST_TABLE_ENTRIES: i32 = 256 + 32 * 128;

const litTable = memory.data(LIT_TABLE_ENTRIES * 4, 16);
const distTable = memory.data(DIST_TABLE_ENTRIES * 4, 16);
const clenTable = memory.data(128 * 4, 16);
const fixedLit = memory.data(LIT_TABLE_ENTRIES * 4, 16);
const fixedDist = memory.data(DIST_TABLE_ENTRIES * 4, 16);
let fixedBuilt = false;
const lens = memory.data(320, 16); // code lengths of litlen + dist
const counts = memory.data(16 * 2, 16);
const nextCode = memory.data(16 * 2, 16);
const prefixMax = memory.data(1024, 16);
const subStart = memory.data(1024 * 2, 16);

const K_LITLEN: i32 = 0;
const K_DIST: i32 = 1;
const K_CLEN: i32 = 2;

@inline function rev(code: u32, len: u32): u32 {
  return bitreverse<u32>(code) >> (32 - len);
}

@inline function bitreverse<T>(v: u32): u32 {
  v = ((v >> 1) & 0x55555555) | ((v & 0x55555555) << 1);
  v = ((v >> 2) & 0x33333333) | ((v & 0x33333333) << 2);
  v = ((v >> 4) & 0x0f0f0f0f) | ((v & 0x0f0f0f0f) << 4);
  return bswap<u32>(v);
}

/** Entry for symbol `sym` of a table of kind `kind`, consuming `n` bits. */
@inline function symEntry(kind: i32, sym: u32, n: u32): u32 {
  if (kind == K_LITLEN) {
    if (sym < 256) return n | (T_LIT << 8) | (sym << 16);
    if (sym == 256) return n | (T_END << 8);
    if (sym > 285) return n | (T_BAD << 8);
    const i = sym - 257;
    return n | ((<u32>unchecked(LEN_EXTRA[i])) << 8) | ((<u32>unchecked(LEN_BASE[i])) << 16);
  }
  if (kind == K_DIST) {
    if (sym > 29) return n | (T_BAD << 8);
    return n | ((<u32>unchecked(DIST_EXTRA[sym])) << 8) | ((<u32>unchecked(DIST_BASE[sym])) << 16);
  }
  return n | (sym << 16);
}

/**
 * Builds a decoding table for `n` code lengths at `lp` (u8 each). Returns 0, or E_CORRUPT
 * for an over-subscribed or (except a lone code of length 1) incomplete code.
 */
function buildTable(table: usize, lp: usize, n: u32, root: u32, kind: i32): i32 {
  memory.fill(counts, 0, 32);
  for (let i: u32 = 0; i < n; i++) {
    const l = <usize>load<u8>(lp + i);
    store<u16>(counts + (l << 1), load<u16>(counts + (l << 1)) + 1);
  }
  store<u16>(counts, 0);
  let maxLen: u32 = 0;
  let left: i32 = 1;
  for (let l: u32 = 1; l <= 15; l++) {
    left <<= 1;
    const c = <i32>load<u16>(counts + (l << 1));
    left -= c;
    if (left < 0) return E_CORRUPT;
    if (c) maxLen = l;
  }
  const size: u32 = 1 << root;
  if (maxLen == 0) {
    // No codes: every lookup is an error (valid for a distance tree nobody uses).
    const bad = symEntry(kind, 0xffff, 1) & 0xff | (T_BAD << 8);
    for (let i: u32 = 0; i < size; i++) store<u32>(table + (<usize>i << 2), bad);
    return 0;
  }
  if (left > 0 && (kind == K_CLEN || maxLen != 1)) return E_CORRUPT;
  if (left > 0) {
    // A lone code of length 1: the other half of the table is invalid.
    for (let i: u32 = 0; i < size; i++) store<u32>(table + (<usize>i << 2), 1 | (T_BAD << 8));
  }
  let code: u32 = 0;
  for (let l: u32 = 1; l <= 15; l++) {
    code = (code + <u32>load<u16>(counts + ((<usize>l - 1) << 1))) << 1;
    store<u16>(nextCode + (<usize>l << 1), <u16>code);
  }
  // Longest code per root prefix, to size the sub-tables.
  if (maxLen > root) {
    memory.fill(prefixMax, 0, size);
    for (let s: u32 = 0; s < n; s++) {
      const l = <u32>load<u8>(lp + s);
      if (l <= root) continue;
      const c = load<u16>(nextCode + (<usize>l << 1));
      store<u16>(nextCode + (<usize>l << 1), c + 1);
      const p = rev(c, l) & (size - 1);
      if (<u32>load<u8>(prefixMax + p) < l) store<u8>(prefixMax + p, <u8>l);
    }
    // Reset next codes.
    code = 0;
    for (let l: u32 = 1; l <= 15; l++) {
      code = (code + <u32>load<u16>(counts + ((<usize>l - 1) << 1))) << 1;
      store<u16>(nextCode + (<usize>l << 1), <u16>code);
    }
    let next: u32 = size;
    for (let p: u32 = 0; p < size; p++) {
      const m = <u32>load<u8>(prefixMax + p);
      if (m == 0) continue;
      const bits = m - root;
      store<u16>(subStart + (<usize>p << 1), <u16>next);
      store<u32>(table + (<usize>p << 2), bits | (T_LINK << 8) | (next << 16));
      // Unfilled sub-table slots (incomplete codes cannot reach here) start invalid.
      next += 1 << bits;
    }
  }
  for (let s: u32 = 0; s < n; s++) {
    const l = <u32>load<u8>(lp + s);
    if (l == 0) continue;
    const c = load<u16>(nextCode + (<usize>l << 1));
    store<u16>(nextCode + (<usize>l << 1), c + 1);
    const r = rev(c, l);
    if (l <= root) {
      const e = symEntry(kind, s, l);
      for (let i = r; i < size; i += 1 << l) store<u32>(table + (<usize>i << 2), e);
    } else {
      const p = r & (size - 1);
      const bits = <u32>load<u8>(prefixMax + p) - root;
      const base = <u32>load<u16>(subStart + (<usize>p << 1));
      const e = symEntry(kind, s, l - root);
      for (let i = r >> root; i < (<u32>1 << bits); i += 1 << (l - root)) store<u32>(table + ((<usize>(base + i)) << 2), e);
    }
  }
  return 0;
}

function buildFixed(): void {
  for (let i = 0; i < 144; i++) store<u8>(lens + i, 8);
  for (let i = 144; i < 256; i++) store<u8>(lens + i, 9);
  for (let i = 256; i < 280; i++) store<u8>(lens + i, 7);
  for (let i = 280; i < 288; i++) store<u8>(lens + i, 8);
  buildTable(fixedLit, lens, 288, LIT_ROOT, K_LITLEN);
  for (let i = 0; i < 32; i++) store<u8>(lens + i, 5);
  buildTable(fixedDist, lens, 32, DIST_ROOT, K_DIST);
  fixedBuilt = true;
}

// Bit reader state.
let inPtr: usize = 0;
let inEnd: usize = 0;
let inStart: usize = 0;
let bitBuf: u64 = 0;
let bitCnt: u32 = 0;
/** Zero bytes fed after the end of the input. */
let overrun: u32 = 0;

@inline function refill(): void {
  if (inPtr + 8 <= inEnd) {
    bitBuf |= load<u64>(inPtr) << bitCnt;
    inPtr += (63 - bitCnt) >> 3;
    bitCnt |= 56;
  } else {
    refillSlow();
  }
}

function refillSlow(): void {
  while (bitCnt <= 56) {
    if (inPtr < inEnd) {
      bitBuf |= (<u64>load<u8>(inPtr)) << bitCnt;
      inPtr++;
    } else {
      overrun++;
    }
    bitCnt += 8;
  }
}

/** Did the decoder consume bits past the end of the input? */
@inline function pastEnd(): bool {
  return overrun > 0 && (overrun << 3) > bitCnt;
}

@inline function bits(n: u32): u32 {
  const v = <u32>bitBuf & ((1 << n) - 1);
  bitBuf >>= n;
  bitCnt -= n;
  return v;
}

@inline function consumedOffset(): i32 {
  // Input offset of the next unread bit's byte.
  return <i32>(inPtr - inStart) + <i32>overrun - <i32>(bitCnt >> 3);
}

let outBytes: i32 = 0;

/**
 * Inflates the raw deflate stream at [src, src + srcLen) into [dst, dst + dstLen).
 * Returns the number of bytes written, or a negative status: E_CORRUPT, E_TRUNCATED,
 * E_OVERFLOW (the stream holds more than dstLen bytes and FLAG_PARTIAL is not set).
 */
export function inflate(src: usize, srcLen: u32, dst: usize, dstLen: u32, flags: i32): i32 {
  errOffset = -1;
  if (!fixedBuilt) buildFixed();
  inPtr = src;
  inStart = src;
  inEnd = src + srcLen;
  bitBuf = 0;
  bitCnt = 0;
  overrun = 0;
  let out = dst;
  const outEnd = dst + dstLen;
  const partial = (flags & FLAG_PARTIAL) != 0;
  let final: u32 = 0;
  while (!final) {
    refill();
    final = bits(1);
    const type = bits(2);
    if (pastEnd()) return fail(E_TRUNCATED);
    if (type == 0) {
      // Stored: drop to a byte boundary and give back whole bytes still in the buffer.
      bits(bitCnt & 7);
      const back = bitCnt >> 3;
      if (back >= overrun) {
        inPtr -= back - overrun;
      } else {
        return fail(E_TRUNCATED);
      }
      overrun = 0;
      bitBuf = 0;
      bitCnt = 0;
      if (inPtr + 4 > inEnd) return fail(E_TRUNCATED);
      const len = <u32>load<u16>(inPtr);
      const nlen = <u32>load<u16>(inPtr, 2);
      if ((len ^ 0xffff) != nlen) return fail(E_CORRUPT);
      inPtr += 4;
      let n = len;
      if (out + n > outEnd) {
        if (!partial) return fail(E_OVERFLOW);
        n = <u32>(outEnd - out);
      }
      if (inPtr + n > inEnd) return fail(E_TRUNCATED);
      memory.copy(out, inPtr, n);
      out += n;
      inPtr += n;
      if (n < len) return <i32>(out - dst);
      continue;
    }
    let lt: usize;
    let dt: usize;
    if (type == 1) {
      lt = fixedLit;
      dt = fixedDist;
    } else if (type == 2) {
      const r = readDynamic();
      if (r < 0) return fail(r);
      lt = litTable;
      dt = distTable;
    } else {
      return fail(E_CORRUPT);
    }
    const r = decodeBlock(lt, dt, dst, out, outEnd, partial);
    if (r < 0) return fail(r);
    out = dst + <usize>outBytes;
    if (r == 1) return outBytes; // output full (partial)
  }
  if (pastEnd()) return fail(E_TRUNCATED);
  return <i32>(out - dst);
}

function fail(status: i32): i32 {
  errOffset = consumedOffset();
  if (errOffset < 0) errOffset = 0;
  return status;
}

function readDynamic(): i32 {
  refill();
  const hlit = bits(5) + 257;
  const hdist = bits(5) + 1;
  const hclen = bits(4) + 4;
  if (hlit > 286 || hdist > 30) return E_CORRUPT;
  memory.fill(lens, 0, 19);
  for (let i: u32 = 0; i < hclen; i++) {
    refill();
    store<u8>(lens + unchecked(CLEN_ORDER[i]), <u8>bits(3));
  }
  if (pastEnd()) return E_TRUNCATED;
  if (buildTable(clenTable, lens, 19, CLEN_ROOT, K_CLEN) < 0) return E_CORRUPT;
  const total = hlit + hdist;
  let i: u32 = 0;
  while (i < total) {
    refill();
    if (pastEnd()) return E_TRUNCATED;
    const e = load<u32>(clenTable + ((<usize>bitBuf & 127) << 2));
    const kind = (e >> 8) & 0xff;
    if (kind & T_BAD) return E_CORRUPT;
    bits(e & 0xff);
    const sym = e >> 16;
    if (sym < 16) {
      store<u8>(lens + i, <u8>sym);
      i++;
      continue;
    }
    let rep: u32;
    let val: u8 = 0;
    if (sym == 16) {
      if (i == 0) return E_CORRUPT;
      val = load<u8>(lens + i - 1);
      rep = 3 + bits(2);
    } else if (sym == 17) {
      rep = 3 + bits(3);
    } else {
      rep = 11 + bits(7);
    }
    if (i + rep > total) return E_CORRUPT;
    memory.fill(lens + i, val, rep);
    i += rep;
  }
  if (pastEnd()) return E_TRUNCATED;
  if (load<u8>(lens + 256) == 0) return E_CORRUPT; // no end-of-block code
  if (buildTable(litTable, lens, hlit, LIT_ROOT, K_LITLEN) < 0) return E_CORRUPT;
  // Distance lengths follow the literal/length ones.
  memory.copy(lens + 288, lens + hlit, hdist);
  if (buildTable(distTable, lens + 288, hdist, DIST_ROOT, K_DIST) < 0) return E_CORRUPT;
  return 0;
}

/** Decodes one Huffman block. 0 at end of block, 1 when the output is full (partial), or < 0. */
function decodeBlock(lt: usize, dt: usize, dst: usize, outStart: usize, outEnd: usize, partial: bool): i32 {
  let out = outStart;
  let bb = bitBuf;
  let bc = bitCnt;
  let ip = inPtr;
  const fastEnd = inEnd >= 8 ? inEnd - 8 : 0;
  while (true) {
    // Refill to at least 56 bits: enough for a length (15 + 5) and a distance (15 + 13).
    if (ip <= fastEnd) {
      bb |= load<u64>(ip) << bc;
      ip += (63 - bc) >> 3;
      bc |= 56;
    } else {
      bitBuf = bb;
      bitCnt = bc;
      inPtr = ip;
      refillSlow();
      if (pastEnd()) {
        outBytes = <i32>(out - dst);
        return E_TRUNCATED;
      }
      bb = bitBuf;
      bc = bitCnt;
      ip = inPtr;
    }
    let e = load<u32>(lt + ((<usize>bb & ((1 << LIT_ROOT) - 1)) << 2));
    let kind = (e >> 8) & 0xff;
    if (kind & T_LINK) {
      bb >>= LIT_ROOT;
      bc -= LIT_ROOT;
      e = load<u32>(lt + ((<usize>(e >> 16) + (<usize>bb & ((1 << (e & 0xff)) - 1))) << 2));
      kind = (e >> 8) & 0xff;
    }
    bb >>= e & 0xff;
    bc -= e & 0xff;
    if (kind & T_LIT) {
      if (out >= outEnd) {
        bitBuf = bb; bitCnt = bc; inPtr = ip;
        outBytes = <i32>(out - dst);
        return partial ? 1 : E_OVERFLOW;
      }
      store<u8>(out, <u8>(e >> 16));
      out++;
      // A second literal without refilling when enough bits remain.
      if (bc >= 15) {
        const e2 = load<u32>(lt + ((<usize>bb & ((1 << LIT_ROOT) - 1)) << 2));
        if (((e2 >> 8) & T_LIT) != 0 && out < outEnd) {
          bb >>= e2 & 0xff;
          bc -= e2 & 0xff;
          store<u8>(out, <u8>(e2 >> 16));
          out++;
        }
      }
      continue;
    }
    if (kind & (T_END | T_BAD)) {
      bitBuf = bb; bitCnt = bc; inPtr = ip;
      outBytes = <i32>(out - dst);
      if (kind & T_BAD) return E_CORRUPT;
      if (pastEnd()) return E_TRUNCATED;
      return 0;
    }
    let len = (e >> 16) + (<u32>bb & ((1 << kind) - 1));
    bb >>= kind;
    bc -= kind;
    let d = load<u32>(dt + ((<usize>bb & ((1 << DIST_ROOT) - 1)) << 2));
    let dk = (d >> 8) & 0xff;
    if (dk & T_LINK) {
      bb >>= DIST_ROOT;
      bc -= DIST_ROOT;
      d = load<u32>(dt + ((<usize>(d >> 16) + (<usize>bb & ((1 << (d & 0xff)) - 1))) << 2));
      dk = (d >> 8) & 0xff;
    }
    bb >>= d & 0xff;
    bc -= d & 0xff;
    if (dk & T_BAD) {
      bitBuf = bb; bitCnt = bc; inPtr = ip;
      outBytes = <i32>(out - dst);
      return E_CORRUPT;
    }
    const dist = (d >> 16) + (<u32>bb & ((1 << dk) - 1));
    bb >>= dk;
    bc -= dk;
    if (<usize>dist > out - dst) {
      bitBuf = bb; bitCnt = bc; inPtr = ip;
      outBytes = <i32>(out - dst);
      return E_CORRUPT; // distance too far back
    }
    let full = false;
    if (out + len > outEnd) {
      if (!partial) {
        bitBuf = bb; bitCnt = bc; inPtr = ip;
        outBytes = <i32>(out - dst);
        return E_OVERFLOW;
      }
      len = <u32>(outEnd - out);
      full = true;
    }
    let from = out - dist;
    if (dist >= 8 && out + len + 8 <= outEnd) {
      // 8 bytes at a time; may write up to 7 bytes past the match, inside the buffer.
      const stop = out + len;
      do {
        store<u64>(out, load<u64>(from));
        out += 8;
        from += 8;
      } while (out < stop);
      out = stop;
    } else if (dist == 1) {
      memory.fill(out, load<u8>(from), len);
      out += len;
    } else {
      const stop = out + len;
      while (out < stop) {
        store<u8>(out, load<u8>(from));
        out++;
        from++;
      }
    }
    if (full) {
      bitBuf = bb; bitCnt = bc; inPtr = ip;
      outBytes = <i32>(out - dst);
      return 1;
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// Deflate

const WINDOW: u32 = 4096;
const HASH_BITS: u32 = 15;
const HASH_SIZE: u32 = 1 << HASH_BITS;
const MIN_MATCH: u32 = 4;
const MAX_MATCH: u32 = 258;
const SYMS_PER_BLOCK: u32 = 16384;

const head = memory.data(HASH_SIZE * 4, 16);
const prev = memory.data(WINDOW * 4, 16);
const syms = memory.data(SYMS_PER_BLOCK * 4 + 16, 16);
const litFreq = memory.data(288 * 4, 16);
const distFreq = memory.data(32 * 4, 16);
const clFreq = memory.data(19 * 4, 16);
const litLen = memory.data(288, 16);
const distLen = memory.data(32, 16);
const clLen = memory.data(19, 16);
const litCode = memory.data(288 * 2, 16);
const distCode = memory.data(32 * 2, 16);
const clCode = memory.data(19 * 2, 16);
const fixLitLen = memory.data(288, 16);
const fixDistLen = memory.data(32, 16);
const fixLitCode = memory.data(288 * 2, 16);
const fixDistCode = memory.data(32 * 2, 16);
const lenSym = memory.data(256, 16); // (length - 3) -> length code index 0..28
const distSym = memory.data(WINDOW + 1, 16); // distance -> distance code 0..29 (distance <= 4096)
const sortedSyms = memory.data(320 * 2, 16); // symbols by ascending frequency
const rleBuf = memory.data(320 * 2, 16); // RLE-coded code lengths: sym | extra << 8
const hsort = memory.data(320 * 8, 16); // (freq << 9 | sym), sorted
const mkWork = memory.data(320 * 4, 16); // Moffat-Katajainen work array
let encInit = false;

// Level parameters: good length, max lazy, nice length, max chain.
const P_GOOD: StaticArray<u16> = [0, 4, 4, 4, 4, 8, 8, 8, 32, 32];
const P_LAZY: StaticArray<u16> = [0, 0, 0, 0, 4, 16, 16, 32, 128, 258];
const P_NICE: StaticArray<u16> = [0, 8, 16, 32, 16, 32, 128, 128, 258, 258];
const P_CHAIN: StaticArray<u16> = [0, 4, 8, 32, 16, 32, 128, 256, 1024, 4096];

function initEncoder(): void {
  for (let c: u32 = 0; c < 29; c++) {
    const base = <u32>LEN_BASE[c];
    const n: u32 = c == 28 ? 1 : 1 << LEN_EXTRA[c];
    for (let k: u32 = 0; k < n; k++) if (base + k - 3 < 256) store<u8>(lenSym + base + k - 3, <u8>c);
  }
  store<u8>(lenSym + 255, 28);
  for (let c: u32 = 0; c < 30; c++) {
    const base = <u32>DIST_BASE[c];
    const n: u32 = 1 << DIST_EXTRA[c];
    for (let k: u32 = 0; k < n && base + k <= WINDOW; k++) store<u8>(distSym + base + k, <u8>c);
  }
  for (let i = 0; i < 144; i++) store<u8>(fixLitLen + i, 8);
  for (let i = 144; i < 256; i++) store<u8>(fixLitLen + i, 9);
  for (let i = 256; i < 280; i++) store<u8>(fixLitLen + i, 7);
  for (let i = 280; i < 288; i++) store<u8>(fixLitLen + i, 8);
  for (let i = 0; i < 32; i++) store<u8>(fixDistLen + i, 5);
  makeCodes(fixLitLen, fixLitCode, 288);
  makeCodes(fixDistLen, fixDistCode, 32);
  encInit = true;
}

/** Canonical codes (bit-reversed, ready to emit LSB first) from lengths. */
function makeCodes(lp: usize, cp: usize, n: u32): void {
  memory.fill(counts, 0, 32);
  for (let i: u32 = 0; i < n; i++) {
    const l = <usize>load<u8>(lp + i);
    store<u16>(counts + (l << 1), load<u16>(counts + (l << 1)) + 1);
  }
  store<u16>(counts, 0);
  let code: u32 = 0;
  for (let l: u32 = 1; l <= 15; l++) {
    code = (code + <u32>load<u16>(counts + ((<usize>l - 1) << 1))) << 1;
    store<u16>(nextCode + (<usize>l << 1), <u16>code);
  }
  for (let i: u32 = 0; i < n; i++) {
    const l = <u32>load<u8>(lp + i);
    if (l == 0) continue;
    const c = <u32>load<u16>(nextCode + (<usize>l << 1));
    store<u16>(nextCode + (<usize>l << 1), <u16>(c + 1));
    store<u16>(cp + (<usize>i << 1), <u16>rev(c, l));
  }
}

/**
 * Length-limited Huffman code lengths for `n` frequencies (u32) at `fp` into `lp`.
 * Always yields a complete code over at least two symbols.
 */
function buildLengths(fp: usize, lp: usize, n: u32, limit: u32): void {
  memory.fill(lp, 0, n);
  // Collect used symbols as (freq << 9 | sym) and sort ascending (insertion sort, n <= 288).
  let m: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const f = load<u32>(fp + (<usize>i << 2));
    if (f) {
      store<u64>(hsort + (<usize>m << 3), ((<u64>f) << 9) | i);
      m++;
    }
  }
  // Fewer than two symbols: add symbols 0 / 1 with frequency 0 so the code is complete.
  for (let i: u32 = 0; m < 2 && i < n; i++) {
    let used = false;
    for (let j: u32 = 0; j < m; j++) if (<u32>(load<u64>(hsort + (<usize>j << 3)) & 511) == i) used = true;
    if (!used) {
      store<u64>(hsort + (<usize>m << 3), <u64>i);
      m++;
    }
  }
  for (let i: u32 = 1; i < m; i++) {
    const v = load<u64>(hsort + (<usize>i << 3));
    let j = i;
    while (j > 0 && load<u64>(hsort + ((<usize>j - 1) << 3)) > v) {
      store<u64>(hsort + (<usize>j << 3), load<u64>(hsort + ((<usize>j - 1) << 3)));
      j--;
    }
    store<u64>(hsort + (<usize>j << 3), v);
  }
  // Moffat-Katajainen on the sorted weights (padding symbols weigh 1).
  const wp = mkWork;
  const sp = sortedSyms;
  for (let i: u32 = 0; i < m; i++) {
    const v = load<u64>(hsort + (<usize>i << 3));
    store<u32>(wp + (<usize>i << 2), max<u32>(<u32>(v >> 9), 1));
    store<u16>(sp + (<usize>i << 1), <u16>(v & 511));
  }
  moffat(wp, m);
  for (let i: u32 = 0; i < m; i++) store<u8>(lp + load<u16>(sp + (<usize>i << 1)), <u8>load<u32>(wp + (<usize>i << 2)));
  limitLengths(lp, sp, m, limit);
}

let mkA: usize = 0;
@inline function A(i: u32): u32 { return load<u32>(mkA + (<usize>i << 2)); }
@inline function S(i: u32, v: u32): void { store<u32>(mkA + (<usize>i << 2), v); }

/**
 * In-place minimum-redundancy code lengths (Moffat & Katajainen, 1995) for `n` ascending
 * weights at `a` (u32); on return a[i] is the code length of the i-th weight.
 */
function moffat(a: usize, n: u32): void {
  if (n == 1) {
    store<u32>(a, 1);
    return;
  }
  mkA = a;
  // Phase 1: combine.
  S(0, A(0) + A(1));
  let root: u32 = 0;
  let leaf: u32 = 2;
  for (let next: u32 = 1; next < n - 1; next++) {
    if (leaf >= n || A(root) < A(leaf)) {
      S(next, A(root));
      S(root, next);
      root++;
    } else {
      S(next, A(leaf));
      leaf++;
    }
    if (leaf >= n || (root < next && A(root) < A(leaf))) {
      S(next, A(next) + A(root));
      S(root, next);
      root++;
    } else {
      S(next, A(next) + A(leaf));
      leaf++;
    }
  }
  // Phase 2: depths of internal nodes.
  S(n - 2, 0);
  for (let next: i32 = <i32>n - 3; next >= 0; next--) S(<u32>next, A(A(<u32>next)) + 1);
  // Phase 3: depths of leaves.
  let avail: i32 = 1;
  let used: i32 = 0;
  let depth: u32 = 0;
  let r: i32 = <i32>n - 2;
  let nx: i32 = <i32>n - 1;
  while (avail > 0) {
    while (r >= 0 && A(<u32>r) == depth) {
      used++;
      r--;
    }
    while (avail > used) {
      S(<u32>nx, depth);
      nx--;
      avail--;
    }
    avail = 2 * used;
    depth++;
    used = 0;
  }
}

/**
 * Limits code lengths to `limit` keeping the code complete. `sp` lists the m used
 * symbols by ascending frequency.
 */
function limitLengths(lp: usize, sp: usize, m: u32, limit: u32): void {
  let over = false;
  for (let i: u32 = 0; i < m; i++) if (<u32>load<u8>(lp + load<u16>(sp + (<usize>i << 1))) > limit) over = true;
  if (!over) return;
  const full: u32 = 1 << limit;
  let k: u32 = 0;
  for (let i: u32 = 0; i < m; i++) {
    const s = load<u16>(sp + (<usize>i << 1));
    let l = <u32>load<u8>(lp + s);
    if (l > limit) {
      l = limit;
      store<u8>(lp + s, <u8>l);
    }
    k += 1 << (limit - l);
  }
  // Too much code space: lengthen the least frequent codes that are shorter than the limit.
  while (k > full) {
    for (let i: u32 = 0; i < m && k > full; i++) {
      const s = load<u16>(sp + (<usize>i << 1));
      const l = <u32>load<u8>(lp + s);
      if (l < limit) {
        store<u8>(lp + s, <u8>(l + 1));
        k -= 1 << (limit - l - 1);
      }
    }
  }
  // Unused code space: shorten the most frequent codes where that still fits.
  for (let i: i32 = <i32>m - 1; i >= 0 && k < full; i--) {
    const s = load<u16>(sp + (<usize>i << 1));
    let l = <u32>load<u8>(lp + s);
    while (l > 1 && k + (1 << (limit - l)) <= full) {
      k += 1 << (limit - l);
      l--;
    }
    store<u8>(lp + s, <u8>l);
  }
}

// Bit writer.
let outPtr: usize = 0;
let outLimit: usize = 0;
let wBuf: u64 = 0;
let wCnt: u32 = 0;
let wOverflow = false;

@inline function putBits(v: u32, n: u32): void {
  wBuf |= (<u64>v) << wCnt;
  wCnt += n;
  if (wCnt >= 32) {
    if (outPtr + 4 <= outLimit) {
      store<u32>(outPtr, <u32>wBuf);
      outPtr += 4;
    } else {
      wOverflow = true;
    }
    wBuf >>= 32;
    wCnt -= 32;
  }
}

function flushBits(): void {
  while (wCnt > 0) {
    if (outPtr < outLimit) {
      store<u8>(outPtr, <u8>wBuf);
      outPtr++;
    } else {
      wOverflow = true;
    }
    wBuf >>= 8;
    wCnt = wCnt > 8 ? wCnt - 8 : 0;
  }
}

let nSyms: u32 = 0;

@inline function recordLit(c: u32): void {
  store<u32>(syms + (<usize>nSyms << 2), c);
  nSyms++;
  const p = litFreq + (<usize>c << 2);
  store<u32>(p, load<u32>(p) + 1);
}

@inline function recordMatch(len: u32, dist: u32): void {
  store<u32>(syms + (<usize>nSyms << 2), 0x80000000 | ((len - 3) << 16) | dist);
  nSyms++;
  const lc = <usize>load<u8>(lenSym + len - 3) + 257;
  store<u32>(litFreq + (lc << 2), load<u32>(litFreq + (lc << 2)) + 1);
  const dc = <usize>load<u8>(distSym + dist);
  store<u32>(distFreq + (dc << 2), load<u32>(distFreq + (dc << 2)) + 1);
}

/** Encodes the recorded symbols with the given code tables. */
function emitSymbols(lc: usize, ll: usize, dc: usize, dl: usize): void {
  for (let i: u32 = 0; i < nSyms; i++) {
    const s = load<u32>(syms + (<usize>i << 2));
    if ((s & 0x80000000) == 0) {
      putBits(<u32>load<u16>(lc + (<usize>s << 1)), <u32>load<u8>(ll + s));
      continue;
    }
    const l3 = (s >> 16) & 0xff;
    const dist = s & 0xffff;
    const c = <u32>load<u8>(lenSym + l3);
    const sym = <usize>c + 257;
    putBits(<u32>load<u16>(lc + (sym << 1)), <u32>load<u8>(ll + sym));
    const le = <u32>unchecked(LEN_EXTRA[c]);
    if (le) putBits(l3 + 3 - <u32>unchecked(LEN_BASE[c]), le);
    const d = <u32>load<u8>(distSym + dist);
    putBits(<u32>load<u16>(dc + (<usize>d << 1)), <u32>load<u8>(dl + d));
    const de = <u32>unchecked(DIST_EXTRA[d]);
    if (de) putBits(dist - <u32>unchecked(DIST_BASE[d]), de);
  }
}

/** Bits of the recorded symbols under the given lengths (extra bits included). */
function symbolCost(ll: usize, dl: usize): u64 {
  let bitsN: u64 = 0;
  for (let s: u32 = 0; s < 286; s++) {
    const f = <u64>load<u32>(litFreq + (<usize>s << 2));
    if (!f) continue;
    bitsN += f * <u64>load<u8>(ll + s);
    if (s >= 257) bitsN += f * <u64>unchecked(LEN_EXTRA[s - 257]);
  }
  for (let s: u32 = 0; s < 30; s++) {
    const f = <u64>load<u32>(distFreq + (<usize>s << 2));
    if (f) bitsN += f * (<u64>load<u8>(dl + s) + <u64>unchecked(DIST_EXTRA[s]));
  }
  return bitsN;
}

/** Writes one block holding the recorded symbols, covering input [blockStart, blockEnd). */
function writeBlock(blockStart: usize, blockEnd: usize, last: bool): void {
  // End of block symbol.
  store<u32>(litFreq + (256 << 2), 1);
  buildLengths(litFreq, litLen, 286, 15);
  buildLengths(distFreq, distLen, 30, 15);
  let hlit: u32 = 286;
  while (hlit > 257 && load<u8>(litLen + hlit - 1) == 0) hlit--;
  let hdist: u32 = 30;
  while (hdist > 1 && load<u8>(distLen + hdist - 1) == 0) hdist--;
  // Run-length code the concatenated lengths.
  memory.fill(clFreq, 0, 19 * 4);
  const total = hlit + hdist;
  const cat = lens; // u8[total]
  memory.copy(cat, litLen, hlit);
  memory.copy(cat + hlit, distLen, hdist);
  let nCl: u32 = 0;
  const rle = rleBuf;
  let i: u32 = 0;
  while (i < total) {
    const v = <u32>load<u8>(cat + i);
    let run: u32 = 1;
    while (i + run < total && <u32>load<u8>(cat + i + run) == v) run++;
    i += run;
    if (v == 0) {
      while (run >= 11) {
        const r = min<u32>(run, 138);
        store<u16>(rle + (<usize>nCl << 1), <u16>(18 | ((r - 11) << 8))); nCl++;
        run -= r;
      }
      if (run >= 3) {
        store<u16>(rle + (<usize>nCl << 1), <u16>(17 | ((run - 3) << 8))); nCl++;
        run = 0;
      }
    } else {
      store<u16>(rle + (<usize>nCl << 1), <u16>v); nCl++;
      run--;
      while (run >= 3) {
        const r = min<u32>(run, 6);
        store<u16>(rle + (<usize>nCl << 1), <u16>(16 | ((r - 3) << 8))); nCl++;
        run -= r;
      }
    }
    while (run > 0) {
      store<u16>(rle + (<usize>nCl << 1), <u16>v); nCl++;
      run--;
    }
  }
  for (let k: u32 = 0; k < nCl; k++) {
    const s = <usize>(load<u16>(rle + (<usize>k << 1)) & 0xff);
    store<u32>(clFreq + (s << 2), load<u32>(clFreq + (s << 2)) + 1);
  }
  buildLengths(clFreq, clLen, 19, 7);
  let hclen: u32 = 19;
  while (hclen > 4 && load<u8>(clLen + unchecked(CLEN_ORDER[hclen - 1])) == 0) hclen--;
  let dynBits: u64 = 3 + 5 + 5 + 4 + 3 * <u64>hclen;
  for (let k: u32 = 0; k < nCl; k++) {
    const e = <u32>load<u16>(rle + (<usize>k << 1));
    const s = e & 0xff;
    dynBits += <u64>load<u8>(clLen + s) + (s == 16 ? 2 : s == 17 ? 3 : s == 18 ? 7 : 0);
  }
  dynBits += symbolCost(litLen, distLen);
  const fixBits: u64 = 3 + symbolCost(fixLitLen, fixDistLen);
  const rawLen = <u64>(blockEnd - blockStart);
  // Stored: header bits, alignment (at most 7), then 4 bytes of LEN/NLEN per 65535-byte piece.
  const storedBits: u64 = 3 + 7 + (((rawLen + 65534) / 65535 || 1) * 32) + rawLen * 8;
  if (storedBits < dynBits && storedBits < fixBits) {
    let p = blockStart;
    let left = rawLen;
    do {
      const n = <u32>min<u64>(left, 65535);
      const lastPiece = left <= 65535;
      putBits(last && lastPiece ? 1 : 0, 1);
      putBits(0, 2);
      // Align to a byte.
      if (wCnt & 7) putBits(0, 8 - (wCnt & 7));
      putBits(n, 16);
      putBits(n ^ 0xffff, 16);
      for (let k: u32 = 0; k < n; k++) putBits(<u32>load<u8>(p + k), 8);
      p += n;
      left -= n;
    } while (left > 0);
  } else if (fixBits <= dynBits) {
    putBits(last ? 1 : 0, 1);
    putBits(1, 2);
    emitSymbols(fixLitCode, fixLitLen, fixDistCode, fixDistLen);
    putBits(<u32>load<u16>(fixLitCode + (256 << 1)), <u32>load<u8>(fixLitLen + 256));
  } else {
    makeCodes(litLen, litCode, 286);
    makeCodes(distLen, distCode, 30);
    makeCodes(clLen, clCode, 19);
    putBits(last ? 1 : 0, 1);
    putBits(2, 2);
    putBits(hlit - 257, 5);
    putBits(hdist - 1, 5);
    putBits(hclen - 4, 4);
    for (let k: u32 = 0; k < hclen; k++) putBits(<u32>load<u8>(clLen + unchecked(CLEN_ORDER[k])), 3);
    for (let k: u32 = 0; k < nCl; k++) {
      const e = <u32>load<u16>(rle + (<usize>k << 1));
      const s = e & 0xff;
      putBits(<u32>load<u16>(clCode + (<usize>s << 1)), <u32>load<u8>(clLen + s));
      if (s == 16) putBits(e >> 8, 2);
      else if (s == 17) putBits(e >> 8, 3);
      else if (s == 18) putBits(e >> 8, 7);
    }
    emitSymbols(litCode, litLen, distCode, distLen);
    putBits(<u32>load<u16>(litCode + (256 << 1)), <u32>load<u8>(litLen + 256));
  }
  nSyms = 0;
  memory.fill(litFreq, 0, 288 * 4);
  memory.fill(distFreq, 0, 32 * 4);
}

@inline function hash4(p: usize): u32 {
  return (load<u32>(p) * 0x9e3779b1) >> (32 - HASH_BITS);
}

/** Length of the common prefix of p and q, at most `max`. */
@inline function matchLen(p: usize, q: usize, max: u32): u32 {
  let n: u32 = 0;
  while (n + 8 <= max) {
    const x = load<u64>(p + n) ^ load<u64>(q + n);
    if (x) return n + (<u32>ctz<u64>(x) >> 3);
    n += 8;
  }
  while (n < max && load<u8>(p + n) == load<u8>(q + n)) n++;
  return n;
}

let bestDist: u32 = 0;

/** Longest match for position `pos` (absolute pointer), given the chain head `cand`. */
@inline function longestMatch(src: usize, pos: usize, end: usize, prevLen: u32, chain: u32, nice: u32): u32 {
  const maxLen = <u32>min<usize>(MAX_MATCH, end - pos);
  if (maxLen < MIN_MATCH) return 0;
  let best = prevLen;
  const p = <u32>(pos - src);
  const limit: u32 = p > WINDOW ? p - WINDOW : 0;
  let cand = load<u32>(head + (<usize>hash4(pos) << 2));
  // head stores position + 1; 0 = empty
  while (cand > 0 && chain > 0) {
    const c = cand - 1;
    if (c < limit || c >= p) break;
    const q = src + c;
    if (best < maxLen && load<u8>(q + best) == load<u8>(pos + best) && load<u32>(q) == load<u32>(pos)) {
      const n = matchLen(pos, q, maxLen);
      if (n > best) {
        best = n;
        bestDist = p - c;
        if (n >= nice || n >= maxLen) break;
      }
    }
    cand = load<u32>(prev + ((<usize>c & (WINDOW - 1)) << 2));
    chain--;
  }
  return best > prevLen ? best : 0;
}

@inline function insert(src: usize, pos: usize): void {
  const h = <usize>hash4(pos) << 2;
  const p = <u32>(pos - src);
  store<u32>(prev + ((<usize>p & (WINDOW - 1)) << 2), load<u32>(head + h));
  store<u32>(head + h, p + 1);
}

/**
 * Compresses [src, src + srcLen) into [dst, dst + dstLen) as a raw deflate stream at
 * `level` (1..9). Returns the compressed size, or E_OVERFLOW when it does not fit.
 */
export function deflate(src: usize, srcLen: u32, dst: usize, dstLen: u32, level: i32): i32 {
  if (level < 1 || level > 9) return E_INVAL;
  if (!encInit) initEncoder();
  outPtr = dst;
  outLimit = dst + dstLen;
  wBuf = 0;
  wCnt = 0;
  wOverflow = false;
  nSyms = 0;
  memory.fill(litFreq, 0, 288 * 4);
  memory.fill(distFreq, 0, 32 * 4);
  memory.fill(head, 0, HASH_SIZE * 4);
  const end = src + srcLen;
  const hashEnd = srcLen >= 4 ? end - 3 : src; // positions that have 4 bytes to hash
  const good = <u32>P_GOOD[level];
  const lazy = <u32>P_LAZY[level];
  const nice = <u32>P_NICE[level];
  const chainMax = <u32>P_CHAIN[level];
  let blockStart = src;
  let pos = src;
  if (level <= 3) {
    // Greedy: take the first good match, insert only short matches' positions.
    while (pos < end) {
      if (nSyms >= SYMS_PER_BLOCK - 2) {
        writeBlock(blockStart, pos, false);
        blockStart = pos;
        if (wOverflow) return E_OVERFLOW;
      }
      let len: u32 = 0;
      if (pos < hashEnd) {
        len = longestMatch(src, pos, end, MIN_MATCH - 1, chainMax, nice);
        insert(src, pos);
      }
      if (len >= MIN_MATCH) {
        recordMatch(len, bestDist);
        const stop = pos + len;
        pos++;
        if (len <= nice) {
          for (; pos < stop; pos++) if (pos < hashEnd) insert(src, pos);
        }
        pos = stop;
      } else {
        recordLit(<u32>load<u8>(pos));
        pos++;
      }
    }
  } else {
    // Lazy: look one position ahead before committing to a match.
    let prevLen: u32 = 0;
    let prevDist: u32 = 0;
    let havePrev = false;
    while (pos < end) {
      if (nSyms >= SYMS_PER_BLOCK - 2) {
        const cut = havePrev ? pos - 1 : pos;
        writeBlock(blockStart, cut, false);
        blockStart = cut;
        if (wOverflow) return E_OVERFLOW;
      }
      let len: u32 = 0;
      if (pos < hashEnd) {
        if (prevLen < lazy) {
          const chain = prevLen >= good ? chainMax >> 2 : chainMax;
          len = longestMatch(src, pos, end, havePrev ? max<u32>(prevLen, MIN_MATCH - 1) : MIN_MATCH - 1, chain, nice);
        }
        insert(src, pos);
      }
      if (havePrev && prevLen >= MIN_MATCH && len <= prevLen) {
        // The previous match wins: emit it, insert the positions it covers.
        recordMatch(prevLen, prevDist);
        const stop = pos - 1 + prevLen;
        pos++;
        for (; pos < stop; pos++) if (pos < hashEnd) insert(src, pos);
        pos = stop;
        havePrev = false;
        prevLen = 0;
        continue;
      }
      if (havePrev) recordLit(<u32>load<u8>(pos - 1));
      if (len >= MIN_MATCH) {
        prevLen = len;
        prevDist = bestDist;
        havePrev = true;
        pos++;
      } else {
        // No match here: either literal now (no pending), or pending literal was emitted.
        prevLen = 0;
        havePrev = true;
        pos++;
      }
    }
    if (havePrev) {
      if (prevLen >= MIN_MATCH) recordMatch(prevLen, prevDist);
      else recordLit(<u32>load<u8>(end - 1));
    }
  }
  writeBlock(blockStart, end, true);
  flushBits();
  if (wOverflow) return E_OVERFLOW;
  return <i32>(outPtr - dst);
}
