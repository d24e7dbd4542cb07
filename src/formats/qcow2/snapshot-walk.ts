/**
 * The synchronous inner loop of the snapshot refcount walk
 * (snapshot-refcount.ts): over the standard entries of one L2 slice, adds
 * `addend` to the refcount of each cluster an entry points to and sets the
 * entry's COPIED flag to "refcount is exactly 1", without a promise or a
 * cache lookup per entry. Two implementations with the same results: in
 * WASM ({@link WasmSliceWalk}: a process walks once, far too briefly for the
 * JIT to optimise a TypeScript loop, where WASM runs at full speed from its
 * first call), and in TypeScript ({@link walkSlice}) where WASM cannot load.
 *
 * Both stop at the first entry they cannot finish at once (compressed, an
 * unaligned offset, a refcount block that is not cached or does not exist, a
 * refcount that would reach 0 or overflow), unchanged, and return its index:
 * the caller handles that entry the slow way, then calls again after it. An
 * await in between may drop cached blocks, so nothing is kept across calls:
 * every change is in the cache's buffers (marked dirty) when a call returns.
 */
import type { WalkArea, WasmRefcount } from '../../wasm/refcount.js';
import type { Refcounts } from './refcount.js';
import { getRefcount, setRefcount } from './refcount-entries.js';

/** The COPIED and compressed flags in an entry's high word. */
const COPIED = 0x80000000;
const COMPRESSED = 0x40000000;

/** What a run of {@link walkSlice} changed. */
export interface SliceWalkState {
  /** Whether a COPIED flag of the slice changed (it must be written back). */
  changed: boolean;
}

/**
 * Walks entries [from, end) of the L2 slice `dv` (8-byte entries, no external
 * data file; refcounts of up to 32 bits) and returns the index of the first
 * entry left for the slow path (`end` when all were done).
 */
export function walkSlice(refs: Refcounts, dv: DataView, from: number, end: number, addend: -1 | 0 | 1, state: SliceWalkState): number {
  const cs = refs.clusterSize;
  const alignMask = cs - 1;
  /** Clusters per 4 GiB: the weight of the entry's high offset bits. */
  const perHi = 4294967296 / cs;
  const per = refs.perBlock;
  const order = refs.order;
  const max = refs.maxCount;
  const table = refs.table;
  const cache = refs.cache;
  let rb = -1;
  let block: Uint8Array | null = null;
  let blockOff = 0;
  let marked = false;
  let changed = false;
  let j = from;
  for (; j < end; j++) {
    const hi = dv.getUint32(j * 8);
    const lo = dv.getUint32(j * 8 + 4);
    // Unallocated, without flags: nothing to count or flag (most entries of a sparse image).
    if ((hi | lo) === 0) continue;
    if (hi & COMPRESSED) break;
    const hiOff = hi & 0x00ffffff;
    const loOff = (lo & 0xfffffe00) >>> 0;
    let rc = 0;
    if (hiOff !== 0 || loOff !== 0) {
      if ((loOff & alignMask) !== 0) break;
      const ci = hiOff * perHi + loOff / cs;
      const b = Math.floor(ci / per);
      if (b !== rb) {
        const off = b < table.length ? table[b]! : 0;
        if (off === 0) {
          // No block: a refcount of 0 to read, nothing to change.
          if (addend !== 0) break;
          block = null;
        } else {
          if (off % cs !== 0) break;
          const cached = cache.peek(off);
          if (cached === undefined) break;
          block = cached;
        }
        rb = b;
        blockOff = off;
        marked = false;
      }
      if (block !== null) {
        const idx = ci - b * per;
        const old = order === 4 ? (block[idx * 2]! << 8) | block[idx * 2 + 1]! : getRefcount(block, idx, order);
        if (addend === 0) {
          rc = old;
        } else {
          rc = old + addend;
          if (rc <= 0 || rc > max) break;
          if (order === 4) {
            block[idx * 2] = rc >>> 8;
            block[idx * 2 + 1] = rc & 0xff;
          } else {
            setRefcount(block, idx, order, rc);
          }
          if (!marked) {
            cache.setDirty(blockOff, block);
            marked = true;
          }
        }
      }
    }
    const flagged = (rc === 1 ? hi | COPIED : hi & ~COPIED) >>> 0;
    if (flagged !== hi) {
      dv.setUint32(j * 8, flagged);
      changed = true;
    }
  }
  if (changed) state.changed = true;
  return j;
}

