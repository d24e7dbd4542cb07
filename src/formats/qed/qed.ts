/**
 * qed: QEMU Enhanced Disk images, with QEMU 7.2's semantics (block/qed*.c).
 *
 * The guest disk is cut into clusters found through two levels of tables
 * (L1 → L2 → data cluster, each table `table_size` clusters long). New
 * clusters and tables are appended at the end of the file: a write to
 * unallocated clusters takes a run of new clusters, fills what the write
 * does not cover from the backing file (or zeros), then links them into the
 * L2 table (a new L2 table, then the L1 entry, when there was none). Without
 * a backing file the first allocating write sets the need-check flag, which
 * a clean close clears; an image opened read-write with the flag set is
 * checked and repaired first.
 *
 * - header.ts: the header, QEMU's limits and checks
 * - tables.ts: tables in memory, their writes, the L2 cache
 * - check.ts: qemu-img check (and the repair on open)
 * - create.ts: qemu-img create -f qed
 */
import type { BlockDriver, BlockStatusResult, CheckFix, CheckResult, DriverInstance, PreallocMode, ReqFlags } from '../../core/driver.js';
import { Status } from '../../core/driver.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockLimits } from '../../core/limits.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader } from '../../core/options.js';
import { BlockError, einval, toBlockError } from '../../core/errors.js';
import { ROLE_IMAGE } from '../../core/permissions.js';
import { checkQed, type QedCheckTarget } from './check.js';
import { createQed, qedCreateOptions } from './create.js';
import {
  QED_AUTOCLEAR_KNOWN,
  QED_F,
  QED_HEADER_SIZE,
  QED_MAGIC,
  QED_UNALLOCATED,
  QED_ZERO,
  bytesToClusters,
  clusterOffsetValid,
  decodeHeader,
  encodeHeader,
  imageSizeValid,
  tableOffsetValid,
  validateHeader,
  type QedGeometry,
  type QedHeader,
} from './header.js';
import { FifoLock } from './lock.js';
import { L2Cache, QedTable } from './tables.js';

/** What a lookup found for a run of clusters (QEMU's QED_CLUSTER_*). */
const enum Found {
  DATA,
  ZERO,
  /** The L2 table has no cluster there. */
  NO_CLUSTER,
  /** The L1 table has no L2 table there. */
  NO_TABLE,
}

interface Lookup {
  found: Found;
  /** Host offset of the run's first cluster (FOUND only). */
  host: number;
  /** Bytes from the position the answer holds for. */
  len: number;
  /** The L2 table (when there is one) and its offset. */
  l2?: QedTable;
  l2Offset: number;
}

/** PATH_MAX-sized buffer of QEMU's backing file name: a name must be shorter. */
const BACKING_NAME_MAX = 4096;
/** INT_MAX: QEMU's largest zero write. */
const INT_MAX = 0x7fffffff;

/** An open QED node. */
export class QedImage implements DriverInstance, QedCheckTarget {
  private readonly lock = new FifoLock();
  readonly geo: QedGeometry;
  readonly headerSize: number;
  readonly l1Offset: number;
  imageSize: number;
  fileSize: number;
  private readonly cache: L2Cache;
  private readonly messages: string[] = [];

  constructor(
    private readonly node: BlockNode,
    private readonly file: BdrvChild,
    private header: QedHeader,
    geo: QedGeometry,
    fileLength: number,
    readonly l1: QedTable,
    backingName: string | undefined,
  ) {
    // QEMU names the backing format only when the image says it is raw (not to be probed).
    const raw = (header.features & QED_F.BACKING_FORMAT_NO_PROBE) !== 0n;
    this.currentBacking = backingName === undefined ? undefined : { filename: backingName, ...(raw ? { format: 'raw' } : {}) };
    this.geo = geo;
    this.headerSize = header.headerSize;
    this.l1Offset = Number(header.l1TableOffset);
    this.imageSize = Number(header.imageSize);
    this.fileSize = fileLength - (fileLength % geo.clusterSize);
    this.cache = new L2Cache(file, geo.tableBytes);
  }

  getLength(): number {
    return this.imageSize;
  }

  private get cs(): number {
    return this.geo.clusterSize;
  }

