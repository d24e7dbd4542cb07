/**
 * Metadata preallocation of a guest range (QEMU's preallocate_co: clusters
 * allocated as a write without data would allocate them), also used for falloc
 * / full with an external data file. Clusters the image owns in place (normal
 * or preallocated-zero with the COPIED flag) are kept; the others get a new
 * host cluster, and in the first and last cluster the parts outside the range
 * are copied from the current content, as for a write. Subcluster bitmaps are
 * left as they are. falloc / full without a data file: prealloc-file.ts.
 */
import { toBlockError } from '../../core/errors.js';
import type { PreallocMode } from '../../core/driver.js';
import { encryptHost } from './crypt.js';
import { ClusterType, clusterType, entryOffset, isCopied, makeEntry, readEntry, subclusterType, writeEntry, type RawEntry } from './l2-entry.js';
import { flushAll, freeEntry, writableSlice } from './cow.js';
import { readGuest } from './read.js';
import { preallocateInFile } from './prealloc-file.js';
import type { Qcow2Image } from './qcow2.js';

/** Count of trailing zero bits of a 32-bit mask (32 for 0). */
const ctz32 = (x: number) => (x === 0 ? 32 : 31 - Math.clz32(x & -x));

/** Type of the (sub)cluster holding byte `at` of a cluster, as QEMU's qcow2_get_subcluster_type. */
function typeAt(img: Qcow2Image, e: RawEntry, at: number): ClusterType {
  const ct = clusterType(e, img.extendedL2, img.hasDataFile);
  return img.extendedL2 ? subclusterType(ct, e, Math.floor(at / img.subSize)) : ct;
}

/** Whether the cluster is kept in place (QEMU's cluster_needs_new_alloc is false). */
function keptInPlace(img: Qcow2Image, e: RawEntry): boolean {
  const ct = clusterType(e, img.extendedL2, img.hasDataFile);
  return (ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC) && isCopied(e.hi);
}

/**
 * Where the copy before a range starting at byte `ws` of a cluster begins
 * (QEMU's cow_start.offset in calculate_l2_meta); `ws` when there is none.
 */
function copyStart(img: Qcow2Image, e: RawEntry, ws: number, keep: boolean): number {
  const t = typeAt(img, e, ws);
  const sc = Math.floor(ws / img.subSize);
  const scStart = sc * img.subSize;
  if (keep) return t === ClusterType.NORMAL ? ws : scStart;
  if (t === ClusterType.COMPRESSED) return 0;
  if (t === ClusterType.ZERO_PLAIN || t === ClusterType.UNALLOC) return scStart;
  return img.extendedL2 ? Math.min(sc, ctz32(e.alloc)) * img.subSize : 0;
}

/** Where the copy after a range ending at byte `we` of a cluster ends (QEMU's cow_end); `we` when there is none. */
function copyEnd(img: Qcow2Image, e: RawEntry, we: number, keep: boolean): number {
  const t = typeAt(img, e, we - 1);
  const sc = Math.floor((we - 1) / img.subSize);
  const up = Math.ceil(we / img.subSize) * img.subSize;
  const cs = img.clusterSize;
  if (keep) return t === ClusterType.NORMAL ? we : up;
  if (t === ClusterType.COMPRESSED) return cs;
  if (t === ClusterType.ZERO_PLAIN || t === ClusterType.UNALLOC) return up;
  return img.extendedL2 ? cs - Math.min(31 - sc, Math.clz32(e.alloc)) * img.subSize : cs;
}

/** Copies guest bytes [guest, guest+n) of the current content to `host` (QEMU's perform_cow). */
async function copyContent(img: Qcow2Image, guest: number, host: number, n: number): Promise<void> {
  if (n <= 0) return;
  let data: Uint8Array = new Uint8Array(n);
  await img.file.debugEvent('cow_read');
  await readGuest(img, guest, n, data);
  await img.file.debugEvent('cow_write');
  if (img.crypto) data = encryptHost(img, host, guest, data);
  await img.dataChild.pwritev(host, n, data);
}