/** Refcount blocks the WASM walk holds at once: enough for a few interleaved areas of the image, at most 4 MiB. */
function slotCount(blockBytes: number): number {
  return Math.max(2, Math.min(8, Math.floor((4 << 20) / blockBytes)));
}

/**
 * The walker whose slice the module memory holds now. The memory is one per
 * module: another image's walk may run while this one waits for a read.
 */
const holder = new WeakMap<WasmRefcount, WasmSliceWalk>();

/**
 * The walk of one L2 slice in WASM: the slice is copied into module memory once
 * ({@link load}, again if another walk used the memory meanwhile); each
 * {@link run} copies the cached refcount blocks it meets into slots, walks,
 * and copies what changed back (blocks and entries) before it returns, so the
 * cache's buffers are always whole between runs.
 */
export class WasmSliceWalk {
  private readonly area: WalkArea;
  private readonly blockBits: number;
  /** The cache's buffer (and its offset) of the block each slot holds; null: empty. */
  private readonly held: ({ buf: Uint8Array; off: number } | null)[];
  /** The slot the next fill replaces when none is empty. */
  private victim = 0;

  constructor(
    private readonly w: WasmRefcount,
    private readonly refs: Refcounts,
    private readonly sliceBytes: number,
  ) {
    this.area = w.walkArea(sliceBytes, refs.clusterSize, slotCount(refs.clusterSize));
    this.blockBits = Math.log2(refs.perBlock);
    this.held = new Array<null>(this.area.slots).fill(null);
  }

  /** Copies the slice to walk into module memory. */
  load(slice: Uint8Array): void {
    this.w.module.u8.set(slice.subarray(0, this.sliceBytes), this.area.l2);
    holder.set(this.w, this);
  }

  /**
   * Walks entries [from, end) of the slice {@link load}ed (`slice` is the cache's
   * buffer of it) and returns the first entry left for the slow path (`end`
   * when all were done); `state.changed` is set when a COPIED flag changed.
   */
  run(slice: Uint8Array, from: number, end: number, addend: -1 | 0 | 1, state: SliceWalkState): number {
    const refs = this.refs;
    if (holder.get(this.w) !== this) this.load(slice);
    let j = from;
    let changed = false;
    // A layout that jumps between more blocks than the slots hold would copy blocks in and
    // out at every entry: past this many fills, the rest of the slice is left to TypeScript.
    let fills = 2 * this.area.slots;
    for (;;) {
      const r = this.w.walkL2(this.area, j, end, addend, refs.order, refs.clusterBits, this.blockBits);
      changed ||= r.changed;
      j = r.index;
      if (j >= end || r.needBlock < 0 || fills-- === 0 || !this.fill(r.needBlock)) break;
    }
    this.release();
    if (changed) {
      slice.set(this.w.module.u8.subarray(this.area.l2 + from * 8, this.area.l2 + j * 8), from * 8);
      state.changed = true;
    }
    if (j < end && fills < 0) return walkSlice(refs, new DataView(slice.buffer, slice.byteOffset, slice.byteLength), j, end, addend, state);
    return j;
  }

  /** Puts cached refcount block `rb` into a slot; false when it is not cached (or has no valid place). */
  private fill(rb: number): boolean {
    const refs = this.refs;
    const off = rb < refs.table.length ? refs.table[rb]! : 0;
    if (off === 0 || off % refs.clusterSize !== 0) return false;
    const buf = refs.cache.peek(off);
    if (buf === undefined) return false;
    let slot = this.held.indexOf(null);
    if (slot < 0) {
      slot = this.victim;
      this.victim = (this.victim + 1) % this.held.length;
      this.writeBack(slot);
    }
    this.w.module.u8.set(buf, this.area.blocks + slot * this.area.blockBytes);
    this.w.setSlot(this.area, slot, rb);
    this.held[slot] = { buf, off };
    return true;
  }

  /** Empties slot `i`, its block copied back to the cache (marked dirty) when the walk changed it. */
  private writeBack(i: number): void {
    const h = this.held[i];
    if (!h) return;
    if (this.w.slotWritten(this.area, i)) {
      const at = this.area.blocks + i * this.area.blockBytes;
      h.buf.set(this.w.module.u8.subarray(at, at + this.refs.clusterSize));
      this.refs.cache.setDirty(h.off, h.buf);
    }
    this.w.setSlot(this.area, i, -1);
    this.held[i] = null;
  }

  /** Empties every slot. */
  private release(): void {
    for (let i = 0; i < this.held.length; i++) this.writeBack(i);
  }
}
