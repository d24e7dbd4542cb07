/**
 * qemu-img create -f vhdx: QEMU 7.2's options (size, log_size, block_size,
 * subformat dynamic | fixed, block_state_zero), their rounding and checks,
 * messages, and layout:
 *
 *   0: file identifier; 64 KiB, 128 KiB: headers; 192 KiB, 256 KiB: region
 *   tables; 1 MiB: log; then the BAT (whole MiBs), the metadata region
 *   (1 MiB), 5 MiB of room, and the data (all of it for a fixed image).
 *
 * With block_state_zero (the default) every payload entry says ZERO, fixed
 * images included: their blocks are allocated again on first write, as QEMU's.
 */
import type { CreateContext, CreateOptionSpec } from '../../core/driver.js';
import { OptionReader } from '../../core/options.js';
import { BlockError, einval, toBlockError } from '../../core/errors.js';
import type { BlockBackend } from '../../core/backend.js';
import { Bat, PayloadState, batGeometry, batIndex, type BatGeometry } from './bat.js';
import {
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_CRC_SIZE,
  HEADER_SECTION_END,
  HEADER_STRUCT_SIZE,
  MiB,
  REGION_TABLE2_OFFSET,
  REGION_TABLE_OFFSET,
  encodeFileId,
  encodeHeaderInto,
  encodeRegionTable,
  newHeader,
} from './header.js';
import { BLOCK_SIZE_MAX, NEW_ITEMS_OFFSET, encodeMetadata } from './metadata.js';

/** QEMU 7.2's vhdx_create_opts, in its order (the "Formatting ..." line prints them so); help texts are QEMU's. */
export const vhdxCreateOptions: readonly CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size; max of 64TB.' },
  { name: 'log_size', type: 'size', help: 'Log size; min 1MB.', default: '1048576' },
  { name: 'block_size', type: 'size', help: 'Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.', default: '0' },
  { name: 'subformat', type: 'string', help: "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'." },
  {
    name: 'block_state_zero',
    type: 'bool',
    help: "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set to 'off' when using 'qemu-img convert' with subformat=dynamic.",
  },
];

const VHDX_KEYS = new Set(vhdxCreateOptions.map((s) => s.name));
const SECTOR = 512;
const TiB = 2 ** 40;
const GiB = 2 ** 30;
const MAX_IMAGE_SIZE = 64 * TiB;
/** The creator QEMU writes in the file identifier. */
const CREATOR = 'QEMU v7.2.22';
/** The BAT is written in pieces of this size (it may be hundreds of MiB). */
const BAT_PIECE = 4 * MiB;

/** The settings of a new image, checked. */
export interface VhdxSettings {
  size: number;
  logSize: number;
  blockSize: number;
  fixed: boolean;
  zeroBlocks: boolean;
}

const roundUp = (v: number, to: number): number => Math.ceil(v / to) * to;

/** QEMU's block size for an image of `size` when none is given. */
function autoBlockSize(size: number): number {
  if (size > 32 * TiB) return 64 * MiB;
  if (size > 100 * GiB) return 32 * MiB;
  if (size > GiB) return 16 * MiB;
  return 8 * MiB;
}

/** Reads and checks the options as vhdx_co_create_opts and vhdx_co_create do, in their order. */
export function vhdxSettings(o: OptionReader): VhdxSettings {
  const requested = o.size('size');
  const logGiven = o.has('log_size') ? o.size('log_size', 0) : undefined;
  const blockGiven = o.has('block_size') ? o.size('block_size', 0) : undefined;
  const subformat = o.string('subformat');
  const zeroBlocks = o.bool('block_state_zero', true);
  o.finish();
  if (subformat !== undefined && subformat !== 'dynamic' && subformat !== 'fixed') {
    throw einval(`Parameter 'subformat' does not accept value '${subformat}'`);
  }
  if (requested === undefined) throw einval("Parameter 'size' is missing");
  const size = roundUp(requested, SECTOR);
  let logSize = logGiven === undefined ? MiB : roundUp(logGiven, MiB);
  let blockSize = blockGiven === undefined ? 0 : Math.min(roundUp(blockGiven, MiB), BLOCK_SIZE_MAX);
  if (size > MAX_IMAGE_SIZE) throw einval('Image size too large; max of 64TB', {}, `${size} bytes`);
  if (logSize > 0xffffffff) throw einval('Log size must be smaller than 4 GB', {}, `${logSize} bytes`);
  if (logSize < MiB || logSize % MiB !== 0) throw einval('Log size must be a multiple of 1 MB', {}, `${logSize} bytes`);
  if (blockSize === 0) blockSize = autoBlockSize(size);
  if (blockSize < MiB || blockSize % MiB !== 0) throw einval('Block size must be a multiple of 1 MB', {}, `${blockSize} bytes`);
  if ((blockSize & (blockSize - 1)) !== 0) throw einval('Block size must be a power of two', {}, `${blockSize} bytes`);
  logSize = logSize >>> 0;
  return { size, logSize, blockSize, fixed: subformat === 'fixed', zeroBlocks };
}

