/**
 * The VHDX header section (the first MiB of every image), little-endian:
 *
 * - 0: the file identifier, "vhdxfile" then the creator as UTF-16;
 * - 64 KiB and 128 KiB: two headers (80 bytes, CRC-32C over their 4 KiB),
 *   the one with the higher sequence number is current;
 * - 192 KiB and 256 KiB: two copies of the region table (CRC-32C over 64
 *   KiB), which locates the BAT and the metadata region.
 *
 * GUIDs are kept as their 16 on-disk bytes (data1..3 little-endian, data4 as is).
 */
import { vhdxChecksum, setVhdxChecksum } from './crc32c.js';

const KiB = 1024;
export const MiB = 1024 * 1024;
/** Every structure of the header section sits in a 64 KiB block. */
export const HEADER_BLOCK_SIZE = 64 * KiB;
export const HEADER1_OFFSET = HEADER_BLOCK_SIZE;
export const HEADER2_OFFSET = 2 * HEADER_BLOCK_SIZE;
export const REGION_TABLE_OFFSET = 3 * HEADER_BLOCK_SIZE;
export const REGION_TABLE2_OFFSET = 4 * HEADER_BLOCK_SIZE;
/** End of the header section: the log of a new image starts here. */
export const HEADER_SECTION_END = MiB;
/** The span a header's checksum covers. */
export const HEADER_CRC_SIZE = 4 * KiB;
/** Bytes of the header structure itself (what a header update writes). */
export const HEADER_STRUCT_SIZE = 80;

export const FILE_SIGNATURE = 'vhdxfile';
const HEADER_SIGNATURE = 0x64616568; // "head"
const REGION_SIGNATURE = 0x69676572; // "regi"
/** The spec's bound on region table entries. */
export const REGION_MAX_ENTRIES = 2047;
/** A region the reader must understand to open the file. */
export const REGION_REQUIRED = 1;

/** A GUID from its textual parts, as the spec writes them, in on-disk byte order. */
export function guid(d1: number, d2: number, d3: number, d4: number[]): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, d1, true);
  v.setUint16(4, d2, true);
  v.setUint16(6, d3, true);
  b.set(d4, 8);
  return b;
}

export const BAT_GUID = guid(0x2dc27766, 0xf623, 0x4200, [0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08]);
export const METADATA_GUID = guid(0x8b7ca206, 0x4790, 0x4b9a, [0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e]);

