/**
 * qemu-img check for qcow2: recount every reference (header, L1/L2 tables,
 * data and compressed clusters, snapshots, refcount structures, bitmaps),
 * compare with the stored refcounts, check the COPIED flags, and repair
 * leaks (decrement) or errors (rebuild the refcount structures), as QEMU does.
 */
import type { CheckFix, CheckResult } from '../../core/driver.js';
import { BlockError } from '../../core/errors.js';
import { BMT_OFFSET_MASK, INCOMPAT } from './constants.js';
import { T, clusterType, compressedInfo, entryOffset, isCopied, makeEntry, readEntry, subclusterType } from './mapping.js';
import type { Qcow2Image } from './qcow2.js';
import { compareBlockCounts, getRefcount, initRefcountWasm, setRefcount, maxRefcount } from './refcount.js';

const hex = (n: number) => n.toString(16);
/** A 64-bit entry as PRIx64 prints it. */
const hex64 = (hi: number, lo: number) => (hi ? hi.toString(16) + (lo >>> 0).toString(16).padStart(8, '0') : (lo >>> 0).toString(16));

interface Tally {
  /** Progress reports of the L1 walk (see CheckFix.progress). */
  progress?: ((done: number, total: number) => void) | undefined;
  ref: Float64Array;
  corruptions: number;
  checkErrors: number;
  messages: string[];
  allocated: number;
  fragmented: number;
  compressed: number;
}

/**
 * A check that could not complete (QEMU returns an error from bdrv_check):
 * `messages` are the lines reported before it stopped, which qemu-img prints
 * ahead of "Check failed: ...".
 */
