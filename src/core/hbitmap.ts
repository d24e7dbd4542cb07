/**
 * The dirty-bitmap engine's contract and its TypeScript implementation
 * (QEMU's HBitmap is the model), plus {@link DirtyBitmap}, the byte-offset
 * view over either engine.
 *
 * {@link HBitmap} works in bits (one bit per granule). Two engines implement
 * it with the same answers: the WASM one (src/wasm/bitmap.ts) and
 * {@link typescriptHBitmapEngine} here; src/wasm/hot-paths.ts decides which
 * one new bitmaps use (core/dirty-bitmap.ts holds the choice).
 *
 * The TypeScript bitmap keeps level 0 in 32-bit words and summary levels
 * above it (bit j of level k+1 is set iff word j of level k is non-zero), so
 * next-dirty touches O(log32 n) words. Serialization uses the qcow2
 * persistent-bitmap layout: bit i at byte i/8, least significant bit first.
 */
import { BlockError } from './errors.js';

/** Largest bitmap either engine accepts (2^34 bits, as the WASM module's 32-bit memory can hold). */
export const MAX_HBITMAP_BITS = 2 ** 34;

/** A bitmap indexed in bits. Call destroy() when done. */
export interface HBitmap {
  /** Number of bits. */
  readonly size: number;
  /** Number of set bits. */
  count(): number;
  /** Sets bits [start, start + n). */
  set(start: number, n: number): void;
  /** Clears bits [start, start + n). */
  reset(start: number, n: number): void;
  /** Clears every bit. */
  clear(): void;
  get(i: number): boolean;
  /** First set bit in [start, end), or -1. */
  nextDirty(start: number, end?: number): number;
  /** First clear bit in [start, end), or -1. */
  nextClear(start: number, end?: number): number;
  /** First run of set bits in [start, end), at most maxLen long, as [start, length]. */
  nextDirtyArea(start: number, end?: number, maxLen?: number): [number, number] | undefined;
  /** Every run of set bits in [start, end) as [start, length]. */
  dirtyRuns(start?: number, end?: number): Generator<[number, number]>;
  /** Set bits in [start, start + n). */
  countRange(start: number, n: number): number;
  /** this |= other (same size; `other` may come from the other engine). */
  merge(other: HBitmap): void;
  /** this &= ~other (same size). */
  subtract(other: HBitmap): void;
  /** Bits [start, start + n) in the qcow2 layout (start a multiple of 8), ceil(n/8) bytes. */
  serialize(start: number, n: number, out?: Uint8Array): Uint8Array;
  /** Loads bits [start, start + n) from `data` (qcow2 layout); bits past the end are ignored. */
  deserialize(start: number, n: number, data: Uint8Array): void;
  destroy(): void;
}

/** Makes bitmaps; `kind` says which implementation. */
export interface HBitmapEngine {
  readonly kind: 'wasm' | 'typescript';
  /** A new bitmap of `nbits` bits (1 to 2^34), all clear. */
  create(nbits: number): HBitmap;
}

/** EINVAL naming the operation and range when [start, start + n) is not inside `size` bits. */
export function checkBitRange(what: string, start: number, n: number, size: number): void {
  if (!Number.isInteger(start) || !Number.isInteger(n) || start < 0 || n < 0 || start + n > size) {
    throw new BlockError('EINVAL', `bitmap ${what}: range ${start}+${n} outside ${size} bits`);
  }
}

/** EINVAL unless `nbits` is a supported bitmap size. */
export function checkBitmapBits(nbits: number): void {
  if (!Number.isInteger(nbits) || nbits < 1 || nbits > MAX_HBITMAP_BITS) {
    throw new BlockError('EINVAL', `bitmap of ${nbits} bits is not supported (1 to 2^34 bits)`);
  }
}

/** Runs of set bits of `src`, for merges across engines. */
export function* runsOf(src: HBitmap): Generator<[number, number]> {
  yield* src.dirtyRuns(0, src.size);
}

function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Index of the lowest set bit of a non-zero 32-bit word. */
function ctz32(v: number): number {
  return 31 - Math.clz32(v & -v);
}

/** Bits from `bit & 31` up. */
function maskFrom(bit: number): number {
  return (0xffffffff << (bit & 31)) >>> 0;
}

