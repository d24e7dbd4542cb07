/**
 * qcow2 refcount blocks: get / set entries of 2^order bits (order 0..6), add to ranges
 * with overflow checks, find runs of free clusters.
 *
 * {@link RefcountTs} is the plain TypeScript implementation (and the reference the WASM
 * module is tested against); {@link WasmRefcount} runs the same operations on blocks in
 * module memory (allocate them with {@link WasmRefcount.allocBlock}) or copies a foreign
 * block in for read-only scans. Both implement {@link RefcountOps}.
 */
import { BlockError } from '../core/errors.js';
import { loadWasm, loadWasmSync, statusError, WasmStatus, type WasmBaseExports, type WasmModule } from './loader.js';

/** Result of a free-run search. */
export interface FreeRun {
  /** Index of the first free entry, or the entry count when none was found. */
  index: number;
  /** Length of the run (at most the requested count; shorter only when it reaches the end of the block). */
  length: number;
}

/** Result of {@link RefcountOps.compareCounts}. */
export interface CountsScan {
  /** Mismatching entries written to `out` (all of them when `end` is the requested end). */
  mismatches: number;
  /** Where the scan stopped: the requested end, or the entry after the mismatch that filled `out`. */
  end: number;
  /** Last entry before `end` whose stored or counted refcount is not zero (-1: none). */
  lastUsed: number;
}

/** The operations both implementations provide, on a block given as bytes. */
export interface RefcountOps {
  get(block: Uint8Array, order: number, index: number): number;
  set(block: Uint8Array, order: number, index: number, value: number): void;
  findFree(block: Uint8Array, order: number, start: number, n: number): FreeRun;
  addRange(block: Uint8Array, order: number, start: number, count: number, delta: number): void;
  countUsed(block: Uint8Array, order: number, start: number, count: number): number;
  /**
   * Compares entries [start, end) with counted references (`counts[k]` belongs to entry
   * start + k, as check's compare_refcounts does) and writes the indexes of the entries
   * that differ to `out`, stopping when it is full.
   */
  compareCounts(block: Uint8Array, order: number, start: number, end: number, counts: Float64Array, out: Uint32Array): CountsScan;
}

function checkCompare(block: Uint8Array, order: number, start: number, end: number, counts: Float64Array, out: Uint32Array): void {
  checkOrder(order);
  const total = entriesPerBlock(block.byteLength, order);
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > total) {
    throw new BlockError('EINVAL', `refcount compareCounts: bad range ${start}..${end} of ${total} entries`);
  }
  if (counts.length < end - start) throw new BlockError('EINVAL', `refcount compareCounts: ${counts.length} counts for ${end - start} entries`);
  if (out.length === 0) throw new BlockError('EINVAL', 'refcount compareCounts: empty output array');
}

function checkOrder(order: number): void {
  if (!Number.isInteger(order) || order < 0 || order > 6) throw new BlockError('EINVAL', `bad refcount_order ${order}`);
}

/** Number of entries in a block of `bytes` bytes. */
export function entriesPerBlock(bytes: number, order: number): number {
  return Math.floor((bytes * 8) / 2 ** order);
}

function rangeError(index: number, what: string): BlockError {
  return new BlockError('EIO', `refcount ${what} at entry ${index}`, { expected: 'a refcount within the entry width' });
}

