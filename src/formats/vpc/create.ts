/**
 * VHD image creation (qemu-img create -f vpc): QEMU 7.2's options, size
 * rounding to a CHS geometry, and layout.
 *
 * A dynamic image is: footer copy (0), dynamic disk header (512), BAT of
 * 2 MiB blocks, all unallocated (1536), footer. A fixed image is the data
 * followed by the footer.
 */
import type { CreateContext, CreateOptionSpec } from '../../core/driver.js';
import { OptionReader } from '../../core/options.js';
import { BlockError, toBlockError } from '../../core/errors.js';
import { roundedImageSize } from './chs.js';
import { DiskType, FOOTER_SIZE, VHD_TIMESTAMP_BASE, encodeDynHeader, encodeFooter, randomUuid } from './footer.js';

/** In QEMU 7.2's order (the order of the "Formatting ..." line); help texts are QEMU's. */
export const vpcCreateOptions: readonly CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'subformat', type: 'string', help: 'Type of virtual hard disk format. Supported formats are {dynamic (default) | fixed} ' },
  {
    name: 'force_size',
    type: 'bool',
    help: 'Force disk size calculation to use the actual size specified, rather than using the nearest CHS-based calculation',
  },
];

/** Block size of the images QEMU creates. */
const CREATE_BLOCK_SIZE = 0x200000;
const SECTOR = 512;
const VPC_KEYS = new Set(vpcCreateOptions.map((s) => s.name));
/** Where create puts the BAT: after the footer copy and the dynamic header. */
const BAT_OFFSET = 3 * SECTOR;

/** The bytes of a new dynamic image of `totalSectors` with `footer`. */
export function buildDynamicImage(footer: Uint8Array, totalSectors: number): Uint8Array {
  const entries = Math.ceil(totalSectors / (CREATE_BLOCK_SIZE / SECTOR));
  const batBytes = Math.ceil((entries * 4) / SECTOR) * SECTOR;
  const image = new Uint8Array(BAT_OFFSET + batBytes + FOOTER_SIZE);
  image.set(footer, 0);
  image.set(encodeDynHeader(BAT_OFFSET, entries, CREATE_BLOCK_SIZE), SECTOR);
  // Whole BAT sectors of unallocated entries, padding included.
  image.fill(0xff, BAT_OFFSET, BAT_OFFSET + batBytes);
  image.set(footer, BAT_OFFSET + batBytes);
  return image;
}

/** Creates a vpc image as QEMU's vpc_co_create_opts / vpc_co_create do. */
export async function createVpc(ctx: CreateContext): Promise<void> {
  const o = ctx.options;
  // What is not vpc's belongs to the image file's protocol, which QEMU creates
  // empty (size 0) before it looks at the vpc options.
  const protoOptions: Record<string, unknown> = { size: 0 };
  for (const k of o.unconsumed()) if (!VPC_KEYS.has(k)) protoOptions[k] = o.raw(k);
  const graph = ctx.graph;
  const proto = await graph.protocolForOpen(ctx.filename);
  if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
  await proto.create({ ...ctx, options: new OptionReader(protoOptions as Record<string, string>, `Block protocol '${proto.name}'`) });

  // QEMU rounds up to whole sectors silently.
  let size = Math.ceil(o.size('size', 0) / SECTOR) * SECTOR;
  const subformat = o.choice('subformat', ['dynamic', 'fixed'] as const, 'dynamic');
  const forceSize = o.bool('force_size', false);
  o.finish();
  const geometry = roundedImageSize(size, forceSize);
  if (!forceSize) size = geometry.totalSectors * SECTOR;

  const type = subformat === 'fixed' ? DiskType.FIXED : DiskType.DYNAMIC;
  const footer = encodeFooter({
    dataOffset: type === DiskType.DYNAMIC ? BigInt(FOOTER_SIZE) : 0xffffffffffffffffn,
    timestamp: Math.floor(Date.now() / 1000) - VHD_TIMESTAMP_BASE,
    creatorApp: forceSize ? 'qem2' : 'qemu',
    size,
    cyls: geometry.cyls,
    heads: geometry.heads,
    secsPerCyl: geometry.secsPerCyl,
    type,
    uuid: randomUuid(),
  });

  const fileNode = await graph.open({ driver: proto.name, filename: ctx.filename });
  try {
    const { BlockBackend } = await import('../../core/backend.js');
    const bb = await BlockBackend.attach(graph, fileNode);
    try {
      if (type === DiskType.DYNAMIC) {
        const image = buildDynamicImage(footer, geometry.totalSectors);
        // QEMU writes past the end of the empty file; here the file is sized first.
        await (async () => {
          await bb.truncate(image.length);
          await bb.write(0, image);
        })().catch((e: unknown) => {
          throw new BlockError(toBlockError(e).code, 'Unable to create or write VHD header', {}, { cause: e });
        });
      } else {
        await bb.truncate(size + FOOTER_SIZE);
        await bb.write(size, footer).catch((e: unknown) => {
          throw toBlockError(e).withPrefix('Unable to write VHD header');
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
