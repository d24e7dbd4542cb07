/**
 * Opening a VMDK image as QEMU 7.2's vmdk_open: a sparse file (KDMV or COWD
 * magic) is one extent whose descriptor sits at 0x200; anything else is a
 * descriptor file whose extent lines name the extent files, relative to the
 * descriptor's directory. Every header value is checked (QEMU's messages)
 * before anything is allocated from it.
 */
import type { BdrvChild } from '../../core/child.js';
import type { BlockNode } from '../../core/node.js';
import type { BlockOptions } from '../../core/options.js';
import { BlockError, einval, toBlockError } from '../../core/errors.js';
import { ChildRole } from '../../core/permissions.js';
import {
  DESCRIPTOR_CREATE_TYPES,
  DESC_READ_MAX,
  DESC_SIZE,
  cString,
  descriptionValue,
  parentHint,
  parseExtentLines,
  readCid,
} from './descriptor.js';
import { Extent, readPadded, type ExtentSpec } from './extent.js';
import {
  COMPRESSION_DEFLATE,
  FLAG,
  GD_AT_END,
  MAX_GRAIN_SECTORS,
  MAX_GTES_PER_GT,
  MAX_L1_ENTRIES,
  SECTOR,
  VMDK3_GT_ENTRIES,
  VMDK3_MAGIC,
  VMDK4_MAGIC,
  checkSeSparseVolatile,
  decodeFooter,
  decodeSeSparseConst,
  decodeVmdk3,
  decodeVmdk4,
} from './header.js';

/** Descriptors that name sparse files that hold descriptors: QEMU recurses without end; we stop here. */
const MAX_NESTING = 8;
/** The largest guest size we can address exactly (bytes). */
const MAX_BYTES = Number.MAX_SAFE_INTEGER;

/** What open learns. */
export interface VmdkLayout {
  extents: Extent[];
  createType: string;
  /** Where the descriptor area is in the image file (0x200 for a sparse file). */
  descOffset: number;
  cid: number;
  parentCid: number;
  parentHint: string | undefined;
}

interface OpenCtx {
  node: BlockNode;
  /** The image file (bs->file). */
  file: BdrvChild;
  extents: Extent[];
  createType: string | undefined;
  depth: number;
}

/** QEMU's vmdk_read_desc: up to 1 MiB - 1 bytes at `offset` (at least a sector, zeros past the end). */
async function readDesc(file: BdrvChild, offset: number): Promise<Uint8Array> {
  const len = file.length;
  if (len < 4) throw einval('File is too small, not a valid image', {}, `${len} bytes`);
  return readPadded(file, offset, Math.max(SECTOR, Math.min(len, DESC_READ_MAX)));
}

function addExtent(ctx: OpenCtx, spec: Omit<ExtentSpec, 'sectors'> & { sectors: number | bigint }): Extent {
  if (spec.clusterSectors > MAX_GRAIN_SECTORS) {
    throw new BlockError('EFBIG', 'Invalid granularity, image may be corrupt', {}, { detail: `${spec.clusterSectors} sectors per grain` });
  }
  if (spec.l1Size > MAX_L1_ENTRIES) throw new BlockError('EFBIG', 'L1 size too big', {}, { detail: `${spec.l1Size} entries` });
  const last = ctx.extents[ctx.extents.length - 1];
  const start = last ? last.endSector : 0;
  const end = BigInt(start) + BigInt(spec.sectors);
  if (end * 512n > BigInt(MAX_BYTES)) {
    // QEMU's words when the size does not fit its 63 bits; ours stop at 2^53 bytes.
    throw new BlockError('EFBIG', 'Could not refresh total sector count: File too large', {}, { detail: `image of ${end} sectors` });
  }
  const e = new Extent({ ...spec, sectors: Number(spec.sectors) }, start);
  ctx.extents.push(e);
  return e;
}

/** A 64-bit header value as a number, EFBIG naming it when it cannot be an offset. */
function small(v: bigint, what: string): number {
  if (v > BigInt(MAX_BYTES)) throw new BlockError('EFBIG', `vmdk: ${what} ${v} is too large`);
  return Number(v);
}

async function openCowd(ctx: OpenCtx, file: BdrvChild, buf: Uint8Array): Promise<void> {
  const h = decodeVmdk3(buf);
  if (((VMDK3_GT_ENTRIES * h.granularity) >>> 0) === 0) {
    throw einval('L1 entry size is invalid', {}, `granularity ${h.granularity}`);
  }
  const e = addExtent(ctx, {
    file,
    flat: false,
    sectors: h.diskSectors,
    l1Offset: h.l1dirOffset * SECTOR,
    l1BackupOffset: 0,
    l1Size: h.l1dirSize,
    l2Size: VMDK3_GT_ENTRIES,
    clusterSectors: h.granularity,
  });
  await e.readTables();
}