  /** Table offsets a lookup may follow (QEMU's qed_check_table_offset against the current file size). */
  private tableValid(off: number): boolean {
    return tableOffsetValid(off, this.geo, this.headerSize, this.fileSize);
  }

  loadL2(offset: number): Promise<QedTable> {
    return this.cache.get(offset);
  }

  /**
   * QEMU's qed_find_cluster: what holds `pos`, and for how many bytes (at
   * most `len`, never past the L2 table's span) the answer is the same:
   * contiguous data clusters, zero clusters, or unallocated ones.
   */
  private async find(pos: number, len: number): Promise<Lookup> {
    const { l2Span, tableEntries } = this.geo;
    const cs = this.cs;
    const l1Index = Math.floor(pos / l2Span);
    len = Math.min(len, (l1Index + 1) * l2Span - pos);
    const l2Offset = this.l1.get(l1Index);
    if (l2Offset === QED_UNALLOCATED) return { found: Found.NO_TABLE, host: 0, len, l2Offset };
    if (!this.tableValid(l2Offset)) {
      throw new BlockError('EINVAL', 'Invalid argument', { offset: pos }, { detail: `L1 entry ${l1Index} names an invalid L2 table offset 0x${l2Offset.toString(16)}` });
    }
    const l2 = this.cache.peek(l2Offset) ?? (await this.cache.get(l2Offset));
    const inCluster = pos % cs;
    const index = Math.floor(pos / cs) % tableEntries;
    const want = bytesToClusters(inCluster + len, cs);
    const end = Math.min(index + want, tableEntries);
    const first = l2.get(index);
    let i = index + 1;
    if (first === QED_UNALLOCATED || first === QED_ZERO) {
      while (i < end && l2.get(i) === first) i++;
    } else {
      let last = first;
      while (i < end && l2.get(i) === last + cs) {
        last += cs;
        i++;
      }
    }
    len = Math.min(len, (i - index) * cs - inCluster);
    if (first === QED_UNALLOCATED) return { found: Found.NO_CLUSTER, host: 0, len, l2, l2Offset };
    if (first === QED_ZERO) return { found: Found.ZERO, host: 0, len, l2, l2Offset };
    if (!clusterOffsetValid(first, cs, this.geo.headerBytes, this.fileSize)) {
      throw new BlockError('EINVAL', 'Invalid argument', { offset: pos }, { detail: `L2 entry ${index} of the table at 0x${l2Offset.toString(16)} names an invalid cluster offset 0x${first.toString(16)}` });
    }
    return { found: Found.DATA, host: first, len, l2, l2Offset };
  }

  /** Reads the backing file's bytes (zeros past its end, or without one). */
  private async readBacking(pos: number, n: number, out: Uint8Array): Promise<void> {
    const b = this.node.backing;
    const blen = b ? b.node.length : 0;
    const k = !b || pos >= blen ? 0 : Math.min(n, blen - pos);
    if (k > 0) await b!.preadv(pos, k, out.subarray(0, k));
    if (k < n) out.fill(0, k, n);
  }

  /** Reads the file (zeros past its end: a run of clusters may reach past it). */
  private async readFile(host: number, n: number, out: Uint8Array): Promise<void> {
    const flen = this.file.length;
    const k = host >= flen ? 0 : Math.min(n, flen - host);
    if (k > 0) await this.file.preadv(host, k, out.subarray(0, k));
    if (k < n) out.fill(0, k, n);
  }