/** Bits up to and including `bit & 31`. */
function maskTo(bit: number): number {
  const s = bit & 31;
  return s === 31 ? 0xffffffff : ((1 << (s + 1)) - 1) >>> 0;
}

/** The TypeScript bitmap (see the file comment for the layout). */
export class TsHBitmap implements HBitmap {
  /** levels[0] holds the bits; levels[k+1] summarises levels[k]. */
  private levels: Uint32Array[] = [];
  private setBits = 0;
  private live = true;

  constructor(readonly size: number) {
    checkBitmapBits(size);
    let words = Math.ceil(size / 32);
    try {
      for (;;) {
        this.levels.push(new Uint32Array(words));
        if (words === 1) break;
        words = Math.ceil(words / 32);
      }
    } catch {
      this.levels = [];
      throw new BlockError('ENOSPC', `cannot allocate a bitmap of ${size} bits`);
    }
  }

  private l0(): Uint32Array {
    if (!this.live) throw new BlockError('EINVAL', 'bitmap used after destroy()');
    return this.levels[0]!;
  }

  destroy(): void {
    this.live = false;
    this.levels = [];
  }

  count(): number {
    this.l0();
    return this.setBits;
  }

  set(start: number, n: number): void {
    checkBitRange('set', start, n, this.size);
    this.fill(start, n, true);
  }

  reset(start: number, n: number): void {
    checkBitRange('reset', start, n, this.size);
    this.fill(start, n, false);
  }

  private fill(start: number, n: number, value: boolean): void {
    const p = this.l0();
    if (n === 0) return;
    const last = start + n - 1;
    const w0 = Math.floor(start / 32);
    const w1 = Math.floor(last / 32);
    let cnt = this.setBits;
    for (let w = w0; w <= w1; w++) {
      let m = 0xffffffff;
      if (w === w0) m = (m & maskFrom(start)) >>> 0;
      if (w === w1) m = (m & maskTo(last)) >>> 0;
      const old = p[w]!;
      const nw = (value ? old | m : old & ~m) >>> 0;
      if (nw !== old) {
        cnt += popcount32(nw) - popcount32(old);
        p[w] = nw;
      }
    }
    this.setBits = cnt;
    this.refreshUp(w0, w1);
  }

  /** Recomputes the summary bits over level-0 words [a, b], up to the top. */
  private refreshUp(a: number, b: number): void {
    const lv = this.levels;
    for (let k = 0; k < lv.length - 1; k++) {
      const lo = lv[k]!;
      const up = lv[k + 1]!;
      for (let uw = Math.floor(a / 32); uw <= Math.floor(b / 32); uw++) {
        const base = uw * 32;
        const lim = Math.min(32, lo.length - base);
        let v = 0;
        for (let i = 0; i < lim; i++) if (lo[base + i] !== 0) v |= 1 << i;
        up[uw] = v >>> 0;
      }
      a = Math.floor(a / 32);
      b = Math.floor(b / 32);
    }
  }

  get(i: number): boolean {
    checkBitRange('get', i, 1, this.size);
    return ((this.l0()[Math.floor(i / 32)]! >>> (i & 31)) & 1) === 1;
  }

  /** First set bit at or after `from`, or size. */
  private findSet(from: number): number {
    const lv = this.levels;
    let pos = from;
    let k = 0;
    let found = -1;
    for (;;) {
      const level = lv[k]!;
      const w = Math.floor(pos / 32);
      if (w >= level.length) return this.size;
      const v = (level[w]! & maskFrom(pos)) >>> 0;
      if (v !== 0) {
        found = w * 32 + ctz32(v);
        break;
      }
      k++;
      if (k >= lv.length) return this.size;
      pos = w + 1;
    }
    while (k > 0) {
      k--;
      found = found * 32 + ctz32(lv[k]![found]!);
    }
    return found < this.size ? found : this.size;
  }

  nextDirty(start: number, end = this.size): number {
    this.l0();
    if (!(start >= 0)) return -1;
    end = end > this.size ? this.size : Math.max(0, Math.floor(end));
    start = Math.floor(start);
    if (start >= end) return -1;
    const r = this.findSet(start);
    return r < end ? r : -1;
  }

