/**
 * The on-disk format of a dm-log-writes log (Linux's
 * drivers/md/dm-log-writes.c), as QEMU's blklogwrites filter writes it. All
 * fields are little-endian; the log is cut in sectors of the log's sector
 * size:
 *
 * - sector 0: the superblock: magic (u64), version (u64), number of entries
 *   (u64), sector size (u32), then zeros to the end of the sector;
 * - then one entry per request: a sector starting with sector (u64, in log
 *   sectors), number of sectors (u64), flags (u64), data length (u64, 0 in
 *   QEMU's logs), zeros to the end of the sector, then the request's data
 *   (writes and zero writes; discards and flushes have none).
 */

/** Entry flags. */
export const LogFlag = {
  FLUSH: 1 << 0,
  FUA: 1 << 1,
  DISCARD: 1 << 2,
  MARK: 1 << 3,
} as const;
/** Every flag a valid entry may carry. */
export const LOG_FLAG_MASK = LogFlag.FLUSH | LogFlag.FUA | LogFlag.DISCARD | LogFlag.MARK;

/** "rhswfsj" read as a little-endian u64. */
export const LOG_MAGIC = 0x6a736677736872n;
export const LOG_VERSION = 1n;

/** Bytes of the superblock's fields (packed). */
export const SUPER_SIZE = 28;
/** Bytes of an entry's fields. */
export const ENTRY_SIZE = 32;

/** Whether a log can use `size`-byte sectors: a power of two that holds a superblock and an entry, below 16 MiB. */
export function validSectorSize(size: number): boolean {
  return Number.isSafeInteger(size) && size > 0 && (size & (size - 1)) === 0 && size >= SUPER_SIZE && size >= ENTRY_SIZE && size < 1 << 24;
}

/** A superblock's fields. */
export interface LogSuper {
  magic: bigint;
  version: bigint;
  entries: bigint;
  sectorSize: number;
}

/** An entry's fields. */
export interface LogEntry {
  sector: bigint;
  nrSectors: bigint;
  flags: bigint;
  dataLen: bigint;
}

export function encodeSuper(entries: number, sectorSize: number): Uint8Array {
  const b = new Uint8Array(SUPER_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, LOG_MAGIC, true);
  v.setBigUint64(8, LOG_VERSION, true);
  v.setBigUint64(16, BigInt(entries), true);
  v.setUint32(24, sectorSize, true);
  return b;
}

export function readSuper(b: Uint8Array): LogSuper {
  const v = new DataView(b.buffer, b.byteOffset, SUPER_SIZE);
  return { magic: v.getBigUint64(0, true), version: v.getBigUint64(8, true), entries: v.getBigUint64(16, true), sectorSize: v.getUint32(24, true) };
}

/** An entry for a request of `nrSectors` log sectors at log sector `sector` (no data length, as QEMU). */
export function encodeEntry(sector: number, nrSectors: number, flags: number): Uint8Array {
  const b = new Uint8Array(ENTRY_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(sector), true);
  v.setBigUint64(8, BigInt(nrSectors), true);
  v.setBigUint64(16, BigInt(flags), true);
  v.setBigUint64(24, 0n, true);
  return b;
}

export function readEntry(b: Uint8Array): LogEntry {
  const v = new DataView(b.buffer, b.byteOffset, ENTRY_SIZE);
  return { sector: v.getBigUint64(0, true), nrSectors: v.getBigUint64(8, true), flags: v.getBigUint64(16, true), dataLen: v.getBigUint64(24, true) };
}