  async preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes) {
      const pos = offset + done;
      const wait = this.lock.acquire();
      if (wait) await wait;
      let at: Lookup;
      try {
        at = await this.find(pos, bytes - done);
      } finally {
        this.lock.release();
      }
      const out = buf.subarray(done, done + at.len);
      if (at.found === Found.DATA) await this.readFile(at.host + (pos % this.cs), at.len, out);
      else if (at.found === Found.ZERO) out.fill(0);
      else await this.readBacking(pos, at.len, out);
      done += at.len;
    }
  }

  pwritev(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    return this.lock.run(() => this.write(offset, bytes, buf));
  }

  /** Zero writes of whole clusters become zero-cluster entries; others fall back to writing zeros. */
  async pwriteZeroes(offset: number, bytes: number): Promise<void> {
    if (offset % this.cs || bytes % this.cs) {
      throw new BlockError('ENOTSUP', 'Operation not supported', { offset }, { detail: 'zero writes of whole clusters only' });
    }
    await this.lock.run(() => this.write(offset, bytes, undefined));
  }

  /** QEMU's request loop for writes: in place where clusters exist, allocating elsewhere. `buf` undefined: zeros. */
  private async write(offset: number, bytes: number, buf: Uint8Array | undefined): Promise<void> {
    let done = 0;
    while (done < bytes) {
      const pos = offset + done;
      const at = await this.find(pos, bytes - done);
      const piece = buf?.subarray(done, done + at.len);
      if (at.found === Found.DATA) {
        const data = piece ?? new Uint8Array(at.len);
        await this.file.pwritev(at.host + (pos % this.cs), at.len, data);
      } else {
        await this.allocate(pos, at, piece);
      }
      done += at.len;
    }
  }

  /** QEMU's qed_aio_write_alloc: new clusters (or zero entries) for the run `at` from `pos`. */
  private async allocate(pos: number, at: Lookup, data: Uint8Array | undefined): Promise<void> {
    const cs = this.cs;
    const inCluster = pos % cs;
    const n = bytesToClusters(inCluster + at.len, cs);
    let cluster: number;
    if (data === undefined) {
      if (at.found === Found.ZERO) return;
      cluster = QED_ZERO;
    } else {
      cluster = this.fileSize;
      this.fileSize += n * cs;
    }
    // The flush before the L2 update keeps an image with a backing file consistent.
    if (!this.node.backing && !(this.header.features & QED_F.NEED_CHECK)) {
      this.header.features |= QED_F.NEED_CHECK;
      await this.writeHeader();
    }
    if (data !== undefined) {
      const tmp = new Uint8Array(cs);
      const front = tmp.subarray(0, inCluster);
      await this.fill(pos - inCluster, front, cluster);
      const tailStart = pos + at.len;
      const tail = (cs - (tailStart % cs)) % cs;
      await this.fill(tailStart, tmp.subarray(0, tail), cluster + inCluster + at.len);
      await this.file.pwritev(cluster + inCluster, data.length, data);
      if (this.node.backing) await this.file.flush();
    }
    await this.linkClusters(pos, at, n, cluster);
  }

  /** Copies the backing file's bytes at guest `pos` (zeros without one) into the file at `host`. */
  private async fill(pos: number, buf: Uint8Array, host: number): Promise<void> {
    if (buf.length === 0) return;
    await this.readBacking(pos, buf.length, buf);
    await this.file.pwritev(host, buf.length, buf);
  }

  /** QEMU's qed_aio_write_l2_update: `n` entries from `pos` point at `cluster` on (or are all `cluster` for zero / unallocated). */
  private async linkClusters(pos: number, at: Lookup, n: number, cluster: number): Promise<void> {
    const cs = this.cs;
    const { tableEntries, tableBytes, tableSize } = this.geo;
    const index = Math.floor(pos / cs) % tableEntries;
    // QEMU's count may run past the table's end (its formula quirk); no entry beyond the table exists.
    const count = Math.min(n, tableEntries - index);
    const fill = (t: QedTable): void => {
      for (let i = 0, c = cluster; i < count; i++) {
        t.set(index + i, c);
        if (c !== QED_UNALLOCATED && c !== QED_ZERO) c += cs;
      }
    };
    if (at.found === Found.NO_TABLE) {
      const l2Offset = this.fileSize;
      this.fileSize += tableSize * cs;
      const table = new QedTable(new Uint8Array(tableBytes));
      fill(table);
      await table.write(this.file, l2Offset, 0, tableEntries);
      await this.file.flush();
      const l1Index = Math.floor(pos / this.geo.l2Span);
      this.l1.set(l1Index, l2Offset);
      try {
        await this.writeL1(l1Index, 1);
      } finally {
        this.cache.put(l2Offset, table);
      }
      return;
    }
    fill(at.l2!);
    await at.l2!.write(this.file, at.l2Offset, index, count);
  }

  writeL1(index: number, n: number): Promise<void> {
    return this.l1.write(this.file, this.l1Offset, index, n);
  }

  writeL2(offset: number, table: QedTable, index: number, n: number): Promise<void> {
    return table.write(this.file, offset, index, n);
  }

  /** Rewrites the 64 header bytes in place (the backing file name after them stays). */
  private async writeHeader(): Promise<void> {
    const b = encodeHeader(this.header);
    await this.file.pwritev(0, b.length, b);
  }

  async markClean(): Promise<void> {
    if (!(this.header.features & QED_F.NEED_CHECK)) return;
    await this.file.flush();
    this.header.features &= ~QED_F.NEED_CHECK;
    await this.writeHeader();
  }

  /**
   * What QEMU's need-check timer does when it fires: the file flushed, the
   * flag cleared and the header written (on a read-only file the write fails
   * and is ignored, as QEMU ignores it: the flag is gone in memory only).
   */
  async needCheckTimer(): Promise<void> {
    if (!(this.header.features & QED_F.NEED_CHECK)) return;
    this.header.features &= ~QED_F.NEED_CHECK;
    if (this.node.readOnly) return;
    await this.file.flush();
    await this.writeHeader();
  }

  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const at = await this.lock.run(() => this.find(offset, bytes));
    switch (at.found) {
      case Found.DATA:
        return { status: Status.DATA | Status.OFFSET_VALID, pnum: at.len, map: at.host + (offset % this.cs), file: this.file.node };
      case Found.ZERO:
        return { status: Status.ZERO, pnum: at.len };
      default:
        return { status: 0, pnum: at.len };
    }
  }

  async check(fix: CheckFix): Promise<CheckResult> {
    return this.lock.run(() => checkQed(this, fix.errors || fix.leaks));
  }

  /** Runs the repair QEMU runs when a read-write open finds the need-check flag. */
  async repairOnOpen(): Promise<void> {
    try {
      await checkQed(this, true);
    } catch (e) {
      throw new BlockError(toBlockError(e).code, 'Image corrupted', {}, { cause: e, detail: toBlockError(e).message });
    }
  }

  async truncate(offset: number, _exact: boolean, prealloc: PreallocMode): Promise<void> {
    if (prealloc !== 'off') throw new BlockError('ENOTSUP', `Unsupported preallocation mode '${prealloc}'`);
    if (!imageSizeValid(BigInt(offset), this.cs, this.geo.tableSize)) throw einval('Invalid image size specified', {}, `size ${offset}`);
    if (offset < this.imageSize) throw new BlockError('ENOTSUP', 'Shrinking images is currently not supported', {}, { detail: `${offset} < ${this.imageSize}` });
    await this.lock.run(async () => {
      const old = this.header.imageSize;
      this.header.imageSize = BigInt(offset);
      try {
        await this.writeHeader();
      } catch (e) {
        this.header.imageSize = old;
        throw toBlockError(e).withPrefix('Failed to update the image size');
      }
      this.imageSize = offset;
    });
  }

  async changeBackingFile(filename: string | undefined, format: string | undefined): Promise<void> {
    if (filename !== undefined && this.header.compatFeatures !== 0n) {
      throw new BlockError('ENOTSUP', 'Operation not supported', {}, { detail: `unknown compat features 0x${this.header.compatFeatures.toString(16)}` });
    }
    const name = filename === undefined ? new Uint8Array(0) : new TextEncoder().encode(filename);
    const h: QedHeader = { ...this.header };
    h.features &= ~(QED_F.BACKING_FILE | QED_F.BACKING_FORMAT_NO_PROBE);
    if (filename !== undefined) {
      h.features |= QED_F.BACKING_FILE;
      if (format === 'raw') h.features |= QED_F.BACKING_FORMAT_NO_PROBE;
    }
    h.backingNameOffset = QED_HEADER_SIZE;
    h.backingNameSize = name.length;
    if (QED_HEADER_SIZE + name.length > this.geo.headerBytes) {
      throw new BlockError('ENOSPC', 'No space left on device', {}, { detail: `a ${name.length}-byte backing file name does not fit the ${this.geo.headerBytes}-byte header` });
    }
    const b = new Uint8Array(QED_HEADER_SIZE + name.length);
    encodeHeader(h, b);
    b.set(name, QED_HEADER_SIZE);
    await this.file.pwritev(0, b.length, b);
    await this.file.flush();
    this.header = h;
    this.currentBacking = filename === undefined ? undefined : { filename, ...(format === 'raw' ? { format } : {}) };
  }

  private currentBacking: { filename: string; format?: string } | undefined;

  backingFile(): { filename: string; format?: string } | undefined {
    return this.currentBacking;
  }

  getInfo(): { clusterSize: number; dirty: boolean } {
    return { clusterSize: this.cs, dirty: (this.header.features & QED_F.NEED_CHECK) !== 0n };
  }

  refreshLimits(limits: BlockLimits): void {
    limits.pwriteZeroesAlignment = this.cs;
    limits.maxPwriteZeroes = INT_MAX - (INT_MAX % this.cs);
  }

  hasZeroInit(): boolean {
    return true;
  }

  openMessages(): readonly string[] {
    return this.messages;
  }

  /** A clean close: data flushed, then the need-check flag cleared. */
  async close(): Promise<void> {
    if (this.node.readOnly) return;
    await this.lock.run(async () => {
      await this.file.flush();
      if (this.header.features & QED_F.NEED_CHECK) {
        this.header.features &= ~QED_F.NEED_CHECK;
        await this.writeHeader();
      }
    });
  }
}

