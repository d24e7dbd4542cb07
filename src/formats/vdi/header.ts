/**
 * The VDI (VirtualBox) header: the on-disk layout of its 512 bytes, the
 * decoder, the checks QEMU 7.2 makes before it uses a header (with its
 * messages), and the encoder of a new header for create.
 *
 * All fields are little endian. The header is kept as the bytes read from
 * the image: writes change `blocks_allocated` (and the rounded disk size) in
 * a copy of them, so every other byte (text, description, geometry, UUIDs,
 * the unused tail) goes back to the file as it was, as QEMU writes it.
 */
import { BlockError } from '../../core/errors.js';

/** Size of the header structure QEMU reads and writes (sizeof(VdiHeader)). */
export const VDI_HEADER_SIZE = 512;
/** The signature at byte 64. */
export const VDI_SIGNATURE = 0xbeda107f;
/** The only version QEMU opens: 1.1. */
export const VDI_VERSION_1_1 = 0x00010001;
/** image_type values. */
export const VDI_TYPE_DYNAMIC = 1;
export const VDI_TYPE_STATIC = 2;
/** The sector size every VDI image QEMU opens has, and the unit of its offsets. */
export const VDI_SECTOR = 512;
/** The only block size QEMU 7.2 opens or creates (1 MiB). */
export const VDI_BLOCK_SIZE = 1048576;
/** Block map entry of a block never written: reads as zeros. */
export const VDI_UNALLOCATED = 0xffffffff;
/** Block map entry of a discarded block: reads as zeros. */
export const VDI_DISCARDED = 0xfffffffe;
/**
 * Largest block count QEMU opens: the map, rounded up to whole sectors, must
 * stay below 2 GiB (so a map is at most 2 GiB in memory, and only when the
 * file holds it: see vdi.ts).
 */
export const VDI_BLOCKS_IN_IMAGE_MAX = (0x80000000 - VDI_SECTOR) / 4;
/** Largest disk size QEMU opens or creates (just under 512 TiB). */
export const VDI_DISK_SIZE_MAX = VDI_BLOCKS_IN_IMAGE_MAX * VDI_BLOCK_SIZE;
/** The text QEMU puts at the start of the images it creates. */
export const VDI_TEXT = '<<< QEMU VM Virtual Disk Image >>>\n';

/** Byte offsets of the fields (QEMU's packed VdiHeader). */
export const VDI_FIELD = {
  TEXT: 0,
  SIGNATURE: 64,
  VERSION: 68,
  HEADER_SIZE: 72,
  IMAGE_TYPE: 76,
  IMAGE_FLAGS: 80,
  DESCRIPTION: 84,
  OFFSET_BMAP: 340,
  OFFSET_DATA: 344,
  CYLINDERS: 348,
  HEADS: 352,
  SECTORS: 356,
  SECTOR_SIZE: 360,
  DISK_SIZE: 368,
  BLOCK_SIZE: 376,
  BLOCK_EXTRA: 380,
  BLOCKS_IN_IMAGE: 384,
  BLOCKS_ALLOCATED: 388,
  UUID_IMAGE: 392,
  UUID_LAST_SNAP: 408,
  UUID_LINK: 424,
  UUID_PARENT: 440,
} as const;

/** The fields QEMU uses, decoded. */
export interface VdiHeader {
  signature: number;
  version: number;
  headerSize: number;
  imageType: number;
  offsetBmap: number;
  offsetData: number;
  sectorSize: number;
  /** The disk size as stored (64 bits, may exceed 2^53 in a bad header). */
  diskSize: bigint;
  blockSize: number;
  blocksInImage: number;
  blocksAllocated: number;
  linkUuidNull: boolean;
  parentUuidNull: boolean;
}

const u32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

function isNull(b: Uint8Array, at: number): boolean {
  for (let i = at; i < at + 16; i++) if (b[i] !== 0) return false;
  return true;
}

