/**
 * qcow: QEMU's first copy-on-write format (version 1), with QEMU 7.2's
 * semantics (block/qcow.c).
 *
 * Guest clusters (512 bytes to 64 KiB) are found through an L1 table and L2
 * tables; an L2 entry is a cluster's offset, 0 (unallocated: read from the
 * backing file, or zeros), or a compressed cluster (raw deflate, 4 KiB
 * window). New tables and clusters go at the end of the file (aligned to a
 * cluster; compressed data is packed unaligned). A new cluster is not filled
 * from the backing file: images with one use 512-byte clusters so nothing
 * is lost. Data may be encrypted with legacy AES (crypt.ts).
 *
 * - header.ts: the header, its checks, table entries
 * - crypt.ts: the AES cipher and its open options
 * - create.ts: qemu-img create -f qcow
 */
import type { BlockDriver, BlockStatusResult, DriverInstance, ReqFlags } from '../../core/driver.js';
import { ReqFlag, Status } from '../../core/driver.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockLimits } from '../../core/limits.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader } from '../../core/options.js';
import { BlockError, einval, toBlockError } from '../../core/errors.js';
import { ROLE_IMAGE } from '../../core/permissions.js';
import { getClusterCodec, type ClusterCodec } from '../../wasm/codec.js';
import { FifoLock } from '../qed/lock.js';
import { createQcow, qcowCreateOptions } from './create.js';
import { openCipher, type QcowCipher } from './crypt.js';
import {
  QCOW_BACKING_NAME_MAX,
  QCOW_HEADER_SIZE,
  QCOW_MAGIC,
  QCOW_VERSION,
  compressedEntry,
  decodeHeader,
  geometry,
  readEntry,
  validateHeader,
  type QcowEntry,
  type QcowGeometry,
} from './header.js';

/** QEMU's L2_CACHE_SIZE. */
const L2_CACHE_SIZE = 16;
/** An L1 table read past the file's end is refused beyond this size (QEMU would allocate up to 2 GiB of zeros). */
const MAX_L1_PAST_EOF = 32 << 20;
const SECTOR = 512;
/** QEMU's BDRV_MAX_LENGTH: requests may not end past it. */
const QEMU_MAX_LENGTH = 2 ** 63 - 2 ** 30;
const UNALLOCATED: QcowEntry = { offset: 0, compressed: false, csize: 0 };

/** How a write needs its cluster (QEMU's get_cluster_offset `allocate`). */
const enum Alloc {
  NONE,
  NORMAL,
  COMPRESSED,
}

/** Reads `n` bytes at `offset` of `child` into `out`, zeros past its end. */
async function readClamped(child: BdrvChild, offset: number, n: number, out: Uint8Array): Promise<void> {
  const len = child.length;
  const k = offset >= len ? 0 : Math.min(n, len - offset);
  if (k > 0) await child.preadv(offset, k, out.subarray(0, k));
  if (k < n) out.fill(0, k, n);
}

/** Writes `bytes` and flushes (QEMU's bdrv_pwrite_sync). */
async function writeSync(file: BdrvChild, offset: number, bytes: Uint8Array): Promise<void> {
  await file.pwritev(offset, bytes.length, bytes);
  await file.flush();
}

/** An open qcow node. */
export class QcowImage implements DriverInstance {
  private readonly lock = new FifoLock();
  private readonly l1: DataView;
  private readonly l1Bytes: Uint8Array;
  /** L2 tables by file offset, least recently used first. */
  private readonly l2 = new Map<number, DataView>();
  /** The last compressed cluster decoded (QEMU's cluster_cache), by its file offset. */
  private cachedOffset = -1;
  private readonly clusterCache: Uint8Array;
  readonly supportedWriteFlags = ReqFlag.COMPRESSED;

