/**
 * The QED header (little-endian, 64 bytes at offset 0) and the rules QEMU
 * 7.2 applies to its fields: cluster and table sizes, the largest image a
 * geometry can address, and which file offsets a table entry may name.
 *
 * Table entries: 0 = unallocated (read from the backing file), 1 = a zero
 * cluster, anything else the cluster's byte offset in the file.
 */
import { BlockError, einval } from '../../core/errors.js';

/** "QED\0" read as a little-endian 32-bit number. */
export const QED_MAGIC = 0x00444551;
/** sizeof(QEDHeader). */
export const QED_HEADER_SIZE = 64;

/** Feature bits (QED_F_*). */
export const QED_F = {
  /** The image names a backing file. */
  BACKING_FILE: 0x01n,
  /** The image was not closed cleanly: check it before writing. */
  NEED_CHECK: 0x02n,
  /** The backing file is raw: do not probe it. */
  BACKING_FORMAT_NO_PROBE: 0x04n,
} as const;
/** The feature bits QEMU 7.2 knows. */
export const QED_FEATURE_MASK = QED_F.BACKING_FILE | QED_F.NEED_CHECK | QED_F.BACKING_FORMAT_NO_PROBE;

export const QED_MIN_CLUSTER_SIZE = 4 * 1024;
export const QED_MAX_CLUSTER_SIZE = 64 * 1024 * 1024;
export const QED_DEFAULT_CLUSTER_SIZE = 65536;
export const QED_MIN_TABLE_SIZE = 1;
export const QED_MAX_TABLE_SIZE = 16;
export const QED_DEFAULT_TABLE_SIZE = 4;

/** Table entry of an unallocated cluster. */
export const QED_UNALLOCATED = 0;
/** Table entry of a zero cluster. */
export const QED_ZERO = 1;

/** Field offsets in the header. */
const F = {
  magic: 0,
  clusterSize: 4,
  tableSize: 8,
  headerSize: 12,
  features: 16,
  compatFeatures: 24,
  autoclearFeatures: 32,
  l1TableOffset: 40,
  imageSize: 48,
  backingNameOffset: 56,
  backingNameSize: 60,
} as const;

/** The decoded header. 64-bit fields stay bigint where the image may put anything in them. */
export interface QedHeader {
  magic: number;
  clusterSize: number;
  /** L1 and L2 tables' size, in clusters. */
  tableSize: number;
  /** Header area, in clusters. */
  headerSize: number;
  features: bigint;
  compatFeatures: bigint;
  autoclearFeatures: bigint;
  l1TableOffset: bigint;
  imageSize: bigint;
  backingNameOffset: number;
  backingNameSize: number;
}

export function decodeHeader(b: Uint8Array): QedHeader {
  const dv = new DataView(b.buffer, b.byteOffset, QED_HEADER_SIZE);
  return {
    magic: dv.getUint32(F.magic, true),
    clusterSize: dv.getUint32(F.clusterSize, true),
    tableSize: dv.getUint32(F.tableSize, true),
    headerSize: dv.getUint32(F.headerSize, true),
    features: dv.getBigUint64(F.features, true),
    compatFeatures: dv.getBigUint64(F.compatFeatures, true),
    autoclearFeatures: dv.getBigUint64(F.autoclearFeatures, true),
    l1TableOffset: dv.getBigUint64(F.l1TableOffset, true),
    imageSize: dv.getBigUint64(F.imageSize, true),
    backingNameOffset: dv.getUint32(F.backingNameOffset, true),
    backingNameSize: dv.getUint32(F.backingNameSize, true),
  };
}

/** Writes `h` into the first 64 bytes of `into` (a new 64-byte buffer when not given). */
export function encodeHeader(h: QedHeader, into = new Uint8Array(QED_HEADER_SIZE)): Uint8Array {
  const dv = new DataView(into.buffer, into.byteOffset, QED_HEADER_SIZE);
  dv.setUint32(F.magic, h.magic, true);
  dv.setUint32(F.clusterSize, h.clusterSize, true);
  dv.setUint32(F.tableSize, h.tableSize, true);
  dv.setUint32(F.headerSize, h.headerSize, true);
  dv.setBigUint64(F.features, h.features, true);
  dv.setBigUint64(F.compatFeatures, h.compatFeatures, true);
  dv.setBigUint64(F.autoclearFeatures, h.autoclearFeatures, true);
  dv.setBigUint64(F.l1TableOffset, h.l1TableOffset, true);
  dv.setBigUint64(F.imageSize, h.imageSize, true);
  dv.setUint32(F.backingNameOffset, h.backingNameOffset, true);
  dv.setUint32(F.backingNameSize, h.backingNameSize, true);
  return into;
}

const isPow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

export function clusterSizeValid(cs: number): boolean {
  return cs >= QED_MIN_CLUSTER_SIZE && cs <= QED_MAX_CLUSTER_SIZE && isPow2(cs);
}

