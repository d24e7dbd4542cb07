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

/** The operations both implementations provide, on a block given as bytes. */
export interface RefcountOps {
  get(block: Uint8Array, order: number, index: number): number;
  set(block: Uint8Array, order: number, index: number, value: number): void;
  findFree(block: Uint8Array, order: number, start: number, n: number): FreeRun;
  addRange(block: Uint8Array, order: number, start: number, count: number, delta: number): void;
  countUsed(block: Uint8Array, order: number, start: number, count: number): number;
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
};

interface RefcountExports extends WasmBaseExports {
  get(ptr: number, order: number, index: number): number;
  getU64(ptr: number, order: number, index: number): bigint;
  set(ptr: number, order: number, index: number, value: number): number;
  setU64(ptr: number, order: number, index: number, value: bigint): number;
  findFree(ptr: number, order: number, nEntries: number, start: number, n: number): number;
  foundLength(): number;
  addRange(ptr: number, order: number, nEntries: number, start: number, count: number, delta: number): number;
  countUsed(ptr: number, order: number, nEntries: number, start: number, count: number): number;
  errorIndex(): number;
}

/** The WASM refcount module. Blocks outside module memory are copied in (and back after writes). */
export class WasmRefcount implements RefcountOps {
  readonly module: WasmModule<RefcountExports>;
  private scratchPtr = 0;
  private scratchSize = 0;

  constructor(module: WasmModule<RefcountExports>) {
    this.module = module;
  }

  /** A refcount block buffer in module memory (never freed; re-view it after later allocations). */
  allocBlock(bytes: number): number {
    return this.module.alloc(bytes);
  }

  /** View of `bytes` bytes at `ptr` in module memory. */
  view(ptr: number, bytes: number): Uint8Array {
    return this.module.bytes(ptr, bytes);
  }

  private place(block: Uint8Array): number {
    if (block.buffer === this.module.memory.buffer) return block.byteOffset;
    if (block.byteLength > this.scratchSize) {
      this.scratchPtr = this.module.alloc(block.byteLength);
      this.scratchSize = block.byteLength;
    }
    this.module.u8.set(block, this.scratchPtr);
    return this.scratchPtr;
  }

  private writeBack(block: Uint8Array, ptr: number): void {
    if (block.buffer !== this.module.memory.buffer) block.set(this.module.bytes(ptr, block.byteLength));
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

  findFree(block: Uint8Array, order: number, start: number, n: number): FreeRun {
    checkOrder(order);
    const e = this.module.exports;
    const r = e.findFree(this.place(block), order, entriesPerBlock(block.byteLength, order), start, n);
    if (r < 0) throw statusError(r, 'refcount findFree');
    return { index: r, length: e.foundLength() };
  }

  addRange(block: Uint8Array, order: number, start: number, count: number, delta: number): void {
    checkOrder(order);
    const p = this.place(block);
    const e = this.module.exports;
    const total = entriesPerBlock(block.byteLength, order);
    const r = e.addRange(p, order, total, start, count, delta);
    if (r === WasmStatus.RANGE) {
      const i = e.errorIndex();
      throw rangeError(i, delta < 0 ? 'underflow' : 'overflow');
    }
    if (r < 0) throw new BlockError('EINVAL', `refcount addRange: bad range ${start}+${count} of ${total} entries`);
    this.writeBack(block, p);
  }

  countUsed(block: Uint8Array, order: number, start: number, count: number): number {
    checkOrder(order);
    const r = this.module.exports.countUsed(this.place(block), order, entriesPerBlock(block.byteLength, order), start, count);
    if (r < 0) throw statusError(r, 'refcount countUsed');
    return r;
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
