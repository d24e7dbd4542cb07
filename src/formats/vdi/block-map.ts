/**
 * The VDI block map: one 32-bit little-endian entry per 1 MiB guest block,
 * the index of the block's slot in the data area, or {@link VDI_UNALLOCATED}
 * / {@link VDI_DISCARDED} (both read as zeros).
 *
 * The map is held as the whole sectors QEMU reads (its size rounded up to
 * 512 bytes, the tail past the last entry as the file had it), because QEMU
 * writes changed entries back as whole sectors of that copy: the bytes we
 * write are the bytes it would.
 */
import { BlockError } from '../../core/errors.js';
import type { BdrvChild } from '../../core/child.js';
import { VDI_DISCARDED, VDI_SECTOR } from './header.js';

/** Entries per 512-byte sector of the map. */
const ENTRIES_PER_SECTOR = VDI_SECTOR / 4;
/** Largest piece of the map read at once (the map may be up to 2 GiB). */
const READ_CHUNK = 16 << 20;

/** Whether a map entry points at a data slot. */
export function isAllocated(entry: number): boolean {
  return entry < VDI_DISCARDED;
}

export class BlockMap {
  private readonly view: DataView;

  private constructor(
    /** The map's sectors as in the file. */
    readonly bytes: Uint8Array,
    /** Number of entries (blocks_in_image). */
    readonly entries: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /**
   * Reads the map of `entries` entries at `offset` in `file`. The entries
   * must lie inside the file (a truncated map is refused: QEMU would read
   * zeros, i.e. every block in slot 0); the rest of the last sector may be
   * missing and reads as zeros.
   */
  static async read(file: BdrvChild, offset: number, entries: number): Promise<BlockMap> {
    const need = entries * 4;
    const fileLength = file.length;
    if (offset + need > fileLength) {
      throw new BlockError(
        'EINVAL',
        `VDI block map of ${entries} entries at offset 0x${offset.toString(16)} ends at ${offset + need}, beyond the end of the file (${fileLength} bytes)`,
        { offset, expected: 'a block map inside the file' },
      );
    }
    const bytes = new Uint8Array(Math.ceil(need / VDI_SECTOR) * VDI_SECTOR);
    for (let done = 0; done < bytes.length; done += READ_CHUNK) {
      const n = Math.min(READ_CHUNK, bytes.length - done);
      await file.preadv(offset + done, n, bytes.subarray(done, done + n));
    }
    return new BlockMap(bytes, entries);
  }

  /** The map of a new image: every entry unallocated, or block i in slot i (static). */
  static create(entries: number, isStatic: boolean): BlockMap {
    const map = new BlockMap(new Uint8Array(Math.ceil((entries * 4) / VDI_SECTOR) * VDI_SECTOR), entries);
    for (let i = 0; i < entries; i++) map.set(i, isStatic ? i : 0xffffffff);
    return map;
  }

  get(block: number): number {
    return this.view.getUint32(block * 4, true);
  }

  set(block: number, entry: number): void {
    this.view.setUint32(block * 4, entry, true);
  }

  /**
   * The whole sectors holding entries `first` to `last`, as an offset into
   * the map and a copy of their bytes (what QEMU writes after allocating).
   */
  sectors(first: number, last: number): { offset: number; bytes: Uint8Array } {
    const from = Math.floor(first / ENTRIES_PER_SECTOR) * VDI_SECTOR;
    const to = (Math.floor(last / ENTRIES_PER_SECTOR) + 1) * VDI_SECTOR;
    return { offset: from, bytes: this.bytes.slice(from, to) };
  }
}
