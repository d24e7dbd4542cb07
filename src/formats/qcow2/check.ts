/**
 * qemu-img check for qcow2: recount every reference (header, L1/L2 tables,
 * data and compressed clusters, snapshots, refcount structures, bitmaps),
 * compare with the stored refcounts, check the COPIED flags, and repair
 * leaks (decrement) or errors (rebuild the refcount structures), as QEMU does.
 */
import type { CheckFix, CheckResult } from '../../core/driver.js';
import { BlockError, STRERROR, toBlockError, type ErrorCode } from '../../core/errors.js';
import { INCOMPAT } from './constants.js';
import { ClusterType, clusterType, entryOffset, isCopied, readEntry } from './l2-entry.js';
import { RebuildError, rebuildRefcountStructure } from './check-rebuild.js';
import { MAX_COUNT_BYTES, calculateRefcounts, fileLengthOf, hex64, isZeroEntry, newTally, readPadded, type Tally } from './check-count.js';
import type { Qcow2Image } from './qcow2.js';
import { markCorrupt, type MetadataKind } from './metadata-index.js';
import { V3_SNAPSHOT_EXTRA, type SnapshotRepair } from './snapshot.js';
import { writeSnapshotTable } from './snapshot-write.js';
import { repairSnapshotTable } from './check-snapshots.js';
import { compareBlockCounts, getRefcount, getRefcountExact, initRefcountWasm, setRefcount, maxRefcount } from './refcount.js';

const hex = (n: number) => n.toString(16);

/**
 * A check that could not complete (QEMU returns an error from bdrv_check):
 * `messages` are the lines reported before it stopped, which qemu-img prints
 * ahead of "Check failed: ...".
 */
export class CheckFailedError extends BlockError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly messages: string[],
    /** Errors qemu-img reports (with its name) before "Check failed". */
    readonly reports: string[] = [],
  ) {
    super(code, message);
  }
}

/**
 * QEMU's qcow2_co_check_locked: one pass that reports (and with `fix`
 * repairs) what it finds. `corruptions` / `leaks` count what is left unfixed,
 * `corruptionsFixed` / `leaksFixed` what was repaired; `messages` are the
 * lines qemu-img prints on stderr ("Leaked cluster ...", "Repairing
 * cluster ...", "Rebuilding refcount structure", ...). After a repair that
 * leaves nothing wrong the image is marked clean and consistent.
 */
export async function checkImage(img: Qcow2Image, fix: CheckFix): Promise<CheckResult> {
  let repaired: SnapshotRepair = { messages: [], reduced: 0, dropped: 0 };
  if (img.snapshotTableError && fix.errors && !img.readOnly) {
    const r = await repairSnapshotTable(img);
    if ('error' in r) throw new CheckFailedError(r.error.code, r.error.text, [], [r.report]);
    repaired = r.repair;
  }
  if (img.snapshotTableError) {
    // Opened for check, the snapshot table was not read (QEMU reads it here); its error ends the check.
    const e = toBlockError(img.snapshotTableError);
    const report = `ERROR ${img.snapshotTableInvalid ? '' : 'failed to read the snapshot table: '}${e.text}${e.hint ? `\n${e.hint.replace(/\n$/, '')}` : ''}`;
    throw new CheckFailedError(e.code, e.text, [], [report]);
  }
  const { snapshotCorruptions, ...res } = await checkRefcounts(img, fix);
  // The repairing read comes first, as in QEMU; entries cut off are already repaired.
  res.messages.unshift(...repaired.messages);
  res.corruptions += repaired.dropped;
  res.corruptionsFixed += repaired.reduced;
  await fixSnapshotTable(img, fix, res, snapshotCorruptions + repaired.dropped);
  if (fix.progress) tryReport(fix.progress, 1, 1);
  if ((fix.leaks || fix.errors) && !img.readOnly && res.corruptions === 0 && res.checkErrors === 0) {
    const h = img.header;
    if (h.incompatible & (INCOMPAT.DIRTY | INCOMPAT.CORRUPT)) {
      h.incompatible &= ~(INCOMPAT.DIRTY | INCOMPAT.CORRUPT);
      await img.refs.flushCache();
      await img.file.flush();
      await img.writeHeader();
    }
  }
  return res;
}

/**
 * QEMU's qcow2_check_fix_snapshot_table: with -r all, incomplete snapshot
 * table entries are repaired by writing the table anew; a failure ends the check.
 */
