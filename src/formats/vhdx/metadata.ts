/**
 * The VHDX metadata region: a table (32-byte header, then 32-byte entries,
 * in the region's first 64 KiB) of items found by GUID. Five items are
 * required: file parameters (block size, fixed / has-parent flags), virtual
 * disk size, page 83 data, logical and physical sector sizes; a
 * differencing image adds a parent locator, which QEMU 7.2 refuses.
 */
import { guid, guidEq, randomGuid } from './header.js';

/** The table's bytes (header and at most 2047 entries) that QEMU reads. */
export const METADATA_TABLE_SIZE = 32 * 2048;
const METADATA_SIGNATURE = 0x617461646174656dn; // "metadata"
/** Where QEMU puts the items: past the table's 64 KiB. */
const ITEMS_OFFSET = 64 * 1024;

export const META_IS_USER = 1;
export const META_IS_VIRTUAL_DISK = 2;
export const META_IS_REQUIRED = 4;
/** File parameters flag: a fixed image (blocks are never unallocated). */
export const PARAMS_LEAVE_BLOCKS_ALLOCATED = 1;
/** File parameters flag: a differencing image. */
export const PARAMS_HAS_PARENT = 2;
export const BLOCK_SIZE_MIN = 1024 * 1024;
export const BLOCK_SIZE_MAX = 256 * 1024 * 1024;

const FILE_PARAMS = guid(0xcaa16737, 0xfa36, 0x4d43, [0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b]);
const VIRTUAL_SIZE = guid(0x2fa54224, 0xcd1b, 0x4876, [0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8]);
const PAGE83 = guid(0xbeca12ab, 0xb2e6, 0x4523, [0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46]);
const LOGICAL_SECTOR = guid(0x8141bf1d, 0xa96f, 0x4709, [0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f]);
const PHYSICAL_SECTOR = guid(0xcda348c7, 0x445d, 0x4471, [0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56]);
const PARENT_LOCATOR = guid(0xa8d35f2d, 0xb30b, 0x454d, [0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c]);

/** The items in the order of their presence bits. */
const KNOWN = [
  { name: 'file parameters', guid: FILE_PARAMS },
  { name: 'virtual disk size', guid: VIRTUAL_SIZE },
  { name: 'page 83 data', guid: PAGE83 },
  { name: 'logical sector size', guid: LOGICAL_SECTOR },
  { name: 'physical sector size', guid: PHYSICAL_SECTOR },
  { name: 'parent locator', guid: PARENT_LOCATOR },
] as const;
/** The five items every image has (the parent locator aside). */
const REQUIRED_COUNT = 5;

/** Where each known item lies, relative to the region (undefined: absent). */
export interface MetadataTable {
  /** Offsets (u32 relative to the region) of the known items, by the index in KNOWN. */
  offsets: Array<number | undefined>;
}

/** Why a metadata table is refused: the errno QEMU gives and what we name. */
export interface MetadataRefusal {
  code: 'EINVAL' | 'ENOTSUP';
  why: string;
}

/** Decodes the table as QEMU's vhdx_parse_metadata: duplicates, unknown required items, missing ones. */
export function decodeMetadataTable(b: Uint8Array): MetadataTable | MetadataRefusal {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const sig = v.getBigUint64(0, true);
  if (sig !== METADATA_SIGNATURE) return { code: 'EINVAL', why: `metadata table signature 0x${sig.toString(16)}` };
  const count = v.getUint16(10, true);
  if (count * 32 > METADATA_TABLE_SIZE - 32) return { code: 'EINVAL', why: `metadata table entry count ${count} > 2047` };
  const offsets: Array<number | undefined> = KNOWN.map(() => undefined);
  for (let i = 0; i < count; i++) {
    const at = 32 + 32 * i;
    const id = b.subarray(at, at + 16);
    const k = KNOWN.findIndex((x) => guidEq(x.guid, id));
    if (k >= 0) {
      if (offsets[k] !== undefined) return { code: 'EINVAL', why: `metadata item '${KNOWN[k]!.name}' listed twice (entry ${i})` };
      offsets[k] = v.getUint32(at + 16, true);
      continue;
    }
    const bits = v.getUint32(at + 24, true);
    if (bits & META_IS_REQUIRED) return { code: 'ENOTSUP', why: `metadata entry ${i} is required but unknown` };
  }
  for (let k = 0; k < REQUIRED_COUNT; k++) {
    if (offsets[k] === undefined) return { code: 'ENOTSUP', why: `metadata item '${KNOWN[k]!.name}' is missing` };
  }
  return { offsets };
}

export function isRefusal(t: MetadataTable | MetadataRefusal): t is MetadataRefusal {
  return 'code' in t;
}

/** Index of each item in {@link MetadataTable.offsets}. */
export const Item = { FILE_PARAMS: 0, VIRTUAL_SIZE: 1, PAGE83: 2, LOGICAL_SECTOR: 3, PHYSICAL_SECTOR: 4, PARENT_LOCATOR: 5 } as const;

/** What a new image's metadata says. */
export interface NewMetadata {
  blockSize: number;
  fixed: boolean;
  size: number;
  sectorSize: number;
}

/**
 * The metadata region's first 64 KiB (table) and items of a new image, as
 * QEMU lays them out: the five items back to back from 64 KiB.
 */
export function encodeMetadata(m: NewMetadata): { table: Uint8Array; items: Uint8Array } {
  const items = new Uint8Array(8 + 8 + 16 + 4 + 4);
  const iv = new DataView(items.buffer);
  iv.setUint32(0, m.blockSize, true);
  iv.setUint32(4, m.fixed ? PARAMS_LEAVE_BLOCKS_ALLOCATED : 0, true);
  iv.setBigUint64(8, BigInt(m.size), true);
  items.set(randomGuid(), 16);
  iv.setUint32(32, m.sectorSize, true);
  iv.setUint32(36, m.sectorSize, true);

  const table = new Uint8Array(64 * 1024);
  const tv = new DataView(table.buffer);
  tv.setBigUint64(0, METADATA_SIGNATURE, true);
  tv.setUint16(10, REQUIRED_COUNT, true);
  const lengths = [8, 8, 16, 4, 4];
  let offset = ITEMS_OFFSET;
  for (let k = 0; k < REQUIRED_COUNT; k++) {
    const at = 32 + 32 * k;
    table.set(KNOWN[k]!.guid, at);
    tv.setUint32(at + 16, offset, true);
    tv.setUint32(at + 20, lengths[k]!, true);
    tv.setUint32(at + 24, k === 0 ? META_IS_REQUIRED : META_IS_REQUIRED | META_IS_VIRTUAL_DISK, true);
    offset += lengths[k]!;
  }
  return { table, items };
}

/** Where the items of a new image lie, relative to the metadata region. */
export const NEW_ITEMS_OFFSET = ITEMS_OFFSET;