export function tableSizeValid(ts: number): boolean {
  return ts >= QED_MIN_TABLE_SIZE && ts <= QED_MAX_TABLE_SIZE && isPow2(ts);
}

/** The largest image a geometry addresses: entries per table, squared, times the cluster size. */
export function maxImageSize(cs: number, ts: number): bigint {
  const entries = BigInt((ts * cs) / 8);
  // QEMU computes this in 64 bits; with the largest geometry it wraps, as here.
  return (entries * BigInt(cs) * entries) & 0xffffffffffffffffn;
}

export function imageSizeValid(size: bigint, cs: number, ts: number): boolean {
  return size % 512n === 0n && size <= maxImageSize(cs, ts);
}

/**
 * QEMU's qed_bytes_to_clusters, quirk included: it divides the rounded-up
 * byte count by (cluster size - 1), so from cluster_size - 1 clusters on the
 * answer is one more per cluster_size - 1. Check's cluster bitmap and the
 * number of clusters an allocating write takes follow this formula; so must we.
 */
export function bytesToClusters(bytes: number, cs: number): number {
  const k = Math.ceil(bytes / cs);
  return k + Math.floor(k / (cs - 1));
}

/** The sizes the open image works with, derived from the header. */
export interface QedGeometry {
  clusterSize: number;
  tableSize: number;
  /** Entries per table. */
  tableEntries: number;
  /** Bytes of one table. */
  tableBytes: number;
  /** Guest bytes covered by one L2 table. */
  l2Span: number;
  /** Bytes of the header area (header_size clusters). */
  headerBytes: number;
}

/**
 * Checks the header as QEMU's open does, in its order and with its
 * messages, against the file's length rounded down to a cluster
 * (`fileSize`). Returns the geometry.
 */
export function validateHeader(h: QedHeader, fileLength: number): QedGeometry {
  if (h.magic !== QED_MAGIC) throw einval('Image not in QED format', {}, `magic 0x${h.magic.toString(16)}`);
  const unknown = h.features & ~QED_FEATURE_MASK;
  if (unknown) throw new BlockError('ENOTSUP', `Unsupported QED features: ${unknown.toString(16)}`);
  if (!clusterSizeValid(h.clusterSize)) throw einval('QED cluster size is invalid', {}, `cluster_size ${h.clusterSize}`);
  const cs = h.clusterSize;
  // QEMU rounds the file's length down to a whole cluster.
  const size = fileLength - (fileLength % cs);
  if (!tableSizeValid(h.tableSize)) throw einval('QED table size is invalid', {}, `table_size ${h.tableSize}`);
  if (!imageSizeValid(h.imageSize, cs, h.tableSize)) throw einval('QED image size is invalid', {}, `image_size ${h.imageSize}`);
  const geo: QedGeometry = {
    clusterSize: cs,
    tableSize: h.tableSize,
    tableEntries: (cs * h.tableSize) / 8,
    tableBytes: cs * h.tableSize,
    l2Span: ((cs * h.tableSize) / 8) * cs,
    headerBytes: h.headerSize * cs,
  };
  if (!tableOffsetValid(h.l1TableOffset, geo, h.headerSize, size)) {
    throw einval('QED table offset is invalid', {}, `l1_table_offset 0x${h.l1TableOffset.toString(16)}`);
  }
  if (h.headerSize > Math.floor(0xffffffff / cs)) throw einval('QED header size is too large', {}, `header_size ${h.headerSize}`);
  return geo;
}

/** A data cluster's offset is cluster-aligned, past the header and inside the file. */
export function clusterOffsetValid(offset: bigint | number, cs: number, headerBytes: bigint | number, fileSize: number): boolean {
  if (typeof offset === 'number' && typeof headerBytes === 'number') {
    return offset % cs === 0 && offset >= headerBytes && offset < fileSize;
  }
  const o = BigInt(offset);
  return o % BigInt(cs) === 0n && o >= BigInt(headerBytes) && o < BigInt(fileSize);
}

/** A table's first and last clusters are valid cluster offsets (QEMU's qed_check_table_offset). */
export function tableOffsetValid(offset: bigint | number, geo: Pick<QedGeometry, 'clusterSize' | 'tableSize'>, headerSize: number, fileSize: number): boolean {
  const o = BigInt(offset);
  const end = (o + BigInt((geo.tableSize - 1) * geo.clusterSize)) & 0xffffffffffffffffn;
  if (end <= o) {
    // QEMU's overflow test also refuses a one-cluster table (its end equals its start).
    return false;
  }
  const hb = BigInt(headerSize) * BigInt(geo.clusterSize);
  return clusterOffsetValid(o, geo.clusterSize, hb, fileSize) && clusterOffsetValid(end, geo.clusterSize, hb, fileSize);
}

/** The autoclear feature bits QEMU 7.2 knows (none). */
export const QED_AUTOCLEAR_KNOWN = 0n;