/** Plain TypeScript refcount operations. */
export const RefcountTs: RefcountOps = {
  get(block, order, index) {
    const dv = new DataView(block.buffer, block.byteOffset, block.byteLength);
    switch (order) {
      case 3: return block[index]!;
      case 4: return dv.getUint16(index * 2);
      case 5: return dv.getUint32(index * 4);
      case 6: return dv.getUint32(index * 8) * 2 ** 32 + dv.getUint32(index * 8 + 4);
      default: {
        checkOrder(order);
        const w = 1 << order;
        const perByte = 8 >> order;
        return (block[Math.floor(index / perByte)]! >> ((index % perByte) * w)) & ((1 << w) - 1);
      }
    }
  },
  set(block, order, index, value) {
    checkOrder(order);
    if (!Number.isInteger(value) || value < 0 || value > 2 ** 2 ** order - 1 || value > Number.MAX_SAFE_INTEGER) {
      throw new BlockError('EINVAL', `refcount ${value} does not fit in ${2 ** order} bits`);
    }
    const dv = new DataView(block.buffer, block.byteOffset, block.byteLength);
    switch (order) {
      case 3: block[index] = value; return;
      case 4: dv.setUint16(index * 2, value); return;
      case 5: dv.setUint32(index * 4, value); return;
      case 6: dv.setUint32(index * 8, Math.floor(value / 2 ** 32)); dv.setUint32(index * 8 + 4, value % 2 ** 32); return;
      default: {
        const w = 1 << order;
        const perByte = 8 >> order;
        const i = Math.floor(index / perByte);
        const shift = (index % perByte) * w;
        const mask = ((1 << w) - 1) << shift;
        block[i] = (block[i]! & ~mask) | ((value << shift) & mask);
      }
    }
  },
  findFree(block, order, start, n) {
    checkOrder(order);
    if (n < 1) throw new BlockError('EINVAL', `refcount findFree: bad count ${n}`);
    const total = entriesPerBlock(block.byteLength, order);
    let i = start;
    while (i < total) {
      if (RefcountTs.get(block, order, i) !== 0) {
        i++;
        continue;
      }
      let j = i + 1;
      while (j < i + n && j < total && RefcountTs.get(block, order, j) === 0) j++;
      if (j === i + n || j === total) return { index: i, length: j - i };
      i = j + 1;
    }
    return { index: total, length: 0 };
  },
  addRange(block, order, start, count, delta) {
    checkOrder(order);
    const total = entriesPerBlock(block.byteLength, order);
    if (start < 0 || start + count > total || !Number.isInteger(delta)) {
      throw new BlockError('EINVAL', `refcount addRange: bad range ${start}+${count} of ${total} entries`);
    }
    const max = 2 ** 2 ** order - 1;
    for (let i = start; i < start + count; i++) {
      const v = RefcountTs.get(block, order, i) + delta;
      if (v < 0) throw rangeError(i, 'underflow');
      if (v > max) throw rangeError(i, 'overflow');
    }
    for (let i = start; i < start + count; i++) RefcountTs.set(block, order, i, RefcountTs.get(block, order, i) + delta);
  },
  countUsed(block, order, start, count) {
    let c = 0;
    for (let i = start; i < start + count; i++) if (RefcountTs.get(block, order, i) !== 0) c++;
    return c;
  },
  compareCounts(block, order, start, end, counts, out) {
    checkCompare(block, order, start, end, counts, out);
    let k = 0;
    let last = -1;
    let i = start;
    for (; i < end; i++) {
      const s = RefcountTs.get(block, order, i);
      if (s !== counts[i - start]) {
        out[k++] = i;
        last = i;
        if (k === out.length) {
          i++;
          break;
        }
      } else if (s !== 0) last = i;
    }
    return { mismatches: k, end: i, lastUsed: last };
  },
};

interface RefcountExports extends WasmBaseExports {
  get(ptr: number, order: number, index: number): number;
  getU64(ptr: number, order: number, index: number): bigint;
  set(ptr: number, order: number, index: number, value: number): number;
  setU64(ptr: number, order: number, index: number, value: bigint): number;
  findFree(ptr: number, order: number, nEntries: number, start: number, n: number): number;
  findFree16(ptr: number, nEntries: number, start: number, n: number): number;
  foundLength(): number;
  addRange(ptr: number, order: number, nEntries: number, start: number, count: number, delta: number): number;
  countUsed(ptr: number, order: number, nEntries: number, start: number, count: number): number;
  compareCounts(ptr: number, order: number, nEntries: number, start: number, end: number, countsPtr: number, outPtr: number, outCap: number): number;
  lastUsed(): number;
  scanEnd(): number;
  errorIndex(): number;
  walkL2(l2: number, from: number, end: number, addend: number, order: number, clusterBits: number, blockBits: number, slots: number, nSlots: number): number;
  walkL2w16(l2: number, from: number, end: number, addend: number, clusterBits: number, blockBits: number, slots: number, nSlots: number): number;
  walkNeededBlock(): number;
  walkChangedFlags(): number;
}

