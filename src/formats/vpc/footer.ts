/**
 * The on-disk structures of a VHD image (Virtual PC / Hyper-V / Azure), all
 * big-endian: the 512-byte hard disk footer (at the end of every image, and
 * copied to offset 0 in dynamic ones) and the 1024-byte dynamic disk header
 * that locates the block allocation table (BAT).
 */

/** Size of the hard disk footer. */
export const FOOTER_SIZE = 512;
/** Size of the dynamic disk header. */
export const DYN_HEADER_SIZE = 1024;
/** Footer cookie. */
export const FOOTER_COOKIE = 'conectix';
/** Dynamic disk header cookie. */
export const DYN_HEADER_COOKIE = 'cxsparse';
/** A BAT entry of a block that is not allocated. */
export const BAT_UNALLOCATED = 0xffffffff;
/** Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC). */
export const VHD_TIMESTAMP_BASE = 946684800;

/** Disk types of the footer's `type` field. */
export const DiskType = {
  FIXED: 2,
  DYNAMIC: 3,
  /** Has a parent image; QEMU 7.2 reads it as a dynamic image without one. */
  DIFFERENCING: 4,
} as const;

/** Byte offsets of the footer fields. */
export const FOOTER = {
  cookie: 0,
  features: 8,
  version: 12,
  dataOffset: 16,
  timestamp: 24,
  creatorApp: 28,
  creatorMajor: 32,
  creatorMinor: 34,
  creatorOs: 36,
  origSize: 40,
  currentSize: 48,
  cyls: 56,
  heads: 58,
  secsPerCyl: 59,
  type: 60,
  checksum: 64,
  uuid: 68,
  savedState: 84,
} as const;

/** Byte offsets of the dynamic disk header fields. */
export const DYN = {
  cookie: 0,
  dataOffset: 8,
  tableOffset: 16,
  version: 24,
  maxTableEntries: 28,
  blockSize: 32,
  checksum: 36,
} as const;

/** The footer fields the driver uses (the rest is kept as bytes). */
export interface VhdFooter {
  /** The 512 bytes as read (checksum included): written back verbatim when the footer moves. */
  readonly bytes: Uint8Array;
  readonly dataOffset: bigint;
  /** The four creator application bytes, as a latin-1 string ("qemu", "win ", "tap\0"). */
  readonly creatorApp: string;
  readonly currentSize: bigint;
  readonly cyls: number;
  readonly heads: number;
  readonly secsPerCyl: number;
  readonly type: number;
  readonly checksum: number;
}

/** The dynamic disk header fields the driver uses. */
export interface VhdDynHeader {
  readonly cookie: string;
  readonly tableOffset: bigint;
  readonly maxTableEntries: number;
  readonly blockSize: number;
}

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** `n` bytes at `at` as a latin-1 string (NULs kept). */
export function fieldText(b: Uint8Array, at: number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(b[at + i]!);
  return s;
}

function putText(b: Uint8Array, at: number, s: string): void {
  for (let i = 0; i < s.length; i++) b[at + i] = s.charCodeAt(i);
}

/**
 * The VHD checksum: the one's complement of the byte sum, taken with the
 * 4-byte checksum field at `checksumAt` counted as zeros.
 */
export function vhdChecksum(b: Uint8Array, checksumAt: number): number {
  let sum = 0;
  for (let i = 0; i < b.length; i++) {
    if (i >= checksumAt && i < checksumAt + 4) continue;
    sum = (sum + b[i]!) >>> 0;
  }
  return ~sum >>> 0;
}

/** Whether the 8 bytes at the start of `b` are the footer cookie. */
export function hasFooterCookie(b: Uint8Array): boolean {
  return b.length >= 8 && fieldText(b, 0, 8) === FOOTER_COOKIE;
}

