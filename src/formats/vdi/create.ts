/**
 * qemu-img create -f vdi: QEMU 7.2's options (`size`, `static`; its build
 * has no `cluster_size`, so every image has 1 MiB blocks), checks, messages
 * and layout: the 512-byte header, the block map from 0x200 in whole
 * sectors, then the data area (sized at once for a static image, as a hole).
 */
import type { CreateContext, CreateOptionSpec } from '../../core/driver.js';
import { OptionReader } from '../../core/options.js';
import { BlockError, einval, toBlockError } from '../../core/errors.js';
import {
  VDI_BLOCK_SIZE,
  VDI_DISK_SIZE_MAX,
  VDI_SECTOR,
  VDI_TYPE_DYNAMIC,
  VDI_TYPE_STATIC,
  VDI_UNALLOCATED,
  encodeNewHeader,
} from './header.js';

/** QEMU's vdi_create_opts, in its order (the "Formatting ..." line prints them so). */
export const vdiCreateOptions: readonly CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'static', type: 'bool', help: 'VDI static (pre-allocated) image', default: 'off' },
];

/** The block map is written in pieces of this many bytes (it may be up to 2 GiB). */
const MAP_CHUNK = 4 << 20;

/** The bytes [from, from + length) of a new image's block map. */
function mapPiece(from: number, length: number, blocks: number, isStatic: boolean): Uint8Array {
  const b = new Uint8Array(length);
  const dv = new DataView(b.buffer);
  const end = Math.min(blocks, (from + length) / 4);
  for (let i = from / 4; i < end; i++) dv.setUint32(i * 4 - from, isStatic ? i : VDI_UNALLOCATED, true);
  return b;
}

export async function createVdi(ctx: CreateContext): Promise<void> {
  const o = ctx.options;
  const requested = o.size('size');
  const isStatic = o.bool('static', false);
  // The rest belongs to the image file's protocol; QEMU hands it down without the size.
  const protoOptions: Record<string, string | number | boolean> = {};
  for (const k of o.unconsumed()) {
    const v = o.raw(k);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') protoOptions[k] = v;
  }
  const graph = ctx.graph;
  const proto = await graph.protocolForOpen(ctx.filename);
  if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
  await proto.create({ ...ctx, options: new OptionReader(protoOptions, `Block protocol '${proto.name}'`) });
  if (requested === undefined) throw einval("Parameter 'size' is missing");
  const size = Math.ceil(requested / VDI_SECTOR) * VDI_SECTOR;
  if (size > VDI_DISK_SIZE_MAX) {
    throw new BlockError('ENOTSUP', `Unsupported VDI image size (size is 0x${size.toString(16)}, max supported is 0x${VDI_DISK_SIZE_MAX.toString(16)})`);
  }
  const blocks = Math.ceil(size / VDI_BLOCK_SIZE);
  const mapSize = Math.ceil((blocks * 4) / VDI_SECTOR) * VDI_SECTOR;
  const header = encodeNewHeader({
    imageType: isStatic ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC,
    diskSize: size,
    blocks,
    offsetData: VDI_SECTOR + mapSize,
  });
  const fileNode = await graph.open({ driver: proto.name, filename: ctx.filename });
  try {
    const { BlockBackend } = await import('../../core/backend.js');
    const bb = await BlockBackend.attach(graph, fileNode);
    try {
      const end = VDI_SECTOR + mapSize;
      await bb.truncate(end, { exact: false });
      // QEMU's messages replace the cause here.
      await bb.write(0, header).catch((e: unknown) => {
        throw new BlockError(toBlockError(e).code, 'Error writing header', {}, { cause: e });
      });
      for (let done = 0; done < mapSize; done += MAP_CHUNK) {
        const n = Math.min(MAP_CHUNK, mapSize - done);
        await bb.write(VDI_SECTOR + done, mapPiece(done, n, blocks, isStatic)).catch((e: unknown) => {
          throw new BlockError(toBlockError(e).code, 'Error writing bmap', {}, { cause: e });
        });
      }
      if (isStatic) {
        await bb.truncate(end + blocks * VDI_BLOCK_SIZE, { exact: false }).catch((e: unknown) => {
          // QEMU prepends its words without a separator.
          const err = toBlockError(e);
          throw new BlockError(err.code, `Failed to statically allocate file${err.text}`, {}, { cause: e });
        });
      }
      await bb.flush();
    } finally {
      await bb.close();
    }
  } finally {
    await fileNode.unref();
  }
}
