/**
 * qemu-img create -f qed (QEMU 7.2's bdrv_qed_co_create): the file is made
 * empty (QED ties allocation to the file's length), then the header (one
 * cluster, the backing file name right after the 64 header bytes) and a
 * zeroed L1 table in the next `table_size` clusters.
 */
import type { CreateContext, CreateOptionSpec } from '../../core/driver.js';
import { OptionReader } from '../../core/options.js';
import { BlockError, einval } from '../../core/errors.js';
import {
  QED_DEFAULT_CLUSTER_SIZE,
  QED_DEFAULT_TABLE_SIZE,
  QED_F,
  QED_HEADER_SIZE,
  QED_MAGIC,
  QED_MAX_CLUSTER_SIZE,
  QED_MAX_TABLE_SIZE,
  QED_MIN_CLUSTER_SIZE,
  QED_MIN_TABLE_SIZE,
  clusterSizeValid,
  encodeHeader,
  imageSizeValid,
  maxImageSize,
  tableSizeValid,
} from './header.js';

/** QEMU's qed_create_opts in its order (the "Formatting ..." line prints them so); help texts are QEMU's. */
export const qedCreateOptions: readonly CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'backing_file', type: 'string', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', help: 'Image format of the base image' },
  { name: 'cluster_size', type: 'size', help: 'Cluster size (in bytes)', default: String(QED_DEFAULT_CLUSTER_SIZE) },
  { name: 'table_size', type: 'size', help: 'L1/L2 table size (in clusters)' },
];

/** The L1 table (up to 1 GiB) is written in pieces of this size. */
const WRITE_CHUNK = 4 << 20;
const QED_KEYS = new Set(qedCreateOptions.map((s) => s.name));

export async function createQed(ctx: CreateContext): Promise<void> {
  const o = ctx.options;
  // What is not qed's belongs to the image file's protocol, created first (as QEMU).
  const protoOptions: Record<string, unknown> = {};
  for (const k of o.unconsumed()) if (!QED_KEYS.has(k)) protoOptions[k] = o.raw(k);
  const graph = ctx.graph;
  const proto = await graph.protocolForOpen(ctx.filename);
  if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
  await proto.create({ ...ctx, options: new OptionReader(protoOptions as Record<string, string>, `Block protocol '${proto.name}'`) });

  // QEMU rounds the size up to whole sectors silently.
  const size = Math.ceil(o.size('size', 0) / 512) * 512;
  const backingFile = o.string('backing_file');
  const backingFmt = o.string('backing_fmt');
  const cs = o.size('cluster_size', QED_DEFAULT_CLUSTER_SIZE);
  const ts = o.size('table_size', QED_DEFAULT_TABLE_SIZE);
  o.finish();
  if (!clusterSizeValid(cs)) {
    throw einval(`QED cluster size must be within range [${QED_MIN_CLUSTER_SIZE}, ${QED_MAX_CLUSTER_SIZE}] and power of 2`, {}, `cluster_size ${cs}`);
  }
  if (!tableSizeValid(ts)) {
    throw einval(`QED table size must be within range [${QED_MIN_TABLE_SIZE}, ${QED_MAX_TABLE_SIZE}] and power of 2`, {}, `table_size ${ts}`);
  }
  if (!imageSizeValid(BigInt(size), cs, ts)) {
    throw einval(`QED image size must be a non-zero multiple of cluster size and less than ${maxImageSize(cs, ts)} bytes`, {}, `size ${size}`);
  }
  const name = backingFile === undefined ? new Uint8Array(0) : new TextEncoder().encode(backingFile);
  let features = 0n;
  if (backingFile !== undefined) {
    features |= QED_F.BACKING_FILE;
    if (backingFmt === 'raw') features |= QED_F.BACKING_FORMAT_NO_PROBE;
  }
  const header = encodeHeader({
    magic: QED_MAGIC,
    clusterSize: cs,
    tableSize: ts,
    headerSize: 1,
    features,
    compatFeatures: 0n,
    autoclearFeatures: 0n,
    l1TableOffset: BigInt(cs),
    imageSize: BigInt(size),
    backingNameOffset: backingFile === undefined ? 0 : QED_HEADER_SIZE,
    backingNameSize: name.length,
  });
  const fileNode = await graph.open({ driver: proto.name, filename: ctx.filename });
  try {
    const { BlockBackend } = await import('../../core/backend.js');
    const bb = await BlockBackend.attach(graph, fileNode);
    try {
      await bb.truncate(0);
      // QEMU writes past the end of the empty file; here the file is sized first.
      await bb.truncate(cs + cs * ts);
      const first = new Uint8Array(QED_HEADER_SIZE + name.length);
      first.set(header);
      first.set(name, QED_HEADER_SIZE);
      await bb.write(0, first);
      // The L1 table is written as zeros, as QEMU does (the file's allocated size shows it).
      const l1Bytes = cs * ts;
      const zeros = new Uint8Array(Math.min(l1Bytes, WRITE_CHUNK));
      for (let done = 0; done < l1Bytes; done += zeros.length) await bb.write(cs + done, zeros.subarray(0, Math.min(zeros.length, l1Bytes - done)));
      await bb.flush();
    } finally {
      await bb.close();
    }
  } finally {
    await fileNode.unref();
  }
}
