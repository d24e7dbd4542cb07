/**
 * qemu-img create -f vmdk: QEMU 7.2's options, checks, messages, file names
 * and bytes. monolithicSparse and streamOptimized are one sparse file with
 * the descriptor at 0x200; the other subformats are a descriptor file
 * naming extent files next to it (`name-flat.vmdk`, `name-s001.vmdk`,
 * `name-f001.vmdk`, ...; split ones cut at 2 GiB).
 */
import type { CreateContext, CreateOptionSpec } from '../../core/driver.js';
import type { BlockBackend } from '../../core/backend.js';
import { OptionReader } from '../../core/options.js';
import { BlockError, einval, toBlockError } from '../../core/errors.js';
import { descriptorText, latin1 } from './descriptor.js';
import { SECTOR, newGrainDirectory, newSparseLayout } from './header.js';

/** QEMU's vmdk_create_opts in its order (the "Formatting ..." line prints them so); help texts are QEMU's. */
export const vmdkCreateOptions: readonly CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'adapter_type', type: 'string', help: 'Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX' },
  { name: 'backing_file', type: 'string', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', help: "Must be 'vmdk' if present" },
  { name: 'compat6', type: 'bool', help: 'VMDK version 6 image', default: 'off' },
  { name: 'hwversion', type: 'string', help: 'VMDK hardware version', default: 'undefined' },
  { name: 'toolsversion', type: 'string', help: 'VMware guest tools version' },
  {
    name: 'subformat',
    type: 'string',
    help: 'VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ',
  },
  { name: 'zeroed_grain', type: 'bool', help: 'Enable efficient zero writes using the zeroed-grain GTE feature' },
];

const VMDK_KEYS = new Set(vmdkCreateOptions.map((s) => s.name));
export const SUBFORMATS = ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized'] as const;
export const ADAPTER_TYPES = ['ide', 'buslogic', 'lsilogic', 'legacyESX'] as const;
/** Size of each extent of the split subformats. */
const SPLIT_SIZE = 0x80000000;

/** QEMU's filename_decompose: directory part (through the last '/', '\\' or ':'), base name, extension. */
export function decompose(filename: string): { path: string; prefix: string; postfix: string } {
  if (filename === '') throw einval('No filename provided');
  let cut = filename.lastIndexOf('/');
  if (cut < 0) cut = filename.lastIndexOf('\\');
  if (cut < 0) cut = filename.lastIndexOf(':');
  const path = cut < 0 ? '' : filename.slice(0, cut + 1);
  const base = filename.slice(cut + 1);
  const dot = base.lastIndexOf('.');
  return dot < 0 ? { path, prefix: base, postfix: '' } : { path, prefix: base.slice(0, dot), postfix: base.slice(dot) };
}

