/**
 * The on-disk structures of VMDK sparse extents, as QEMU 7.2 reads and
 * writes them: the hosted-sparse ("KDMV", version 1 to 3) header, the older
 * ESX sparse ("COWD") header, the stream-optimized footer and grain markers.
 *
 * Every field is little endian; offsets and sizes in the headers count
 * 512-byte sectors.
 */
import { BlockError } from '../../core/errors.js';

export const SECTOR = 512;
/** 'KDMV' as a big-endian word: hosted sparse extents. */
export const VMDK4_MAGIC = 0x4b444d56;
/** 'COWD' as a big-endian word: ESX server sparse extents. */
export const VMDK3_MAGIC = 0x434f5744;

/** Header flags. */
export const FLAG = {
  /** Newline detection bytes are valid. */
  NL_DETECT: 1 << 0,
  /** A redundant (backup) grain directory exists. */
  RGD: 1 << 1,
  /** Grain table entries of 1 mean "zeroed grain". */
  ZERO_GRAIN: 1 << 2,
  /** Grains are compressed. */
  COMPRESS: 1 << 16,
  /** Grains and metadata carry markers (stream-optimized). */
  MARKER: 1 << 17,
} as const;

/** compressAlgorithm value of deflate. */
export const COMPRESSION_DEFLATE = 1;
/** gd_offset meaning "the grain directory is in the footer". */
export const GD_AT_END = 0xffffffffffffffffn;
/** The grain table entry of a zeroed grain (with {@link FLAG.ZERO_GRAIN}). */
export const GTE_ZEROED = 1;
/** Extents of 2^32 sectors or more cannot hold another grain. */
export const EXTENT_MAX_SECTORS = 2 ** 32;
/** Largest grain QEMU opens (0x200000 sectors, 1 GiB). */
export const MAX_GRAIN_SECTORS = 0x200000;
/** Largest grain directory QEMU opens (entries). */
export const MAX_L1_ENTRIES = 32 * 1024 * 1024;
/** Largest grain table of a hosted sparse extent QEMU opens (entries). */
export const MAX_GTES_PER_GT = 512;
/** Entries of a COWD grain table (fixed). */
export const VMDK3_GT_ENTRIES = 4096;

/** Stream marker types. */
export const MARKER = { END_OF_STREAM: 0, GRAIN_TABLE: 1, GRAIN_DIRECTORY: 2, FOOTER: 3 } as const;
/** Bytes of a grain marker before the compressed data (lba u64, size u32). */
export const GRAIN_MARKER_SIZE = 12;

/** Byte offsets in the first sector of a KDMV extent (the magic included). */
export const V4 = {
  magic: 0,
  version: 4,
  flags: 8,
  capacity: 12,
  granularity: 20,
  descOffset: 28,
  descSize: 36,
  numGtesPerGt: 44,
  rgdOffset: 48,
  gdOffset: 56,
  grainOffset: 64,
  filler: 72,
  checkBytes: 73,
  compressAlgorithm: 77,
  /** End of the packed structure. */
  end: 79,
} as const;

/** The KDMV header fields, 64-bit ones as bigint (a bad header may hold anything). */
export interface Vmdk4Header {
  version: number;
  flags: number;
  capacity: bigint;
  granularity: bigint;
  descOffset: bigint;
  descSize: bigint;
  numGtesPerGt: number;
  rgdOffset: bigint;
  gdOffset: bigint;
  grainOffset: bigint;
  compressAlgorithm: number;
}

/** Decodes a KDMV header from `b` (its first 79 bytes, from the magic on). */
export function decodeVmdk4(b: Uint8Array): Vmdk4Header {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    version: dv.getUint32(V4.version, true),
    flags: dv.getUint32(V4.flags, true),
    capacity: dv.getBigUint64(V4.capacity, true),
    granularity: dv.getBigUint64(V4.granularity, true),
    descOffset: dv.getBigUint64(V4.descOffset, true),
    descSize: dv.getBigUint64(V4.descSize, true),
    numGtesPerGt: dv.getUint32(V4.numGtesPerGt, true),
    rgdOffset: dv.getBigUint64(V4.rgdOffset, true),
    gdOffset: dv.getBigUint64(V4.gdOffset, true),
    grainOffset: dv.getBigUint64(V4.grainOffset, true),
    compressAlgorithm: dv.getUint16(V4.compressAlgorithm, true),
  };
}

