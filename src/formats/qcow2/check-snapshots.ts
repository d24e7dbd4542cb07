/**
 * The snapshot table under check -r all, as QEMU's
 * qcow2_check_read_snapshot_table in repair mode: snapshots past QEMU's limit
 * are discarded (the header's count is cut at once), extra data past its limit
 * is cut, and a table too big loses its last entries. Their clusters leak, for
 * the refcount check to free; the cut extra data is a corruption that the
 * table's rewrite repairs.
 */
import { BlockError, toBlockError } from '../../core/errors.js';
import { HDR, MAX_SNAPSHOTS } from './constants.js';
import { registerMetadata } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';
import { readSnapshotTable, type SnapshotRepair } from './snapshot.js';

/** What the repairing read did, or the error that ends the check (with QEMU's line). */
export type SnapshotTableRepair = { repair: SnapshotRepair } | { error: BlockError; report: string };

/**
 * Reads the table again in repair mode, for an image whose table could not be
 * read as it is (img.snapshotTableError). Updates the image's snapshots.
 */
export async function repairSnapshotTable(img: Qcow2Image): Promise<SnapshotTableRepair> {
  const h = img.header;
  const repair: SnapshotRepair = { messages: [], reduced: 0, dropped: 0 };
  let count = h.nbSnapshots;
  if (count > MAX_SNAPSHOTS) {
    repair.messages.push(`Discarding ${count - MAX_SNAPSHOTS} overhanging snapshots`);
    repair.reduced += count - MAX_SNAPSHOTS;
    count = MAX_SNAPSHOTS;
  }
  if (h.snapshotsOffset % img.clusterSize !== 0) {
    const error = new BlockError('EINVAL', 'snapshot table offset invalid');
    return { error, report: 'ERROR snapshot table offset invalid' };
  }
  let r;
  try {
    r = await readSnapshotTable(img.file, h.snapshotsOffset, count, img.clusterSize, repair);
  } catch (e) {
    const error = toBlockError(e);
    return { error, report: `ERROR failed to read the snapshot table: ${error.text}` };
  }
  img.snapshots = r.snapshots;
  img.snapshotTableBytes = r.bytes;
  img.snapshotTableError = undefined;
  img.snapshotTableInvalid = false;
  if (repair.reduced > 0) {
    // The header's count at once: the refcount check counts what it says.
    h.nbSnapshots = r.snapshots.length;
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, h.nbSnapshots);
    try {
      await img.file.pwritev(HDR.NB_SNAPSHOTS, 4, b);
      await img.file.flush();
    } catch (e) {
      const error = toBlockError(e);
      return { error, report: `ERROR failed to update the snapshot count in the image header: ${error.message}` };
    }
  }
  h.nbSnapshots = r.snapshots.length;
  registerMetadata(img);
  return { repair };
}
