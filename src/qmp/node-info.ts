/**
 * query-named-block-nodes: a node as QEMU 7.2's BlockDeviceInfo describes it
 * (block/qapi.c), with its ImageInfo and, unless `flat`, the images of its
 * backing chain nested under `backing-image`.
 */
import { allocatedSize, fullBackingFilename, snapshotJson } from '../core/image-facts.js';
import { cowChild } from '../core/block-status.js';
import { refreshFilename, refreshedFilename } from '../core/filename.js';
import { toBlockError } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';

type Json = Record<string, unknown>;

/**
 * The node's generic info, or null where its driver has none: a driver says
 * so by throwing ENOTSUP (QEMU's bdrv_get_info failing for null-co); one
 * without the method has an empty answer (as the tools read it too).
 */
function generalInfo(node: BlockNode): NonNullable<ReturnType<NonNullable<BlockNode['instance']['getInfo']>>> | null {
  // A filter without its own answers for the node it filters (QEMU's bdrv_get_info).
  const filtered = node.filtered?.node;
  if (!node.instance.getInfo && filtered) return generalInfo(filtered);
  try {
    return node.instance.getInfo?.() ?? {};
  } catch (e) {
    if (toBlockError(e).code === 'ENOTSUP') return null;
    throw e;
  }
}

/** QEMU's ImageInfo of `node`; with `flat` false the backing chain nests under backing-image. */
export async function imageInfo(node: BlockNode, flat: boolean): Promise<Json> {
  const info: Json = { filename: refreshedFilename(node), format: node.driver.name };
  const gi = generalInfo(node);
  if (gi) info['dirty-flag'] = gi.dirty ?? false;
  const actual = await allocatedSize(node);
  if (actual !== undefined) info['actual-size'] = actual;
  // QEMU's bdrv_getlength counts whole 512-byte sectors.
  info['virtual-size'] = Math.ceil(node.length / 512) * 512;
  if (gi?.clusterSize) info['cluster-size'] = gi.clusterSize;
  const bf = node.instance.backingFile?.();
  if (bf) {
    info['backing-filename'] = bf.filename;
    const full = fullBackingFilename(node, bf.filename);
    if (full !== undefined) info['full-backing-filename'] = full;
    if (bf.format) info['backing-filename-format'] = bf.format;
  }
  const snaps = node.instance.snapshotList?.() ?? [];
  if (snaps.length > 0) {
    info.snapshots = snaps.map(snapshotJson);
  }
  // QEMU nests the filtered child of a filter, else the backing file (bdrv_filter_or_cow_bs).
  const backing = node.driver.kind === 'filter' ? node.filtered?.node : cowChild(node);
  if (!flat && backing) info['backing-image'] = await imageInfo(backing, false);
  const spec = node.instance.getSpecificInfo?.();
  if (spec) info['format-specific'] = { type: spec.type, data: spec.data };
  return info;
}

/** The dirty bitmaps of a node as BlockDirtyInfo, newest first (QEMU adds each at the head of its list). */
export function dirtyBitmapsInfo(node: BlockNode): Json[] {
  return [...node.dirtyBitmaps].reverse().map((b) => ({
    // An anonymous bitmap (a job's own) has no name member.
    ...(b.name !== '' ? { name: b.name } : {}),
    recording: b.enabled,
    persistent: b.persistent,
    // Busy tells users a named bitmap is taken; a job's anonymous one is not theirs to take
    // (QEMU's mirror leaves its own unmarked, ours marks it to keep other code off it).
    busy: b.name !== '' && b.busy,
    count: b.count,
    granularity: b.granularity,
    ...(b.inconsistent ? { inconsistent: true } : {}),
  }));
}

/** QEMU's BlockDeviceInfo of `node` (no BlockBackend: no throttling, write cache on). */
export async function blockDeviceInfo(node: BlockNode, flat: boolean): Promise<Json> {
  refreshFilename(node);
  const image = await imageInfo(node, flat);
  let depth = 0;
  for (let b = image['backing-image'] as Json | undefined; b; b = b['backing-image'] as Json | undefined) depth++;
  // QEMU's bdrv_cow_bs: a filter's child is not a backing file.
  const backing = node.driver.kind === 'filter' ? undefined : cowChild(node);
  const info: Json = {
    file: node.filename,
    'node-name': node.nodeName,
    ro: node.readOnly,
    drv: node.driver.name,
    ...(backing ? { backing_file: backing.filename } : {}),
    backing_file_depth: depth,
    encrypted: false,
    detect_zeroes: node.detectZeroes,
    bps: 0,
    bps_rd: 0,
    bps_wr: 0,
    iops: 0,
    iops_rd: 0,
    iops_wr: 0,
    image,
    cache: { writeback: true, direct: node.direct, 'no-flush': node.noFlush },
    write_threshold: node.writeThreshold,
  };
  if (node.dirtyBitmaps.length > 0) info['dirty-bitmaps'] = dirtyBitmapsInfo(node);
  return info;
}

