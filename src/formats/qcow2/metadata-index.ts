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
import { AUTOCLEAR, INCOMPAT } from './constants.js';
import { decodeL1 } from './l2-entry.js';
import type { Qcow2Image } from './qcow2.js';
import { validateSnapshotL1 } from './snapshot.js';


/** Tables larger than this many clusters are not indexed (they cannot be valid; open refuses them elsewhere). */
const MAX_INDEXED_CLUSTERS = 1 << 22;

/** The kinds of metadata, in the order QEMU's qcow2_check_metadata_overlap tests them. */
const KINDS = [
  'qcow2_header',
  'active L1 table',
  'refcount table',
  'snapshot table',
  'inactive L1 table',
  'active L2 table',
  'refcount block',
  'inactive L2 table',
  'bitmap directory',
] as const;
/** A kind of metadata ("active L2 table"), as QEMU's corruption messages name it. */
export type MetadataKind = (typeof KINDS)[number];
const bit = (kind: MetadataKind) => 1 << KINDS.indexOf(kind);
const maskOf = (kinds: readonly MetadataKind[]) => kinds.reduce((m, k) => m | bit(k), 0);

/** The per-kind switches of the overlap-check option, each with the kind it governs. */
export const OVERLAP_SWITCHES: Readonly<Record<string, MetadataKind>> = {
  'main-header': 'qcow2_header',
  'active-l1': 'active L1 table',
  'active-l2': 'active L2 table',
  'refcount-table': 'refcount table',
  'refcount-block': 'refcount block',
  'snapshot-table': 'snapshot table',
  'inactive-l1': 'inactive L1 table',
  'inactive-l2': 'inactive L2 table',
  'bitmap-directory': 'bitmap directory',
};

const CONSTANT: MetadataKind[] = ['qcow2_header', 'active L1 table', 'refcount table', 'snapshot table', 'bitmap directory'];
const CACHED: MetadataKind[] = [...CONSTANT, 'active L2 table', 'refcount block', 'inactive L1 table'];
/**
 * QEMU's overlap-check templates as masks: `constant` needs no look-up,
 * `cached` (the default) only what is in memory, `all` adds the inactive L2
 * tables, read from the file at every check.
 */
export const OVERLAP_TEMPLATES: Readonly<Record<string, number>> = {
  none: 0,
  constant: maskOf(CONSTANT),
  cached: maskOf(CACHED),
  all: maskOf([...CACHED, 'inactive L2 table']),
};

/** `mask` with `kind` switched on or off. */
export function withKind(mask: number, kind: MetadataKind, on: boolean): number {
  return on ? mask | bit(kind) : mask & ~bit(kind);
}

/** Host cluster index → the kinds of metadata that live there (one cluster may hold several in a broken image). */
export class MetadataIndex {
  private readonly kinds = new Map<number, number>();
  /** Kinds that cover every cluster (QEMU's empty bitmap directory with the bitmaps bit set). */
  private everywhere = 0;
  /** The kinds writes are checked against (overlap-check); `cached` unless the options say otherwise. */
  checked = OVERLAP_TEMPLATES.cached!;

  constructor(private readonly clusterSize: number) {}