async function fixSnapshotTable(img: Qcow2Image, fix: CheckFix, res: CheckResult, n: number): Promise<void> {
  if (!n || !fix.errors || img.readOnly) return;
  try {
    await writeSnapshotTable(img, true);
  } catch (e) {
    const err = toBlockError(e);
    if (img.corrupt && err.code === 'EIO') res.messages.push(err.message);
    res.messages.push(`ERROR failed to update snapshot table: ${STRERROR[err.code]}`);
    throw new CheckFailedError(err.code, err.text, res.messages);
  }
  res.corruptions -= n;
  res.corruptionsFixed += n;
}

/** Reports progress to a listener whose errors must not stop a repair. */
function tryReport(report: (done: number, total: number) => void, done: number, total: number): void {
  try {
    report(done, total);
  } catch {
    // A repair runs to its end.
  }
}

interface Compared {
  checkErrors: number;
  leaks: number;
  corruptions: number;
  leaksFixed: number;
  corruptionsFixed: number;
  rebuild: boolean;
  highest: number;
}

/**
 * QEMU's compare_refcounts: stored against counted refcounts. A cluster in use
 * with a stored refcount of 0 needs a rebuild of the refcount structures;
 * other mismatches are fixed in place when `fix` allows ("Repairing ...").
 */
async function compareRefcounts(img: Qcow2Image, t: Tally, fix: CheckFix): Promise<Compared> {
  const out: Compared = { checkErrors: 0, leaks: 0, corruptions: 0, leaksFixed: 0, corruptionsFixed: 0, rebuild: false, highest: 0 };
  const refs = img.refs;
  const perBlock = refs.perBlock;
  const order = refs.order;
  const nb = t.nb;
  let signalled = false;
  const mismatches = new Uint32Array(1024);
  // In a browser the module may still be loading: the long comparisons wait for it.
  await initRefcountWasm();
  // `stored` is exact: a 64-bit refcount may exceed 2^53 (iotest 112 prints 2^64 - 1).
  const mismatch = async (c: number, stored: bigint): Promise<void> => {
    const want = BigInt(t.ref[c]!);
    let fixing = false;
    if (stored === 0n) out.rebuild = true;
    else if (stored > want && fix.leaks) fixing = true;
    else if (stored < want && fix.errors) fixing = true;
    const kind = fixing ? 'Repairing' : stored < want ? 'ERROR' : 'Leaked';
    t.messages.push(`${kind} cluster ${c} refcount=${stored} reference=${want}`);
    if (fixing && !img.readOnly) {
      await refs.update(c, want - stored);
      if (stored > want) out.leaksFixed++;
      else out.corruptionsFixed++;
      return;
    }
    if (stored < want) out.corruptions++;
    else out.leaks++;
  };
  // A refcount block at a time: the stored entries are compared with the counts in bulk
  // (WASM for long ranges, refcount.ts) and only the clusters that differ are looked at.
  // The comparison takes float64 counts: narrower ones are widened into one block-sized scratch.
  const wide = t.ref instanceof Float64Array ? null : new Float64Array(perBlock);
  for (let rb = 0; rb * perBlock < nb; rb++) {
    const base = rb * perBlock;
    const end = Math.min(nb, base + perBlock);
    const off = rb < refs.table.length ? refs.table[rb]! : 0;
    if (off % img.clusterSize !== 0) {
      // QEMU cannot read refcounts through an unaligned block: each cluster is a check error.
      if (!signalled) {
        t.messages.push(`qcow2: Image is corrupt: Refblock offset 0x${hex(off)} unaligned (reftable index: ${rb === 0 ? '0' : `0x${hex(rb)}`}); further non-fatal corruption events will be suppressed`);
        signalled = true;
      }
      for (let c = base; c < end; c++) t.messages.push(`Can't get refcount for cluster ${c}: Input/output error`);
      out.checkErrors += end - base;
      continue;
    }
    const buf = off ? await refs.loadBlock(rb) : null;
    if (buf === null) {
      // No (usable) block: every counted reference here is a mismatch against 0.
      for (let c = base; c < end; c++) {
        if (t.ref[c] === 0) continue;
        out.highest = c;
        await mismatch(c, 0n);
      }
      continue;
    }
    let counts: Float64Array;
    if (wide) {
      wide.set(t.ref.subarray(base, end));
      counts = wide.subarray(0, end - base);
    } else counts = (t.ref as Float64Array).subarray(base, end);
    for (let from = base; from < end; ) {
      const scan = compareBlockCounts(buf, order, from - base, end - base, counts.subarray(from - base), mismatches);
      if (scan.lastUsed >= 0) out.highest = Math.max(out.highest, base + scan.lastUsed);
      // Stored values are read before any repair changes the block.
      const stored = Array.from(mismatches.subarray(0, scan.mismatches), (i) => getRefcountExact(buf, i, order));
      for (let k = 0; k < scan.mismatches; k++) await mismatch(base + mismatches[k]!, stored[k]!);
      from = base + scan.end;
    }
  }
  // The repaired blocks stay in the cache, as QEMU's: they reach the disk with
  // the next flush (the close's at the latest), where its checks apply.
  return out;
}

