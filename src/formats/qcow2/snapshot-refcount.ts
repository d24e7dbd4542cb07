/**
 * The refcount walk of internal snapshots (QEMU's
 * qcow2_update_snapshot_refcount): adds 1 to, or takes 1 from, the refcount
 * of every cluster an L1 table reaches (its L2 tables, data clusters and the
 * clusters compressed data lies in), and sets each entry's COPIED flag to
 * "refcount is exactly 1", which is what lets a write change a cluster in
 * place. With 0 it only recomputes the flags.
 *
 * The active L1 table is walked from memory (snapshot goto relies on that:
 * the table on disk is already the new one when the old one is released);
 * another is read from the file and written back when a flag changed and it
 * is not being released.
 */
import { BlockError } from '../../core/errors.js';
import { ClusterType, clusterType, compressedInfo, decodeL1, encodeL1, entryOffset, readEntry } from './l2-entry.js';
import { markCorrupt } from './metadata-index.js';
import { MAX_REFTABLE_BYTES } from './constants.js';
import type { Qcow2Image } from './qcow2.js';
import { readyRefcountWasm } from './refcount-entries.js';
import { WasmSliceWalk, walkSlice } from './snapshot-walk.js';
import { cHex as hex } from '../../core/c-hex.js';

/** C's %#x. */

/** The COPIED and compressed flags in an entry's high word. */
const COPIED = 0x80000000;
const COMPRESSED = 0x40000000;

/** L2 slices the walk reads ahead of the one it works on. */
const READ_AHEAD = 8;

/**
 * Returns a function to call before each slice the walk of `offsets` visits:
 * it starts the reads of the next few slices, so that they overlap with each
 * other and with the walk instead of waiting one by one (the order of the
 * reads does not matter: nothing is written before the walk ends). Reads
 * nothing ahead for a debugging file child (its events keep QEMU's order) or
 * a cache too small to keep what it read ahead.
 */
function prefetcher(img: Qcow2Image, offsets: ArrayLike<number>, l1Size: number): () => void {
  const cache = img.l2cache;
  const ahead = Math.min(READ_AHEAD, cache.capacity - 2);
  if (ahead <= 0 || img.file.node.instance.debug) return () => undefined;
  const cs = img.clusterSize;
  const perTable = cs / img.sliceBytes;
  let i = 0;
  let slice = 0;
  /** Slices started minus slices visited. */
  let lead = 0;
  return () => {
    lead--;
    while (lead < ahead && i < l1Size) {
      const l2 = offsets[i]!;
      if (l2 === 0 || l2 % cs !== 0 || slice === perTable) {
        i++;
        slice = 0;
        continue;
      }
      // The walk's own read of the slice reports a failure.
      cache.get(l2 + slice++ * img.sliceBytes).catch(() => undefined);
      lead++;
    }
  };
}

/** Refcount blocks a snapshot operation may keep cached at once: at most 32 MiB of them. */
const ROOM_BYTES = 32 << 20;

/**
 * Runs `fn` (a snapshot create, apply or delete) with room in the refcount
 * cache for every refcount block the image has, up to {@link ROOM_BYTES}.
 * Such an operation reads every block up to the first free cluster (the
 * allocation's scan) and then every block its walks reach, in the same order
 * each time: with QEMU's default cache (four blocks for an 8 GiB image of 64
 * KiB clusters) each pass evicted the blocks the next one needed, read them
 * again into new buffers and wrote dirty ones early. Only the cache's size
 * changes: the refcounts are written, flushed, before the tables that use
 * them as before, and the file's content is the same. A debugging file child
 * keeps the configured size (its events follow QEMU's cache).
 */
export async function withRefcountRoom<T>(img: Qcow2Image, fn: () => Promise<T>): Promise<T> {
  const cache = img.refs.cache;
  const configured = cache.capacity;
  if (img.file.node.instance.debug) return fn();
  let blocks = 0;
  for (const off of img.refs.table) if (off !== 0) blocks++;
  // One more for a block the operation may create.
  cache.capacity = Math.max(configured, Math.min(blocks + 1, Math.floor(ROOM_BYTES / img.clusterSize)));
  try {
    return await fn();
  } finally {
    // Entries past the configured size leave at the cache's next load (clean ones first).
    cache.capacity = configured;
  }
}

/**
 * Walks the L1 table at `l1Offset` (`l1Size` entries) adding `addend` to the
 * refcounts it reaches; makes the changed refcounts, L2 tables and (unless
 * released) the L1 table durable before it returns. Clusters whose refcount
 * drops to 0 are forgotten by the metadata caches.
 */
