/**
 * QED's L1 and L2 tables: arrays of little-endian 64-bit cluster offsets,
 * `table_size` clusters long. The bytes as read stay the truth (entries past
 * 2^53 are kept exact for write-back); lookups decode one entry at a time.
 * Writes go out in whole 512-byte sectors around the entries that changed,
 * as QEMU writes them. L2 tables are cached (50, as QEMU, bounded in bytes).
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError, toBlockError } from '../../core/errors.js';

/** Entries per 512-byte sector. */
const SECTOR_ENTRIES = 64;
/** QEMU's MAX_L2_CACHE_SIZE. */
const MAX_CACHED = 50;
/** Bytes the L2 cache may hold (tables may be up to 1 GiB each): at least one table. */
const MAX_CACHED_BYTES = 64 << 20;

/** One table in memory. */
export class QedTable {
  readonly dv: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  get entries(): number {
    return this.bytes.length / 8;
  }

  /** Entry `i` as a number (values past 2^53 come out inexact, and are past any file's end anyway). */
  get(i: number): number {
    return this.dv.getUint32(i * 8, true) + this.dv.getUint32(i * 8 + 4, true) * 4294967296;
  }

  set(i: number, v: number): void {
    this.dv.setUint32(i * 8, v >>> 0, true);
    this.dv.setUint32(i * 8 + 4, Math.floor(v / 4294967296), true);
  }

  /** Writes entries [index, index + n) of the table at `offset` in `file`, widened to whole sectors. */
  async write(file: BdrvChild, offset: number, index: number, n: number): Promise<void> {
    const start = index - (index % SECTOR_ENTRIES);
    const end = Math.min(this.entries, Math.ceil((index + n) / SECTOR_ENTRIES) * SECTOR_ENTRIES);
    const piece = this.bytes.subarray(start * 8, end * 8);
    await file.pwritev(offset + start * 8, piece.length, piece);
  }

  /** Reads a table of `bytes` bytes at `offset` (zeros past the file's end, as QEMU reads it). */
  static async read(file: BdrvChild, offset: number, bytes: number): Promise<QedTable> {
    const b = new Uint8Array(bytes);
    const len = file.length;
    const k = offset >= len ? 0 : Math.min(bytes, len - offset);
    if (k > 0) await file.preadv(offset, k, b.subarray(0, k));
    return new QedTable(b);
  }
}

/** Least-recently-used cache of L2 tables by file offset. */
export class L2Cache {
  private readonly tables = new Map<number, QedTable>();
  private readonly max: number;

  constructor(
    private readonly file: BdrvChild,
    private readonly tableBytes: number,
  ) {
    this.max = Math.max(1, Math.min(MAX_CACHED, Math.floor(MAX_CACHED_BYTES / tableBytes)));
  }

  /** The cached table at `offset`, if any (and marks it recently used). */
  peek(offset: number): QedTable | undefined {
    const t = this.tables.get(offset);
    if (t) {
      this.tables.delete(offset);
      this.tables.set(offset, t);
    }
    return t;
  }

  /** The table at `offset`, read on a miss (EIO naming the offset when the read fails). */
  async get(offset: number): Promise<QedTable> {
    const hit = this.peek(offset);
    if (hit) return hit;
    let t: QedTable;
    try {
      t = await QedTable.read(this.file, offset, this.tableBytes);
    } catch (e) {
      throw new BlockError(toBlockError(e).code, `Failed to read L2 table at offset 0x${offset.toString(16)}`, { offset }, { cause: e });
    }
    this.put(offset, t);
    return t;
  }

  /** Adds a table (a new one, written by the caller). */
  put(offset: number, t: QedTable): void {
    this.tables.delete(offset);
    this.tables.set(offset, t);
    while (this.tables.size > this.max) this.tables.delete(this.tables.keys().next().value!);
  }

  clear(): void {
    this.tables.clear();
  }
}
