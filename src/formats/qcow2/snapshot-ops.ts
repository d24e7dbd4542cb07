/**
 * Internal snapshots of a qcow2 image: create, goto (apply) and delete, as
 * QEMU's block/qcow2-snapshot.c orders their writes, so that a power cut at
 * any point leaves an image whose only damage is leaked clusters:
 *
 * - create: copy the active L1 table to new clusters, take a reference on
 *   everything it reaches (durable), then write a new snapshot table and point
 *   the header at it.
 * - goto: take references for the snapshot's tables (durable), overwrite the
 *   active L1 table with the snapshot's, then drop the old table's references.
 * - delete: write the table without the entry first, then drop its references
 *   and free its L1 table.
 *
 * The caller (src/core/snapshot.ts) has drained the node.
 */
import { BlockError } from '../../core/errors.js';
import type { SnapshotInfo } from '../../core/driver.js';
import { MAX_SNAPSHOTS } from './constants.js';
import { flushAll, growL1 } from './cow.js';
import { decodeL1, encodeL1 } from './l2-entry.js';
import { overlapCheck, registerMetadata } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';
import { resizeImage } from './resize.js';
import { validateSnapshotL1, type Qcow2Snapshot } from './snapshot.js';
import { writeSnapshotTable } from './snapshot-write.js';
import { updateSnapshotRefcount, withRefcountRoom } from './snapshot-refcount.js';
import { readGuest } from './read.js';
import { discardVmState, vmStateRequest } from './vmstate.js';

/** Index of the snapshot with this id and/or name (both must match when both are given), or -1. */
export function findSnapshot(img: Qcow2Image, id: string | undefined, name: string | undefined): number {
  return img.snapshots.findIndex((s) => (id === undefined || s.id === id) && (name === undefined || s.name === name) && (id !== undefined || name !== undefined));
}

/** By id first, then by name (QEMU's find_snapshot_by_id_or_name). */
function findByIdOrName(img: Qcow2Image, idOrName: string): number {
  const byId = findSnapshot(img, idOrName, undefined);
  return byId >= 0 ? byId : findSnapshot(img, undefined, idOrName);
}

function refuseDataFile(img: Qcow2Image): void {
  // The snapshot's data would be the data file's current content.
  if (img.hasDataFile) throw new BlockError('ENOTSUP', 'Internal snapshots are not supported with an external data file', { node: img.node.nodeName });
}

/** Writes the L1 entries in memory (offsets and COPIED flags) at `offset`. */
async function writeL1Copy(img: Qcow2Image, offset: number): Promise<void> {
  const raw = encodeL1(img.l1, img.l1Copied, img.l1.length);
  if (raw.length > 0) await img.file.pwritev(offset, raw.length, raw);
}

/** QEMU's qcow2_free_clusters of [offset, offset + bytes) (reported, never thrown), and the caches forget what was freed. */
async function freeNow(img: Qcow2Image, offset: number, bytes: number): Promise<void> {
  const cs = img.clusterSize;
  for (const c of await img.refs.freeClusters(offset, bytes, img.passDiscardSnapshot)) img.l2cache.forgetRange(c * cs, (c + 1) * cs);
}

/** Makes `snapshots` the image's table (snapshot-write.ts); the list in memory stays the old one on failure. */
async function replaceTable(img: Qcow2Image, snapshots: Qcow2Snapshot[]): Promise<void> {
  const old = img.snapshots;
  img.snapshots = snapshots;
  try {
    // The caller has drained the node.
    await writeSnapshotTable(img, false, true);
  } catch (e) {
    img.snapshots = old;
    throw e;
  }
}

/** Forgets what was derived from the active tables (fast-path memo, allocation guesses). */
function activeTablesChanged(img: Qcow2Image): void {
  img.sliceMemo.lo = 0;
  img.sliceMemo.hi = 0;
  img.lastCompressed = null;
  img.metadataPreallocation = undefined;
  registerMetadata(img);
}

/** QEMU's qcow2_snapshot_create: `info.id` is ignored (the next free number is used). */
export async function createSnapshot(img: Qcow2Image, info: SnapshotInfo): Promise<void> {
  return withRefcountRoom(img, () => createSnapshotNow(img, info));
}