/** Bytes of a slot record of the snapshot walk: i32 block index (-1: empty), u32 address, i32 written. */
const WALK_SLOT_BYTES = 16;

/**
 * Module memory of the snapshot walk ({@link WasmRefcount.walkL2}): one L2 slice and
 * `slots` refcount blocks, each slot described by a record.
 */
export interface WalkArea {
  /** Address of the L2 slice copy. */
  l2: number;
  sliceBytes: number;
  /** Address of the slot records. */
  records: number;
  /** Address of slot i's block: blocks + i * blockBytes. */
  blocks: number;
  blockBytes: number;
  slots: number;
}

/** Where {@link WasmRefcount.walkL2} stopped. */
export interface WalkStop {
  /** The first entry left to the caller (the requested end when all were done). */
  index: number;
  /** The refcount block it needs in a slot, or -1 (the entry must take the slow way). */
  needBlock: number;
  /** Whether a COPIED flag in the range walked changed. */
  changed: boolean;
}

/** A reusable buffer in module memory (the stub runtime never frees: grow only). */
class Scratch {
  ptr = 0;
  size = 0;
  constructor(private readonly module: WasmModule) {}
  /** A buffer of at least `bytes` bytes (8-byte aligned). */
  need(bytes: number): number {
    if (bytes > this.size) {
      const size = Math.max(bytes, this.size * 2, 4096);
      this.ptr = this.module.alloc(size);
      this.size = size;
    }
    return this.ptr;
  }
}

/** The WASM refcount module. Blocks outside module memory are copied in (and back after writes). */
export class WasmRefcount implements RefcountOps {
  readonly module: WasmModule<RefcountExports>;
  private readonly blockScratch: Scratch;
  private readonly countsScratch: Scratch;
  private readonly outScratch: Scratch;
  /** The snapshot walk's memory, once allocated. */
  private area: WalkArea | undefined;

  constructor(module: WasmModule<RefcountExports>) {
    this.module = module;
    this.blockScratch = new Scratch(module);
    this.countsScratch = new Scratch(module);
    this.outScratch = new Scratch(module);
  }

  /** A refcount block buffer in module memory (never freed; re-view it after later allocations). */
  allocBlock(bytes: number): number {
    return this.module.alloc(bytes);
  }

  /** View of `bytes` bytes at `ptr` in module memory. */
  view(ptr: number, bytes: number): Uint8Array {
    return this.module.bytes(ptr, bytes);
  }

  /**
   * The block's address in module memory, copied in unless it lives there. Only bytes
   * [from, to) are copied (`from` rounded down to a 64-bit word, which the scans read
   * whole): a scan of the tail of a block does not pay for its head.
   */
  private place(block: Uint8Array, from = 0, to = block.byteLength): number {
    if (block.buffer === this.module.memory.buffer) return block.byteOffset;
    const ptr = this.blockScratch.need(block.byteLength);
    const a = from & ~7;
    const b = Math.min(block.byteLength, to);
    if (a < b) this.module.u8.set(a === 0 && b === block.byteLength ? block : block.subarray(a, b), ptr + a);
    return ptr;
  }

  /** Copies bytes [from, to) of a placed block back out (all of it by default). */
  private writeBack(block: Uint8Array, ptr: number, from = 0, to = block.byteLength): void {
    if (block.buffer !== this.module.memory.buffer && from < to) block.set(this.module.bytes(ptr + from, to - from), from);
  }

