/**
 * Named dirty bitmaps attached to a node (QEMU's BdrvDirtyBitmap).
 *
 * A bitmap records which granules of the node's guest data changed since it
 * was cleared. Enabled bitmaps are marked by the request path (request-path.ts,
 * {@link markDirty}) for every write, zero write and discard; a truncate
 * resizes them ({@link truncateBitmaps}). The bits live in a bitmap engine
 * (core/hbitmap.ts): TypeScript until src/wasm/hot-paths.ts installs the WASM
 * one ({@link setBitmapEngine}); both give the same answers.
 *
 * States, as in QEMU: enabled or disabled (a disabled bitmap ignores guest
 * writes but may still be cleared or merged into), busy (in use by an
 * operation: every user operation fails with EBUSY), readonly (cannot be
 * modified), inconsistent (a persistent bitmap found in use on open: only
 * removal is allowed) and persistent (stored in the image on close).
 */
import { BlockError } from './errors.js';
import type { BlockNode } from './node.js';
import { drained } from './drain.js';
import { DirtyBitmap, typescriptHBitmapEngine, type HBitmapEngine } from './hbitmap.js';

/** Longest bitmap name in bytes of UTF-8 (qcow2's limit, which QEMU applies). */
export const MAX_BITMAP_NAME_BYTES = 1023;
/** Smallest and largest granularity. */
export const MIN_GRANULARITY = 512;
export const MAX_GRANULARITY = 2 ** 31;

let engine: HBitmapEngine = typescriptHBitmapEngine;

/**
 * Sets the engine that new bitmaps (and the bits of clears, merges and
 * truncates) use; undefined: the TypeScript one. Only src/wasm/hot-paths.ts
 * calls this. Bitmaps made earlier keep their engine; the two mix in merges.
 */
export function setBitmapEngine(e: HBitmapEngine | undefined): void {
  engine = e ?? typescriptHBitmapEngine;
}

/** Which engine new bitmaps use. */
export function bitmapEngineState(): 'wasm' | 'typescript' {
  return engine.kind;
}

function getEngine(): HBitmapEngine {
  return engine;
}

/** Which checks an operation needs (QEMU's BDRV_BITMAP_* flags). */
export const BitmapCheck = {
  BUSY: 1,
  RO: 2,
  INCONSISTENT: 4,
  /** What every modifying operation checks. */
  DEFAULT: 7,
  /** enable / disable and merge sources: readonly bitmaps are fine. */
  ALLOW_RO: 5,
} as const;

/** An undo handle of a clear or merge, for transactions. */
export interface BitmapUndo {
  /** Puts the bits back as they were before the operation. */
  undo(): void;
  /** Drops the saved bits (the operation stays). */
  commit(): void;
}

/** One named dirty bitmap of a node. */
export class BdrvDirtyBitmap {
  /** Bits; replaced on clear-with-undo and truncate. */
  private bits: DirtyBitmap;
  disabled = false;
  busy = false;
  readonly = false;
  persistent = false;
  inconsistent = false;
  /**
   * Bumped by every change of the bits (writes marking it, clear, merge,
   * undo, truncate, loading): a format that stored the bits can tell that
   * its stored copy is still exact and keep it.
   */
  generation = 0;
  private released = false;

  constructor(
    readonly node: BlockNode,
    readonly name: string,
    readonly granularity: number,
    size: number,
  ) {
    this.bits = new DirtyBitmap(getEngine(), size, granularity);
  }

  /** Size of the covered guest data in bytes. */
  get size(): number {
    return this.bits.length;
  }

  /** Whether guest writes mark this bitmap. */
  get enabled(): boolean {
    return !this.disabled;
  }

  /** Dirty bytes (whole granules, the last one clipped at the end of the data). */
  get count(): number {
    return this.bits.dirtyBytes();
  }

