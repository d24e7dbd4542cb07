/**
 * The qcow (version 1) header: 48 big-endian bytes at offset 0, and QEMU
 * 7.2's checks of it (block/qcow.c), in its order and with its messages.
 *
 * Table entries (L1 and L2) are 64-bit big-endian file offsets, 0 when
 * unallocated. An L2 entry with bit 63 set is a compressed cluster: the low
 * 63 - cluster_bits bits are its offset, the bits above its compressed size.
 */
import { BlockError, einval } from '../../core/errors.js';

export const QCOW_MAGIC = 0x514649fb;
export const QCOW_VERSION = 1;
export const QCOW_HEADER_SIZE = 48;
export const QCOW_CRYPT_NONE = 0;
export const QCOW_CRYPT_AES = 1;
/** Longest backing file name QEMU reads. */
export const QCOW_BACKING_NAME_MAX = 1023;

export interface QcowHeader {
  magic: number;
  version: number;
  backingFileOffset: bigint;
  backingFileSize: number;
  mtime: number;
  size: bigint;
  clusterBits: number;
  l2Bits: number;
  cryptMethod: number;
  l1TableOffset: bigint;
}

export function decodeHeader(b: Uint8Array): QcowHeader {
  const dv = new DataView(b.buffer, b.byteOffset, QCOW_HEADER_SIZE);
  return {
    magic: dv.getUint32(0),
    version: dv.getUint32(4),
    backingFileOffset: dv.getBigUint64(8),
    backingFileSize: dv.getUint32(16),
    mtime: dv.getUint32(20),
    size: dv.getBigUint64(24),
    clusterBits: b[32]!,
    l2Bits: b[33]!,
    cryptMethod: dv.getUint32(36),
    l1TableOffset: dv.getBigUint64(40),
  };
}

export function encodeHeader(h: QcowHeader): Uint8Array {
  const b = new Uint8Array(QCOW_HEADER_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, h.magic);
  dv.setUint32(4, h.version);
  dv.setBigUint64(8, h.backingFileOffset);
  dv.setUint32(16, h.backingFileSize);
  dv.setUint32(20, h.mtime);
  dv.setBigUint64(24, h.size);
  b[32] = h.clusterBits;
  b[33] = h.l2Bits;
  dv.setUint32(36, h.cryptMethod);
  dv.setBigUint64(40, h.l1TableOffset);
  return b;
}

/** What open derives from a valid header. */
export interface QcowGeometry {
  clusterBits: number;
  clusterSize: number;
  l2Bits: number;
  /** Entries per L2 table. */
  l2Size: number;
  l1Size: number;
  /** Guest size in bytes (whole sectors, as QEMU keeps it). */
  length: number;
}

/** QEMU's qcow_open checks, up to the L1 table's size. */
export function validateHeader(h: QcowHeader): QcowGeometry {
  if (h.magic !== QCOW_MAGIC) throw einval('Image not in qcow format', {}, `magic 0x${h.magic.toString(16)}`);
  if (h.version !== QCOW_VERSION) {
    throw new BlockError('ENOTSUP', `qcow (v${QCOW_VERSION}) does not support qcow version ${h.version}`, {}, {
      ...(h.version === 2 || h.version === 3 ? { hint: "Try the 'qcow2' driver instead.\n" } : {}),
    });
  }
  if (h.size <= 1n) throw einval('Image size is too small (must be at least 2 bytes)', {}, `size ${h.size}`);
  if (h.clusterBits < 9 || h.clusterBits > 16) throw einval('Cluster size must be between 512 and 64k', {}, `cluster_bits ${h.clusterBits}`);
  if (h.l2Bits < 6 || h.l2Bits > 13) throw einval('L2 table size must be between 512 and 64k', {}, `l2_bits ${h.l2Bits}`);
  return geometry(h);
}

/** The checks after the encryption ones: the L1 table's size. */
export function geometry(h: QcowHeader): QcowGeometry {
  const shift = BigInt(h.clusterBits + h.l2Bits);
  const span = 1n << shift;
  if (h.size > 0xffffffffffffffffn - span) throw einval('Image too large', {}, `size ${h.size}`);
  const l1Size = (h.size + span - 1n) >> shift;
  if (l1Size > BigInt(Math.floor(0x7fffffff / 8))) throw einval('Image too large', {}, `${l1Size} L1 entries`);
  const sectors = h.size / 512n;
  if (sectors * 512n > BigInt(Number.MAX_SAFE_INTEGER)) throw new BlockError('EFBIG', 'Image too large', {}, { detail: `size ${h.size}` });
  return {
    clusterBits: h.clusterBits,
    clusterSize: 1 << h.clusterBits,
    l2Bits: h.l2Bits,
    l2Size: 1 << h.l2Bits,
    l1Size: Number(l1Size),
    length: Number(sectors) * 512,
  };
}

/** An L2 entry, read as a number when plain, and split when compressed. */
export interface QcowEntry {
  /** 0: unallocated. */
  offset: number;
  compressed: boolean;
  /** Compressed size in bytes (compressed entries). */
  csize: number;
}

/** Decodes the entry at byte `at` of `dv` (a table) for clusters of 2^`clusterBits`. */
export function readEntry(dv: DataView, at: number, clusterBits: number): QcowEntry {
  const hi = dv.getUint32(at);
  const lo = dv.getUint32(at + 4);
  if (hi & 0x80000000) {
    const v = (BigInt(hi) << 32n) | BigInt(lo);
    const shift = BigInt(63 - clusterBits);
    const offset = Number(v & ((1n << shift) - 1n));
    const csize = Number((v >> shift) & BigInt((1 << clusterBits) - 1));
    return { offset, compressed: true, csize };
  }
  return { offset: hi * 4294967296 + lo, compressed: false, csize: 0 };
}

/** The entry of a compressed cluster of `csize` bytes at `offset`. */
export function compressedEntry(offset: number, csize: number, clusterBits: number): bigint {
  return (1n << 63n) | (BigInt(csize) << BigInt(63 - clusterBits)) | BigInt(offset);
}