/** Where a new image's parts go. */
export interface VhdxPlan {
  geometry: BatGeometry;
  batOffset: number;
  batLength: number;
  metadataOffset: number;
  /** Where the data starts (and, for a dynamic image, the file ends). */
  dataOffset: number;
}

export function vhdxPlan(s: VhdxSettings): VhdxPlan {
  const geometry = batGeometry(s.size, s.blockSize);
  const batLength = roundUp(geometry.entries * 8, MiB);
  const batOffset = roundUp(HEADER_SECTION_END + s.logSize, MiB);
  const metadataOffset = roundUp(batOffset + batLength, MiB);
  return { geometry, batOffset, batLength, metadataOffset, dataOffset: batOffset + batLength + 5 * MiB };
}

/** The BAT bytes [from, from + n) of a new image whose entries say `state` (QEMU's vhdx_create_bat). */
function batPiece(p: VhdxPlan, size: number, from: number, n: number, state: number): Uint8Array {
  const g = p.geometry;
  const piece = new Bat(n / 8, new Uint8Array(n));
  const firstEntry = from / 8;
  // Payload block k sits at entry k + (k >> bits): start a little before the piece's first entry.
  let k = Math.max(0, firstEntry - (firstEntry >>> g.chunkRatioBits) - 1);
  for (; k * g.blockSize < size; k++) {
    const idx = batIndex(g, k * g.blockSize);
    if (idx < firstEntry) continue;
    if (idx >= firstEntry + n / 8) break;
    piece.set(idx - firstEntry, roundUp(p.dataOffset + k * g.blockSize, MiB), state);
  }
  return piece.rawBytes();
}

async function writeImage(bb: BlockBackend, s: VhdxSettings, p: VhdxPlan, fileZeroInit: boolean): Promise<void> {
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    await fn().catch((e: unknown) => {
      throw toBlockError(e).withPrefix(what);
    });
  };
  // QEMU writes past the end of the empty file and sizes it when it writes the BAT; the
  // file is sized first here (nothing written lies past that size).
  const end = s.fixed ? p.dataOffset + s.size : p.dataOffset;
  await bb.truncate(end, { exact: false });
  await step('Failed to write file signature', () => bb.write(0, encodeFileId(CREATOR)));
  const seq = BigInt(globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!);
  const h = newHeader(seq, s.logSize);
  await step('Failed to write image headers', async () => {
    for (const [at, n] of [[HEADER1_OFFSET, seq], [HEADER2_OFFSET, seq + 1n]] as const) {
      h.sequenceNumber = n;
      const block = new Uint8Array(HEADER_CRC_SIZE);
      encodeHeaderInto(h, block);
      await bb.write(at, block.subarray(0, HEADER_STRUCT_SIZE));
      await bb.flush();
    }
  });
  if (s.fixed || s.zeroBlocks || !fileZeroInit) {
    const state = s.zeroBlocks ? PayloadState.ZERO : s.fixed ? PayloadState.FULLY_PRESENT : PayloadState.NOT_PRESENT;
    for (let done = 0; done < p.batLength; done += BAT_PIECE) {
      const n = Math.min(BAT_PIECE, p.batLength - done);
      await step('Failed to write the BAT', () => bb.write(p.batOffset + done, batPiece(p, s.size, done, n, state)));
    }
  }
  const table = encodeRegionTable({ offset: p.batOffset, length: p.batLength }, { offset: p.metadataOffset, length: MiB });
  await step('Failed to write first region table', () => bb.write(REGION_TABLE_OFFSET, table));
  await step('Failed to write second region table', () => bb.write(REGION_TABLE2_OFFSET, table));
  const md = encodeMetadata({ blockSize: s.blockSize, fixed: s.fixed, size: s.size, sectorSize: SECTOR });
  await step('Failed to initialize metadata', async () => {
    await bb.write(p.metadataOffset, md.table);
    await bb.write(p.metadataOffset + NEW_ITEMS_OFFSET, md.items);
  });
}

/** Creates a vhdx image as QEMU's vhdx_co_create_opts / vhdx_co_create do. */
export async function createVhdx(ctx: CreateContext): Promise<void> {
  const o = ctx.options;
  // The rest belongs to the image file's protocol, created empty before the vhdx options are looked at.
  const protoOptions: Record<string, string | number | boolean> = {};
  for (const k of o.unconsumed()) {
    if (VHDX_KEYS.has(k)) continue;
    const v = o.raw(k);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') protoOptions[k] = v;
    o.consume(k);
  }
  const graph = ctx.graph;
  const proto = await graph.protocolForOpen(ctx.filename);
  if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
  await proto.create({ ...ctx, options: new OptionReader(protoOptions, `Block protocol '${proto.name}'`) });
  const settings = vhdxSettings(o);
  const plan = vhdxPlan(settings);
  const fileNode = await graph.open({ driver: proto.name, filename: ctx.filename });
  try {
    const { BlockBackend } = await import('../../core/backend.js');
    const bb = await BlockBackend.attach(graph, fileNode);
    try {
      await writeImage(bb, settings, plan, fileNode.instance.hasZeroInit?.() ?? false);
      await bb.flush();
    } finally {
      await bb.close();
    }
  } finally {
    await fileNode.unref();
  }
}