  /** Fails with QEMU's message when the bitmap is in a state that `flags` rules out. */
  check(flags: number): void {
    if (flags & BitmapCheck.BUSY && this.busy) {
      throw new BlockError('EBUSY', `Bitmap '${this.name}' is currently in use by another operation and cannot be used`);
    }
    if (flags & BitmapCheck.RO && this.readonly) {
      throw new BlockError('EPERM', `Bitmap '${this.name}' is readonly and cannot be modified`);
    }
    if (flags & BitmapCheck.INCONSISTENT && this.inconsistent) {
      throw new BlockError('EINVAL', `Bitmap '${this.name}' is inconsistent and cannot be used`);
    }
  }

  /** Marks [offset, offset + bytes) dirty (whole granules). */
  setDirty(offset: number, bytes: number): void {
    this.generation++;
    this.bits.setDirty(offset, Math.min(bytes, this.size - offset));
  }

  /** Clears the granules touched by [offset, offset + bytes). */
  resetDirty(offset: number, bytes: number): void {
    this.generation++;
    this.bits.resetDirty(offset, Math.min(bytes, this.size - offset));
  }

  isDirty(offset: number): boolean {
    checkRange(this, offset, 0);
    return offset < this.size && this.bits.isDirty(offset);
  }

  /** First dirty byte offset in [offset, offset + bytes), or -1. */
  nextDirty(offset: number, bytes = this.size - offset): number {
    checkRange(this, offset, bytes);
    if (bytes === 0 || offset >= this.size) return -1;
    return this.bits.nextDirty(offset, offset + bytes);
  }

  /** First clean byte offset in [offset, offset + bytes), or -1. */
  nextClean(offset: number, bytes = this.size - offset): number {
    checkRange(this, offset, bytes);
    if (bytes === 0 || offset >= this.size) return -1;
    return this.bits.nextClean(offset, offset + bytes);
  }

  /**
   * The first dirty extent in [offset, end), at most `maxBytes` long, as
   * [offset, bytes], or undefined (QEMU's bdrv_dirty_bitmap_next_dirty_area).
   */
  nextDirtyArea(offset: number, end = this.size, maxBytes = Number.MAX_SAFE_INTEGER): [number, number] | undefined {
    checkRange(this, offset, Math.max(0, end - offset));
    if (!(maxBytes > 0)) throw new BlockError('EINVAL', `Bitmap '${this.name}': maximum extent length ${maxBytes} must be positive`);
    end = Math.min(end, this.size);
    if (offset >= end) return undefined;
    const g = this.granularity;
    const first = Math.floor(offset / g);
    const last = Math.ceil(end / g);
    const maxBits = Math.min(last - first, Math.ceil(maxBytes / g) + 1);
    const run = this.bits.bits.nextDirtyArea(first, last, maxBits);
    if (!run) return undefined;
    const a = Math.max(offset, run[0] * g);
    const b = Math.min(end, (run[0] + run[1]) * g, a + maxBytes);
    return [a, b - a];
  }

  /** Every dirty extent in [offset, end), each at most `maxBytes` long. */
  *dirtyExtents(offset = 0, end = this.size, maxBytes = Number.MAX_SAFE_INTEGER): Generator<[number, number]> {
    let pos = offset;
    for (;;) {
      const a = this.nextDirtyArea(pos, end, maxBytes);
      if (!a) return;
      yield a;
      pos = a[0] + a[1];
    }
  }

  /** The bitmap's bits in the qcow2 layout (one bit per granule). */
  serialize(startBit: number, nbits: number, out?: Uint8Array): Uint8Array {
    return this.bits.bits.serialize(startBit, nbits, out);
  }

  /** Loads bits in the qcow2 layout. */
  deserialize(startBit: number, nbits: number, data: Uint8Array): void {
    this.generation++;
    this.bits.bits.deserialize(startBit, nbits, data);
  }

  /** Number of granules (bits). */
  get nbits(): number {
    return this.bits.bits.size;
  }

  /** Whether any bit of [startBit, startBit + n) is set. */
  hasDirtyBits(startBit: number, n: number): boolean {
    return this.bits.bits.nextDirty(startBit, startBit + n) >= 0;
  }

