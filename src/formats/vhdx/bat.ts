/**
 * The VHDX block allocation table (BAT): one 64-bit entry per payload block,
 * with one sector-bitmap entry after every `chunkRatio` payload entries
 * (QEMU 7.2 reads no sector bitmaps: it refuses differencing images). An
 * entry holds a state (low 3 bits) and a file offset in MiB (bits 20..63).
 *
 * The entries are held as the on-disk bytes; those of a BAT that runs past
 * the end of the file are not held (they read as zeros there), so a header
 * field cannot make us allocate more than the file holds.
 */

/** Payload block states. */
export const PayloadState = {
  NOT_PRESENT: 0,
  UNDEFINED: 1,
  ZERO: 2,
  UNMAPPED: 3,
  UNMAPPED_V095: 5,
  FULLY_PRESENT: 6,
  PARTIALLY_PRESENT: 7,
} as const;

/** Sectors of 512 bytes one sector bitmap block describes (2^23): the chunk is this many sectors. */
export const MAX_SECTORS_PER_BLOCK = 2 ** 23;
const MiB = 1024 * 1024;

/** The BAT's shape for a disk of `size` bytes in blocks of `blockSize` (powers of two). */
export interface BatGeometry {
  blockSize: number;
  /** Payload blocks per sector bitmap block. */
  chunkRatio: number;
  chunkRatioBits: number;
  /** Entries, as QEMU counts them in 32 bits (payload and bitmap entries). */
  entries: number;
}

/** Number of trailing zero bits (x > 0). */
export function ctz(x: number): number {
  let n = 0;
  while (x > 1 && x % 2 === 0) {
    x /= 2;
    n++;
  }
  return n;
}

/**
 * QEMU's vhdx_calc_bat_entries for an image without a parent: the payload
 * blocks plus one bitmap entry per full chunk before the last block, in
 * uint32 arithmetic (a size of 0 wraps to about 2^32 >> chunkRatioBits).
 */
export function batGeometry(size: number | bigint, blockSize: number, sectorSize = 512): BatGeometry {
  const chunkRatio = Math.floor((MAX_SECTORS_PER_BLOCK * sectorSize) / blockSize);
  const chunkRatioBits = ctz(chunkRatio);
  // DIV_ROUND_UP in 64 bits (a size near 2^64 wraps there too), kept in 32.
  const blocks = BigInt.asUintN(64, BigInt(size) + BigInt(blockSize) - 1n) / BigInt(blockSize);
  const dataBlocks = Number(BigInt.asUintN(32, blocks));
  const entries = (dataBlocks + (((dataBlocks - 1) >>> 0) >>> chunkRatioBits)) >>> 0;
  return { blockSize, chunkRatio, chunkRatioBits, entries };
}

/** The BAT index of the payload block holding guest `offset` (uint32, as QEMU's bat_idx). */
export function batIndex(g: BatGeometry, offset: number): number {
  const block = Math.floor(offset / g.blockSize) >>> 0;
  return (block + (block >>> g.chunkRatioBits)) >>> 0;
}

/** The entries of an open image. */
export class Bat {
  private bytes: Uint8Array;
  private view: DataView;

  /** `held`: the on-disk bytes of the entries read (at most `entries` * 8). */
  constructor(
    readonly entries: number,
    held: Uint8Array,
  ) {
    this.bytes = held;
    this.view = new DataView(held.buffer, held.byteOffset, held.byteLength);
  }

  /** State bits of entry `i` (0 for entries not held). */
  state(i: number): number {
    const at = i * 8;
    return at < this.bytes.length ? this.view.getUint32(at, true) & 7 : 0;
  }

  /** File offset of entry `i` (a multiple of 1 MiB), up to 2^64 - 2^20. */
  offset(i: number): number {
    const at = i * 8;
    if (at >= this.bytes.length) return 0;
    const lo = (this.view.getUint32(at, true) & 0xfff00000) >>> 0;
    return this.view.getUint32(at + 4, true) * 2 ** 32 + lo;
  }

  /** Entry `i` as stored (little-endian bytes). */
  raw(i: number): Uint8Array {
    const b = new Uint8Array(8);
    const at = i * 8;
    if (at < this.bytes.length) b.set(this.bytes.subarray(at, at + 8));
    return b;
  }

  /**
   * Sets entry `i` as QEMU's vhdx_update_bat_table_entry: states that hold no
   * data keep no offset (Hyper-V refuses one there).
   */
  set(i: number, fileOffset: number, state: number): void {
    const at = i * 8;
    if (at + 8 > this.bytes.length) this.grow(at + 8);
    const keepsOffset = !(state === PayloadState.ZERO || state === PayloadState.UNDEFINED || state === PayloadState.NOT_PRESENT || state === PayloadState.UNMAPPED);
    const off = keepsOffset ? fileOffset : 0;
    const lo = (off % 2 ** 32) >>> 0;
    this.view.setUint32(at, ((lo & 0xfff00000) | (state & 7)) >>> 0, true);
    this.view.setUint32(at + 4, Math.floor(off / 2 ** 32), true);
  }

  /** The held bytes. */
  rawBytes(): Uint8Array {
    return this.bytes;
  }

  /** Grows the held bytes to `n` (an entry past the held ones is written). */
  private grow(n: number): void {
    const b = new Uint8Array(n);
    b.set(this.bytes);
    this.bytes = b;
    this.view = new DataView(b.buffer);
  }
}

/** The 8-byte entries a new image's BAT holds, in `length` bytes (QEMU's vhdx_create_bat). */
export function newBatBytes(g: BatGeometry, size: number, length: number, dataStart: number, state: number): Uint8Array {
  const bat = new Bat(g.entries, new Uint8Array(length));
  for (let offset = 0; offset < size; offset += g.blockSize) {
    const fileOffset = Math.ceil((dataStart + offset) / MiB) * MiB;
    bat.set(batIndex(g, offset), fileOffset, state);
  }
  return bat.rawBytes();
}