export function guidEq(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function isZeroGuid(g: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (g[i] !== 0) return false;
  return true;
}

/** A random (version 4) UUID in its 16 bytes, as QEMU generates the image's GUIDs. */
export function randomGuid(): Uint8Array {
  const b = globalThis.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

/** One of the two headers, decoded. */
export interface VhdxHeader {
  signature: number;
  checksum: number;
  sequenceNumber: bigint;
  fileWriteGuid: Uint8Array;
  dataWriteGuid: Uint8Array;
  logGuid: Uint8Array;
  logVersion: number;
  version: number;
  logLength: number;
  logOffset: bigint;
}

/** Decodes the header structure at the start of `b`. */
export function decodeHeader(b: Uint8Array): VhdxHeader {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    signature: v.getUint32(0, true),
    checksum: v.getUint32(4, true),
    sequenceNumber: v.getBigUint64(8, true),
    fileWriteGuid: b.slice(16, 32),
    dataWriteGuid: b.slice(32, 48),
    logGuid: b.slice(48, 64),
    logVersion: v.getUint16(64, true),
    version: v.getUint16(66, true),
    logLength: v.getUint32(68, true),
    logOffset: v.getBigUint64(72, true),
  };
}

/** Writes `h` over the first 80 bytes of `block` (a header's 4 KiB) and sets its checksum over the 4 KiB. */
export function encodeHeaderInto(h: VhdxHeader, block: Uint8Array): void {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(0, h.signature, true);
  v.setBigUint64(8, h.sequenceNumber, true);
  block.set(h.fileWriteGuid, 16);
  block.set(h.dataWriteGuid, 32);
  block.set(h.logGuid, 48);
  v.setUint16(64, h.logVersion, true);
  v.setUint16(66, h.version, true);
  v.setUint32(68, h.logLength, true);
  v.setBigUint64(72, h.logOffset, true);
  setVhdxChecksum(block.subarray(0, HEADER_CRC_SIZE), 4);
  h.checksum = v.getUint32(4, true);
}

/** A new image's header (QEMU's values: version 1, log version 0, no log GUID). */
export function newHeader(sequenceNumber: bigint, logLength: number): VhdxHeader {
  return {
    signature: HEADER_SIGNATURE,
    checksum: 0,
    sequenceNumber,
    fileWriteGuid: randomGuid(),
    dataWriteGuid: randomGuid(),
    logGuid: new Uint8Array(16),
    logVersion: 0,
    version: 1,
    logLength,
    logOffset: BigInt(HEADER_SECTION_END),
  };
}

/** A header's 4 KiB as read: the header if its checksum, signature and version hold, else null. */
export function validHeader(block: Uint8Array): VhdxHeader | null {
  if (vhdxChecksum(block, 4) !== new DataView(block.buffer, block.byteOffset).getUint32(4, true)) return null;
  const h = decodeHeader(block);
  return h.signature === HEADER_SIGNATURE && h.version === 1 ? h : null;
}

/** Whether two headers' structures are byte for byte the same (Disk2VHD writes two such). */
export function sameHeaderBytes(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < HEADER_STRUCT_SIZE; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Which header is current (0 or 1), or -1 when none is: the only valid one,
 * else the higher sequence number; equal numbers only for identical headers.
 */
export function pickHeader(h1: VhdxHeader | null, h2: VhdxHeader | null, identical: boolean): number {
  if (h1 && !h2) return 0;
  if (!h1 && h2) return 1;
  if (!h1 || !h2) return -1;
  if (h1.sequenceNumber > h2.sequenceNumber) return 0;
  if (h2.sequenceNumber > h1.sequenceNumber) return 1;
  return identical ? 0 : -1;
}

/** One region table entry. */
export interface RegionEntry {
  guid: Uint8Array;
  fileOffset: bigint;
  length: number;
  dataBits: number;
}

/** The region table as read, or why it is refused. */
export type RegionTable =
  | { ok: true; entries: RegionEntry[] }
  | { ok: false; why: string };

/** Decodes and checks the 64 KiB region table (checksum, signature, entry count). */
export function decodeRegionTable(b: Uint8Array): RegionTable {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const stored = v.getUint32(4, true);
  const sum = vhdxChecksum(b, 4);
  if (sum !== stored) return { ok: false, why: `region table checksum 0x${stored.toString(16)}, computed 0x${sum.toString(16)}` };
  const sig = v.getUint32(0, true);
  if (sig !== REGION_SIGNATURE) return { ok: false, why: `region table signature 0x${sig.toString(16)}` };
  const count = v.getUint32(8, true);
  if (count > REGION_MAX_ENTRIES) return { ok: false, why: `region table entry count ${count} > ${REGION_MAX_ENTRIES}` };
  const entries: RegionEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = 16 + 32 * i;
    entries.push({
      guid: b.slice(at, at + 16),
      fileOffset: v.getBigUint64(at + 16, true),
      length: v.getUint32(at + 24, true),
      dataBits: v.getUint32(at + 28, true),
    });
  }
  return { ok: true, entries };
}

/** The 64 KiB region table QEMU writes: the BAT, then the metadata region. */
export function encodeRegionTable(bat: { offset: number; length: number }, metadata: { offset: number; length: number }): Uint8Array {
  const b = new Uint8Array(HEADER_BLOCK_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, REGION_SIGNATURE, true);
  v.setUint32(8, 2, true);
  const put = (at: number, g: Uint8Array, r: { offset: number; length: number }): void => {
    b.set(g, at);
    v.setBigUint64(at + 16, BigInt(r.offset), true);
    v.setUint32(at + 24, r.length, true);
  };
  put(16, BAT_GUID, bat);
  put(48, METADATA_GUID, metadata);
  setVhdxChecksum(b, 4);
  return b;
}

/** The file identifier block's start: the signature and the creator as UTF-16LE without a terminator. */
export function encodeFileId(creator: string): Uint8Array {
  const b = new Uint8Array(8 + 2 * creator.length);
  for (let i = 0; i < 8; i++) b[i] = FILE_SIGNATURE.charCodeAt(i);
  for (let i = 0; i < creator.length; i++) {
    b[8 + 2 * i] = creator.charCodeAt(i) & 0xff;
    b[9 + 2 * i] = creator.charCodeAt(i) >> 8;
  }
  return b;
}