async function openKdmv(ctx: OpenCtx, file: BdrvChild, buf: Uint8Array): Promise<void> {
  let h = decodeVmdk4(buf);
  if (h.capacity === 0n && h.descOffset !== 0n) {
    const at = h.descOffset * 512n;
    const text = await readDesc(file, at > BigInt(file.length) ? file.length : Number(at));
    await openDescriptor(ctx, cString(text));
    return;
  }
  ctx.createType ??= 'monolithicSparse';
  if (h.gdOffset === GD_AT_END) {
    const at = Math.ceil(file.length / SECTOR) * SECTOR - 3 * SECTOR;
    if (at < 0) throw new BlockError('EINVAL', 'Failed to read footer', {}, { detail: `file of ${file.length} bytes` });
    h = decodeFooter(await readPadded(file, at, 3 * SECTOR));
  }
  const compressed = h.compressAlgorithm === COMPRESSION_DEFLATE;
  if (h.version > 3) throw new BlockError('ENOTSUP', `Unsupported VMDK version ${h.version}`);
  if (h.version === 3 && !ctx.node.readOnly && !compressed) throw einval('VMDK version 3 must be read only');
  if (h.numGtesPerGt > MAX_GTES_PER_GT) throw einval('L2 table size too big', {}, `${h.numGtesPerGt} entries`);
  const l1EntrySectors = Number((BigInt(h.numGtesPerGt) * h.granularity) & 0xffffffffn);
  if (l1EntrySectors === 0) throw einval('L1 entry size is invalid', {}, `${h.numGtesPerGt} entries of ${h.granularity} sectors`);
  const l1Size = Number(((h.capacity + BigInt(l1EntrySectors) - 1n) & 0xffffffffffffffffn) / BigInt(l1EntrySectors) & 0xffffffffn);
  const fileSectors = BigInt(Math.ceil(file.length / SECTOR));
  if (fileSectors < h.grainOffset) {
    throw einval(`File truncated, expecting at least ${BigInt.asIntN(64, h.grainOffset * 512n)} bytes`);
  }
  const backup = h.flags & FLAG.RGD ? small(h.rgdOffset * 512n, 'redundant grain directory offset') : 0;
  const granularity = h.granularity > BigInt(MAX_GRAIN_SECTORS) ? MAX_GRAIN_SECTORS + 1 : Number(h.granularity);
  const e = addExtent(ctx, {
    file,
    flat: false,
    sectors: h.capacity,
    l1Offset: small((h.gdOffset * 512n) & 0xffffffffffffffffn, 'grain directory offset'),
    l1BackupOffset: backup,
    l1Size,
    l2Size: h.numGtesPerGt,
    clusterSectors: granularity,
  });
  e.compressed = compressed;
  if (compressed) ctx.createType = 'streamOptimized';
  e.hasMarker = (h.flags & FLAG.MARKER) !== 0;
  e.version = h.version;
  e.hasZeroGrain = (h.flags & FLAG.ZERO_GRAIN) !== 0;
  await e.readTables();
}

/** An seSparse extent (read only, as in QEMU). */
async function openSeSparse(ctx: OpenCtx, file: BdrvChild): Promise<void> {
  if (!ctx.node.readOnly) throw new BlockError('EACCES', 'No write support for seSparse images available');
  const h = decodeSeSparseConst(await readPadded(file, 0, SECTOR));
  const volatileAt = h.volatileHeaderOffset * 512n;
  checkSeSparseVolatile(await readPadded(file, volatileAt > BigInt(file.length) ? file.length : Number(volatileAt), SECTOR));
  const e = addExtent(ctx, {
    file,
    flat: false,
    sectors: h.capacity,
    l1Offset: small(h.grainDirOffset * 512n, 'grain directory offset'),
    l1BackupOffset: 0,
    l1Size: Number(((h.grainDirSize * 512n) / 8n) & 0xffffffffn),
    l2Size: Number((h.grainTableSize * 512n) / 8n),
    clusterSectors: Number(h.grainSize),
  });
  e.seSparse = { tablesOffset: small(h.grainTablesOffset, 'grain tables offset'), grainsOffset: small(h.grainsOffset, 'grains offset') };
  await e.readTables();
}

/** A sparse extent file (QEMU's vmdk_open_sparse). */
async function openSparse(ctx: OpenCtx, file: BdrvChild, buf: Uint8Array): Promise<void> {
  const magic = new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0, false);
  if (magic === VMDK3_MAGIC) return openCowd(ctx, file, buf);
  if (magic === VMDK4_MAGIC) return openKdmv(ctx, file, buf);
  throw einval('Image not in VMDK format', {}, `magic 0x${magic.toString(16).padStart(8, '0')}`);
}