  /** Registers [offset, offset+bytes) as metadata of `kind`. */
  add(offset: number, bytes: number, kind: MetadataKind): void {
    if (bytes <= 0) return;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + bytes - 1) / this.clusterSize);
    if (last - first > MAX_INDEXED_CLUSTERS) return;
    const b = bit(kind);
    for (let c = first; c <= last; c++) this.kinds.set(c, (this.kinds.get(c) ?? 0) | b);
  }

  /** Registers `kind` as covering every cluster. */
  addEverywhere(kind: MetadataKind): void {
    this.everywhere |= bit(kind);
  }

  /** Forgets `kind` (every kind if omitted) in [offset, offset+bytes) (the table was freed). */
  remove(offset: number, bytes: number, kind?: MetadataKind): void {
    if (bytes <= 0) return;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + bytes - 1) / this.clusterSize);
    const keep = kind ? ~bit(kind) : 0;
    for (let c = first; c <= last; c++) {
      const m = (this.kinds.get(c) ?? 0) & keep;
      if (m) this.kinds.set(c, m);
      else this.kinds.delete(c);
    }
  }

  /** Whether writes are checked against metadata of `kind`. */
  checks(kind: MetadataKind): boolean {
    return (this.checked & bit(kind)) !== 0;
  }

  /**
   * The metadata [offset, offset+bytes) overlaps, `ignore` and the kinds not
   * checked aside: the first kind in QEMU's order, and the first cluster
   * holding it; undefined if none.
   */
  firstOverlap(offset: number, bytes: number, ...ignore: (MetadataKind | undefined)[]): { cluster: number; kind: MetadataKind } | undefined {
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + bytes - 1) / this.clusterSize);
    let skip = ~this.checked;
    for (const k of ignore) if (k) skip |= bit(k);
    const all = this.everywhere & ~skip;
    let best = all & -all;
    let at = first;
    for (let c = first; c <= last; c++) {
      const m = (this.kinds.get(c) ?? 0) & ~skip;
      if (!m) continue;
      const low = m & -m;
      if (!best || low < best) {
        best = low;
        at = c;
      }
    }
    if (!best) return undefined;
    return { cluster: at, kind: KINDS[31 - Math.clz32(best)]! };
  }

  clear(): void {
    this.kinds.clear();
    this.everywhere = 0;
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
  // Indexed loops: for-of over a Float64Array boxes every entry (a refcount table has thousands).
  const table = img.refs.table;
  for (let i = 0; i < table.length; i++) if (table[i]) meta.add(table[i]!, img.clusterSize, 'refcount block');
  for (let i = 0; i < img.l1.length; i++) if (img.l1[i]) meta.add(img.l1[i]!, img.clusterSize, 'active L2 table');
  if (h.nbSnapshots > 0) meta.add(h.snapshotsOffset, img.snapshotTableBytes, 'snapshot table');
  for (const s of img.snapshots) if (s.l1Size) meta.add(s.l1TableOffset, s.l1Size * 8, 'inactive L1 table');
  if (h.bitmaps) meta.add(h.bitmaps.directoryOffset, h.bitmaps.directorySize, 'bitmap directory');
  // QEMU 7.2 tests a directory of offset 0 and size 0 as ending at 2^64 - 1: it overlaps every write.
  else if (h.autoclear & AUTOCLEAR.BITMAPS) meta.addEverywhere('bitmap directory');
}

/**
 * Refuses a data write to [host, host+bytes) of the image file that would hit
 * metadata, marking the image corrupt. Writes to an external data file cannot
 * hit metadata.
 */
export async function overlapCheck(img: Qcow2Image, host: number, bytes: number): Promise<void> {
  if (img.hasDataFile) return;
  const kind = await findOverlap(img, host, bytes, []);
  if (kind) throw await markCorrupt(img, `Preventing invalid write on metadata (overlaps with ${kind})`, false, { offset: host, size: bytes });
}

/**
 * Refuses a write of metadata of kind `own` (undefined: a table not in use
 * yet) to [offset, offset+bytes) that would hit other metadata, marking the image corrupt (QEMU checks each table
 * and cache entry it writes, its own kind aside).
 */
export async function metadataWriteCheck(img: Qcow2Image, offset: number, bytes: number, ...own: (MetadataKind | undefined)[]): Promise<void> {
  const kind = await findOverlap(img, offset, bytes, own);
  if (kind) throw await markCorrupt(img, `Preventing invalid write on metadata (overlaps with ${kind})`, false, { offset: offset, size: bytes });
}

/**
 * The first kind of metadata a write to [offset, offset+bytes) would hit, in
 * QEMU's order: the indexed kinds, with the inactive L2 tables (only with
 * overlap-check inactive-l2 on) tested between the refcount blocks and the
 * bitmap directory, as qcow2_check_metadata_overlap does.
 */