  /** Sets every bit of [startBit, startBit + n). */
  setBits(startBit: number, n: number): void {
    this.generation++;
    this.bits.bits.set(startBit, n);
  }

  /**
   * Clears every bit. With `undoable`, the old bits are kept and the handle
   * puts them back (QEMU's clear with a backup, for transactions).
   */
  clear(undoable: true): BitmapUndo;
  clear(undoable?: false): undefined;
  clear(undoable = false): BitmapUndo | undefined {
    this.check(BitmapCheck.DEFAULT);
    this.generation++;
    if (!undoable) {
      this.bits.bits.clear();
      return undefined;
    }
    const backup = this.bits;
    this.bits = new DirtyBitmap(getEngine(), backup.length, this.granularity);
    return this.swapHandle(backup);
  }

  /**
   * ORs the sources into this bitmap (QEMU's block-dirty-bitmap-merge). The
   * sources may belong to other nodes and have another granularity but must
   * cover the same size; on error this bitmap is unchanged.
   */
  merge(sources: readonly BdrvDirtyBitmap[], undoable: true): BitmapUndo;
  merge(sources: readonly BdrvDirtyBitmap[], undoable?: false): undefined;
  merge(sources: readonly BdrvDirtyBitmap[], undoable = false): BitmapUndo | undefined {
    for (const s of sources) {
      s.check(BitmapCheck.ALLOW_RO);
      if (s.size !== this.size) {
        throw new BlockError(
          'EINVAL',
          `Bitmaps are of different sizes (destination size is ${this.size}, source size is ${s.size}) and can't be merged`,
        );
      }
    }
    this.check(BitmapCheck.DEFAULT);
    this.generation++;
    if (!undoable) {
      // Nothing can fail past the checks: merge in place, without a scratch copy (a 1 TiB
      // image's bitmap at 64 KiB granules is 2 MiB, and fresh pages cost time to touch).
      for (const s of sources) {
        if (s.granularity === this.granularity) this.bits.bits.merge(s.bits.bits);
        else for (const [o, n] of s.bits.dirtyExtents()) this.bits.setDirty(o, n);
      }
      return undefined;
    }
    // Undoable (a transaction): build the result beside the bits, which stay as the undo copy.
    const target = new DirtyBitmap(getEngine(), this.size, this.granularity);
    target.bits.merge(this.bits.bits);
    for (const s of sources) {
      if (s.granularity === this.granularity) target.bits.merge(s.bits.bits);
      else for (const [o, n] of s.bits.dirtyExtents()) target.setDirty(o, n);
    }
    const backup = this.bits;
    this.bits = target;
    return this.swapHandle(backup);
  }

  private swapHandle(backup: DirtyBitmap): BitmapUndo {
    let done = false;
    return {
      undo: () => {
        if (done) return;
        done = true;
        this.generation++;
        this.bits.destroy();
        this.bits = backup;
      },
      commit: () => {
        if (done) return;
        done = true;
        backup.destroy();
      },
    };
  }

  /** Resizes to `size` bytes: bits past the end are dropped, new granules are clean. */
  truncate(size: number): void {
    if (size === this.size) return;
    this.generation++;
    const old = this.bits;
    const next = new DirtyBitmap(getEngine(), size, this.granularity);
    const keep = Math.min(old.bits.size, next.bits.size);
    // Chunks of 2^24 bits (2 MiB of scratch) keep the copy's buffer bounded.
    const chunk = 2 ** 24;
    for (let b = 0; b < keep; b += chunk) {
      const n = Math.min(chunk, keep - b);
      next.bits.deserialize(b, n, old.bits.serialize(b, n));
    }
    this.bits = next;
    old.destroy();
  }