/**
 * QEMU's qcow2_check_read_snapshot_table: in a v3 image every snapshot table
 * entry carries the large VM state size and the disk size; each that does not
 * is a corruption, reported first. The repair rewrites the table after the
 * refcount check (fixSnapshotTable).
 */
function incompleteSnapshots(img: Qcow2Image, messages: string[], repair: boolean): number {
  if (img.header.version < 3) return 0;
  let n = 0;
  img.snapshots.forEach((s, i) => {
    if (s.extraDataSize >= V3_SNAPSHOT_EXTRA) return;
    messages.push(`${repair ? 'Repairing' : 'ERROR'} snapshot table entry ${i} is incomplete`);
    n++;
  });
  return n;
}

/** QEMU's qcow2_check_refcounts (with check_oflag_copied). */
async function checkRefcounts(img: Qcow2Image, fix: CheckFix): Promise<CheckResult & { snapshotCorruptions: number }> {
  const cs = img.clusterSize;
  const h = img.header;
  const fixAny = fix.leaks || fix.errors;
  const nb = Math.ceil(fileLengthOf(img) / cs);
  const order = img.refs.order;
  if (nb * Math.max(1, 2 ** order / 8) > MAX_COUNT_BYTES) throw new BlockError('EFBIG', `Image file of ${img.file.length} bytes is too large to check`);
  let t = newTally(nb, order);
  // Only a check that changes nothing may be stopped half-way.
  const report = fix.progress;
  t.progress = report && (fixAny ? (d: number, n: number) => void tryReport(report, d, n) : report);
  const snapshotCorruptions = incompleteSnapshots(img, t.messages, fix.errors && !img.readOnly);
  const calc = await calculateRefcounts(img, t, fix.errors && !img.readOnly);
  let rebuild = calc.rebuild;
  const messages = t.messages;
  const stats = { allocated: t.allocated, fragmented: t.fragmented, compressed: t.compressed };
  let leaks = 0;
  let corruptions = t.corruptions;
  let checkErrors = t.checkErrors;
  let leaksFixed = 0;
  let corruptionsFixed = t.corruptionsFixed;
  const preCompare = { corruptions, leaks, checkErrors };
  let cmp = await compareRefcounts(img, t, { leaks: false, errors: false });
  corruptions += cmp.corruptions;
  leaks += cmp.leaks;
  checkErrors += cmp.checkErrors;
  rebuild ||= cmp.rebuild;
  let highest = cmp.highest;
  if (rebuild && fix.errors && !img.readOnly) {
    const old = { corruptions, leaks };
    messages.push('Rebuilding refcount structure');
    // The old structures are not counted: the new ones may reuse their clusters, and what
    // is left of them leaks, for the leak repair below.
    try {
      await rebuildRefcountStructure(img, t);
    } catch (e) {
      if (!(e instanceof RebuildError)) throw e;
      messages.push(e.notice);
      throw new CheckFailedError('EIO', 'Input/output error', messages, [e.report]);
    }
    leaks = 0;
    t = newTally(Math.ceil(fileLengthOf(img) / cs), order);
    t.messages = messages;
    await calculateRefcounts(img, t, false);
    corruptions = t.corruptions;
    checkErrors += t.checkErrors;
    let freshLeaks = 0;
    if (fix.leaks) {
      cmp = await compareRefcounts(img, t, { leaks: true, errors: false });
      highest = cmp.highest;
      if (cmp.rebuild) messages.push('ERROR rebuilt refcount structure is still broken');
      freshLeaks = cmp.leaks;
    }
    if (corruptions < old.corruptions) corruptionsFixed += old.corruptions - corruptions;
    if (leaks < old.leaks) leaksFixed += old.leaks - leaks;
    leaks += freshLeaks;
  } else if (fixAny) {
    if (rebuild) {
      messages.push('ERROR need to rebuild refcount structures');
      throw new CheckFailedError('EIO', 'Input/output error', messages);
    }
    if ((leaks || corruptions) && !img.readOnly) {
      ({ corruptions, leaks, checkErrors } = preCompare);
      cmp = await compareRefcounts(img, t, fix);
      corruptions += cmp.corruptions;
      leaks += cmp.leaks;
      checkErrors += cmp.checkErrors;
      leaksFixed += cmp.leaksFixed;
      corruptionsFixed += cmp.corruptionsFixed;
      highest = cmp.highest;
    }
  }
  // COPIED flags of the active tables.
  const repair = !img.readOnly && (fix.errors || (fix.leaks && !checkErrors && !corruptions && !leaks));
  const copied = await checkCopied(img, t, repair);
  corruptions += copied.found - copied.fixed + snapshotCorruptions;
  corruptionsFixed += copied.fixed;
  return {
    corruptions,
    leaks,
    checkErrors,
    corruptionsFixed,
    leaksFixed,
    imageEndOffset: (highest + 1) * cs,
    totalClusters: Math.ceil(h.size / cs),
    allocatedClusters: stats.allocated,
    fragmentedClusters: stats.fragmented,
    compressedClusters: stats.compressed,
    messages,
    snapshotCorruptions,
  };
}

