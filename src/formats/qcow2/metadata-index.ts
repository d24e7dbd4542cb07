/**
 * Which host clusters hold metadata, and the checks that keep data writes off
 * them (QEMU's qcow2_pre_write_overlap_check), plus marking an image corrupt
 * when a check fails (qcow2_signal_corruption).
 *
 * The index is kept per cluster: every table the image uses (header, L1, L2,
 * refcount table and blocks, snapshot table and inactive L1s, bitmap
 * directory) is registered when it is loaded or allocated and removed when it
 * is freed, so a check costs one map look-up per cluster written.
 */
import { BlockError } from '../../core/errors.js';
import { INCOMPAT } from './constants.js';
import type { Qcow2Image } from './qcow2.js';


/** Tables larger than this many clusters are not indexed (they cannot be valid; open refuses them elsewhere). */
const MAX_INDEXED_CLUSTERS = 1 << 22;

/** Host cluster index → what metadata lives there. */
export class MetadataIndex {
  private readonly kinds = new Map<number, string>();

  constructor(private readonly clusterSize: number) {}

  /** Registers [offset, offset+bytes) as metadata of `kind` ("active L2 table"). */
  add(offset: number, bytes: number, kind: string): void {
    if (bytes <= 0) return;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + bytes - 1) / this.clusterSize);
    if (last - first > MAX_INDEXED_CLUSTERS) return;
    for (let c = first; c <= last; c++) this.kinds.set(c, kind);
  }

  /** Forgets [offset, offset+bytes) (the table was freed). */
  remove(offset: number, bytes: number): void {
    if (bytes <= 0) return;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + bytes - 1) / this.clusterSize);
    for (let c = first; c <= last; c++) this.kinds.delete(c);
  }

  /** What lives in host cluster `cluster`, if it is metadata. */
  kindOf(cluster: number): string | undefined {
    return this.kinds.get(cluster);
  }

  /** The first metadata cluster in [offset, offset+bytes), or undefined. */
  firstOverlap(offset: number, bytes: number): { cluster: number; kind: string } | undefined {
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + bytes - 1) / this.clusterSize);
    for (let c = first; c <= last; c++) {
      const kind = this.kinds.get(c);
      if (kind) return { cluster: c, kind };
    }
    return undefined;
  }

  clear(): void {
    this.kinds.clear();
  }
}

/** Rebuilds the index from the image's current tables (after open or a refcount rebuild). */
export function registerMetadata(img: Qcow2Image): void {
  const h = img.header;
  const meta = img.meta;
  meta.clear();
  meta.add(0, img.clusterSize, 'qcow2_header');
  if (h.l1Size > 0) meta.add(h.l1TableOffset, h.l1Size * 8, 'active L1 table');
  meta.add(h.refcountTableOffset, h.refcountTableClusters * img.clusterSize, 'refcount table');
  for (const off of img.refs.table) if (off) meta.add(off, img.clusterSize, 'refcount block');
  for (const off of img.l1) if (off) meta.add(off, img.clusterSize, 'active L2 table');
  if (h.nbSnapshots > 0) meta.add(h.snapshotsOffset, img.snapshotTableBytes, 'snapshot table');
  for (const s of img.snapshots) if (s.l1Size) meta.add(s.l1TableOffset, s.l1Size * 8, 'inactive L1 table');
  if (h.bitmaps) meta.add(h.bitmaps.directoryOffset, h.bitmaps.directorySize, 'bitmap directory');
}

/**
 * Refuses a data write to [host, host+bytes) of the image file that would hit
 * metadata, marking the image corrupt. Writes to an external data file cannot
 * hit metadata.
 */
export async function overlapCheck(img: Qcow2Image, host: number, bytes: number): Promise<void> {
  if (img.hasDataFile) return;
  const hit = img.meta.firstOverlap(host, bytes);
  if (hit) {
    throw await markCorrupt(img, `Preventing invalid write on metadata (overlaps with ${hit.kind})`);
  }
}

/**
 * Marks the image corrupt (QEMU's qcow2_signal_corruption): sets the corrupt
 * bit in a v3 header when writable, refuses further writes in this session,
 * and returns the EIO for the caller to throw. `quiet`: the caller reports the
 * message itself, in its place among its other lines (check's repair).
 */
export async function markCorrupt(img: Qcow2Image, message: string, quiet = false): Promise<BlockError> {
  // On a read-only image QEMU's corruption event is not fatal, and says so.
  const text = img.readOnly
    ? `qcow2: Image is corrupt: ${message}; further non-fatal corruption events will be suppressed`
    : `qcow2: Marking image as corrupt: ${message}; further corruption events will be suppressed`;
  const err = new BlockError('EIO', text, { node: img.node.nodeName });
  // Said once per image, as QEMU does ("further corruption events will be suppressed").
  if (!img.corrupt && !quiet) img.node.graph.notice(err.message);
  const h = img.header;
  if (!img.readOnly && h.version === 3 && !(h.incompatible & INCOMPAT.CORRUPT)) {
    h.incompatible |= INCOMPAT.CORRUPT;
    try {
      await img.writeHeader();
    } catch {
      // The error we report is the corruption.
    }
  }
  img.corrupt = true;
  return err;
}
