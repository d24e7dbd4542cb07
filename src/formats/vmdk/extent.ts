/**
 * One VMDK extent: a flat file (the guest bytes at an offset), or a sparse
 * file whose grain directory (L1) points at grain tables (L2) of grain
 * offsets, as QEMU 7.2's VmdkExtent. The lookup, the grain allocation (COW
 * of the rest of the grain, then the data, then both tables' entries), and
 * the table cache live here; vmdk.ts runs requests across extents.
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError } from '../../core/errors.js';
import { EXTENT_MAX_SECTORS, GTE_ZEROED, SECTOR } from './header.js';

/** Grain tables kept in memory per extent (QEMU keeps 16). */
const L2_CACHE_TABLES = 16;

/** What a lookup finds. */
export const Found = {
  /** The grain is in the file at `hostOffset`. */
  DATA: 0,
  /** No grain: read the backing file (or zeros). */
  UNALLOCATED: 1,
  /** A zeroed grain (reads as zeros, never from the backing file). */
  ZEROED: 2,
  /** The tables cannot say (QEMU's VMDK_ERROR): `why` names the value. */
  ERROR: 3,
} as const;
export type Found = (typeof Found)[keyof typeof Found];

/** A lookup's answer, with what an L2 update needs. */
export interface Lookup {
  found: Found;
  /** Byte offset of the grain (flat: of the extent's data) in the extent file. */
  hostOffset: number;
  l1Index: number;
  l2Index: number;
  /** Sector of the grain table (0: none). */
  l2Sector: number;
  /** Why the lookup failed (ERROR only). */
  why?: string;
}

/** How an extent is described when it is added. */
export interface ExtentSpec {
  file: BdrvChild;
  flat: boolean;
  sectors: number;
  /** Bytes. */
  l1Offset: number;
  /** Bytes; 0 when there is no backup directory. */
  l1BackupOffset: number;
  l1Size: number;
  l2Size: number;
  clusterSectors: number;
}

/** Reads `n` bytes at `offset`, zeros where the file ends before (QEMU reads zeros there). */
export async function readPadded(file: BdrvChild, offset: number, n: number): Promise<Uint8Array> {
  const b = new Uint8Array(n);
  const len = file.length;
  const k = offset >= len ? 0 : Math.min(n, len - offset);
  if (k > 0) await file.preadv(offset, k, b.subarray(0, k));
  return b;
}

export class Extent {
  readonly file: BdrvChild;
  readonly flat: boolean;
  readonly sectors: number;
  /** First guest sector of the extent. */
  readonly startSector: number;
  readonly clusterSectors: number;
  readonly l1Size: number;
  readonly l2Size: number;
  readonly l1EntrySectors: number;
  readonly l1Offset: number;
  readonly l1BackupOffset: number;
  compressed = false;
  hasMarker = false;
  hasZeroGrain = false;
  version = 0;
  /** Byte offset of a flat extent's data in its file. */
  flatStart = 0;
  /** The extent line's type (undefined for a monolithic sparse file). */
  type: string | undefined;
  /**
   * seSparse: 64-bit table entries, grain tables and grains found from these
   * sector offsets. Its directory and tables are decoded as they are read
   * (see decodeWide), so the lookup is the same for every kind.
   */
  seSparse: { tablesOffset: number; grainsOffset: number } | undefined;
  /** Where the next grain goes, in sectors. */
  nextClusterSector: number;
  /** The directory entries the file holds (the rest read as 0); seSparse: decoded, -1 for a bad one. */
  private l1: Uint32Array | Float64Array = new Uint32Array(0);
  private l1Backup: Uint32Array | Float64Array | undefined;
  /** Grain tables by sector, least recently used first (seSparse: decoded, see decodeWide). */
  private readonly l2Cache = new Map<number, Uint32Array | Float64Array>();

  constructor(spec: ExtentSpec, startSector: number) {
    this.file = spec.file;
    this.flat = spec.flat;
    this.sectors = spec.sectors;
    this.startSector = startSector;
    this.l1Offset = spec.l1Offset;
    this.l1BackupOffset = spec.l1BackupOffset;
    this.l1Size = spec.l1Size;
    this.l2Size = spec.l2Size;
    this.l1EntrySectors = (spec.l2Size * spec.clusterSectors) >>> 0;
    this.clusterSectors = spec.flat ? spec.sectors : spec.clusterSectors;
    const fileSectors = Math.ceil(spec.file.length / SECTOR);
    this.nextClusterSector = spec.clusterSectors > 0 ? Math.ceil(fileSectors / spec.clusterSectors) * spec.clusterSectors : fileSectors;
  }

