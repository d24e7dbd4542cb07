/**
 * `qemu-img check` of a QED image (QEMU 7.2's qed_check): every L1 entry
 * must name a valid table, every L2 entry a valid cluster, each cluster
 * used once; clusters of the file nobody uses are leaks. A repair clears
 * invalid entries (leaks stay: QED cannot give space back) and, when nothing
 * is left broken, clears the need-check flag.
 */
import type { CheckResult } from '../../core/driver.js';
import { BlockError, toBlockError } from '../../core/errors.js';
import { bytesToClusters, clusterOffsetValid, tableOffsetValid, QED_UNALLOCATED, QED_ZERO, type QedGeometry } from './header.js';
import type { QedTable } from './tables.js';

/** What the check needs from the open image. */
export interface QedCheckTarget {
  geo: QedGeometry;
  headerSize: number;
  l1Offset: number;
  imageSize: number;
  /** The file's length rounded down to a cluster. */
  fileSize: number;
  l1: QedTable;
  loadL2(offset: number): Promise<QedTable>;
  writeL1(index: number, n: number): Promise<void>;
  writeL2(offset: number, table: QedTable, index: number, n: number): Promise<void>;
  /** Flushes, clears the need-check flag and writes the header, if the flag is set. */
  markClean(): Promise<void>;
}

/** A bitmap of the file's clusters that tables reference. */
class UsedClusters {
  private readonly bits: Uint32Array;
  constructor(
    readonly count: number,
    private readonly cs: number,
  ) {
    // Slack past `count`: QEMU's quirky cluster numbering may land a little past it.
    this.bits = new Uint32Array(Math.ceil((count + 64) / 32));
  }
  has(n: number): boolean {
    return n < this.bits.length * 32 && (this.bits[n >>> 5]! & (1 << (n & 31))) !== 0;
  }
  /** Marks `n` clusters from byte `offset`; false when one was marked already (a corruption each). */
  mark(offset: number, n: number, result: CheckResult): boolean {
    let cluster = bytesToClusters(offset, this.cs);
    let dup = 0;
    for (; n > 0; n--, cluster++) {
      if (this.has(cluster)) dup++;
      if (cluster < this.bits.length * 32) this.bits[cluster >>> 5]! |= 1 << (cluster & 31);
    }
    result.corruptions += dup;
    return dup === 0;
  }
}

function checkL2(t: QedCheckTarget, table: QedTable, used: UsedClusters, fix: boolean, r: CheckResult): number {
  const cs = t.geo.clusterSize;
  let invalid = 0;
  let last = 0;
  for (let i = 0; i < table.entries; i++) {
    const off = table.get(i);
    if (off === QED_UNALLOCATED || off === QED_ZERO) continue;
    r.allocatedClusters! += 1;
    if (last && last + cs !== off) r.fragmentedClusters! += 1;
    last = off;
    if (!clusterOffsetValid(off, cs, t.geo.headerBytes, t.fileSize)) {
      if (fix) {
        table.set(i, 0);
        r.corruptionsFixed++;
      } else {
        r.corruptions++;
      }
      invalid++;
      continue;
    }
    used.mark(off, 1, r);
  }
  return invalid;
}

/** Runs the check; `fix` repairs what QEMU repairs. Throws (the last I/O error) when tables could not be read or written. */
export async function checkQed(t: QedCheckTarget, fix: boolean): Promise<CheckResult> {
  const cs = t.geo.clusterSize;
  const r: CheckResult = {
    corruptions: 0,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: Math.ceil(t.imageSize / cs),
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
    messages: [],
  };
  const used = new UsedClusters(bytesToClusters(t.fileSize, cs), cs);
  let lastError: unknown;
  let invalidL1 = 0;
  used.mark(t.l1Offset, t.geo.tableSize, r);
  for (let i = 0; i < t.l1.entries; i++) {
    const off = t.l1.get(i);
    if (off === QED_UNALLOCATED) continue;
    if (!tableOffsetValid(off, t.geo, t.headerSize, t.fileSize)) {
      if (fix) {
        t.l1.set(i, 0);
        r.corruptionsFixed++;
      } else {
        r.corruptions++;
      }
      invalidL1++;
      continue;
    }
    // A table that shares clusters with another is not looked into.
    if (!used.mark(off, t.geo.tableSize, r)) continue;
    let table: QedTable;
    try {
      table = await t.loadL2(off);
    } catch (e) {
      r.checkErrors++;
      lastError = e;
      continue;
    }
    const invalid = checkL2(t, table, used, fix, r);
    if (invalid > 0 && fix) {
      try {
        await t.writeL2(off, table, 0, table.entries);
      } catch (e) {
        r.checkErrors++;
        lastError = e;
      }
    }
  }
  if (invalidL1 > 0 && fix) {
    try {
      await t.writeL1(0, t.l1.entries);
    } catch (e) {
      r.checkErrors++;
      lastError = e;
    }
  }
  if (lastError !== undefined) {
    const err = toBlockError(lastError);
    throw new BlockError(err.code, err.text, {}, { cause: lastError });
  }
  // Leaks are counted only when every table could be read.
  for (let i = t.headerSize; i < used.count; i++) if (!used.has(i)) r.leaks++;
  if (fix && r.corruptions === 0 && r.checkErrors === 0) await t.markClean();
  return r;
}