async function createSnapshotNow(img: Qcow2Image, info: SnapshotInfo): Promise<void> {
  if (!Number.isSafeInteger(info.vmStateSize) || info.vmStateSize < 0) {
    throw new BlockError('EINVAL', `VM state size must be a non-negative integer, got ${info.vmStateSize}`);
  }
  if (img.snapshots.length >= MAX_SNAPSHOTS) throw new BlockError('EFBIG', `Too many snapshots (${img.snapshots.length})`);
  refuseDataFile(img);
  img.checkUsable();
  await flushAll(img, true);
  let maxId = 0;
  // As strtoul: the leading digits of each id.
  for (const s of img.snapshots) maxId = Math.max(maxId, Number(/^\s*\+?(\d*)/.exec(s.id)![1] || 0));
  const id = String(maxId + 1);
  const l1Bytes = img.l1.length * 8;
  const l1Offset = l1Bytes > 0 ? await img.refs.alloc(Math.ceil(l1Bytes / img.clusterSize)) : 0;
  // A failure from here on leaks the copy, as in QEMU (check -r leaks takes it back).
  if (l1Bytes > 0) {
    await overlapCheck(img, l1Offset, l1Bytes);
    await writeL1Copy(img, l1Offset);
  }
  await updateSnapshotRefcount(img, img.header.l1TableOffset, img.l1.length, 1);
  const sn: Qcow2Snapshot = {
    id,
    name: info.name,
    vmStateSize: info.vmStateSize,
    dateSec: info.dateSec,
    dateNsec: info.dateNsec,
    vmClockNsec: info.vmClockNsec,
    icount: info.icount ?? 0,
    diskSize: img.header.size,
    l1TableOffset: l1Offset,
    l1Size: img.l1.length,
    extraDataSize: 24,
  };
  await replaceTable(img, [...img.snapshots, sn]);
  activeTablesChanged(img);
  // The snapshot holds the VM state now; the active table lets go of it. As in QEMU a
  // failure here is ignored: the snapshot is whole, the area only stays allocated.
  await discardVmState(img, sn.vmStateSize).catch(() => undefined);
}

/** QEMU's qcow2_snapshot_goto: the image becomes what snapshot `idOrName` holds. */
export async function gotoSnapshot(img: Qcow2Image, idOrName: string): Promise<void> {
  return withRefcountRoom(img, () => gotoSnapshotNow(img, idOrName));
}

async function gotoSnapshotNow(img: Qcow2Image, idOrName: string): Promise<void> {
  refuseDataFile(img);
  const index = findByIdOrName(img, idOrName);
  if (index < 0) throw new BlockError('ENOENT', 'No such file or directory', {}, { detail: `snapshot '${idOrName}'` });
  img.checkUsable();
  const sn = img.snapshots[index]!;
  validateSnapshotL1(sn, img.clusterSize);
  await flushAll(img, true);
  const size = sn.diskSize ?? img.header.size;
  if (size !== img.header.size) await resizeImage(img, size, 'off');
  await growL1(img, sn.l1Size);
  const bytes = img.l1.length * 8;
  const table = new Uint8Array(bytes);
  if (sn.l1Size > 0) await img.file.preadv(sn.l1TableOffset, sn.l1Size * 8, table.subarray(0, sn.l1Size * 8));
  await updateSnapshotRefcount(img, sn.l1TableOffset, sn.l1Size, 1);
  try {
    if (bytes > 0) {
      await img.file.pwritev(img.header.l1TableOffset, bytes, table);
      await img.file.flush();
    }
    // The table in memory is still the old one: its references are dropped now.
    await updateSnapshotRefcount(img, img.header.l1TableOffset, img.l1.length, -1);
  } finally {
    // In step with the disk even when dropping the references failed.
    decodeL1(table, img.l1.length, img.l1, img.l1Copied);
    activeTablesChanged(img);
  }
  // The old table's references are gone: refcounts of 1 make clusters writable in place again.
  await updateSnapshotRefcount(img, img.header.l1TableOffset, img.l1.length, 0);
}

/** QEMU's qcow2_snapshot_delete of the snapshot with this id and/or name. */
export async function deleteSnapshot(img: Qcow2Image, id: string | undefined, name: string | undefined): Promise<void> {
  return withRefcountRoom(img, () => deleteSnapshotNow(img, id, name));
}