  get endSector(): number {
    return this.startSector + this.sectors;
  }

  get clusterBytes(): number {
    return this.clusterSectors * SECTOR;
  }

  /** Byte offset of guest `offset` inside its grain (flat: inside the extent). */
  offsetInCluster(offset: number): number {
    return (offset - this.startSector * SECTOR) % this.clusterBytes;
  }

  /** Reads the directory (and its backup): only the part inside the file, the rest is zeros. */
  async readTables(): Promise<void> {
    this.l1 = await this.readDirectory(this.l1Offset);
    if (this.l1BackupOffset) this.l1Backup = await this.readDirectory(this.l1BackupOffset);
  }

  private async readDirectory(offset: number): Promise<Uint32Array | Float64Array> {
    const len = this.file.length;
    if (this.seSparse) {
      const present = offset >= len ? 0 : Math.min(this.l1Size, Math.floor((len - offset) / 8));
      const b = await readPadded(this.file, offset, present * 8);
      return this.decodeWide(b, present, true);
    }
    const present = offset >= len ? 0 : Math.min(this.l1Size, Math.floor((len - offset) / 4));
    const b = await readPadded(this.file, offset, present * 4);
    const dv = new DataView(b.buffer);
    const t = new Uint32Array(present);
    for (let i = 0; i < present; i++) t[i] = dv.getUint32(i * 4, true);
    return t;
  }

  /**
   * seSparse entries as numbers (QEMU's rules): a directory entry is 0 or
   * 0x10000000 in its top half and a table index below it (the table's
   * sector), a table entry is 0 (unallocated), 1 or 2 in its top nibble
   * (zeroed, as -2) or 3 with the grain index in two parts (the grain's
   * sector); anything else is -1 (an error when looked up).
   */
  private decodeWide(b: Uint8Array, n: number, directory: boolean): Float64Array {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out = new Float64Array(n);
    const se = this.seSparse!;
    for (let i = 0; i < n; i++) {
      const e = dv.getBigUint64(i * 8, true);
      if (e === 0n) continue;
      if (directory) {
        if (e >> 32n !== 0x10000000n) out[i] = -1;
        else {
          const sector = se.tablesOffset + Number(e & 0xffffffffn) * ((this.l2Size * 8) / SECTOR);
          out[i] = sector > 0xffffffff ? -1 : sector;
        }
        continue;
      }
      const kind = e >> 60n;
      if (kind === 1n || kind === 2n) out[i] = -2;
      else if (kind === 3n) {
        const grain = ((e & 0x0fff000000000000n) >> 48n) | ((e & 0x0000ffffffffffffn) << 12n);
        out[i] = se.grainsOffset + Number(grain) * this.clusterSectors;
      } else out[i] = -1;
    }
    return out;
  }

  /** The grain table at `sector`, through the cache. */
  private async table(sector: number): Promise<Uint32Array | Float64Array> {
    const hit = this.l2Cache.get(sector);
    if (hit) {
      this.l2Cache.delete(sector);
      this.l2Cache.set(sector, hit);
      return hit;
    }
    let t: Uint32Array | Float64Array;
    if (this.seSparse) {
      t = this.decodeWide(await readPadded(this.file, sector * SECTOR, this.l2Size * 8), this.l2Size, false);
    } else {
      const b = await readPadded(this.file, sector * SECTOR, this.l2Size * 4);
      const dv = new DataView(b.buffer);
      t = new Uint32Array(this.l2Size);
      for (let i = 0; i < this.l2Size; i++) t[i] = dv.getUint32(i * 4, true);
    }
    if (this.l2Cache.size >= L2_CACHE_TABLES) this.l2Cache.delete(this.l2Cache.keys().next().value!);
    this.l2Cache.set(sector, t);
    return t;
  }