/** The COWD header fields QEMU uses. */
export interface Vmdk3Header {
  diskSectors: number;
  granularity: number;
  l1dirOffset: number;
  l1dirSize: number;
}

/** Decodes a COWD header from `b` (from the magic on). */
export function decodeVmdk3(b: Uint8Array): Vmdk3Header {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    diskSectors: dv.getUint32(12, true),
    granularity: dv.getUint32(16, true),
    l1dirOffset: dv.getUint32(20, true),
    l1dirSize: dv.getUint32(24, true),
  };
}

/**
 * Checks the footer block of a stream-optimized extent (the 1536 bytes before
 * the end: footer marker, footer, end-of-stream marker) and returns the
 * header it holds. EINVAL "Invalid footer" as QEMU when a part is wrong.
 */
export function decodeFooter(b: Uint8Array): Vmdk4Header {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const problems: string[] = [];
  if (dv.getUint32(SECTOR, false) !== VMDK4_MAGIC) problems.push(`magic 0x${dv.getUint32(SECTOR, false).toString(16)}`);
  if (dv.getUint32(8, true) !== 0) problems.push(`footer marker size ${dv.getUint32(8, true)}`);
  if (dv.getUint32(12, true) !== MARKER.FOOTER) problems.push(`footer marker type ${dv.getUint32(12, true)}`);
  if (dv.getBigUint64(2 * SECTOR, true) !== 0n) problems.push(`end-of-stream marker value ${dv.getBigUint64(2 * SECTOR, true)}`);
  if (dv.getUint32(2 * SECTOR + 8, true) !== 0) problems.push(`end-of-stream marker size ${dv.getUint32(2 * SECTOR + 8, true)}`);
  if (dv.getUint32(2 * SECTOR + 12, true) !== MARKER.END_OF_STREAM) problems.push(`end-of-stream marker type ${dv.getUint32(2 * SECTOR + 12, true)}`);
  if (problems.length > 0) throw new BlockError('EINVAL', 'Invalid footer', {}, { detail: problems.join(', ') });
  return decodeVmdk4(b.subarray(SECTOR, 2 * SECTOR));
}

/** What a new hosted sparse extent's header says (create). */
export interface NewSparseLayout {
  header: Uint8Array;
  /** Sector of the backup grain directory, then its tables. */
  rgdOffset: number;
  /** Sector of the grain directory, then its tables. */
  gdOffset: number;
  /** Sectors of one directory. */
  gdSectors: number;
  /** Sectors of one grain table. */
  gtSectors: number;
  /** Number of grain tables. */
  gtCount: number;
  /** First sector of grain data (the file's initial length). */
  grainOffset: number;
}

/**
 * The header and layout QEMU gives a new sparse extent of `bytes`: 64 KiB
 * grains, 512-entry tables, the descriptor area at sector 1 (20 sectors),
 * the backup directory and its tables, then the directory and its tables,
 * data from the next 64 KiB boundary. Version 3 when compressed, 2 with
 * zeroed grains, else 1.
 */
export function newSparseLayout(bytes: number, compress: boolean, zeroedGrain: boolean): NewSparseLayout {
  const granularity = 128;
  const gtes = 512;
  const capacity = Math.floor(bytes / SECTOR);
  const grains = Math.ceil(capacity / granularity);
  const gtSectors = Math.ceil((gtes * 4) / SECTOR);
  const gtCount = Math.ceil(grains / gtes);
  const gdSectors = Math.ceil((gtCount * 4) / SECTOR);
  const descOffset = 1;
  const descSize = 20;
  const rgdOffset = descOffset + descSize;
  const gdOffset = rgdOffset + gdSectors + gtSectors * gtCount;
  const grainOffset = Math.ceil((gdOffset + gdSectors + gtSectors * gtCount) / granularity) * granularity;
  const h = new Uint8Array(V4.end);
  const dv = new DataView(h.buffer);
  dv.setUint32(V4.magic, VMDK4_MAGIC, false);
  dv.setUint32(V4.version, compress ? 3 : zeroedGrain ? 2 : 1, true);
  const flags = FLAG.RGD | FLAG.NL_DETECT | (compress ? FLAG.COMPRESS | FLAG.MARKER : 0) | (zeroedGrain ? FLAG.ZERO_GRAIN : 0);
  dv.setUint32(V4.flags, flags, true);
  dv.setBigUint64(V4.capacity, BigInt(capacity), true);
  dv.setBigUint64(V4.granularity, BigInt(granularity), true);
  dv.setBigUint64(V4.descOffset, BigInt(descOffset), true);
  dv.setBigUint64(V4.descSize, BigInt(descSize), true);
  dv.setUint32(V4.numGtesPerGt, gtes, true);
  dv.setBigUint64(V4.rgdOffset, BigInt(rgdOffset), true);
  dv.setBigUint64(V4.gdOffset, BigInt(gdOffset), true);
  dv.setBigUint64(V4.grainOffset, BigInt(grainOffset), true);
  h.set([0x0a, 0x20, 0x0d, 0x0a], V4.checkBytes);
  dv.setUint16(V4.compressAlgorithm, compress ? COMPRESSION_DEFLATE : 0, true);
  return { header: h, rgdOffset, gdOffset, gdSectors, gtSectors, gtCount, grainOffset };
}

