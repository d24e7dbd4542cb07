/**
 * Opening a VHD image as QEMU 7.2's vpc driver does: find the footer (at 0,
 * else at the end for a fixed image), check it, pick the virtual size, and
 * for dynamic images read and bound the BAT.
 *
 * QEMU 7.2 has no differencing support: such an image (type 4) is read as a
 * dynamic image without a parent (its parent locators are never read), so
 * its unallocated blocks read as zeros. This driver does the same.
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError, einval, toBlockError } from '../../core/errors.js';
import { MAX_SECTORS, virtualSectors, type SizeCalc } from './chs.js';
import {
  BAT_UNALLOCATED,
  DYN_HEADER_COOKIE,
  DYN_HEADER_SIZE,
  DiskType,
  FOOTER,
  FOOTER_SIZE,
  decodeDynHeader,
  decodeFooter,
  hasFooterCookie,
  vhdChecksum,
  type VhdFooter,
} from './footer.js';

const SECTOR = 512;
/** QEMU's BDRV_MAX_LENGTH: no request may end past it (its reads fail with EIO). */
const QEMU_MAX_LENGTH = 2n ** 63n - 2n ** 30n;
/** Past this, offsets cannot be held exactly; QEMU reads zeros there (no file is that long). */
const SAFE_END = BigInt(Number.MAX_SAFE_INTEGER);
/** QEMU's largest single read (BDRV_REQUEST_MAX_BYTES): a larger BAT fails to read. */
const MAX_REQUEST_BYTES = 2 ** 31 - 512;
/** QEMU's bound on the BAT: its entry count as a C int times 4 must fit in an int. */
const MAX_TABLE_ENTRIES = Math.floor(0x7fffffff / 4);

/** What open learns: everything the instance needs. */
export interface VpcLayout {
  footer: VhdFooter;
  /** The I/O path: the footer's type says fixed (data at the same offset in the file). */
  fixed: boolean;
  /** Virtual size in bytes. */
  length: number;
  /** Dynamic images only (0 / empty for fixed ones). */
  blockSize: number;
  bitmapSize: number;
  batOffset: number;
  bat: Uint32Array;
  /** Where the next block goes (and the footer is): the end of the last block or of the BAT. */
  freeDataBlockOffset: number;
}

/** Reads `n` bytes at a 64-bit file offset as QEMU would: EIO past its limit, zeros past 2^53. */
async function readAt(file: BdrvChild, offset: bigint, n: number, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  if (offset > QEMU_MAX_LENGTH - BigInt(n)) {
    throw new BlockError('EIO', what, {}, { detail: `offset ${offset}` });
  }
  if (offset + BigInt(n) > SAFE_END) return buf;
  try {
    await file.preadv(Number(offset), n, buf);
  } catch (e) {
    throw new BlockError(toBlockError(e).code, what, { offset: Number(offset) }, { cause: e, detail: toBlockError(e).message });
  }
  return buf;
}

/** The footer: at 0 (dynamic, or anything with the cookie there), else at the end of a fixed image. */
async function readFooter(file: BdrvChild): Promise<{ footer: VhdFooter; atStart: boolean }> {
  const first = await readAt(file, 0n, FOOTER_SIZE, 'Unable to read VHD header');
  let bytes = first;
  const atStart = hasFooterCookie(first);
  if (!atStart) {
    const len = file.length;
    if (len < FOOTER_SIZE) throw einval('File too small for a VHD header', {}, `${len} bytes`);
    bytes = new Uint8Array(FOOTER_SIZE);
    await file.preadv(len - FOOTER_SIZE, FOOTER_SIZE, bytes);
    const type = new DataView(bytes.buffer).getUint32(FOOTER.type);
    if (!hasFooterCookie(bytes) || type !== DiskType.FIXED) {
      throw einval('invalid VPC image', {}, hasFooterCookie(bytes) ? `footer at ${len - FOOTER_SIZE} has disk type ${type}` : 'no footer cookie at 0 nor at the end');
    }
  }
  const footer = decodeFooter(bytes);
  const sum = vhdChecksum(bytes, FOOTER.checksum);
  if (sum !== footer.checksum) {
    throw einval('Incorrect header checksum', {}, `stored 0x${footer.checksum.toString(16)}, computed 0x${sum.toString(16)}`);
  }
  return { footer, atStart };
}