  nextClear(start: number, end = this.size): number {
    const p = this.l0();
    if (!(start >= 0)) return -1;
    end = end > this.size ? this.size : Math.max(0, Math.floor(end));
    const pos = Math.floor(start);
    if (pos >= end) return -1;
    let w = Math.floor(pos / 32);
    let v = (~p[w]! & maskFrom(pos)) >>> 0;
    while (v === 0) {
      w++;
      if (w * 32 >= end) return -1;
      v = ~p[w]! >>> 0;
    }
    const r = w * 32 + ctz32(v);
    return r < end ? r : -1;
  }

  nextDirtyArea(start: number, end = this.size, maxLen = this.size): [number, number] | undefined {
    const s = this.nextDirty(start, end);
    if (s < 0) return undefined;
    let e = Math.min(end, this.size, s + maxLen);
    const c = this.nextClear(s, e);
    if (c >= 0) e = c;
    return [s, e - s];
  }

  *dirtyRuns(start = 0, end = this.size): Generator<[number, number]> {
    let pos = start;
    while (pos < end) {
      const a = this.nextDirtyArea(pos, end);
      if (!a) return;
      yield a;
      pos = a[0] + a[1];
    }
  }

  countRange(start: number, n: number): number {
    checkBitRange('countRange', start, n, this.size);
    const p = this.l0();
    if (n === 0) return 0;
    const last = start + n - 1;
    const w0 = Math.floor(start / 32);
    const w1 = Math.floor(last / 32);
    let c = 0;
    for (let w = w0; w <= w1; w++) {
      let m = 0xffffffff;
      if (w === w0) m = (m & maskFrom(start)) >>> 0;
      if (w === w1) m = (m & maskTo(last)) >>> 0;
      c += popcount32(p[w]! & m);
    }
    return c;
  }

  merge(other: HBitmap): void {
    this.combine(other, false);
  }

  subtract(other: HBitmap): void {
    this.combine(other, true);
  }

  private combine(other: HBitmap, subtract: boolean): void {
    const what = subtract ? 'subtract' : 'merge';
    const a = this.l0();
    if (other.size !== this.size) throw new BlockError('EINVAL', `bitmap ${what}: sizes differ (${this.size} and ${other.size} bits)`);
    if (!(other instanceof TsHBitmap)) {
      // Another engine's bitmap (made before a switch of engines): go by its runs.
      for (const [s, n] of runsOf(other)) this.fill(s, n, !subtract);
      return;
    }
    const b = other.l0();
    let lo = -1;
    let hi = -1;
    for (let bit = other.findSet(0); bit < other.size; bit = other.findSet((Math.floor(bit / 32) + 1) * 32)) {
      const w = Math.floor(bit / 32);
      a[w] = (subtract ? a[w]! & ~b[w]! : a[w]! | b[w]!) >>> 0;
      if (lo < 0) lo = w;
      hi = w;
    }
    if (lo < 0) return;
    let c = 0;
    for (let i = 0; i < a.length; i++) c += popcount32(a[i]!);
    this.setBits = c;
    this.refreshUp(lo, hi);
  }

  clear(): void {
    this.l0();
    for (const l of this.levels) l.fill(0);
    this.setBits = 0;
  }

  serialize(start: number, n: number, out: Uint8Array = new Uint8Array(Math.ceil(n / 8))): Uint8Array {
    const bytes = Math.ceil(n / 8);
    if (start % 8 !== 0 || start < 0 || start > this.size || !(n >= 0) || out.byteLength < bytes) {
      throw new BlockError('EINVAL', `bitmap serialize: bad range ${start}+${n}`);
    }
    const p = this.l0();
    const first = start / 8;
    const avail = Math.ceil(this.size / 8) - first;
    const copy = Math.min(bytes, avail);
    for (let i = 0; i < copy; i++) {
      const b = first + i;
      out[i] = (p[Math.floor(b / 4)]! >>> ((b & 3) * 8)) & 0xff;
    }
    out.fill(0, copy, bytes);
    // Bits past start + n in the last byte are not part of the range.
    if (n % 8 !== 0) out[bytes - 1]! &= (1 << (n % 8)) - 1;
    return out;
  }