/**
 * QEMU's overlap check before a repair writes metadata of kind `own`: on a hit
 * the image is marked corrupt and the check stops (EIO), after `line` if given.
 */
async function refuseOverlap(img: Qcow2Image, t: Tally, offset: number, bytes: number, own: MetadataKind, line?: string): Promise<void> {
  const hit = img.meta.firstOverlap(offset, bytes, own);
  if (!hit) return;
  const err = await markCorrupt(img, `Preventing invalid write on metadata (overlaps with ${hit.kind})`, true, { offset, size: bytes });
  t.messages.push(err.message);
  if (line) t.messages.push(line);
  throw new CheckFailedError('EIO', 'Input/output error', t.messages);
}

/** Checks (and with `repair` fixes) the COPIED flags of the active L1 and L2 tables. */
async function checkCopied(img: Qcow2Image, t: Tally, repair: boolean): Promise<{ found: number; fixed: number }> {
  const cs = img.clusterSize;
  let found = 0;
  let fixed = 0;
  // Refcounts QEMU cannot read (unaligned refcount block) are skipped silently.
  const refcount = async (ci: number): Promise<number | null> => {
    const rb = Math.floor(ci / img.refs.perBlock);
    if (rb < img.refs.table.length && img.refs.table[rb]! % cs !== 0) return null;
    return img.refs.get(ci);
  };
  for (let i = 0; i < img.l1.length; i++) {
    // The table in memory (as QEMU's s->l1_table); the raw entry only for a message.
    const off = img.l1[i]!;
    if (!off) continue;
    const rc = await refcount(Math.floor(off / cs));
    if (rc === null) continue;
    if ((rc === 1) !== (img.l1Copied[i] === 1)) {
      const raw = await readPadded(img, img.header.l1TableOffset + i * 8, 8);
      const hi = new DataView(raw.buffer).getUint32(0);
      const lo = new DataView(raw.buffer).getUint32(4);
      t.messages.push(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex64(hi, lo)} refcount=${rc}`);
      found++;
      if (repair) {
        const nhi = rc === 1 ? (hi | 0x80000000) >>> 0 : (hi & 0x7fffffff) >>> 0;
        img.l1Copied[i] = rc === 1 ? 1 : 0;
        const b = new Uint8Array(8);
        new DataView(b.buffer).setUint32(0, nhi);
        new DataView(b.buffer).setUint32(4, lo);
        // QEMU's qcow2_write_l1_entry checks the write for overlaps first; a failure ends the check.
        await refuseOverlap(img, t, img.header.l1TableOffset + i * 8, 8, 'active L1 table');
        await img.file.pwritev(img.header.l1TableOffset + i * 8, 8, b);
        fixed++;
      }
    }
    if (off >= img.file.length) continue;
    const table = await readPadded(img, off, cs);
    const tdv = new DataView(table.buffer);
    const stride = img.l2EntryBytes / 4;
    let dirty = false;
    for (let j = 0; j < img.l2Entries; j++) {
      if (isZeroEntry(tdv, j * stride, stride)) continue;
      const e = readEntry(tdv, j, img.extendedL2);
      const ct = clusterType(e, img.extendedL2, img.hasDataFile);
      if (ct !== ClusterType.NORMAL && ct !== ClusterType.ZERO_ALLOC) continue;
      const host = entryOffset(e.hi, e.lo);
      const drc = img.hasDataFile ? 1 : await refcount(Math.floor(host / cs));
      if (drc === null) continue;
      if ((drc === 1) !== isCopied(e.hi)) {
        t.messages.push(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED data cluster: l2_entry=${hex64(e.hi, e.lo)} refcount=${drc}`);
        found++;
        if (repair) {
          e.hi = drc === 1 ? (e.hi | 0x80000000) >>> 0 : (e.hi & 0x7fffffff) >>> 0;
          tdv.setUint32(j * img.l2EntryBytes, e.hi);
          dirty = true;
          fixed++;
        }
      }
    }
    if (dirty) {
      await refuseOverlap(img, t, off, cs, 'active L2 table', 'ERROR: Could not write L2 table; metadata overlap check failed: Input/output error');
      img.l2cache.forgetRange(off, off + cs);
      await img.file.pwritev(off, cs, table);
    }
  }
  if (fixed) await img.file.flush();
  return { found, fixed };
}