/** Reads and checks the image's metadata. */
export async function openLayout(file: BdrvChild, calc: SizeCalc): Promise<VpcLayout> {
  const { footer, atStart } = await readFooter(file);
  const sectors = virtualSectors(footer, calc);
  if (sectors > BigInt(MAX_SECTORS)) {
    // QEMU's driver sets no message, so its generic open failure names the file.
    const name = file.node.filename;
    throw new BlockError('EFBIG', `${name ? `Could not open '${name}'` : 'Could not open image'}: File too large`, {}, {
      detail: `virtual size of ${sectors} sectors exceeds 2040 GiB`,
    });
  }
  const length = Number(sectors) * SECTOR;
  const layout: VpcLayout = {
    footer,
    fixed: footer.type === DiskType.FIXED,
    length,
    blockSize: 0,
    bitmapSize: 0,
    batOffset: 0,
    bat: new Uint32Array(0),
    freeDataBlockOffset: 0,
  };
  // A footer found at the end is a fixed image's; one at 0 means a dynamic header follows.
  if (!atStart) return layout;

  const header = decodeDynHeader(await readAt(file, footer.dataOffset, DYN_HEADER_SIZE, 'Error reading dynamic VHD header'));
  if (header.cookie !== DYN_HEADER_COOKIE) throw einval('Invalid header magic', {}, `'${header.cookie}' at ${footer.dataOffset}`);
  const bs = header.blockSize;
  if (bs < SECTOR || (bs & (bs - 1)) !== 0) throw einval(`Invalid block size ${bs}`);
  layout.blockSize = bs;
  // One bit per sector, in whole sectors.
  layout.bitmapSize = Math.ceil(bs / (8 * SECTOR) / SECTOR) * SECTOR;
  if (Math.floor(length / bs) > 0xffffffff) throw einval('Too many blocks', {}, `${Math.floor(length / bs)} blocks of ${bs} bytes`);

  // QEMU holds the entry count in a C int: a count of 2^31 or more is negative there.
  const entries = header.maxTableEntries | 0;
  if (entries >= 0 && entries * bs < length) {
    throw einval('Page table too small', {}, `${entries} entries of ${bs} bytes for a ${length}-byte disk`);
  }
  // A negative count fails too (QEMU compares it as an unsigned size), and is named signed.
  if (entries > MAX_TABLE_ENTRIES || entries < 0) throw einval(`Max Table Entries too large (${entries})`);
  const batBytes = entries * 4;
  const batOffset = header.tableOffset;
  if (batBytes > MAX_REQUEST_BYTES || batOffset > QEMU_MAX_LENGTH - BigInt(batBytes)) {
    throw new BlockError('EIO', 'Error reading pagetable', {}, { detail: `${batBytes} bytes at offset ${batOffset}` });
  }
  // The BAT must lie inside the file (QEMU reads it, then finds the first free
  // block past the end): checking first keeps the allocation within the file's size.
  const fileLen = file.length;
  const batEnd = batOffset + BigInt(batBytes);
  if (batEnd > BigInt(fileLen)) throw truncated(batEnd, fileLen);
  layout.batOffset = Number(batOffset);
  const raw = await readAt(file, batOffset, batBytes, 'Error reading pagetable');
  const view = new DataView(raw.buffer);
  const bat = new Uint32Array(entries);
  let free = Math.ceil((layout.batOffset + batBytes) / SECTOR) * SECTOR;
  for (let i = 0; i < entries; i++) {
    const e = view.getUint32(i * 4);
    bat[i] = e;
    if (e !== BAT_UNALLOCATED) free = Math.max(free, e * SECTOR + layout.bitmapSize + bs);
  }
  if (free > fileLen) throw truncated(BigInt(free), fileLen);
  layout.bat = bat;
  layout.freeDataBlockOffset = free;
  return layout;
}

function truncated(end: bigint, fileLen: number): BlockError {
  return einval(
    'block-vpc: free_data_block_offset points after the end of file. The image has been truncated.',
    {},
    `${end} > ${fileLen}`,
  );
}
