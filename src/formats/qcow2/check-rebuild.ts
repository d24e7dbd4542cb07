/**
 * Rebuilding the refcount structures during check -r all, placed as QEMU's
 * rebuild_refcount_structure places them: each refcount block and the new
 * table go into the first free clusters of the counted references (the old
 * structures are not counted, so they may be reused), and the old ones are
 * leaked for the leak repair that follows. A write that would hit metadata
 * QEMU still knows about is refused as QEMU's overlap check refuses it.
 */
import { BlockError } from '../../core/errors.js';
import { growCounts, type Tally } from './check-count.js';
import { markCorrupt } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';
import { setRefcount } from './refcount.js';

/** QEMU's alloc_clusters_imrt: first fit from `from.first`, growing the table at the end. */
function allocImrt(t: Tally, count: number, from: { first: number }): number {
  let cluster = from.first;
  let firstGap = true;
  let free = 0;
  for (; cluster < t.nb && free < count; cluster++) {
    if (!t.ref[cluster]) {
      free++;
      if (firstGap) {
        from.first = cluster;
        firstGap = false;
      }
    } else if (free) {
      free = 0;
    }
  }
  if (free < count) {
    const nb = cluster + count - free;
    t.ref = growCounts(t.ref, nb);
    t.nb = nb;
  }
  cluster -= free;
  for (let i = 0; i < count; i++) t.ref[cluster + i] = 1;
  return cluster;
}

/** A rebuild refused by the overlap check: the corruption notice and QEMU's error line. */
export class RebuildError extends BlockError {
  constructor(
    readonly notice: string,
    readonly report: string,
  ) {
    super('EIO', report);
  }
}

interface Reftable {
  entries: number[];
}

/** QEMU's rebuild_refcounts_write_refblocks: returns whether the table grew. */
async function writeRefblocks(img: Qcow2Image, t: Tally, first: number, end: number, rt: Reftable): Promise<boolean> {
  const cs = img.clusterSize;
  const order = img.refs.order;
  const perBlock = (cs * 8) >> order;
  const from = { first: 0 };
  let grown = false;
  for (let c = first; c < end; c++) {
    if (!t.ref[c]) continue;
    const rb = Math.floor(c / perBlock);
    const start = rb * perBlock;
    let off: number;
    if (rb < rt.entries.length && rt.entries[rb]) {
      off = rt.entries[rb]!;
    } else {
      if (from.first < start) from.first = start;
      const k = allocImrt(t, 1, from);
      off = k * cs;
      if (k >= end) end = k + 1;
      if (rt.entries.length <= rb) {
        const n = Math.ceil(((rb + 1) * 8) / cs) * (cs / 8);
        while (rt.entries.length < n) rt.entries.push(0);
        grown = true;
      }
      rt.entries[rb] = off;
    }
    await checkedWrite(img, off, cs, 'ERROR writing refblock');
    const block = new Uint8Array(cs);
    for (let i = 0; i < perBlock && start + i < t.nb; i++) {
      const v = t.ref[start + i]!;
      if (v) setRefcount(block, i, order, v);
    }
    await img.file.pwritev(off, cs, block);
    c = start + perBlock - 1;
  }
  return grown;
}

/** QEMU's overlap check before each write of the rebuild (every kind of metadata). */
async function checkedWrite(img: Qcow2Image, offset: number, bytes: number, what: string): Promise<void> {
  const hit = img.meta.firstOverlap(offset, bytes);
  if (hit) {
    const err = await markCorrupt(img, `Preventing invalid write on metadata (overlaps with ${hit.kind})`, true, { offset, size: bytes });
    throw new RebuildError(err.message, `${what}: Input/output error`);
  }
}

/**
 * QEMU's rebuild_refcount_structure: writes refcount blocks for the counts in
 * `t` (which gains the new structures' own references), then the table, and
 * points the header at it.
 */
export async function rebuildRefcountStructure(img: Qcow2Image, t: Tally): Promise<void> {
  const cs = img.clusterSize;
  const rt: Reftable = { entries: [] };
  img.refs.cache.clear();
  await writeRefblocks(img, t, 0, t.nb, rt);
  let tableOff = -1;
  let tableClusters = 0;
  let changed = true;
  while (changed) {
    tableClusters = Math.ceil((rt.entries.length * 8) / cs);
    const k = allocImrt(t, tableClusters, { first: 0 });
    tableOff = k * cs;
    changed = await writeRefblocks(img, t, k, k + tableClusters, rt);
  }
  const table = new Uint8Array(rt.entries.length * 8);
  const dv = new DataView(table.buffer);
  rt.entries.forEach((off, i) => dv.setBigUint64(i * 8, BigInt(off)));
  await checkedWrite(img, tableOff, table.length, 'ERROR writing reftable');
  await img.file.pwritev(tableOff, table.length, table);
  await img.file.flush();
  const h = img.header;
  h.refcountTableOffset = tableOff;
  h.refcountTableClusters = tableClusters;
  // Only the two fields change on disk, as in QEMU (not a rewrite of the header).
  const hdr = new Uint8Array(12);
  const hdv = new DataView(hdr.buffer);
  hdv.setBigUint64(0, BigInt(tableOff));
  hdv.setUint32(8, tableClusters);
  await img.file.pwritev(48, 12, hdr);
  await img.file.flush();
  img.resetRefcounts(Float64Array.from(rt.entries), tableOff, img.refs.order);
}