/** Opens the file an extent line names, relative to the descriptor's directory. */
async function openExtentFile(ctx: OpenCtx, name: string, index: number, flat: boolean): Promise<BdrvChild> {
  const node = ctx.node;
  let proto: BlockOptions;
  try {
    const resolved = node.graph.resolveBacking(node, name, undefined);
    proto = (resolved.file ?? resolved) as BlockOptions;
  } catch (e) {
    const err = toBlockError(e);
    if (!name.startsWith('/') && err.code === 'EINVAL') {
      throw err.withPrefix(`Cannot use relative paths with VMDK descriptor file '${ctx.file.node.filename}'`);
    }
    throw err;
  }
  // The extent is plain storage: its protocol is named, or the file would be probed as an image.
  if (proto.driver === undefined && typeof proto.filename === 'string') {
    proto = { ...proto, driver: (await node.graph.protocolForOpen(proto.filename)).name };
  }
  const key = `extents.${index}`;
  const child = await node.graph.openNode(proto, { inheritFrom: node, readOnly: node.readOnly, relativeTo: node, childKey: key } as never);
  const role = flat ? ChildRole.DATA : ChildRole.DATA | ChildRole.METADATA;
  try {
    return await node.graph.attachChild(node, child, key, role);
  } catch (e) {
    await child.unref();
    throw e;
  }
}

/** A descriptor (QEMU's vmdk_open_desc_file and vmdk_parse_extents). */
async function openDescriptor(ctx: OpenCtx, text: string): Promise<void> {
  if (ctx.depth >= MAX_NESTING) throw einval(`VMDK descriptors nested more than ${MAX_NESTING} deep`);
  const ct = descriptionValue(text, 'createType', 128);
  if (ct === undefined) throw einval('invalid VMDK image descriptor', {}, 'no createType="..."');
  if (!DESCRIPTOR_CREATE_TYPES.includes(ct)) throw new BlockError('ENOTSUP', `Unsupported image type '${ct}'`);
  ctx.createType = ct;
  const lines = parseExtentLines(text);
  for (const line of lines) {
    const flat = line.type === 'FLAT' || line.type === 'VMFS';
    const file = await openExtentFile(ctx, line.filename, ctx.extents.length, flat);
    if (flat) {
      const e = addExtent(ctx, { file, flat: true, sectors: line.sectors, l1Offset: 0, l1BackupOffset: 0, l1Size: 0, l2Size: 0, clusterSectors: 0 });
      // An offset past 2^53 bytes cannot be in any file: it reads as zeros (past the end), as in QEMU.
      e.flatStart = line.flatOffset * SECTOR;
      e.type = line.type;
    } else if (line.type === 'SESPARSE') {
      await openSeSparse(ctx, file);
      ctx.extents[ctx.extents.length - 1]!.type = line.type;
    } else {
      const buf = await readDesc(file, 0);
      const inner: OpenCtx = { ...ctx, file, depth: ctx.depth + 1 };
      await openSparse(inner, file, buf);
      ctx.extents[ctx.extents.length - 1]!.type = line.type;
    }
  }
}

/** Reads the layout of the image in `file` (the node's file child). */
export async function openLayout(node: BlockNode, file: BdrvChild): Promise<VmdkLayout> {
  const ctx: OpenCtx = { node, file, extents: [], createType: undefined, depth: 0 };
  const buf = await readDesc(file, 0);
  const magic = new DataView(buf.buffer, 0, 4).getUint32(0, false);
  let descOffset = 0;
  if (magic === VMDK3_MAGIC || magic === VMDK4_MAGIC) {
    await openSparse(ctx, file, buf);
    descOffset = 0x200;
  } else {
    await openDescriptor(ctx, cString(buf));
  }
  const area = await readPadded(file, descOffset, DESC_SIZE);
  const bare = (e: unknown): BlockError => {
    const err = toBlockError(e);
    return new BlockError(err.code, `Could not open '${file.node.filename}': ${err.text}`, {}, { detail: err.detail, cause: e });
  };
  let hint: string | undefined;
  let cid: number;
  let parentCid: number;
  try {
    hint = parentHint(area);
    cid = readCid(area, false);
    parentCid = readCid(area, true);
  } catch (e) {
    throw bare(e);
  }
  // A COWD file sets no type (QEMU prints it empty).
  return { extents: ctx.extents, createType: ctx.createType ?? '', descOffset, cid, parentCid, parentHint: hint };
}