async function findOverlap(img: Qcow2Image, offset: number, bytes: number, ignore: (MetadataKind | undefined)[]): Promise<MetadataKind | undefined> {
  const hit = img.meta.firstOverlap(offset, bytes, ...ignore);
  if (hit && hit.kind !== 'bitmap directory') return hit.kind;
  if (img.meta.checks('inactive L2 table') && !ignore.includes('inactive L2 table') && (await hitsInactiveL2(img, offset, bytes))) {
    return 'inactive L2 table';
  }
  return hit?.kind;
}

/**
 * Whether [offset, offset+bytes), widened to whole clusters, holds an L2
 * table of a snapshot. As QEMU, every snapshot's L1 table is validated and
 * read from the file at each check: a bad one fails the write with its errno.
 */
async function hitsInactiveL2(img: Qcow2Image, offset: number, bytes: number): Promise<boolean> {
  const cs = img.clusterSize;
  const start = Math.floor(offset / cs) * cs;
  const end = Math.ceil((offset + bytes) / cs) * cs;
  for (const sn of img.snapshots) {
    validateSnapshotL1(sn, cs);
    if (sn.l1Size === 0) continue;
    const raw = new Uint8Array(sn.l1Size * 8);
    await img.file.preadv(sn.l1TableOffset, raw.length, raw);
    const l1 = decodeL1(raw, sn.l1Size);
    for (let i = 0; i < sn.l1Size; i++) {
      const l2 = l1.offsets[i]!;
      if (l2 && l2 < end && l2 + cs > start) return true;
    }
  }
  return false;
}

/**
 * Reports a corruption (QEMU's qcow2_signal_corruption) and returns the EIO
 * for the caller to throw. A fatal one (every one on a writable image unless
 * `fatal` is false) refuses further writes in this session; a non-fatal one
 * (an image opened read-only, or a problem the caller can step around, as a
 * cluster it cannot free) is only reported. Said once, as QEMU says it: a
 * non-fatal report after any report is not repeated, a fatal one after a
 * non-fatal one is. `quiet`: the caller prints the message itself, in its
 * place among its other lines (check's repair). The graph's
 * BLOCK_IMAGE_CORRUPTED event goes out with each report, with the metadata
 * range `where` when the corruption is an overlapping write.
 */
export function signalCorruption(img: Qcow2Image, message: string, opts: { fatal?: boolean; quiet?: boolean; where?: { offset: number; size: number } } = {}): BlockError {
  const fatal = opts.fatal !== false && !img.readOnly;
  const text = fatal
    ? `qcow2: Marking image as corrupt: ${message}; further corruption events will be suppressed`
    : `qcow2: Image is corrupt: ${message}; further non-fatal corruption events will be suppressed`;
  const err = new BlockError('EIO', text, { node: img.node.nodeName });
  const suppressed = img.corrupt || (img.signaledCorruption && !fatal);
  if (!suppressed) {
    if (!opts.quiet) img.node.graph.notice(err.message);
    // QEMU's event: 'device' is the BlockBackend's name, filled in by whoever knows one.
    img.node.graph.emitEvent('BLOCK_IMAGE_CORRUPTED', {
      device: '',
      'node-name': img.node.nodeName,
      msg: message,
      ...(opts.where ? { offset: opts.where.offset, size: opts.where.size } : {}),
      fatal,
    });
  }
  img.signaledCorruption = true;
  // Read-only: nothing is written anyway; the image is not trusted for the rest of the session.
  if (fatal || img.readOnly) img.corrupt = true;
  if (fatal) img.dropped = true;
  return err;
}

/**
 * Marks the image corrupt: {@link signalCorruption} of a fatal corruption,
 * and the corrupt bit set in a v3 header when writable.
 */
export async function markCorrupt(img: Qcow2Image, message: string, quiet = false, where?: { offset: number; size: number }): Promise<BlockError> {
  const err = signalCorruption(img, message, { quiet, ...(where ? { where } : {}) });
  const h = img.header;
  if (!img.readOnly && h.version === 3 && !(h.incompatible & INCOMPAT.CORRUPT)) {
    h.incompatible |= INCOMPAT.CORRUPT;
    try {
      await img.writeHeader();
    } catch {
      // The error we report is the corruption.
    }
  }
  return err;
}
