/**
 * Writing the internal snapshot table, as QEMU's qcow2_write_snapshots: the
 * whole table goes to newly allocated clusters, the header is pointed at it,
 * and the old table's clusters are freed. Snapshot create and delete
 * (snapshot-ops.ts) write their tables with it, and check repairs one (v3
 * entries without the large VM state and disk sizes get them).
 */
import { BlockError } from '../../core/errors.js';
import { HDR, MAX_SNAPSHOTS_BYTES, SNAP } from './constants.js';
import { markCorrupt } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';
import type { Qcow2Snapshot } from './snapshot.js';

/** Extra data QEMU writes in every entry: large VM state size, disk size, icount. */
const EXTRA = 24;

/** One entry's bytes (id and name as UTF-8). */
function serializeEntry(img: Qcow2Image, s: Qcow2Snapshot): Uint8Array {
  const id = new TextEncoder().encode(s.id);
  const name = new TextEncoder().encode(s.name);
  const extraLen = Math.max(EXTRA, s.extraDataSize);
  const out = new Uint8Array(SNAP.FIXED + extraLen + id.length + name.length);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(SNAP.L1_TABLE_OFFSET, BigInt(s.l1TableOffset));
  dv.setUint32(SNAP.L1_SIZE, s.l1Size);
  dv.setUint16(SNAP.ID_STR_SIZE, id.length);
  dv.setUint16(SNAP.NAME_SIZE, name.length);
  dv.setUint32(SNAP.DATE_SEC, s.dateSec);
  dv.setUint32(SNAP.DATE_NSEC, s.dateNsec);
  dv.setBigUint64(SNAP.VM_CLOCK_NSEC, BigInt(s.vmClockNsec));
  // A VM state too large for 32 bits: older readers see a disk-only snapshot.
  if (s.vmStateSize <= 0xffffffff) dv.setUint32(SNAP.VM_STATE_SIZE, s.vmStateSize);
  dv.setUint32(SNAP.EXTRA_DATA_SIZE, extraLen);
  const x = SNAP.FIXED;
  dv.setBigUint64(x + SNAP.EXTRA_VM_STATE_SIZE_LARGE, BigInt(s.vmStateSize));
  // Entries without a disk size take the image's (QEMU fills it in when reading).
  dv.setBigUint64(x + SNAP.EXTRA_DISK_SIZE, BigInt(s.diskSize ?? img.header.size));
  dv.setBigInt64(x + SNAP.EXTRA_ICOUNT, BigInt(s.icount ?? -1));
  if (s.unknownExtra) out.set(s.unknownExtra.subarray(0, extraLen - EXTRA), x + EXTRA);
  out.set(id, x + extraLen);
  out.set(name, x + extraLen + id.length);
  return out;
}

/**
 * Writes `img.snapshots` as a new table and frees the old one. Throws EFBIG
 * when the table would pass QEMU's limit, EIO (image marked corrupt) when the
 * new clusters overlap other metadata (`quiet`: the caller reports the
 * corruption event, see markCorrupt). `stable`: the node is drained and only
 * the caller works on the image (MetaCache.flush).
 */
export async function writeSnapshotTable(img: Qcow2Image, quiet = false, stable = false): Promise<void> {
  const entries = img.snapshots.map((s) => serializeEntry(img, s));
  let size = 0;
  for (const e of entries) {
    size = Math.ceil(size / 8) * 8 + e.length;
    if (size > MAX_SNAPSHOTS_BYTES) throw new BlockError('EFBIG', 'Snapshot table is too big', {}, { detail: `${size} bytes` });
  }
  const cs = img.clusterSize;
  const off = size > 0 ? await img.refs.alloc(Math.ceil(size / cs)) : 0;
  await img.refs.flushCache(stable);
  await img.file.flush();
  // Its place is not in the header yet: the clusters must be free of all metadata.
  const hit = size > 0 ? img.meta.firstOverlap(off, size) : undefined;
  if (hit) throw await markCorrupt(img, `Preventing invalid write on metadata (overlaps with ${hit.kind})`, quiet, { offset: off, size });
  const table = new Uint8Array(size);
  let pos = 0;
  for (const e of entries) {
    pos = Math.ceil(pos / 8) * 8;
    table.set(e, pos);
    pos += e.length;
  }
  if (size > 0) await img.file.pwritev(off, size, table);
  // The new table and its refcounts must be on disk before the header names it.
  await img.file.flush();
  const ptr = new Uint8Array(12);
  const dv = new DataView(ptr.buffer);
  dv.setUint32(0, img.snapshots.length);
  dv.setBigUint64(4, BigInt(off));
  await img.file.pwritev(HDR.NB_SNAPSHOTS, 12, ptr);
  await img.file.flush();
  const h = img.header;
  const oldOff = h.snapshotsOffset;
  const oldSize = img.snapshotTableBytes;
  // As a fresh read of the new table would give them.
  img.snapshots = img.snapshots.map((s) => ({ ...s, extraDataSize: Math.max(EXTRA, s.extraDataSize), diskSize: s.diskSize ?? img.header.size }));
  h.nbSnapshots = img.snapshots.length;
  h.snapshotsOffset = off;
  img.snapshotTableBytes = size;
  img.meta.remove(oldOff, oldSize, 'snapshot table');
  if (size > 0) img.meta.add(off, size, 'snapshot table');
  // QEMU frees the old table's clusters at once; a failure there is only reported.
  await img.refs.freeClusters(oldOff, oldSize, img.passDiscardSnapshot);
}