  /** Frees the bits (after removal from the node). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.bits.destroy();
  }
}

function checkRange(bm: BdrvDirtyBitmap, offset: number, bytes: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0 || offset + bytes > bm.size) {
    throw new BlockError('EINVAL', `Bitmap '${bm.name}': range ${offset}+${bytes} is outside its ${bm.size} bytes`);
  }
}

/** Options of {@link addDirtyBitmap}. */
export interface AddBitmapOptions {
  /** Bytes per bit; default: the node's cluster size clamped to 4 KiB..64 KiB, or 64 KiB. */
  granularity?: number;
  disabled?: boolean;
  persistent?: boolean;
}

/** QEMU's default granularity: the cluster size, clamped to [4 KiB, 64 KiB]. */
export function defaultGranularity(node: BlockNode): number {
  const cs = node.instance?.getInfo?.()?.clusterSize;
  if (!cs || cs <= 0) return 65536;
  return Math.min(65536, Math.max(4096, cs));
}

/** Checks a bitmap name (non-empty, at most 1023 bytes of UTF-8). */
export function checkBitmapName(name: string): void {
  if (typeof name !== 'string' || name === '') throw new BlockError('EINVAL', 'Bitmap name cannot be empty');
  if (new TextEncoder().encode(name).length > MAX_BITMAP_NAME_BYTES) {
    throw new BlockError('EINVAL', `Bitmap name '${name.slice(0, 64)}...' is too long (more than ${MAX_BITMAP_NAME_BYTES} bytes)`);
  }
}

/** Checks a granularity (power of two, 512 B..2 GiB). */
export function checkGranularity(g: number): void {
  if (!Number.isSafeInteger(g) || g < MIN_GRANULARITY || g > MAX_GRANULARITY || (g & (g - 1)) !== 0) {
    // 2^31 fails the bit test above as a negative int32: test it apart.
    if (g !== MAX_GRANULARITY) throw new BlockError('EINVAL', 'Granularity must be power of 2 and at least 512');
  }
}

/** The node's bitmap called `name`, or undefined. */
export function findDirtyBitmap(node: BlockNode, name: string): BdrvDirtyBitmap | undefined {
  return node.dirtyBitmaps.find((b) => b.name === name);
}

/** The node's bitmap called `name`; ENOENT "Dirty bitmap 'NAME' not found" if none. */
export function lookupDirtyBitmap(node: BlockNode, name: string): BdrvDirtyBitmap {
  const b = findDirtyBitmap(node, name);
  if (!b) throw new BlockError('ENOENT', `Dirty bitmap '${name}' not found`, { node: node.nodeName });
  return b;
}

/**
 * Throws unless the node's format could store a new persistent bitmap
 * (QEMU's bdrv_can_store_new_dirty_bitmap): a format without the hook
 * cannot. A read-only node passes, as in QEMU: the bitmap is then lost when
 * the node closes, with a warning (see {@link checkWritableForPersistent}).
 */
export function checkCanStoreNewBitmap(node: BlockNode, name: string, granularity: number): void {
  const inst = node.instance;
  if (!inst?.canStoreNewDirtyBitmap) {
    throw new BlockError('ENOTSUP', `Can't store persistent bitmaps to ${node.nodeName}: Operation not supported`, { node: node.nodeName });
  }
  inst.canStoreNewDirtyBitmap(name, granularity);
}

/**
 * Refuses a new persistent bitmap on a read-only node. Not QEMU's rule (QEMU
 * accepts it and loses it at close): the page's API applies it so that a
 * bitmap the user asked to keep is not dropped silently.
 */
export function checkWritableForPersistent(node: BlockNode, name: string): void {
  if (node.readOnly) {
    throw new BlockError('EPERM', `Can't make bitmap '${name}' persistent in '${node.nodeName}': the image is open read-only`, { node: node.nodeName });
  }
}

/** Adds a bitmap covering the node's current length (QEMU's block-dirty-bitmap-add). */
export function addDirtyBitmap(node: BlockNode, name: string, opts: AddBitmapOptions = {}): BdrvDirtyBitmap {
  checkBitmapName(name);
  const g = opts.granularity ?? defaultGranularity(node);
  checkGranularity(g);
  if (findDirtyBitmap(node, name)) throw new BlockError('EEXIST', `Bitmap already exists: ${name}`, { node: node.nodeName });
  if (opts.persistent) checkCanStoreNewBitmap(node, name, g);
  const bm = new BdrvDirtyBitmap(node, name, g, node.totalBytes);
  bm.disabled = opts.disabled ?? false;
  bm.persistent = opts.persistent ?? false;
  node.dirtyBitmaps.push(bm);
  return bm;
}

/** Removes a bitmap from its node (QEMU's block-dirty-bitmap-remove; persistent storage is the format's business). */
export function removeDirtyBitmap(node: BlockNode, name: string): BdrvDirtyBitmap {
  const bm = lookupDirtyBitmap(node, name);
  bm.check(BitmapCheck.BUSY | BitmapCheck.RO);
  node.dirtyBitmaps.splice(node.dirtyBitmaps.indexOf(bm), 1);
  bm.release();
  return bm;
}

/**
 * QEMU's block-dirty-bitmap-remove: a persistent bitmap leaves the image
 * first (the format's removePersistentDirtyBitmap), then the node; on a
 * failure the bitmap stays.
 */
export async function removeDirtyBitmapWithStorage(node: BlockNode, name: string): Promise<void> {
  const bm = lookupDirtyBitmap(node, name);
  bm.check(BitmapCheck.BUSY | BitmapCheck.RO);
  if (bm.persistent) await node.instance?.removePersistentDirtyBitmap?.(name);
  removeDirtyBitmap(node, name);
}

/**
 * Stores the node's persistent bitmaps in the image now, with the node
 * drained (every finished write has marked them); they stay valid in the
 * image until the next write (the format's checkpointPersistentBitmaps).
 * ENOTSUP for a format that stores no bitmaps.
 */
export async function checkpointDirtyBitmaps(node: BlockNode): Promise<void> {
  const inst = node.instance;
  if (!inst?.checkpointPersistentBitmaps) {
    throw new BlockError('ENOTSUP', `Can't store persistent bitmaps to ${node.nodeName}: Operation not supported`, { node: node.nodeName });
  }
  await drained(node, () => inst.checkpointPersistentBitmaps!());
}

/** Enables a bitmap (guest writes mark it). */
export function enableDirtyBitmap(node: BlockNode, name: string): void {
  const bm = lookupDirtyBitmap(node, name);
  bm.check(BitmapCheck.ALLOW_RO);
  bm.disabled = false;
}

/** Disables a bitmap (guest writes no longer mark it). */
export function disableDirtyBitmap(node: BlockNode, name: string): void {
  const bm = lookupDirtyBitmap(node, name);
  bm.check(BitmapCheck.ALLOW_RO);
  bm.disabled = true;
}

/** Clears a bitmap by name. */
export function clearDirtyBitmap(node: BlockNode, name: string): void {
  lookupDirtyBitmap(node, name).clear();
}

/**
 * The request path's one marking point: every enabled bitmap of the node
 * gets [offset, offset + bytes) dirty (called once a write, zero write or
 * discard has been issued, also when it failed, as QEMU does: a failed write
 * may have changed part of the range).
 */
export function markDirty(node: BlockNode, offset: number, bytes: number): void {
  const list = node.dirtyBitmaps;
  if (list.length === 0 || bytes <= 0) return;
  for (const bm of list) {
    if (bm.disabled || offset >= bm.size) continue;
    bm.setDirty(offset, bytes);
  }
}

/** Resizes every bitmap of the node to its new length (after a truncate). */
export function truncateBitmaps(node: BlockNode, size: number): void {
  for (const bm of node.dirtyBitmaps) bm.truncate(size);
}

/** Releases every bitmap of the node (on close; persistent ones were stored by the format). */
export function releaseDirtyBitmaps(node: BlockNode): void {
  for (const bm of node.dirtyBitmaps.splice(0)) bm.release();
}