  constructor(
    private readonly node: BlockNode,
    private readonly file: BdrvChild,
    private readonly geo: QcowGeometry,
    private readonly l1Offset: number,
    l1: Uint8Array,
    private readonly backingName: string | undefined,
    private readonly cipher: QcowCipher | undefined,
    private readonly encrypted: boolean,
    private readonly codec: ClusterCodec,
  ) {
    this.l1Bytes = l1;
    this.l1 = new DataView(l1.buffer, l1.byteOffset, l1.length);
    this.clusterCache = new Uint8Array(geo.clusterSize);
  }

  getLength(): number {
    return this.geo.length;
  }

  private get cs(): number {
    return this.geo.clusterSize;
  }

  private l1Entry(i: number): number {
    return this.l1.getUint32(i * 8) * 4294967296 + this.l1.getUint32(i * 8 + 4);
  }

  /** The L2 table at `offset` (cached; `fresh` for a new table: zeros, written out). */
  private async table(offset: number, fresh: boolean): Promise<DataView> {
    let t = this.l2.get(offset);
    if (t && !fresh) {
      this.l2.delete(offset);
      this.l2.set(offset, t);
      return t;
    }
    const bytes = new Uint8Array(this.geo.l2Size * 8);
    if (fresh) await writeSync(this.file, offset, bytes);
    else await readClamped(this.file, offset, bytes.length, bytes);
    t = new DataView(bytes.buffer);
    this.l2.delete(offset);
    this.l2.set(offset, t);
    while (this.l2.size > L2_CACHE_SIZE) this.l2.delete(this.l2.keys().next().value!);
    return t;
  }

  /** The file's length rounded up to a cluster: where QEMU puts a new table or cluster. */
  private endAligned(): number {
    return Math.ceil(this.file.length / this.cs) * this.cs;
  }