  /**
   * Where guest `offset` (inside this extent) lives. Found.ERROR, naming the
   * value, when the directory is too short for it or its table cannot be read
   * (QEMU's VMDK_ERROR: reads then see zeros, block status fails).
   */
  async lookup(offset: number): Promise<Lookup> {
    if (this.flat) return { found: Found.DATA, hostOffset: this.flatStart, l1Index: 0, l2Index: 0, l2Sector: 0 };
    const rel = Math.floor(offset / SECTOR) - this.startSector;
    const l1Index = Math.floor(rel / this.l1EntrySectors);
    const l2Index = Math.floor(rel / this.clusterSectors) % this.l2Size;
    if (l1Index >= this.l1Size) {
      return { found: Found.ERROR, hostOffset: 0, l1Index, l2Index, l2Sector: 0, why: `grain directory index ${l1Index} is past its ${this.l1Size} entries` };
    }
    const l2Sector = l1Index < this.l1.length ? this.l1[l1Index]! : 0;
    if (l2Sector < 0) {
      return { found: Found.ERROR, hostOffset: 0, l1Index, l2Index, l2Sector: 0, why: `bad seSparse grain directory entry ${l1Index}` };
    }
    if (l2Sector === 0) return { found: Found.UNALLOCATED, hostOffset: 0, l1Index, l2Index, l2Sector };
    let table: Uint32Array | Float64Array;
    try {
      table = await this.table(l2Sector);
    } catch (e) {
      return { found: Found.ERROR, hostOffset: 0, l1Index, l2Index, l2Sector, why: `grain table at sector ${l2Sector}: ${(e as Error).message}` };
    }
    const found = this.classify(table[l2Index]!);
    if (found === Found.ERROR) return { found, hostOffset: 0, l1Index, l2Index, l2Sector, why: `bad seSparse grain table entry ${l2Index} at sector ${l2Sector}` };
    return { found, hostOffset: found === Found.DATA ? table[l2Index]! * SECTOR : 0, l1Index, l2Index, l2Sector };
  }

  /** What a grain table entry (as held in memory) says; DATA entries are the grain's sector. */
  classify(entry: number): Found {
    if (entry === -1) return Found.ERROR;
    if (entry === -2 || (this.hasZeroGrain && entry === GTE_ZEROED)) return Found.ZEROED;
    return entry === 0 ? Found.UNALLOCATED : Found.DATA;
  }

  /** The grain table at `sector` if the cache holds it (a lookup just read it). */
  cachedTable(sector: number): Uint32Array | Float64Array | undefined {
    return this.l2Cache.get(sector);
  }

  /**
   * Takes the next grain for `at` (whose table must exist): EINVAL past the
   * 2^32-sector limit or without a table. Returns its sector.
   */
  takeGrain(at: Lookup, offset: number): number {
    if (at.l2Sector === 0) {
      throw new BlockError('EIO', 'Input/output error', { offset }, { detail: `grain directory entry ${at.l1Index} has no grain table to allocate in` });
    }
    if (this.nextClusterSector >= EXTENT_MAX_SECTORS) {
      throw new BlockError('EINVAL', 'Invalid argument', { offset }, { detail: `next grain at sector ${this.nextClusterSector}, past the extent limit` });
    }
    const sector = this.nextClusterSector;
    this.nextClusterSector += this.clusterSectors;
    return sector;
  }

  /**
   * Sets grain table entry `at.l2Index` to `value` in the table and in its
   * backup (QEMU's vmdk_L2update), then flushes the file.
   */
  async updateL2(at: Lookup, value: number): Promise<void> {
    const e = new Uint8Array(4);
    new DataView(e.buffer).setUint32(0, value, true);
    await this.file.pwritev(at.l2Sector * SECTOR + at.l2Index * 4, 4, e);
    if (this.l1BackupOffset) {
      const backup = this.l1Backup && at.l1Index < this.l1Backup.length ? this.l1Backup[at.l1Index]! : 0;
      await this.file.pwritev(backup * SECTOR + at.l2Index * 4, 4, e);
      const cached = this.l2Cache.get(backup);
      if (cached && backup !== at.l2Sector) cached[at.l2Index] = value;
    }
    await this.file.flush();
    const t = this.l2Cache.get(at.l2Sector);
    if (t) t[at.l2Index] = value;
  }
}