/** A grain directory of `layout` whose tables follow it from sector `dirSector`. */
export function newGrainDirectory(layout: NewSparseLayout, dirSector: number): Uint8Array {
  const b = new Uint8Array(layout.gdSectors * SECTOR);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < layout.gtCount; i++) dv.setUint32(i * 4, dirSector + layout.gdSectors + i * layout.gtSectors, true);
  return b;
}

/** Magic numbers of seSparse (ESXi 6.5+) headers. */
export const SESPARSE_CONST_MAGIC = 0xcafebaben;
export const SESPARSE_VOLATILE_MAGIC = 0xcafecafen;

/** The seSparse constant header fields QEMU uses (all 64-bit; sizes and offsets in sectors). */
export interface SeSparseHeader {
  capacity: bigint;
  grainSize: bigint;
  grainTableSize: bigint;
  volatileHeaderOffset: bigint;
  grainDirOffset: bigint;
  grainDirSize: bigint;
  grainTablesOffset: bigint;
  grainsOffset: bigint;
}

const hex16 = (v: bigint) => `0x${v.toString(16).padStart(16, '0')}`;

/** Decodes and checks an seSparse constant header (its 512 bytes) with QEMU's strict rules and messages. */
export function decodeSeSparseConst(b: Uint8Array): SeSparseHeader {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const q = (i: number) => dv.getBigUint64(i * 8, true);
  const magic = q(0);
  if (magic !== SESPARSE_CONST_MAGIC) throw new BlockError('EINVAL', `Bad const header magic: ${hex16(magic)}`);
  if (q(1) !== 0x0000000200000001n) throw new BlockError('ENOTSUP', `Unsupported version: ${hex16(q(1))}`);
  if (q(3) !== 8n) throw new BlockError('ENOTSUP', `Unsupported grain size: ${q(3)}`);
  if (q(4) !== 64n) throw new BlockError('ENOTSUP', `Unsupported grain table size: ${q(4)}`);
  if (q(5) !== 0n) throw new BlockError('ENOTSUP', `Unsupported flags: ${hex16(q(5))}`);
  if (q(6) !== 0n || q(7) !== 0n || q(8) !== 0n || q(9) !== 0n) {
    throw new BlockError('ENOTSUP', `Unsupported reserved bits: ${hex16(q(6))} ${hex16(q(7))} ${hex16(q(8))} ${hex16(q(9))}`);
  }
  for (let i = 26 * 8; i < 512; i++) if (b[i] !== 0) throw new BlockError('ENOTSUP', 'Unsupported non-zero const header padding');
  return {
    capacity: q(2),
    grainSize: q(3),
    grainTableSize: q(4),
    volatileHeaderOffset: q(10),
    grainDirOffset: q(16),
    grainDirSize: q(17),
    grainTablesOffset: q(18),
    grainsOffset: q(24),
  };
}

/** Checks an seSparse volatile header (its 512 bytes) as QEMU does. */
export function checkSeSparseVolatile(b: Uint8Array): void {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const magic = dv.getBigUint64(0, true);
  if (magic !== SESPARSE_VOLATILE_MAGIC) throw new BlockError('EINVAL', `Bad volatile header magic: ${hex16(magic)}`);
  if (dv.getBigUint64(24, true) !== 0n) throw new BlockError('ENOTSUP', 'Image is dirty, Replaying journal not supported');
  for (let i = 32; i < 512; i++) if (b[i] !== 0) throw new BlockError('ENOTSUP', 'Unsupported non-zero volatile header padding');
}