/** Decodes a footer (512 bytes); validation is the caller's. */
export function decodeFooter(bytes: Uint8Array): VhdFooter {
  const v = view(bytes);
  return {
    bytes: bytes.slice(0, FOOTER_SIZE),
    dataOffset: v.getBigUint64(FOOTER.dataOffset),
    creatorApp: fieldText(bytes, FOOTER.creatorApp, 4),
    currentSize: v.getBigUint64(FOOTER.currentSize),
    cyls: v.getUint16(FOOTER.cyls),
    heads: v.getUint8(FOOTER.heads),
    secsPerCyl: v.getUint8(FOOTER.secsPerCyl),
    type: v.getUint32(FOOTER.type),
    checksum: v.getUint32(FOOTER.checksum),
  };
}

/** Decodes a dynamic disk header (1024 bytes); validation is the caller's. */
export function decodeDynHeader(bytes: Uint8Array): VhdDynHeader {
  const v = view(bytes);
  return {
    cookie: fieldText(bytes, DYN.cookie, 8),
    tableOffset: v.getBigUint64(DYN.tableOffset),
    maxTableEntries: v.getUint32(DYN.maxTableEntries),
    blockSize: v.getUint32(DYN.blockSize),
  };
}

/** What a new image's footer holds (the fields QEMU's create sets). */
export interface NewFooter {
  dataOffset: bigint;
  timestamp: number;
  creatorApp: string;
  size: number;
  cyls: number;
  heads: number;
  secsPerCyl: number;
  type: number;
  uuid: Uint8Array;
}

/** Encodes a new footer as QEMU's create writes it, checksum included. */
export function encodeFooter(f: NewFooter): Uint8Array {
  const b = new Uint8Array(FOOTER_SIZE);
  const v = view(b);
  putText(b, FOOTER.cookie, FOOTER_COOKIE);
  v.setUint32(FOOTER.features, 0x02);
  v.setUint32(FOOTER.version, 0x00010000);
  v.setBigUint64(FOOTER.dataOffset, f.dataOffset);
  v.setUint32(FOOTER.timestamp, f.timestamp >>> 0);
  putText(b, FOOTER.creatorApp, f.creatorApp);
  // Virtual PC 2007's version, as QEMU writes.
  v.setUint16(FOOTER.creatorMajor, 5);
  v.setUint16(FOOTER.creatorMinor, 3);
  putText(b, FOOTER.creatorOs, 'Wi2k');
  v.setBigUint64(FOOTER.origSize, BigInt(f.size));
  v.setBigUint64(FOOTER.currentSize, BigInt(f.size));
  v.setUint16(FOOTER.cyls, f.cyls);
  v.setUint8(FOOTER.heads, f.heads);
  v.setUint8(FOOTER.secsPerCyl, f.secsPerCyl);
  v.setUint32(FOOTER.type, f.type);
  b.set(f.uuid.subarray(0, 16), FOOTER.uuid);
  v.setUint32(FOOTER.checksum, vhdChecksum(b, FOOTER.checksum));
  return b;
}

/** Encodes a new dynamic disk header: no parent, the BAT at `tableOffset`. */
export function encodeDynHeader(tableOffset: number, maxTableEntries: number, blockSize: number): Uint8Array {
  const b = new Uint8Array(DYN_HEADER_SIZE);
  const v = view(b);
  putText(b, DYN.cookie, DYN_HEADER_COOKIE);
  // All 64 bits set: the specification says 0xFFFFFFFF, Microsoft's tools expect this.
  v.setBigUint64(DYN.dataOffset, 0xffffffffffffffffn);
  v.setBigUint64(DYN.tableOffset, BigInt(tableOffset));
  v.setUint32(DYN.version, 0x00010000);
  v.setUint32(DYN.maxTableEntries, maxTableEntries);
  v.setUint32(DYN.blockSize, blockSize);
  v.setUint32(DYN.checksum, vhdChecksum(b, DYN.checksum));
  return b;
}

/** A random (version 4) UUID, as QEMU's create stores in the footer. */
export function randomUuid(): Uint8Array {
  const u = crypto.getRandomValues(new Uint8Array(16));
  u[6] = (u[6]! & 0x0f) | 0x40;
  u[8] = (u[8]! & 0x3f) | 0x80;
  return u;
}