/** The last component of a path (g_path_get_basename). */
function basename(p: string): string {
  const trimmed = p.replace(/\/+$/, '');
  if (trimmed === '') return p === '' ? '.' : '/';
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

function enumValue<T extends string>(v: string | undefined, values: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (!(values as readonly string[]).includes(v)) throw einval(`invalid parameter value: ${v}`);
  return v as T;
}

/** Creates the file `filename` on its protocol and runs `fn` on it. */
async function withNewFile(ctx: CreateContext, filename: string, protoOptions: Record<string, unknown>, fn: (bb: BlockBackend) => Promise<void>): Promise<void> {
  const graph = ctx.graph;
  const proto = await graph.protocolForOpen(filename);
  if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
  await proto.create({ ...ctx, filename, options: new OptionReader({ ...protoOptions } as Record<string, string>, `Block protocol '${proto.name}'`) });
  const fileNode = await graph.open({ driver: proto.name, filename });
  try {
    const { BlockBackend } = await import('../../core/backend.js');
    const bb = await BlockBackend.attach(graph, fileNode);
    try {
      await fn(bb);
      await bb.flush();
    } finally {
      await bb.close();
    }
  } finally {
    await fileNode.unref();
  }
}

/** Writes a new extent of `bytes` into an empty file (QEMU's vmdk_init_extent). */
async function initExtent(bb: BlockBackend, bytes: number, flat: boolean, compress: boolean, zeroedGrain: boolean): Promise<void> {
  if (flat) {
    await bb.truncate(bytes);
    return;
  }
  const l = newSparseLayout(bytes, compress, zeroedGrain);
  const io = (e: unknown) => new BlockError(toBlockError(e).code, 'Input/output error', {}, { cause: e });
  // QEMU writes past the end of the empty file, then sizes it; here it is sized first (same bytes).
  await bb.truncate(l.grainOffset * SECTOR);
  await bb.write(0, l.header).catch((e: unknown) => {
    throw io(e);
  });
  await bb.write(l.rgdOffset * SECTOR, newGrainDirectory(l, l.rgdOffset)).catch((e: unknown) => {
    throw io(e);
  });
  await bb.write(l.gdOffset * SECTOR, newGrainDirectory(l, l.gdOffset)).catch((e: unknown) => {
    throw io(e);
  });
}

/** The CID of the image at `name` (relative to the new image), which must be a vmdk. */
async function parentCid(ctx: CreateContext, name: string): Promise<number> {
  const { joinRelative } = await import('../../core/backing-open.js');
  const { BlockBackend } = await import('../../core/backend.js');
  const full = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(name) || name.startsWith('/') ? name : joinRelative(ctx.filename, name);
  const bb = await BlockBackend.open(ctx.graph, { filename: full, 'force-share': true }, { readOnly: true, noBacking: true }, { name: '' });
  try {
    const node = bb.node;
    if (node.driver.name !== 'vmdk') throw einval(`Invalid backing file format: ${node.driver.name}. Must be vmdk`);
    const inst = node.instance as { currentCid?: () => Promise<number> };
    try {
      return await inst.currentCid!();
    } catch (e) {
      throw new BlockError(toBlockError(e).code, 'Failed to read parent CID', {}, { cause: e });
    }
  } finally {
    await bb.close();
  }
}

/** Creates a vmdk image as QEMU's vmdk_co_create_opts / vmdk_co_do_create. */
export async function createVmdk(ctx: CreateContext): Promise<void> {
  const o = ctx.options;
  const protoOptions: Record<string, unknown> = {};
  for (const k of o.unconsumed()) if (!VMDK_KEYS.has(k)) protoOptions[k] = o.raw(k);
  const backingFmt = o.string('backing_fmt');
  if (backingFmt !== undefined && backingFmt !== 'vmdk') throw einval('backing_file must be a vmdk image');
  const { path, prefix, postfix } = decompose(ctx.filename);
  const size = Math.ceil(o.size('size', 0) / SECTOR) * SECTOR;
  const adapterText = o.string('adapter_type');
  const backingFile = o.string('backing_file');
  let hwVersion = o.string('hwversion', 'undefined') as string | undefined;
  const toolsVersion = o.string('toolsversion') ?? '2147483647';
  const compat6 = o.bool('compat6', false);
  if (hwVersion === 'undefined') hwVersion = undefined;
  const subformatText = o.string('subformat');
  const zeroedGrain = o.bool('zeroed_grain', false);
  for (const k of o.unconsumed()) o.consume(k);
  const adapter = enumValue(adapterText, ADAPTER_TYPES, 'ide');
  const subformat = enumValue(subformatText, SUBFORMATS, 'monolithicSparse');

  if (compat6) {
    if (hwVersion !== undefined) throw einval('compat6 cannot be enabled with hwversion set');
    hwVersion = '6';
  }
  hwVersion ??= '4';
  const heads = adapter === 'ide' ? 16 : 255;
  const split = subformat === 'twoGbMaxExtentFlat' || subformat === 'twoGbMaxExtentSparse';
  const flat = subformat === 'monolithicFlat' || subformat === 'twoGbMaxExtentFlat';
  const compress = subformat === 'streamOptimized';
  if (flat && backingFile !== undefined) throw new BlockError('ENOTSUP', "Flat image can't have backing file");
  if (flat && zeroedGrain) throw new BlockError('ENOTSUP', "Flat image can't enable zeroed grain");

  const extentSize = split ? SPLIT_SIZE : size;
  const monolithic = !split && !flat;
  const extentLine = (bytes: number, name: string) =>
    flat ? `RW ${Math.ceil(bytes / SECTOR)} FLAT "${basename(name)}" 0\n` : `RW ${Math.ceil(bytes / SECTOR)} SPARSE "${basename(name)}"\n`;
  const lines: string[] = [];
  const descName = `${path}${prefix}${postfix}`;

  // The descriptor file first (the whole image when monolithic).
  let created = monolithic ? extentSize : 0;
  let parent = 0xffffffff;
  const writeDescriptor = async (bb: BlockBackend): Promise<void> => {
    if (monolithic) await initExtent(bb, created, false, compress, zeroedGrain);
    else await bb.truncate(0);
    if (monolithic) lines.push(extentLine(created, descName));
    if (backingFile !== undefined) parent = await parentCid(ctx, backingFile);
    let next = 1;
    while (created < size) {
      const cur = Math.min(size - created, extentSize);
      const idx = next++;
      const name = `${path}${split ? `${prefix}-${flat ? 'f' : 's'}${String(idx).padStart(3, '0')}${postfix}` : `${prefix}-flat${postfix}`}`;
      await withNewFile(ctx, name, protoOptions, (ebb) => initExtent(ebb, cur, flat, compress, zeroedGrain));
      lines.push(extentLine(cur, name));
      created += cur;
    }
    const cid = globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!;
    const text = descriptorText({
      cid,
      parentCid: parent,
      createType: subformat,
      parentHint: backingFile,
      extentLines: lines,
      hwVersion: hwVersion!,
      cylinders: Math.floor(size / (63 * heads * SECTOR)),
      heads,
      adapterType: adapter,
      toolsVersion,
    });
    const descriptorBytes = latin1(text);
    const at = monolithic ? 0x200 : 0;
    if (!monolithic) await bb.truncate(descriptorBytes.length);
    await bb.write(at, descriptorBytes).catch((e: unknown) => {
      throw toBlockError(e).withPrefix('Could not write description');
    });
  };
  await withNewFile(ctx, ctx.filename, protoOptions, writeDescriptor);
}
