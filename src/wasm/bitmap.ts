/**
 * Hierarchical dirty bitmaps (QEMU's HBitmap is the model), in WASM.
 *
 * {@link WasmBitmap} works in bits (one bit per granule); {@link DirtyBitmap} works in
 * bytes with a granularity, like QEMU's BdrvDirtyBitmap. next-dirty is O(log n) (a 64-ary
 * summary tree), and O(1) when the next set bit is less than ~64 Ki bits away (a skip
 * table, bitmaps below 2^31 bits; it costs a quarter of the bitmap's size in memory);
 * serialization uses the qcow2 persistent-bitmap layout (bit i at byte i/8, least
 * significant bit first).
 */
import { BlockError } from '../core/errors.js';
import { loadWasm, loadWasmSync, statusError, type WasmBaseExports, type WasmModule } from './loader.js';

interface BitmapExports extends WasmBaseExports {
  release(ptr: number): void;
  create(nbits: number): number;
  destroy(h: number): void;
  size(h: number): number;
  count(h: number): number;
  setRange(h: number, start: number, n: number, value: number): number;
  get(h: number, i: number): number;
  nextDirty(h: number, start: number, end: number): number;
  nextDirtyFast(h: number, l0: number, skip: number, start: number, end: number): number;
  skipPtr(h: number): number;
  levelPtr(h: number, k: number): number;
  levelWords(h: number, k: number): number;
  nextClear(h: number, start: number, end: number): number;
  nextDirtyArea(h: number, start: number, end: number, maxLen: number): number;
  areaLength(): number;
  countRange(h: number, start: number, n: number): number;
  merge(dst: number, src: number, op: number): number;
  clear(h: number): void;
  serialize(h: number, start: number, n: number, out: number): number;
  deserialize(h: number, start: number, n: number, inp: number): number;
}

/**
 * Largest bitmap: 2^34 bits (level 0 alone is then 2 GiB of the module's 32-bit memory),
 * e.g. 8 PiB at 512 KiB granularity or 1 PiB at 64 KiB.
 */
export const MAX_BITS = 2 ** 34;

/** The bitmap engine (one module instance can hold many bitmaps). */
export class BitmapEngine {
  readonly module: WasmModule<BitmapExports>;
  private bufPtr = 0;
  private bufSize = 0;
  constructor(module: WasmModule<BitmapExports>) {
    this.module = module;
  }

  /** A new bitmap of `nbits` bits, all clear. */
  create(nbits: number): WasmBitmap {
    if (!Number.isInteger(nbits) || nbits < 1 || nbits > MAX_BITS) throw new BlockError('EINVAL', `bitmap of ${nbits} bits is not supported (1 to 2^34 bits)`);
    const h = this.module.exports.create(nbits);
    if (!h) throw new BlockError('ENOSPC', `cannot allocate a bitmap of ${nbits} bits`);
    return new WasmBitmap(this, h, nbits);
  }

  /** Scratch buffer in module memory of at least `size` bytes (pointer). */
  scratch(size: number): number {
    if (size > this.bufSize) {
      if (this.bufPtr) this.module.exports.release(this.bufPtr);
      this.bufSize = Math.max(size, 65536);
      this.bufPtr = this.module.alloc(this.bufSize);
    }
    return this.bufPtr;
  }
}

function checkRange(what: string, start: number, n: number, size: number): void {
  if (!Number.isInteger(start) || !Number.isInteger(n) || start < 0 || n < 0 || start + n > size) {
    throw new BlockError('EINVAL', `bitmap ${what}: range ${start}+${n} outside ${size} bits`);
  }
}

/** A bitmap in module memory, indexed in bits. Call destroy() when done. */
export class WasmBitmap {
  private handle: number;
  // Level 0 and the skip table for nextDirtyFast, and the export itself (undefined when
  // the bitmap has no skip table: 2^31 bits or more). Each is assigned exactly once, in
  // the constructor, so that V8 treats the call target as constant and inlines its
  // JS-to-WASM transition.
  declare private readonly l0: number;
  declare private readonly skip: number;
  declare private readonly fastNext: BitmapExports['nextDirtyFast'] | undefined;
  constructor(private readonly engine: BitmapEngine, handle: number, readonly size: number) {
    this.handle = handle;
    const e = engine.module.exports;
    const skip = size < 2 ** 31 ? e.skipPtr(handle) : 0;
    this.l0 = skip ? e.levelPtr(handle, 0) : 0;
    this.skip = skip;
    this.fastNext = skip ? e.nextDirtyFast : undefined;
  }

  private get e(): BitmapExports {
    if (!this.handle) throw new BlockError('EINVAL', 'bitmap used after destroy()');
    return this.engine.module.exports;
  }

  /** The module handle (for merge). */
  get ptr(): number {
    return this.handle;
  }