/** Reads the backing file name the header points at (QEMU's checks and messages). */
async function readBackingName(file: BdrvChild, h: QedHeader, geo: QedGeometry): Promise<string | undefined> {
  if (!(h.features & QED_F.BACKING_FILE)) return undefined;
  if (h.backingNameOffset + h.backingNameSize > geo.headerBytes) {
    throw einval('QED backing filename offset is invalid', {}, `${h.backingNameSize} bytes at ${h.backingNameOffset}, header of ${geo.headerBytes}`);
  }
  if (h.backingNameSize >= BACKING_NAME_MAX) throw einval('Failed to read backing filename', {}, `${h.backingNameSize} bytes`);
  const b = new Uint8Array(h.backingNameSize);
  const flen = file.length;
  const k = h.backingNameOffset >= flen ? 0 : Math.min(b.length, flen - h.backingNameOffset);
  if (k > 0) await file.preadv(h.backingNameOffset, k, b.subarray(0, k));
  // A C string: it ends at the first NUL.
  const nul = b.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
}

async function openQed(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
  // Internal (QEMU's BDRV_O_CHECK): qemu-img check opens without the repair on open.
  const forCheck = options.bool('x-check', false);
  const hb = new Uint8Array(QED_HEADER_SIZE);
  const flen = file.length;
  if (flen > 0) await file.preadv(0, Math.min(QED_HEADER_SIZE, flen), hb.subarray(0, Math.min(QED_HEADER_SIZE, flen)));
  const header = decodeHeader(hb);
  const geo = validateHeader(header, flen);
  const backingName = await readBackingName(file, header, geo);
  if (header.autoclearFeatures & ~QED_AUTOCLEAR_KNOWN && !node.readOnly) {
    // Unknown autoclear bits are dropped (an older program's mark that the feature's data is stale).
    header.autoclearFeatures &= QED_AUTOCLEAR_KNOWN;
    const b = encodeHeader(header);
    await file.pwritev(0, b.length, b).catch((e: unknown) => {
      throw toBlockError(e).withPrefix('Failed to update header');
    });
    await file.flush();
  }
  let l1: QedTable;
  try {
    l1 = await QedTable.read(file, Number(header.l1TableOffset), geo.tableBytes);
  } catch (e) {
    throw new BlockError(toBlockError(e).code, 'Failed to read L1 table', {}, { cause: e });
  }
  const img = new QedImage(node, file, header, geo, flen, l1, backingName);
  if (!forCheck && header.features & QED_F.NEED_CHECK && !node.readOnly) await img.repairOnOpen();
  // QEMU's need-check timer fires at the first drain after open (qemu-img drains before
  // it looks at the image): the flag goes, on disk when the file is writable.
  await img.needCheckTimer();
  return img;
}

export const qedDriver = {
  name: 'qed',
  kind: 'format',
  supportsBacking: true,
  createOptions: qedCreateOptions,
  /** QEMU's bdrv_qed_probe: a whole header with the magic. */
  probe(header: Uint8Array): number {
    if (header.length < QED_HEADER_SIZE) return 0;
    const magic = (header[0]! | (header[1]! << 8) | (header[2]! << 16) | (header[3]! << 24)) >>> 0;
    return magic === QED_MAGIC ? 100 : 0;
  },
  open: openQed,
  create: createQed,
} satisfies BlockDriver;