/** Decodes the 512 header bytes (a short file reads as zeros past its end, as QEMU reads it). */
export function decodeHeader(b: Uint8Array): VdiHeader {
  if (b.length !== VDI_HEADER_SIZE) throw new BlockError('EINVAL', `VDI header buffer of ${b.length} bytes, expected ${VDI_HEADER_SIZE}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    signature: u32(b, VDI_FIELD.SIGNATURE),
    version: u32(b, VDI_FIELD.VERSION),
    headerSize: u32(b, VDI_FIELD.HEADER_SIZE),
    imageType: u32(b, VDI_FIELD.IMAGE_TYPE),
    offsetBmap: u32(b, VDI_FIELD.OFFSET_BMAP),
    offsetData: u32(b, VDI_FIELD.OFFSET_DATA),
    sectorSize: u32(b, VDI_FIELD.SECTOR_SIZE),
    diskSize: dv.getBigUint64(VDI_FIELD.DISK_SIZE, true),
    blockSize: u32(b, VDI_FIELD.BLOCK_SIZE),
    blocksInImage: u32(b, VDI_FIELD.BLOCKS_IN_IMAGE),
    blocksAllocated: u32(b, VDI_FIELD.BLOCKS_ALLOCATED),
    linkUuidNull: isNull(b, VDI_FIELD.UUID_LINK),
    parentUuidNull: isNull(b, VDI_FIELD.UUID_PARENT),
  };
}

const hex = (n: number | bigint): string => n.toString(16);

function unsupported(text: string): BlockError {
  return new BlockError('ENOTSUP', text, { expected: 'a VDI 1.1 image QEMU can open' });
}

/**
 * QEMU's checks of a header, in its order and with its messages (vdi_open).
 * Returns the guest disk size: the stored one rounded up to whole sectors,
 * as QEMU takes odd sizes ('VBoxManage convertfromraw' writes them).
 */
export function validateHeader(h: VdiHeader): number {
  if (h.diskSize > BigInt(VDI_DISK_SIZE_MAX)) {
    throw unsupported(`Unsupported VDI image size (size is 0x${hex(h.diskSize)}, max supported is 0x${hex(VDI_DISK_SIZE_MAX)})`);
  }
  const diskSize = Math.ceil(Number(h.diskSize) / VDI_SECTOR) * VDI_SECTOR;
  if (h.signature !== VDI_SIGNATURE) {
    throw new BlockError('EINVAL', `Image not in VDI format (bad signature ${hex(h.signature).padStart(8, '0')})`, { offset: VDI_FIELD.SIGNATURE });
  }
  if (h.version !== VDI_VERSION_1_1) {
    throw unsupported(`unsupported VDI image (version ${h.version >>> 16}.${h.version & 0xffff})`);
  }
  if (h.offsetBmap % VDI_SECTOR !== 0) throw unsupported(`unsupported VDI image (unaligned block map offset 0x${hex(h.offsetBmap)})`);
  if (h.offsetData % VDI_SECTOR !== 0) throw unsupported(`unsupported VDI image (unaligned data offset 0x${hex(h.offsetData)})`);
  if (h.sectorSize !== VDI_SECTOR) throw unsupported(`unsupported VDI image (sector size ${h.sectorSize} is not ${VDI_SECTOR})`);
  if (h.blockSize !== VDI_BLOCK_SIZE) throw unsupported(`unsupported VDI image (block size ${h.blockSize} is not ${VDI_BLOCK_SIZE})`);
  const room = h.blocksInImage * h.blockSize;
  if (diskSize > room) throw unsupported(`unsupported VDI image (disk size ${diskSize}, image bitmap has room for ${room})`);
  if (!h.linkUuidNull) throw unsupported('unsupported VDI image (non-NULL link UUID)');
  if (!h.parentUuidNull) throw unsupported('unsupported VDI image (non-NULL parent UUID)');
  if (h.blocksInImage > VDI_BLOCKS_IN_IMAGE_MAX) {
    throw unsupported(`unsupported VDI image (too many blocks ${h.blocksInImage}, max is ${VDI_BLOCKS_IN_IMAGE_MAX})`);
  }
  return diskSize;
}

/**
 * A random (version 4) UUID as QEMU stores it in a VDI header: its first
 * three fields byte-swapped to little endian.
 */
export function randomVdiUuid(): Uint8Array {
  const u = new Uint8Array(16);
  globalThis.crypto.getRandomValues(u);
  u[6] = (u[6]! & 0x0f) | 0x40;
  u[8] = (u[8]! & 0x3f) | 0x80;
  u.subarray(0, 4).reverse();
  u.subarray(4, 6).reverse();
  u.subarray(6, 8).reverse();
  return u;
}

/** What a new image's header says (see create.ts). */
export interface NewVdiHeader {
  imageType: number;
  diskSize: number;
  blocks: number;
  offsetData: number;
}

/** The header QEMU writes for a new image: its text, version 1.1, header size 0x180, map at 0x200. */
export function encodeNewHeader(n: NewVdiHeader): Uint8Array {
  const b = new Uint8Array(VDI_HEADER_SIZE);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < VDI_TEXT.length; i++) b[VDI_FIELD.TEXT + i] = VDI_TEXT.charCodeAt(i);
  dv.setUint32(VDI_FIELD.SIGNATURE, VDI_SIGNATURE, true);
  dv.setUint32(VDI_FIELD.VERSION, VDI_VERSION_1_1, true);
  dv.setUint32(VDI_FIELD.HEADER_SIZE, 0x180, true);
  dv.setUint32(VDI_FIELD.IMAGE_TYPE, n.imageType, true);
  dv.setUint32(VDI_FIELD.OFFSET_BMAP, VDI_SECTOR, true);
  dv.setUint32(VDI_FIELD.OFFSET_DATA, n.offsetData, true);
  dv.setUint32(VDI_FIELD.SECTOR_SIZE, VDI_SECTOR, true);
  dv.setBigUint64(VDI_FIELD.DISK_SIZE, BigInt(n.diskSize), true);
  dv.setUint32(VDI_FIELD.BLOCK_SIZE, VDI_BLOCK_SIZE, true);
  dv.setUint32(VDI_FIELD.BLOCKS_IN_IMAGE, n.blocks, true);
  if (n.imageType === VDI_TYPE_STATIC) dv.setUint32(VDI_FIELD.BLOCKS_ALLOCATED, n.blocks, true);
  b.set(randomVdiUuid(), VDI_FIELD.UUID_IMAGE);
  b.set(randomVdiUuid(), VDI_FIELD.UUID_LAST_SNAP);
  return b;
}