export async function updateSnapshotRefcount(img: Qcow2Image, l1Offset: number, l1Size: number, addend: -1 | 0 | 1): Promise<void> {
  const cs = img.clusterSize;
  const active = l1Offset === img.header.l1TableOffset;
  let offsets = img.l1;
  let copied = img.l1Copied;
  if (!active) {
    const raw = new Uint8Array(l1Size * 8);
    if (l1Size > 0) await img.file.preadv(l1Offset, raw.length, raw);
    ({ offsets, copied } = decodeL1(raw, l1Size));
  }
  const freed: number[] = [];
  /** The cluster's refcount after adding `addend`, at once when its block is cached. */
  const changeNow = (ci: number): number | undefined => (addend === 0 ? img.refs.getNow(ci) : img.refs.updateNow(ci, addend));
  const change = async (ci: number): Promise<number> => {
    if (addend === 0) return img.refs.get(ci);
    // A reference to a cluster no refcount block covers (a damaged entry): QEMU's update_refcount
    // gets EAGAIN from the block allocation it would need and fails the walk with it.
    if (!img.refs.hasBlock(ci)) {
      // Past what any refcount table can cover, the allocation fails with EFBIG instead.
      if (Math.floor(ci / img.refs.perBlock) >= MAX_REFTABLE_BYTES / 8) throw new BlockError('EFBIG', `Cluster ${ci} is past what a refcount table can cover`);
      throw new BlockError('EAGAIN', `No refcount block for cluster ${ci}`);
    }
    const rc = await img.refs.update(ci, addend);
    if (rc === 0) freed.push(ci);
    return rc;
  };
  let l1Modified = false;
  const perSlice = img.sliceEntries;
  // Standard entries without an external data file take the fast path below.
  const plain = !img.extendedL2 && !img.hasDataFile;
  // ... and, with refcounts of up to 32 bits, the synchronous loop of snapshot-walk.ts.
  const fast = plain && img.refs.order < 6;
  const wasm = fast ? await readyRefcountWasm() : null;
  const walker = wasm ? new WasmSliceWalk(wasm, img.refs, img.sliceBytes) : null;
  const readAhead = prefetcher(img, offsets, l1Size);
  for (let i = 0; i < l1Size; i++) {
    const l2 = offsets[i]!;
    if (l2 === 0) continue;
    if (l2 % cs !== 0) throw await markCorrupt(img, `L2 table offset ${hex(l2)} unaligned (L1 index: ${hex(i)})`);
    for (let slice = 0; slice < cs / img.sliceBytes; slice++) {
      const sliceOff = l2 + slice * img.sliceBytes;
      readAhead();
      const buf = await img.l2cache.get(sliceOff);
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      const stride = img.extendedL2 ? 16 : 8;
      const state = { changed: false };
      walker?.load(buf);
      let dirty = false;
      for (let j = 0; j < perSlice; j++) {
        // Runs of common entries are done at once (snapshot-walk.ts); the entry it stops at
        // takes the way below.
        if (fast) {
          j = walker ? walker.run(buf, j, perSlice, addend, state) : walkSlice(img.refs, dv, j, perSlice, addend, state);
          if (j === perSlice) break;
        }
        const hi = dv.getUint32(j * stride);
        const lo = dv.getUint32(j * stride + 4);
        // Unallocated, without flags: nothing to count or flag (most entries of a sparse image).
        if (hi === 0 && lo === 0) continue;
        if (plain && !(hi & COMPRESSED)) {
          // The common entry (data or preallocated zeroes at `host`, or a zero cluster without
          // one), decoded without an object: a walk over every cluster of a large image.
          const host = entryOffset(hi, lo);
          let rc = 0;
          if (host !== 0) {
            if (host % cs !== 0) {
              throw await markCorrupt(img, `Cluster allocation offset ${hex(host)} unaligned (L2 offset: ${hex(l2)}, L2 index: ${hex(slice * perSlice + j)})`);
            }
            rc = changeNow(host / cs) ?? (await change(host / cs));
          }
          const flagged = (rc === 1 ? hi | COPIED : hi & ~COPIED) >>> 0;
          if (flagged !== hi) {
            dv.setUint32(j * stride, flagged);
            dirty = true;
          }
          continue;
        }
        const e = readEntry(dv, j, img.extendedL2);
        e.hi = (hi & ~COPIED) >>> 0;
        let refcount: number;
        switch (clusterType(e, img.extendedL2, img.hasDataFile)) {
          case ClusterType.COMPRESSED: {
            if (addend !== 0) {
              const c = compressedInfo(e, img.clusterBits);
              const first = Math.floor(c.offset / cs);
              const last = Math.floor(((c.offset & ~511) + c.sectors * 512 - 1) / cs);
              for (let ci = first; ci <= last; ci++) await change(ci);
            }
            // Compressed clusters are never changed in place.
            refcount = 2;
            break;
          }
          case ClusterType.NORMAL:
          case ClusterType.ZERO_ALLOC: {
            const host = entryOffset(e.hi, e.lo);
            if (host % cs !== 0) {
              throw await markCorrupt(img, `Cluster allocation offset ${hex(host)} unaligned (L2 offset: ${hex(l2)}, L2 index: ${hex(slice * perSlice + j)})`);
            }
            refcount = changeNow(host / cs) ?? (await change(host / cs));
            break;
          }
          default:
            refcount = 0;
        }
        if (refcount === 1) e.hi = (e.hi | COPIED) >>> 0;
        if (e.hi !== hi) {
          dv.setUint32(j * stride, e.hi);
          dirty = true;
        }
      }
      if (dirty || state.changed) img.l2cache.setDirty(sliceOff, buf);
    }
    const rc = await change(l2 / cs);
    const flag = rc === 1 ? 1 : 0;
    if (copied[i] !== flag) {
      copied[i] = flag;
      l1Modified = true;
    }
  }
  // Refcounts first: an L2 table or snapshot table naming a cluster must never reach the disk
  // before the reference it counts; a dropped reference only leaks.
  // The caller has drained the node: nothing changes the caches while they are written.
  await img.refs.flushCache(true);
  await img.file.flush();
  await img.l2cache.flush(true);
  await img.file.flush();
  for (const ci of freed) img.l2cache.forgetRange(ci * cs, (ci + 1) * cs);
  // What only the dropped table referenced is discarded in the file (pass-discard-snapshot), as
  // QEMU does once the walk succeeded.
  if (img.passDiscardSnapshot) await img.refs.discardFreed(freed);
  // A released table is freed next: not worth writing.
  if (addend >= 0 && l1Modified && l1Size > 0) {
    const raw = encodeL1(offsets, copied, l1Size);
    await img.file.pwritev(l1Offset, raw.length, raw);
    await img.file.flush();
  }
}