async function deleteSnapshotNow(img: Qcow2Image, id: string | undefined, name: string | undefined): Promise<void> {
  refuseDataFile(img);
  const index = findSnapshot(img, id, name);
  if (index < 0) throw new BlockError('ENOENT', "Can't find the snapshot");
  img.checkUsable();
  const sn = img.snapshots[index]!;
  validateSnapshotL1(sn, img.clusterSize);
  await flushAll(img, true);
  const rest = img.snapshots.filter((_, i) => i !== index);
  try {
    await replaceTable(img, rest);
  } catch (e) {
    const err = e instanceof BlockError ? e : new BlockError('EIO', String(e));
    throw new BlockError(err.code, `Failed to remove snapshot from snapshot list: ${err.message}`);
  }
  // From here on a failure only leaks clusters.
  try {
    await updateSnapshotRefcount(img, sn.l1TableOffset, sn.l1Size, -1);
  } catch (e) {
    const err = e instanceof BlockError ? e : new BlockError('EIO', String(e));
    throw new BlockError(err.code, `Failed to free the cluster and L1 table: ${err.message}`);
  }
  await freeNow(img, sn.l1TableOffset, sn.l1Size * 8);
  await img.refs.flushCache(true);
  await img.file.flush();
  try {
    await updateSnapshotRefcount(img, img.header.l1TableOffset, img.l1.length, 0);
  } catch (e) {
    const err = e instanceof BlockError ? e : new BlockError('EIO', String(e));
    throw new BlockError(err.code, `Failed to update snapshot status in disk: ${err.message}`);
  }
  activeTablesChanged(img);
}

/**
 * QEMU's qcow2_snapshot_load_tmp: a read-only image reads snapshot `id` / `name`
 * (both must match when both are given) from now on, through the snapshot's L1
 * table loaded in place of the active one; nothing is written. The size stays
 * the image's.
 */
export async function loadSnapshotTmp(img: Qcow2Image, id: string | undefined, name: string | undefined): Promise<void> {
  const index = findSnapshot(img, id, name);
  if (index < 0) throw new BlockError('ENOENT', "Can't find snapshot");
  const sn = img.snapshots[index]!;
  const { l1, copied } = await readSnapshotL1(img, sn);
  img.l1 = l1;
  img.l1Copied = copied;
  img.header.l1Size = sn.l1Size;
  img.header.l1TableOffset = sn.l1TableOffset;
  activeTablesChanged(img);
}

/** The L1 table of snapshot `sn` as the image keeps it in memory (offsets, COPIED flags), once its place and size are checked. */
async function readSnapshotL1(img: Qcow2Image, sn: Qcow2Snapshot): Promise<{ l1: Float64Array<ArrayBuffer>; copied: Uint8Array<ArrayBuffer> }> {
  validateSnapshotL1(sn, img.clusterSize);
  const raw = new Uint8Array(sn.l1Size * 8);
  try {
    if (raw.length > 0) await img.file.preadv(sn.l1TableOffset, raw.length, raw);
  } catch (e) {
    const err = e instanceof BlockError ? e : new BlockError('EIO', String(e));
    throw new BlockError(err.code, 'Failed to read l1 table for snapshot');
  }
  const { offsets: l1, copied } = decodeL1(raw, sn.l1Size);
  return { l1, copied };
}

/**
 * Reads VM state position `pos` of snapshot `id` into `buf` without applying
 * the snapshot (QEMU has no such call: its loadvm applies first). The lookup
 * runs on the snapshot's L1 table put in place of the active one for the
 * read, and the area is where it was when the snapshot was taken (after its
 * disk size). The caller holds the image lock with the node drained, so no
 * guest request sees the swap.
 */
export async function loadSnapshotVmState(img: Qcow2Image, id: string, pos: number, buf: Uint8Array): Promise<void> {
  const index = findSnapshot(img, id, undefined);
  if (index < 0) throw new BlockError('ENOENT', `No snapshot with id '${id}'`);
  const sn = img.snapshots[index]!;
  const off = vmStateRequest(img, pos, buf.length, sn.diskSize ?? img.header.size);
  if (buf.length === 0) return;
  const { l1, copied } = await readSnapshotL1(img, sn);
  const active = { l1: img.l1, copied: img.l1Copied };
  img.l1 = l1;
  img.l1Copied = copied;
  activeTablesChanged(img);
  try {
    await readGuest(img, off, buf.length, buf);
  } finally {
    img.l1 = active.l1;
    img.l1Copied = active.copied;
    activeTablesChanged(img);
  }
}