  /**
   * QEMU's get_cluster_offset: the L2 entry of guest `offset`, allocating
   * (a table, a cluster) as `alloc` asks. `nStart`..`nEnd` is the part of
   * the cluster a normal write covers; `csize` the size of compressed data.
   */
  private async lookup(offset: number, alloc: Alloc, nStart = 0, nEnd = 0, csize = 0): Promise<QcowEntry> {
    const { clusterBits, l2Bits, l2Size } = this.geo;
    const l1Index = Math.floor(offset / 2 ** (clusterBits + l2Bits));
    let l2Offset = this.l1Entry(l1Index);
    let fresh = false;
    if (l2Offset === 0) {
      if (alloc === Alloc.NONE) return UNALLOCATED;
      l2Offset = this.endAligned();
      this.l1.setUint32(l1Index * 8, Math.floor(l2Offset / 4294967296));
      this.l1.setUint32(l1Index * 8 + 4, l2Offset >>> 0);
      await writeSync(this.file, this.l1Offset + l1Index * 8, this.l1Bytes.slice(l1Index * 8, l1Index * 8 + 8));
      fresh = true;
    }
    if (!Number.isSafeInteger(l2Offset + l2Size * 8)) {
      // No file is that long: QEMU reads zeros there (EIO past its own limit), and cannot write there.
      const detail = `L1 entry ${l1Index} names L2 table offset ${l2Offset}, past 2^53`;
      if (l2Offset > QEMU_MAX_LENGTH - l2Size * 8) throw new BlockError('EIO', 'Input/output error', { offset }, { detail });
      // A write there fails as the file system refuses a file that long.
      if (alloc !== Alloc.NONE) throw new BlockError('EFBIG', 'File too large', { offset }, { detail });
      return UNALLOCATED;
    }
    const table = await this.table(l2Offset, fresh);
    const l2Index = Math.floor(offset / this.cs) % l2Size;
    const entry = readEntry(table, l2Index * 8, clusterBits);
    if (!(entry.offset === 0 && !entry.compressed) && !(entry.compressed && alloc === Alloc.NORMAL)) return entry;
    if (alloc === Alloc.NONE) return entry;
    let raw: bigint;
    let result: QcowEntry;
    if (entry.compressed && nEnd - nStart < this.cs) {
      // A compressed cluster partly overwritten: decoded, then copied whole to a new cluster.
      await this.decompress(entry);
      const host = this.endAligned();
      await this.file.pwritev(host, this.cs, this.clusterCache);
      raw = BigInt(host);
      result = { offset: host, compressed: false, csize: 0 };
    } else if (alloc === Alloc.NORMAL) {
      const host = this.endAligned();
      if (host + this.cs > Number.MAX_SAFE_INTEGER) throw new BlockError('EFBIG', 'File too large', { offset }, { detail: `new cluster at ${host}` });
      if (this.file.length < host + this.cs) await this.file.truncate(host + this.cs, false);
      if (this.cipher && nEnd - nStart < this.cs) await this.encryptedZeros(offset - (offset % this.cs), host, nStart, nEnd);
      raw = BigInt(host);
      result = { offset: host, compressed: false, csize: 0 };
    } else {
      const host = this.file.length;
      raw = compressedEntry(host, csize, clusterBits);
      result = { offset: host, compressed: true, csize };
    }
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, raw);
    table.setBigUint64(l2Index * 8, raw);
    await writeSync(this.file, l2Offset + l2Index * 8, b);
    return result;
  }

  /** The sectors of a new encrypted cluster a write leaves alone: encrypted zeros, as QEMU writes them. */
  private async encryptedZeros(guestStart: number, host: number, nStart: number, nEnd: number): Promise<void> {
    for (let i = 0; i < this.cs; i += SECTOR) {
      if (i >= nStart && i < nEnd) continue;
      const z = new Uint8Array(SECTOR);
      this.cipher!.encrypt(guestStart + i, z);
      await this.file.pwritev(host + i, SECTOR, z);
    }
  }

  /** Decodes the compressed cluster `e` into the cluster cache (EIO, as QEMU, when it does not decode to a whole cluster). */
  private async decompress(e: QcowEntry): Promise<void> {
    if (this.cachedOffset === e.offset) return;
    const src = new Uint8Array(e.csize);
    try {
      await readClamped(this.file, e.offset, e.csize, src);
      await this.codec.inflateCluster(src, this.clusterCache, { offset: e.offset });
    } catch (err) {
      this.cachedOffset = -1;
      throw new BlockError('EIO', 'Input/output error', { offset: e.offset }, { cause: err, detail: `compressed cluster of ${e.csize} bytes at 0x${e.offset.toString(16)}: ${toBlockError(err).message}` });
    }
    this.cachedOffset = e.offset;
  }

  private async readBacking(pos: number, n: number, out: Uint8Array): Promise<void> {
    const b = this.node.backing;
    if (!b) return void out.fill(0, 0, n);
    await readClamped(b, pos, n, out);
  }

  async preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const cs = this.cs;
    let done = 0;
    while (done < bytes) {
      const pos = offset + done;
      const wait = this.lock.acquire();
      if (wait) await wait;
      let e: QcowEntry;
      let n = Math.min(bytes - done, cs - (pos % cs));
      try {
        e = await this.lookup(pos, Alloc.NONE);
        // Clusters that continue the same kind of run are read in one go.
        if (!e.compressed && !this.cipher) {
          while (done + n < bytes) {
            const next = await this.lookup(pos + n, Alloc.NONE);
            if (next.compressed || (e.offset === 0 ? next.offset !== 0 : next.offset !== e.offset + (pos % cs) + n)) break;
            n += Math.min(bytes - done - n, cs);
          }
        }
        if (e.compressed) {
          await this.decompress(e);
          buf.set(this.clusterCache.subarray(pos % cs, (pos % cs) + n), done);
        }
      } finally {
        this.lock.release();
      }
      const out = buf.subarray(done, done + n);
      if (e.offset === 0 && !e.compressed) {
        await this.readBacking(pos, n, out);
      } else if (!e.compressed) {
        if (e.offset % SECTOR) throw new BlockError('EIO', 'Input/output error', { offset: pos }, { detail: `cluster offset 0x${e.offset.toString(16)} is not sector-aligned` });
        const host = e.offset + (pos % cs);
        if (host + n <= Number.MAX_SAFE_INTEGER) {
          await readClamped(this.file, host, n, out);
        } else if (host <= QEMU_MAX_LENGTH - n) {
          // Past any file's end: zeros, as QEMU reads them.
          out.fill(0);
        } else {
          throw new BlockError('EIO', 'Input/output error', { offset: pos }, { detail: `cluster at ${e.offset}, past the largest file offset` });
        }
        this.cipher?.decrypt(pos, out);
      }
      done += n;
    }
  }

  async pwritev(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    if (flags & ReqFlag.COMPRESSED) return this.writeCompressed(offset, bytes, buf);
    await this.lock.run(() => this.write(offset, bytes, buf));
  }

  private async write(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const cs = this.cs;
    this.cachedOffset = -1;
    let done = 0;
    while (done < bytes) {
      const pos = offset + done;
      const inCluster = pos % cs;
      const n = Math.min(bytes - done, cs - inCluster);
      const e = await this.lookup(pos, Alloc.NORMAL, inCluster, inCluster + n);
      if (e.offset === 0 || e.offset % SECTOR) {
        throw new BlockError('EIO', 'Input/output error', { offset: pos }, { detail: `cluster offset 0x${e.offset.toString(16)} is not usable` });
      }
      let data = buf.subarray(done, done + n);
      if (this.cipher) {
        data = data.slice();
        this.cipher.encrypt(pos, data);
      }
      await this.file.pwritev(e.offset + inCluster, n, data);
      done += n;
    }
  }

  /** QEMU's qcow_co_pwritev_compressed: one whole cluster (or the image's last, padded), deflated when that saves space. */
  private async writeCompressed(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    // The copy loop's end-of-compressed-writing call (0 bytes at 0) fails here with EINVAL, as in QEMU.
    const cs = this.cs;
    let data = buf.subarray(0, bytes);
    if (bytes !== cs) {
      if (bytes > cs || offset + bytes !== this.geo.length) {
        throw einval('Invalid argument', { offset }, `a compressed write takes one whole cluster of ${cs} bytes, not ${bytes}`);
      }
      data = new Uint8Array(cs);
      data.set(buf.subarray(0, bytes));
    }
    const z = this.codec.deflateCluster(data, 6);
    if (z === null || z.length >= cs) {
      await this.lock.run(() => this.write(offset, bytes, buf));
      return;
    }
    await this.lock.run(async () => {
      const e = await this.lookup(offset, Alloc.COMPRESSED, 0, 0, z.length);
      if (!e.compressed || e.csize !== z.length) {
        // QEMU would write the compressed bytes over the cluster already there, leaving its entry as it was.
        throw new BlockError('EIO', 'Input/output error', { offset }, { detail: `cluster at guest offset ${offset} is already allocated; compressed writes need a new cluster` });
      }
      this.cachedOffset = -1;
      await this.file.pwritev(e.offset, z.length, z);
    });
  }

  /**
   * Block status. QEMU answers one cluster at a time; this answers the run
   * of clusters alike (unallocated, or plain clusters that follow each other
   * in the file), which map and convert merge to the same result with far
   * fewer calls. A compressed cluster stands alone.
   */
  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const cs = this.cs;
    const inCluster = offset % cs;
    let pnum = Math.min(bytes, cs - inCluster);
    const e = await this.lock.run(async () => {
      const first = await this.lookup(offset, Alloc.NONE);
      if (first.compressed) return first;
      while (pnum < bytes) {
        const next = await this.lookup(offset + pnum, Alloc.NONE);
        if (next.compressed || (first.offset === 0 ? next.offset !== 0 : next.offset !== first.offset + inCluster + pnum)) break;
        pnum += Math.min(bytes - pnum, cs);
      }
      return first;
    });
    if (e.offset === 0 && !e.compressed) return { status: 0, pnum };
    if (e.compressed || this.encrypted) return { status: Status.DATA, pnum };
    return { status: Status.DATA | Status.OFFSET_VALID, pnum, map: e.offset + inCluster, file: this.file.node };
  }

  /** QEMU's qcow_make_empty: the L1 table cleared and the file cut after it. */
  async makeEmpty(): Promise<void> {
    await this.lock.run(async () => {
      this.l1Bytes.fill(0);
      await writeSync(this.file, this.l1Offset, this.l1Bytes);
      await this.file.truncate(this.l1Offset + this.l1Bytes.length, false);
      this.l2.clear();
      this.cachedOffset = -1;
    });
  }

  refreshLimits(limits: BlockLimits): void {
    limits.requestAlignment = Math.max(limits.requestAlignment, SECTOR);
  }

  getInfo(): { clusterSize: number } {
    return { clusterSize: this.cs };
  }

  isEncrypted(): boolean {
    return this.encrypted;
  }

  backingFile(): { filename: string } | undefined {
    return this.backingName === undefined ? undefined : { filename: this.backingName };
  }

  hasZeroInit(): boolean {
    return true;
  }

  async close(): Promise<void> {
    this.cipher?.release();
  }
}

