/**
 * Self-describing refcount structures at the end of an image (QEMU's
 * qcow2_refcount_area): a new refcount table, and the refcount blocks it
 * lacks, laid out from a given cluster on, counting themselves and a number of
 * clusters after them. Used when the table must grow for a new refcount block
 * (refcount.ts) and by falloc / full preallocation (prealloc-file.ts), which
 * places the data clusters right after the area.
 */
import { BlockError } from '../../core/errors.js';
import { MAX_REFTABLE_BYTES } from './constants.js';
import { getRefcount, refcountBlocksFor, setRefcount } from './refcount-entries.js';
import type { Refcounts } from './refcount.js';

/**
 * QEMU compares the entry counts of the new table with QCOW_MAX_REFTABLE_SIZE
 * (a byte limit elsewhere), so this is the limit on entries here.
 */
const MAX_AREA_TABLE_ENTRIES = MAX_REFTABLE_BYTES;

/** Options of {@link refcountArea}. */
export interface RefcountAreaOptions {
  /** First cluster of the area; only free clusters (refcount 0) may follow it. */
  start: number;
  /** Clusters after the area that the new refcount blocks must also cover. */
  additional: number;
  /** A table just large enough (rounded to clusters), or 50 % larger than needed. */
  exact: boolean;
  /** A refcount block already written, entered into the new table at `newBlockIndex`. */
  newBlockIndex?: number;
  newBlockOffset?: number;
}

/**
 * Writes the new refcount blocks, then the new table, then points the header
 * to it, then frees the old table; returns the first cluster after the area.
 * Existing refcount blocks that cover the area count its clusters too.
 */
export async function refcountArea(rc: Refcounts, o: RefcountAreaOptions): Promise<number> {
  const cs = rc.clusterSize;
  const per = rc.perBlock;
  const file = rc.host.file();
  const total = refcountBlocksFor(o.start + o.additional, cs, rc.order, !o.exact);
  if (total > MAX_AREA_TABLE_ENTRIES) throw new BlockError('EFBIG', `A refcount table of ${total} entries would be too large`);
  const areaIndex = Math.floor(o.start / per);
  const perTableCluster = cs / 8;
  const wanted = o.exact ? total : total + Math.ceil(total / 2);
  const tableClusters = Math.ceil(wanted / perTableCluster);
  const tableSize = tableClusters * perTableCluster;
  if (tableSize > MAX_AREA_TABLE_ENTRIES) throw new BlockError('EFBIG', `A refcount table of ${tableSize} entries would be too large`);

  const newTable = new Float64Array(tableSize);
  let used = rc.table.length - 1;
  while (used > 0 && rc.table[used] === 0) used--;
  // Entries past the new size describe nothing (only free clusters follow the area).
  newTable.set(rc.table.subarray(0, Math.min(tableSize, used + 1)));
  if (o.newBlockOffset) newTable[o.newBlockIndex!] = o.newBlockOffset;

  let fresh = 0;
  for (let i = areaIndex; i < total; i++) if (newTable[i] === 0) fresh++;
  const tableStart = o.start + fresh;
  const end = tableStart + tableClusters;

  /** New refcount blocks by offset; they are written whole. */
  const blocks = new Map<number, Uint8Array>();
  let next = o.start;
  for (let i = areaIndex; i < total; i++) {
    let buf: Uint8Array;
    let off = newTable[i]!;
    if (off !== 0) {
      buf = await rc.cache.get(off);
    } else {
      off = next++ * cs;
      newTable[i] = off;
      buf = new Uint8Array(cs);
      blocks.set(off, buf);
    }
    const first = i * per;
    if (first >= end) continue;
    const from = Math.max(first, o.start);
    const to = Math.min(end, first + per);
    for (let c = from; c < to; c++) {
      if (getRefcount(buf, c - first, rc.order) !== 0) {
        throw new BlockError('EIO', `Refcount structures at cluster ${o.start} would cover cluster ${c}, which is in use`);
      }
      setRefcount(buf, c - first, rc.order, 1);
    }
    if (!blocks.has(off)) rc.cache.setDirty(off, buf);
  }

  await file.debugEvent('refblock_alloc_write_blocks');
  await rc.cache.flush();
  for (const [off, buf] of blocks) {
    await file.pwritev(off, cs, buf);
    await rc.cache.put(off, buf, false);
  }
  await file.flush();

  const tbuf = new Uint8Array(tableSize * 8);
  const tdv = new DataView(tbuf.buffer);
  for (let i = 0; i < tableSize; i++) if (newTable[i]) tdv.setBigUint64(i * 8, BigInt(newTable[i]!));
  const tableOff = tableStart * cs;
  await file.debugEvent('refblock_alloc_write_table');
  await file.pwritev(tableOff, tbuf.length, tbuf);
  await file.flush();

  const oldOff = rc.tableOffset;
  const oldClusters = Math.ceil((rc.table.length * 8) / cs);
  await file.debugEvent('refblock_alloc_switch_table');
  await rc.host.setReftable(tableOff, tableClusters);
  rc.table = newTable;
  rc.tableOffset = tableOff;
  for (const off of blocks.keys()) rc.host.addMeta(off, cs, 'refcount block');
  rc.host.removeMeta(oldOff, oldClusters * cs, 'refcount table');
  rc.host.addMeta(tableOff, tbuf.length, 'refcount table');
  for (let c = oldOff / cs; c < oldOff / cs + oldClusters; c++) await rc.update(c, -1);
  return end;
}