  destroy(): void {
    if (this.handle) this.engine.module.exports.destroy(this.handle);
    this.handle = 0;
  }

  /** Number of set bits. */
  count(): number {
    return this.e.count(this.handle);
  }

  set(start: number, n: number): void {
    checkRange('set', start, n, this.size);
    this.e.setRange(this.handle, start, n, 1);
  }

  reset(start: number, n: number): void {
    checkRange('reset', start, n, this.size);
    this.e.setRange(this.handle, start, n, 0);
  }

  clear(): void {
    this.e.clear(this.handle);
  }

  get(i: number): boolean {
    checkRange('get', i, 1, this.size);
    return this.e.get(this.handle, i) === 1;
  }

  /** First set bit in [start, end), or -1. */
  nextDirty(start: number, end = this.size): number {
    // The hot path of dirty-bitmap walks: integer arguments go through nextDirtyFast,
    // whose call costs less than the float-argument export (see assembly/bitmap.ts).
    const f = this.fastNext;
    if (f !== undefined && this.handle !== 0 && start >>> 0 === start && end >>> 0 === end) {
      return f(this.handle, this.l0, this.skip, start, end < this.size ? end : this.size);
    }
    return this.e.nextDirty(this.handle, start, end);
  }

  /** First clear bit in [start, end), or -1. */
  nextClear(start: number, end = this.size): number {
    return this.e.nextClear(this.handle, start, end);
  }

  /** First run of set bits in [start, end), at most maxLen long, or undefined. */
  nextDirtyArea(start: number, end = this.size, maxLen = this.size): [number, number] | undefined {
    const e = this.e;
    const s = e.nextDirtyArea(this.handle, start, end, maxLen);
    return s < 0 ? undefined : [s, e.areaLength()];
  }

  /** Every run of set bits in [start, end) as [start, length]. */
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
    checkRange('countRange', start, n, this.size);
    return this.e.countRange(this.handle, start, n);
  }

  /** this |= other (same size). */
  merge(other: WasmBitmap): void {
    const r = this.e.merge(this.handle, other.ptr, 0);
    if (r < 0) throw new BlockError('EINVAL', `bitmap merge: sizes differ (${this.size} and ${other.size} bits)`);
  }

  /** this &= ~other (same size). */
  subtract(other: WasmBitmap): void {
    const r = this.e.merge(this.handle, other.ptr, 1);
    if (r < 0) throw new BlockError('EINVAL', `bitmap subtract: sizes differ (${this.size} and ${other.size} bits)`);
  }

  /** Bits [start, start + n) in the qcow2 layout (start a multiple of 8), into `out` (ceil(n/8) bytes). */
  serialize(start: number, n: number, out: Uint8Array = new Uint8Array(Math.ceil(n / 8))): Uint8Array {
    const bytes = Math.ceil(n / 8);
    if (start % 8 !== 0 || start < 0 || start > this.size || out.byteLength < bytes) throw new BlockError('EINVAL', `bitmap serialize: bad range ${start}+${n}`);
    const p = this.engine.scratch(bytes);
    const r = this.e.serialize(this.handle, start, n, p);
    if (r < 0) throw statusError(r, 'bitmap serialize');
    out.set(this.engine.module.bytes(p, bytes));
    return out;
  }

  /** Loads bits [start, start + n) from `data` (qcow2 layout, start a multiple of 8). */
  deserialize(start: number, n: number, data: Uint8Array): void {
    const bytes = Math.ceil(n / 8);
    if (start % 8 !== 0 || start < 0 || start > this.size || data.byteLength < bytes) throw new BlockError('EINVAL', `bitmap deserialize: bad range ${start}+${n}`);
    const p = this.engine.scratch(bytes);
    this.engine.module.u8.set(data.subarray(0, bytes), p);
    const r = this.e.deserialize(this.handle, start, n, p);
    if (r < 0) throw statusError(r, 'bitmap deserialize');
  }
}

/** A dirty bitmap over `length` bytes with a power-of-two `granularity`, in byte offsets. */
export class DirtyBitmap {
  readonly bits: WasmBitmap;
  private readonly shift: number;
  constructor(engine: BitmapEngine, readonly length: number, readonly granularity: number) {
    if (!Number.isInteger(Math.log2(granularity)) || granularity < 512) throw new BlockError('EINVAL', `bad bitmap granularity ${granularity}`);
    this.shift = Math.log2(granularity);
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

/** Loads the bitmap engine. */
export async function loadBitmapEngine(): Promise<BitmapEngine> {
  return new BitmapEngine(await loadWasm<BitmapExports>('bitmap'));
}

/** Synchronous {@link loadBitmapEngine}. */
export function loadBitmapEngineSync(): BitmapEngine {
  return new BitmapEngine(loadWasmSync<BitmapExports>('bitmap'));
}