  deserialize(start: number, n: number, data: Uint8Array): void {
    const bytes = Math.ceil(n / 8);
    if (start % 8 !== 0 || start < 0 || start > this.size || !(n >= 0) || data.byteLength < bytes) {
      throw new BlockError('EINVAL', `bitmap deserialize: bad range ${start}+${n}`);
    }
    const p = this.l0();
    if (start + n > this.size) n = this.size - start;
    if (n === 0) return;
    const last = start + n - 1;
    const w0 = Math.floor(start / 32);
    const w1 = Math.floor(last / 32);
    let cnt = this.setBits;
    for (let w = w0; w <= w1; w++) {
      let m = 0xffffffff;
      if (w === w0) m = (m & maskFrom(start)) >>> 0;
      if (w === w1) m = (m & maskTo(last)) >>> 0;
      // Four input bytes per word; `start` is byte aligned so each byte is whole.
      let v = 0;
      for (let k = 0; k < 4; k++) {
        const bit = w * 32 + k * 8;
        if (bit < start || bit > last) continue;
        v |= data[(bit - start) / 8]! << (k * 8);
      }
      const old = p[w]!;
      const nw = ((old & ~m) | (v & m)) >>> 0;
      if (nw !== old) {
        cnt += popcount32(nw) - popcount32(old);
        p[w] = nw;
      }
    }
    this.setBits = cnt;
    this.refreshUp(w0, w1);
  }
}

/** The TypeScript engine. */
export const typescriptHBitmapEngine: HBitmapEngine = {
  kind: 'typescript',
  create: (nbits) => new TsHBitmap(nbits),
};

/** A dirty bitmap over `length` bytes with a power-of-two `granularity`, in byte offsets. */
export class DirtyBitmap {
  readonly bits: HBitmap;
  constructor(
    engine: HBitmapEngine,
    readonly length: number,
    readonly granularity: number,
  ) {
    if (!Number.isInteger(Math.log2(granularity)) || granularity < 512) throw new BlockError('EINVAL', `bad bitmap granularity ${granularity}`);
    this.bits = engine.create(Math.max(1, Math.ceil(length / granularity)));
  }
  private first(off: number): number {
    return Math.floor(off / this.granularity);
  }
  private end(off: number): number {
    return Math.ceil(off / this.granularity);
  }
  /** Marks [offset, offset + bytes) dirty. */
  setDirty(offset: number, bytes: number): void {
    if (bytes > 0) this.bits.set(this.first(offset), this.end(Math.min(this.length, offset + bytes)) - this.first(offset));
  }
  /** Clears whole granules inside [offset, offset + bytes) (partly covered granules too, like QEMU). */
  resetDirty(offset: number, bytes: number): void {
    if (bytes > 0) this.bits.reset(this.first(offset), this.end(Math.min(this.length, offset + bytes)) - this.first(offset));
  }
  isDirty(offset: number): boolean {
    return this.bits.get(this.first(offset));
  }
  /** Dirty bytes (granules x granularity, the last one clipped). */
  dirtyBytes(): number {
    const n = this.bits.count();
    const lastBit = this.bits.size - 1;
    const clip = this.bits.get(lastBit) ? this.bits.size * this.granularity - this.length : 0;
    return n * this.granularity - clip;
  }
  /** Offset of the first dirty byte at or after `offset` (granule-aligned), or -1. */
  nextDirty(offset: number, end = this.length): number {
    const b = this.bits.nextDirty(this.first(offset), this.end(end));
    return b < 0 ? -1 : Math.max(offset, b * this.granularity);
  }
  /** Offset of the first clean byte at or after `offset`, or -1. */
  nextClean(offset: number, end = this.length): number {
    const b = this.bits.nextClear(this.first(offset), this.end(end));
    return b < 0 ? -1 : Math.max(offset, b * this.granularity);
  }
  /** Dirty extents in [offset, end) as [offset, bytes], clipped to the bitmap length. */
  *dirtyExtents(offset = 0, end = this.length): Generator<[number, number]> {
    for (const [s, n] of this.bits.dirtyRuns(this.first(offset), this.end(end))) {
      const a = Math.max(offset, s * this.granularity);
      const b = Math.min(end, (s + n) * this.granularity);
      yield [a, b - a];
    }
  }
  destroy(): void {
    this.bits.destroy();
  }
}