  get(block: Uint8Array, order: number, index: number): number {
    checkOrder(order);
    return this.module.exports.get(this.place(block), order, index);
  }

  /** Full 64-bit value of an entry. */
  getU64(block: Uint8Array, order: number, index: number): bigint {
    checkOrder(order);
    return BigInt.asUintN(64, this.module.exports.getU64(this.place(block), order, index));
  }

  set(block: Uint8Array, order: number, index: number, value: number): void {
    checkOrder(order);
    const p = this.place(block);
    const r = this.module.exports.set(p, order, index, value);
    if (r < 0) throw new BlockError('EINVAL', `refcount ${value} does not fit in ${2 ** order} bits`);
    this.writeBack(block, p);
  }

  /**
   * {@link RefcountOps.findFree}; with `end`, the block is taken to end at entry `end` (a
   * multiple of 64): only bytes up to it are copied in, and a run reaching it is reported
   * like one reaching the end of the block.
   */
  findFree(block: Uint8Array, order: number, start: number, n: number, end?: number): FreeRun {
    checkOrder(order);
    const e = this.module.exports;
    const total = entriesPerBlock(block.byteLength, order);
    const limit = end === undefined ? total : end;
    if (!Number.isInteger(limit) || limit < 0 || limit > total || (limit !== total && limit % 64 !== 0)) {
      throw new BlockError('EINVAL', `refcount findFree: bad end ${end} of ${total} entries`);
    }
    const bits = 2 ** order;
    const ptr = this.place(block, start > 0 ? Math.floor((start * bits) / 8) : 0, Math.ceil((limit * bits) / 8));
    // 16-bit entries (QEMU's default) have a loop of their own (see assembly/refcount.ts).
    const r = order === 4 ? e.findFree16(ptr, limit, start, n) : e.findFree(ptr, order, limit, start, n);
    if (r < 0) throw statusError(r, 'refcount findFree');
    return { index: r, length: e.foundLength() };
  }

  addRange(block: Uint8Array, order: number, start: number, count: number, delta: number): void {
    const i = this.tryAddRange(block, order, start, count, delta);
    if (i >= 0) throw rangeError(i, delta < 0 ? 'underflow' : 'overflow');
  }

  /**
   * {@link addRange} that reports an entry out of range by its index instead of throwing
   * (nothing is written then); -1 when every entry was updated.
   */
  tryAddRange(block: Uint8Array, order: number, start: number, count: number, delta: number): number {
    checkOrder(order);
    const bits = 2 ** order;
    const p = this.place(block, Math.floor((start * bits) / 8), Math.ceil(((start + count) * bits) / 8));
    const e = this.module.exports;
    const total = entriesPerBlock(block.byteLength, order);
    const r = e.addRange(p, order, total, start, count, delta);
    if (r === WasmStatus.RANGE) return e.errorIndex();
    if (r < 0) throw new BlockError('EINVAL', `refcount addRange: bad range ${start}+${count} of ${total} entries`);
    this.writeBack(block, p, Math.floor((start * bits) / 8) & ~7, Math.ceil(((start + count) * bits) / 8));
    return -1;
  }

  /**
   * Module memory for the snapshot walk: an L2 slice of `sliceBytes` and `slots` blocks of
   * `blockBytes`, every slot empty. Reused while the sizes fit (the stub runtime never frees).
   */
  walkArea(sliceBytes: number, blockBytes: number, slots: number): WalkArea {
    const a = this.area;
    if (!a || a.sliceBytes < sliceBytes || a.blockBytes < blockBytes || a.slots < slots) {
      const l2 = this.module.alloc(sliceBytes);
      const records = this.module.alloc(slots * WALK_SLOT_BYTES);
      const blocks = this.module.alloc(slots * blockBytes);
      this.area = { l2, sliceBytes, records, blocks, blockBytes, slots };
    }
    const area: WalkArea = { ...this.area!, sliceBytes, blockBytes, slots };
    for (let i = 0; i < slots; i++) this.setSlot(area, i, -1);
    return area;
  }