/**
 * Writes new refcount structures (blocks + table) after the end of the file
 * describing `counts` plus themselves, then points the header at them.
 */
export async function rebuildRefcounts(img: Qcow2Image, counts: Float64Array, order: number): Promise<void> {
  const cs = img.clusterSize;
  const perBlock = (cs * 8) >> order;
  const max = maxRefcount(order);
  let n = counts.length;
  while (n > 0 && counts[n - 1] === 0) n--;
  const areaStart = Math.max(Math.ceil(img.file.length / cs), n);
  let blocks = 0;
  let tableClusters = 1;
  for (let i = 0; i < 64; i++) {
    const total = areaStart + blocks + tableClusters;
    const nb = Math.ceil(total / perBlock);
    const nt = Math.max(1, Math.ceil((nb * 8) / cs));
    if (nb === blocks && nt === tableClusters) break;
    blocks = nb;
    tableClusters = nt;
  }
  if (tableClusters * cs > 8 * 1024 * 1024) throw new BlockError('EFBIG', 'Rebuilt refcount table would be too large');
  const areaEnd = areaStart + blocks + tableClusters;
  const blockBuf = new Uint8Array(blocks * cs);
  const tableBuf = new Uint8Array(tableClusters * cs);
  const tdv = new DataView(tableBuf.buffer);
  const table = new Float64Array((tableClusters * cs) / 8);
  for (let c = 0; c < areaEnd; c++) {
    let v = c < counts.length ? counts[c]! : 0;
    if (c >= areaStart) v = 1;
    if (v === 0) continue;
    if (v > max) throw new BlockError('EIO', `Cluster ${c} has ${v} references, more than refcount width ${1 << order} can hold`);
    // The blocks are contiguous in blockBuf: entry c of the whole is entry c % perBlock of block c / perBlock.
    setRefcount(blockBuf, c, order, v);
  }
  for (let b = 0; b < blocks; b++) {
    const off = (areaStart + b) * cs;
    table[b] = off;
    tdv.setBigUint64(b * 8, BigInt(off));
  }
  const file = img.file;
  await file.pwritev(areaStart * cs, blockBuf.length, blockBuf);
  const tableOff = (areaStart + blocks) * cs;
  await file.pwritev(tableOff, tableBuf.length, tableBuf);
  await file.flush();
  const h = img.header;
  h.refcountTableOffset = tableOff;
  h.refcountTableClusters = tableClusters;
  h.refcountOrder = order;
  await img.writeHeader();
  img.resetRefcounts(table, tableOff, order);
}

/** Counts every reference, for amend (refcount width change). */
export async function countReferences(img: Qcow2Image): Promise<Float64Array> {
  const res = await countOnly(img);
  return res;
}

async function countOnly(img: Qcow2Image): Promise<Float64Array> {
  // Counted wide: the caller may store them with another refcount width (amend).
  const t = newTally(Math.ceil(fileLengthOf(img) / img.clusterSize), 6);
  await calculateRefcounts(img, t, false, false);
  if (t.corruptions > 0) throw new BlockError('EIO', 'Image has corruptions; repair it with check first');
  return (t.ref as Float64Array).slice(0, t.nb);
}