async function openQcow(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  const rawEncrypt = options.raw('encrypt');
  const noIo = options.bool('x-no-io', false);
  const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
  const hb = new Uint8Array(QCOW_HEADER_SIZE);
  await readClamped(file, 0, QCOW_HEADER_SIZE, hb);
  const h = decodeHeader(hb);
  validateHeader(h);
  const cipher = await openCipher(node.graph, h.cryptMethod, rawEncrypt, noIo);
  const geo = geometry(h);
  const l1Offset = h.l1TableOffset;
  const l1Bytes = geo.l1Size * 8;
  if (l1Offset + BigInt(l1Bytes) > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new BlockError('EIO', 'Input/output error', {}, { detail: `L1 table of ${l1Bytes} bytes at offset ${l1Offset}` });
  }
  if (l1Bytes > MAX_L1_PAST_EOF && Number(l1Offset) + l1Bytes > file.length) {
    throw einval(`qcow: L1 table of ${l1Bytes} bytes at offset ${l1Offset} ends past the end of the file (${file.length} bytes)`);
  }
  const l1 = new Uint8Array(l1Bytes);
  await readClamped(file, Number(l1Offset), l1Bytes, l1);
  let backingName: string | undefined;
  if (h.backingFileOffset !== 0n) {
    const len = h.backingFileSize;
    if (len > QCOW_BACKING_NAME_MAX) throw einval('Backing file name too long', {}, `${len} bytes`);
    if (h.backingFileOffset + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new BlockError('EIO', 'Input/output error', {}, { detail: `backing file name at offset ${h.backingFileOffset}` });
    }
    const b = new Uint8Array(len);
    await readClamped(file, Number(h.backingFileOffset), len, b);
    // A C string: the name ends at the first NUL.
    const nul = b.indexOf(0);
    backingName = new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
    // An empty name is no backing file (QEMU's empty backing_file string).
    if (backingName === '') backingName = undefined;
  }
  const codec = await getClusterCodec();
  return new QcowImage(node, file, geo, Number(l1Offset), l1, backingName, cipher, h.cryptMethod !== 0, codec);
}

export const qcowDriver = {
  name: 'qcow',
  kind: 'format',
  supportsBacking: true,
  createOptions: qcowCreateOptions,
  /** QEMU's qcow_probe: a whole header with the magic and version 1. */
  probe(header: Uint8Array): number {
    if (header.length < QCOW_HEADER_SIZE) return 0;
    const dv = new DataView(header.buffer, header.byteOffset, 8);
    return dv.getUint32(0) === QCOW_MAGIC && dv.getUint32(4) === QCOW_VERSION ? 100 : 0;
  },
  open: openQcow,
  create: createQcow,
} satisfies BlockDriver;