  /** Slot `i` holds block `block` (-1: empty), not written yet. */
  setSlot(area: WalkArea, i: number, block: number): void {
    const dv = new DataView(this.module.memory.buffer, area.records + i * WALK_SLOT_BYTES, WALK_SLOT_BYTES);
    dv.setInt32(0, block, true);
    dv.setUint32(4, area.blocks + i * area.blockBytes, true);
    dv.setInt32(8, 0, true);
  }

  /** Whether the walk changed slot `i`'s block since {@link setSlot}. */
  slotWritten(area: WalkArea, i: number): boolean {
    return new DataView(this.module.memory.buffer).getInt32(area.records + i * WALK_SLOT_BYTES + 8, true) !== 0;
  }

  /**
   * The snapshot refcount walk over entries [from, end) of the L2 slice in `area` (8-byte
   * entries, refcounts of up to 32 bits, see assembly/refcount.ts): adds `addend` to the
   * refcounts of the blocks in the slots and sets the COPIED flags, up to the first entry
   * it leaves to the caller. 16-bit refcounts take the module's loop made for them
   * (walkL2w16), the other widths the generic one.
   */
  walkL2(area: WalkArea, from: number, end: number, addend: -1 | 0 | 1, order: number, clusterBits: number, blockBits: number): WalkStop {
    const e = this.module.exports;
    const r =
      order === 4
        ? e.walkL2w16(area.l2, from, end, addend, clusterBits, blockBits, area.records, area.slots)
        : e.walkL2(area.l2, from, end, addend, order, clusterBits, blockBits, area.records, area.slots);
    if (r < 0) throw statusError(r, 'refcount walkL2');
    return { index: r, needBlock: e.walkNeededBlock(), changed: e.walkChangedFlags() !== 0 };
  }

  countUsed(block: Uint8Array, order: number, start: number, count: number): number {
    checkOrder(order);
    const r = this.module.exports.countUsed(this.place(block), order, entriesPerBlock(block.byteLength, order), start, count);
    if (r < 0) throw statusError(r, 'refcount countUsed');
    return r;
  }

  compareCounts(block: Uint8Array, order: number, start: number, end: number, counts: Float64Array, out: Uint32Array): CountsScan {
    checkCompare(block, order, start, end, counts, out);
    const n = end - start;
    if (n === 0) return { mismatches: 0, end, lastUsed: -1 };
    const e = this.module.exports;
    const bits = 2 ** order;
    const p = this.place(block, Math.floor((start * bits) / 8), Math.ceil((end * bits) / 8));
    const cp = this.countsScratch.need(n * 8);
    const cap = Math.min(out.length, 4096);
    const op = this.outScratch.need(cap * 4);
    // Views after the allocations above (an allocation may grow the memory).
    const buf = this.module.memory.buffer;
    new Float64Array(buf, cp, n).set(n === counts.length ? counts : counts.subarray(0, n));
    const k = e.compareCounts(p, order, entriesPerBlock(block.byteLength, order), start, end, cp, op, cap);
    if (k < 0) throw statusError(k, 'refcount compareCounts');
    if (k > 0) out.set(new Uint32Array(buf, op, k));
    return { mismatches: k, end: e.scanEnd(), lastUsed: e.lastUsed() };
  }
}

/** Loads the WASM refcount module. */
export async function loadRefcount(): Promise<WasmRefcount> {
  return new WasmRefcount(await loadWasm<RefcountExports>('refcount'));
}

/** Synchronous {@link loadRefcount}. */
export function loadRefcountSync(): WasmRefcount {
  return new WasmRefcount(loadWasmSync<RefcountExports>('refcount'));
}
