/**
 * Hierarchical dirty bitmaps (QEMU's HBitmap is the model), in WASM.
 *
 * {@link WasmBitmap} works in bits (one bit per granule); {@link DirtyBitmap} works in
 * bytes with a granularity, like QEMU's BdrvDirtyBitmap. next-dirty is O(log n) (a 64-ary
 * summary tree), and O(1) when the next set bit is less than ~64 Ki bits away (a skip
 * table, built once a bitmap below 2^31 bits is walked; it costs a quarter of the
 * bitmap's size in memory);
 * serialization uses the qcow2 persistent-bitmap layout (bit i at byte i/8, least
 * significant bit first).
 */
import { BlockError } from '../core/errors.js';
import { checkBitRange, checkBitmapBits, MAX_HBITMAP_BITS, runsOf, type HBitmap, type HBitmapEngine } from '../core/hbitmap.js';
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
  buildSkip(h: number): number;
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
export const MAX_BITS = MAX_HBITMAP_BITS;

export { DirtyBitmap } from '../core/hbitmap.js';

/** The bitmap engine (one module instance can hold many bitmaps). */
export class BitmapEngine implements HBitmapEngine {
  readonly kind = 'wasm';
  readonly module: WasmModule<BitmapExports>;
  private bufPtr = 0;
  private bufSize = 0;
  constructor(module: WasmModule<BitmapExports>) {
    this.module = module;
  }

  /** A new bitmap of `nbits` bits, all clear. */
  create(nbits: number): WasmBitmap {
    checkBitmapBits(nbits);
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

const checkRange = checkBitRange;

/** next-dirty calls after which a bitmap gets its skip table (storing one makes a few per cluster). */
const SKIP_AFTER_WALKS = 256;

/** A bitmap in module memory, indexed in bits. Call destroy() when done. */
export class WasmBitmap implements HBitmap {
  private handle: number;
  // Level 0 for nextDirtyFast and the export itself (undefined for bitmaps of 2^31 bits
  // or more, which have no skip table). Each is assigned exactly once, in the
  // constructor, so that V8 treats the call target as constant and inlines its
  // JS-to-WASM transition.
  declare private readonly l0: number;
  declare private readonly fastNext: BitmapExports['nextDirtyFast'] | undefined;
  /**
   * The skip table, 0 until the bitmap has been walked SKIP_AFTER_WALKS times: one that
   * is only loaded, merged and stored never pays for a quarter of its size in fresh
   * memory.
   */
  private skip = 0;
  private walks = 0;
  constructor(private readonly engine: BitmapEngine, handle: number, readonly size: number) {
    this.handle = handle;
    const e = engine.module.exports;
    const fast = size < 2 ** 31 && size > 0;
    this.l0 = fast ? e.levelPtr(handle, 0) : 0;
    this.fastNext = fast ? e.nextDirtyFast : undefined;
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
    this.skip = 0;
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
    if (f !== undefined && this.skip !== 0 && start >>> 0 === start && end >>> 0 === end) {
      return f(this.handle, this.l0, this.skip, start, end < this.size ? end : this.size);
    }
    if (f !== undefined && this.handle !== 0 && ++this.walks === SKIP_AFTER_WALKS) this.skip = this.e.buildSkip(this.handle);
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
  merge(other: HBitmap): void {
    if (!(other instanceof WasmBitmap)) return this.byRuns(other, 'merge', 1);
    const r = this.e.merge(this.handle, other.ptr, 0);
    if (r < 0) throw new BlockError('EINVAL', `bitmap merge: sizes differ (${this.size} and ${other.size} bits)`);
  }

  /** this &= ~other (same size). */
  subtract(other: HBitmap): void {
    if (!(other instanceof WasmBitmap)) return this.byRuns(other, 'subtract', 0);
    const r = this.e.merge(this.handle, other.ptr, 1);
    if (r < 0) throw new BlockError('EINVAL', `bitmap subtract: sizes differ (${this.size} and ${other.size} bits)`);
  }

  /** merge / subtract of another engine's bitmap (made before a switch of engines), run by run. */
  private byRuns(other: HBitmap, what: string, value: number): void {
    if (other.size !== this.size) throw new BlockError('EINVAL', `bitmap ${what}: sizes differ (${this.size} and ${other.size} bits)`);
    const e = this.e;
    for (const [s, n] of runsOf(other)) e.setRange(this.handle, s, n, value);
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

/** Loads the bitmap engine. */
export async function loadBitmapEngine(): Promise<BitmapEngine> {
  return new BitmapEngine(await loadWasm<BitmapExports>('bitmap'));
}

/** Synchronous {@link loadBitmapEngine}. */
export function loadBitmapEngineSync(): BitmapEngine {
  return new BitmapEngine(loadWasmSync<BitmapExports>('bitmap'));
}