export class CheckFailedError extends BlockError {
  constructor(
    code: 'EIO',
    message: string,
    readonly messages: string[],
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
  const res = await checkRefcounts(img, fix);
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

/** The counted references of every host cluster (QEMU's calculate_refcounts). */
async function calculateRefcounts(img: Qcow2Image, t: Tally, inc: (offset: number, bytes: number) => void): Promise<{ validBlock: Uint8Array; rebuild: boolean }> {
  const cs = img.cs;
  const file = img.file;
  const h = img.header;
  inc(0, cs);
  // Active L1 and its tables (with allocation statistics).
  await walkL1(img, t, inc, h.l1TableOffset, img.l1.length, true);
  for (const s of img.snapshots) await walkL1(img, t, inc, s.l1TableOffset, s.l1Size, false);
  if (h.nbSnapshots > 0) inc(h.snapshotsOffset, img.snapshotTableBytes);
  // Bitmaps.
  if (h.bitmaps) {
    inc(h.bitmaps.directoryOffset, h.bitmaps.directorySize);
    for (const b of img.bitmaps) {
      inc(b.tableOffset, b.tableSize * 8);
      if (b.tableSize === 0 || b.tableOffset + b.tableSize * 8 > file.length) continue;
      const raw = new Uint8Array(b.tableSize * 8);
      await file.preadv(b.tableOffset, raw.length, raw);
      const dv = new DataView(raw.buffer);
      for (let i = 0; i < b.tableSize; i++) {
        const off = Number(dv.getBigUint64(i * 8) & BMT_OFFSET_MASK);
        if (off) inc(off, cs);
      }
    }
  }
  // Refcount table and blocks.
  let rebuild = false;
  inc(h.refcountTableOffset, h.refcountTableClusters * cs);
  const table = img.refs.table;
  const validBlock = new Uint8Array(table.length);
  for (let i = 0; i < table.length; i++) {
    const off = table[i]!;
    if (!off) continue;
    if (off % cs !== 0) {
      t.messages.push(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
      t.corruptions++;
      rebuild = true;
      continue;
    }
    if (off >= file.length) {
      t.messages.push(`ERROR refcount block ${i} is outside image`);
      t.corruptions++;
      rebuild = true;
      continue;
    }
    validBlock[i] = 1;
    inc(off, cs);
  }
  return { validBlock, rebuild };
}

/** Reports progress to a listener whose errors must not stop a repair. */
function tryReport(report: (done: number, total: number) => void, done: number, total: number): void {
  try {
    report(done, total);
  } catch {
    // A repair runs to its end.
  }
}

function newTally(nb: number): Tally {
  return { ref: new Float64Array(nb), corruptions: 0, checkErrors: 0, messages: [], allocated: 0, fragmented: 0, compressed: 0 };
}

function counter(t: Tally, cs: number, nb: number): (offset: number, bytes: number) => void {
  return (offset: number, bytes: number) => {
    if (bytes <= 0) return;
    const a = Math.floor(offset / cs);
    const b = Math.floor((offset + bytes - 1) / cs);
    for (let c = a; c <= b; c++) {
      if (c >= nb) {
        t.messages.push(
          `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(c * cs)} size 0x${hex(cs)}`,
        );
        t.corruptions++;
        return;
      }
      t.ref[c]!++;
    }
  };
}

interface Compared {
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
async function compareRefcounts(img: Qcow2Image, t: Tally, validBlock: Uint8Array, fix: CheckFix): Promise<Compared> {
  const out: Compared = { leaks: 0, corruptions: 0, leaksFixed: 0, corruptionsFixed: 0, rebuild: false, highest: -1 };
  const refs = img.refs;
  const perBlock = refs.perBlock;
  const order = refs.order;
  const nb = t.ref.length;
  const mismatches = new Uint32Array(1024);
  // In a browser the module may still be loading: the long comparisons wait for it.
  await initRefcountWasm();
  let updated = false;
  const mismatch = async (c: number, stored: number): Promise<void> => {
    const want = t.ref[c]!;
    let fixing = false;
    if (stored === 0) out.rebuild = true;
    else if (stored > want && fix.leaks) fixing = true;
    else if (stored < want && fix.errors) fixing = true;
    const kind = fixing ? 'Repairing' : stored < want ? 'ERROR' : 'Leaked';
    t.messages.push(`${kind} cluster ${c} refcount=${stored} reference=${want}`);
    if (fixing && !img.readOnly) {
      await refs.update(c, want - stored);
      updated = true;
      if (stored > want) out.leaksFixed++;
      else out.corruptionsFixed++;
      return;
    }
    if (stored < want) out.corruptions++;
    else out.leaks++;
  };
  // A refcount block at a time: the stored entries are compared with the counts in bulk
  // (WASM for long ranges, refcount.ts) and only the clusters that differ are looked at.
  for (let rb = 0; rb * perBlock < nb; rb++) {
    const base = rb * perBlock;
    const end = Math.min(nb, base + perBlock);
    const buf = rb < validBlock.length && validBlock[rb] ? await refs.loadBlock(rb) : null;
    if (buf === null) {
      // No (usable) block: every counted reference here is a mismatch against 0.
      for (let c = base; c < end; c++) {
        if (t.ref[c] === 0) continue;
        out.highest = c;
        await mismatch(c, 0);
      }
      continue;
    }
    for (let from = base; from < end; ) {
      const scan = compareBlockCounts(buf, order, from - base, end - base, t.ref.subarray(from, end), mismatches);
      if (scan.lastUsed >= 0) out.highest = Math.max(out.highest, base + scan.lastUsed);
      // Stored values are read before any repair changes the block.
      const stored = Array.from(mismatches.subarray(0, scan.mismatches), (i) => getRefcount(buf, i, order));
      for (let k = 0; k < scan.mismatches; k++) await mismatch(base + mismatches[k]!, stored[k]!);
      from = base + scan.end;
    }
  }
  if (updated) {
    await refs.flushCache();
    await img.file.flush();
  }
  return out;
}

/** QEMU's qcow2_check_refcounts (with check_oflag_copied). */
async function checkRefcounts(img: Qcow2Image, fix: CheckFix): Promise<CheckResult> {
  const cs = img.cs;
  const h = img.header;
  const fixAny = fix.leaks || fix.errors;
  let nb = Math.ceil(img.file.length / cs);
  if (nb > 1 << 28) throw new BlockError('EFBIG', `Image file of ${img.file.length} bytes is too large to check`);
  let t = newTally(nb);
  // Only a check that changes nothing may be stopped half-way.
  const report = fix.progress;
  t.progress = report && (fixAny ? (d: number, n: number) => void tryReport(report, d, n) : report);
  let calc = await calculateRefcounts(img, t, counter(t, cs, nb));
  let rebuild = calc.rebuild;
  const messages = t.messages;
  const stats = { allocated: t.allocated, fragmented: t.fragmented, compressed: t.compressed };
  let leaks = 0;
  let corruptions = t.corruptions;
  let checkErrors = t.checkErrors;
  let leaksFixed = 0;
  let corruptionsFixed = 0;
  const preCompare = { corruptions, leaks };
  let cmp = await compareRefcounts(img, t, calc.validBlock, { leaks: false, errors: false });
  corruptions += cmp.corruptions;
  leaks += cmp.leaks;
  rebuild ||= cmp.rebuild;
  let highest = cmp.highest;
  if (rebuild && fix.errors && !img.readOnly) {
    const old = { corruptions, leaks };
    messages.push('Rebuilding refcount structure');
    // The new structures count the old ones too; those are leaked afterwards.
    await rebuildRefcounts(img, t.ref, img.refs.order);
    leaks = 0;
    nb = Math.ceil(img.file.length / cs);
    t = newTally(nb);
    t.messages = messages;
    calc = await calculateRefcounts(img, t, counter(t, cs, nb));
    corruptions = t.corruptions;
    checkErrors += t.checkErrors;
    let freshLeaks = 0;
    if (fix.leaks) {
      cmp = await compareRefcounts(img, t, calc.validBlock, { leaks: true, errors: false });
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
      corruptions = preCompare.corruptions;
      leaks = preCompare.leaks;
      cmp = await compareRefcounts(img, t, calc.validBlock, fix);
      corruptions += cmp.corruptions;
      leaks += cmp.leaks;
      leaksFixed += cmp.leaksFixed;
      corruptionsFixed += cmp.corruptionsFixed;
      highest = cmp.highest;
    }
  }
  // COPIED flags of the active tables.
  const repair = !img.readOnly && (fix.errors || (fix.leaks && !checkErrors && !corruptions && !leaks));
  const copied = await checkCopied(img, t, repair);
  corruptions += copied.found - copied.fixed;
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
  };
}

async function walkL1(
  img: Qcow2Image,
  t: Tally,
  inc: (offset: number, bytes: number) => void,
  l1Offset: number,
  l1Size: number,
  active: boolean,
): Promise<void> {
  const cs = img.cs;
  const file = img.file;
  if (l1Size === 0) return;
  inc(l1Offset, l1Size * 8);
  if (l1Offset + l1Size * 8 > file.length) return;
  const raw = new Uint8Array(l1Size * 8);
  await file.preadv(l1Offset, raw.length, raw);
  const dv = new DataView(raw.buffer);
  const table = new Uint8Array(cs);
  const tdv = new DataView(table.buffer);
  let nextContiguous = 0;
  for (let i = 0; i < l1Size; i++) {
    const off = entryOffset(dv.getUint32(i * 8), dv.getUint32(i * 8 + 4));
    if (!off) continue;
    if (off % cs !== 0) {
      t.messages.push(`ERROR l2_offset=${hex(off)}: Table is not cluster aligned; L1 entry corrupted`);
      t.corruptions++;
      continue;
    }
    inc(off, cs);
    if (off + cs > file.length) {
      t.checkErrors += 0;
      continue;
    }
    await file.preadv(off, cs, table);
    if (active && (i & 15) === 15) t.progress?.(i + 1, l1Size);
    for (let j = 0; j < img.l2Entries; j++) {
      const e = readEntry(tdv, j, img.ext);
      const ct = clusterType(e, img.ext, img.hasDataFile);
      if (ct === T.COMPRESSED) {
        if (img.hasDataFile) {
          t.messages.push(`ERROR: compressed cluster ${j} in L2 table 0x${hex(off)} with an external data file`);
          t.corruptions++;
          continue;
        }
        const c = compressedInfo(e, img.cbits);
        inc(c.offset & ~511, c.sectors * 512);
        if (active) {
          t.allocated++;
          t.compressed++;
          t.fragmented++;
        }
        continue;
      }
      if (img.ext) {
        let bad = false;
        for (let s = 0; s < 32; s++) if (subclusterType(ct, e, s) === T.INVALID) bad = true;
        if (bad) {
          t.messages.push(`ERROR: Invalid cluster entry found (L2 offset: 0x${hex(off)}, L2 index: 0x${hex(j)})`);
          t.corruptions++;
          continue;
        }
      }
      if (ct === T.NORMAL || ct === T.ZERO_ALLOC) {
        const host = entryOffset(e.hi, e.lo);
        if (host % cs !== 0) {
          t.messages.push(`ERROR offset=${hex(host)}: Cluster is not properly aligned; L2 entry corrupted.`);
          t.corruptions++;
          continue;
        }
        if (active) {
          t.allocated++;
          if (nextContiguous && host !== nextContiguous) t.fragmented++;
          nextContiguous = host + cs;
        }
        if (!img.hasDataFile) inc(host, cs);
      }
    }
  }
}

/** Checks (and with `repair` fixes) the COPIED flags of the active L1 and L2 tables. */
async function checkCopied(img: Qcow2Image, t: Tally, repair: boolean): Promise<{ found: number; fixed: number }> {
  const cs = img.cs;
  let found = 0;
  let fixed = 0;
  const table = new Uint8Array(cs);
  const tdv = new DataView(table.buffer);
  for (let i = 0; i < img.l1.length; i++) {
    const off = img.l1[i]!;
    if (!off || off % cs !== 0 || off + cs > img.file.length) continue;
    const rc = await img.refs.get(off / cs);
    const want = rc === 1;
    if (want !== (img.l1Copied[i] === 1)) {
      const entry = makeEntry(off, img.l1Copied[i] === 1);
      t.messages.push(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex64(entry.hi, entry.lo)} refcount=${rc}`);
      found++;
      if (repair) {
        img.l1Copied[i] = want ? 1 : 0;
        const b = new Uint8Array(8);
        const e = makeEntry(off, want);
        new DataView(b.buffer).setUint32(0, e.hi);
        new DataView(b.buffer).setUint32(4, e.lo);
        await img.file.pwritev(img.header.l1TableOffset + i * 8, 8, b);
        fixed++;
      }
    }
    if (img.hasDataFile) continue;
    await img.file.preadv(off, cs, table);
    let dirty = false;
    for (let j = 0; j < img.l2Entries; j++) {
      const e = readEntry(tdv, j, img.ext);
      const ct = clusterType(e, img.ext, false);
      if (ct !== T.NORMAL && ct !== T.ZERO_ALLOC) continue;
      const host = entryOffset(e.hi, e.lo);
      if (host % cs !== 0) continue;
      const drc = await img.refs.get(host / cs);
      if ((drc === 1) !== isCopied(e.hi)) {
        t.messages.push(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED data cluster: l2_entry=${hex64(e.hi, e.lo)} refcount=${drc}`);
        found++;
        if (repair) {
          e.hi = drc === 1 ? (e.hi | 0x80000000) >>> 0 : (e.hi & 0x7fffffff) >>> 0;
          tdv.setUint32(j * img.l2esz, e.hi);
          dirty = true;
          fixed++;
        }
      }
    }
    if (dirty) {
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
  const cs = img.cs;
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
  // Reuse the check walk without comparing.
  const cs = img.cs;
  const nb = Math.ceil(img.file.length / cs);
  const t: Tally = { ref: new Float64Array(nb), corruptions: 0, checkErrors: 0, messages: [], allocated: 0, fragmented: 0, compressed: 0 };
  const inc = (offset: number, bytes: number) => {
    const a = Math.floor(offset / cs);
    const b = Math.floor((offset + bytes - 1) / cs);
    for (let c = a; c <= b && c < nb; c++) t.ref[c]!++;
  };
  const h = img.header;
  inc(0, cs);
  await walkL1(img, t, inc, h.l1TableOffset, img.l1.length, true);
  for (const s of img.snapshots) await walkL1(img, t, inc, s.l1TableOffset, s.l1Size, false);
  if (h.nbSnapshots > 0) inc(h.snapshotsOffset, img.snapshotTableBytes);
  if (h.bitmaps) {
    inc(h.bitmaps.directoryOffset, h.bitmaps.directorySize);
    for (const b of img.bitmaps) {
      inc(b.tableOffset, b.tableSize * 8);
      const raw = new Uint8Array(b.tableSize * 8);
      await img.file.preadv(b.tableOffset, raw.length, raw);
      const dv = new DataView(raw.buffer);
      for (let i = 0; i < b.tableSize; i++) {
        const off = Number(dv.getBigUint64(i * 8) & BMT_OFFSET_MASK);
        if (off) inc(off, cs);
      }
    }
  }
  if (t.corruptions > 0) throw new BlockError('EIO', 'Image has corruptions; repair it with check first');
  return t.ref;
}