/**
 * Allocates clusters for guest [from, to) without writing data; the image or
 * data file then grows to the host end of the range, with `mode` (off for
 * metadata). falloc / full without a data file: {@link preallocateInFile}.
 */
export async function preallocate(img: Qcow2Image, from: number, to: number, mode: PreallocMode): Promise<void> {
  if ((mode === 'falloc' || mode === 'full') && !img.hasDataFile) {
    await preallocateInFile(img, from, to, mode, false);
    return;
  }
  // QEMU maps at most INT_MAX bytes (cluster-aligned) per call, each call a write of its own.
  const chunk = Math.floor(0x7fffffff / img.clusterSize) * img.clusterSize;
  /** Host offset of the range's end (QEMU grows the file to the end of its last run). */
  let hostEnd = 0;
  for (let pos = from; pos < to; pos += chunk) hostEnd = await allocateRange(img, pos, Math.min(to, pos + chunk));
  await flushAll(img);
  if (hostEnd > img.dataChild.length) {
    await img.dataChild.truncate(hostEnd, false, mode === 'metadata' ? 'off' : mode).catch((e: unknown) => {
      throw toBlockError(e).withPrefix('Failed to resize underlying file');
    });
  }
  await img.dataChild.flush();
}

/** Allocates guest [from, to) as one write without data would; returns the host offset of `to`. */
async function allocateRange(img: Qcow2Image, from: number, to: number): Promise<number> {
  const cs = img.clusterSize;
  const ext = img.extendedL2;
  const firstC = Math.floor(from / cs);
  const endC = Math.ceil(to / cs);
  let hostEnd = 0;
  for (let ci = firstC; ci < endC; ) {
    const { sliceOff, buf, dv, i0 } = await writableSlice(img, ci);
    const n = Math.min(endC - ci, img.sliceEntries - i0);
    const olds: RawEntry[] = [];
    let fresh = 0;
    for (let k = 0; k < n; k++) {
      const e = readEntry(dv, i0 + k, ext);
      olds.push(e);
      if (!keptInPlace(img, e)) fresh++;
    }
    let next = img.hasDataFile || fresh === 0 ? 0 : await img.refs.alloc(fresh);
    const hosts: number[] = [];
    for (let k = 0; k < n; k++) {
      const e = olds[k]!;
      if (keptInPlace(img, e)) {
        hosts.push(clusterHost(img, e, ci + k));
      } else {
        hosts.push(img.hasDataFile ? (ci + k) * cs : next);
        if (!img.hasDataFile) next += cs;
      }
    }
    // The copies around the range: before it in its first cluster, after it in its last.
    if (ci === firstC && from > firstC * cs) {
      const e = olds[0]!;
      const ws = from - firstC * cs;
      const s = copyStart(img, e, ws, keptInPlace(img, e));
      await copyContent(img, firstC * cs + s, hosts[0]! + s, ws - s);
    }
    if (ci + n === endC && to < endC * cs) {
      const e = olds[n - 1]!;
      const lastStart = (endC - 1) * cs;
      const we = to - lastStart;
      const t = copyEnd(img, e, we, keptInPlace(img, e));
      await copyContent(img, to, hosts[n - 1]! + we, t - we);
    }
    for (let k = 0; k < n; k++) {
      const e = olds[k]!;
      const keep = keptInPlace(img, e);
      if (!keep && (e.hi !== 0 || e.lo !== 0)) freeEntry(img, e, clusterType(e, ext, img.hasDataFile), false);
      const ne = makeEntry(hosts[k]!, true);
      writeEntry(dv, i0 + k, ext, { hi: ne.hi, lo: ne.lo, zero: e.zero, alloc: e.alloc });
    }
    img.l2cache.setDirty(sliceOff, buf);
    hostEnd = hosts[n - 1]! + Math.min(to - (ci + n - 1) * cs, cs);
    ci += n;
  }
  return hostEnd;
}

/** Host offset of a cluster the image keeps (with a data file, a zero offset maps to the guest offset). */
function clusterHost(img: Qcow2Image, e: RawEntry, ci: number): number {
  const off = entryOffset(e.hi, e.lo);
  return off === 0 && img.hasDataFile ? ci * img.clusterSize : off;
}
