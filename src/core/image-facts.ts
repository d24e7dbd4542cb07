/**
 * Facts about an image that `img info` and QMP's query-named-block-nodes both
 * report, computed one way: the bytes it takes in its storage, its backing
 * file's name made absolute, and its snapshots as QAPI's SnapshotInfo.
 */
import { joinRelative, nodeDirname } from './backing-open.js';
import type { BdrvChild } from './child.js';
import { BlockError, STRERROR } from './errors.js';
import type { BlockNode } from './node.js';

/**
 * Bytes the node takes in its storage (QEMU's bdrv_get_allocated_file_size):
 * its driver's answer, else a filter's filtered child's, else the sum over
 * its children but the backing file;
 * undefined when nothing below can say.
 */
export async function allocatedSize(node: BlockNode): Promise<number | undefined> {
  if (node.instance.getAllocatedFileSize) {
    try {
      return await node.instance.getAllocatedFileSize();
    } catch {
      return undefined;
    }
  }
  // A filter's is its filtered child's (mirror_top has no other; copy-before-write's target is not counted).
  const filtered = node.driver.kind === 'filter' ? node.filtered : undefined;
  if (filtered) return allocatedSize(filtered.node);
  let sum = 0;
  let any = false;
  for (const c of node.children) {
    if (c.name === 'backing') continue;
    const s = await allocatedSize(c.node);
    if (s !== undefined) {
      sum += s;
      any = true;
    }
  }
  return any ? sum : undefined;
}

/**
 * {@link allocatedSize} of a child's node for a driver that sums its children:
 * ENOTSUP when the node cannot say (a blkdebug node, as QEMU's protocol-like
 * driver), so the parent's size is unknown too.
 */
export async function childAllocatedSize(child: BdrvChild): Promise<number> {
  const s = await allocatedSize(child.node);
  if (s === undefined) throw new BlockError('ENOTSUP', STRERROR.ENOTSUP);
  return s;
}

/**
 * The backing file's name made absolute against the image's directory
 * (QEMU's bdrv_get_full_backing_filename); undefined when no directory can be
 * known (a quorum, a json: name).
 */
export function fullBackingFilename(node: BlockNode, name: string): string | undefined {
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(name) || name.startsWith('/')) return name;
  try {
    return joinRelative(nodeDirname(node), name);
  } catch {
    return undefined;
  }
}

/** One internal snapshot as QAPI's SnapshotInfo (img info, snapshot -l, QMP). */
export interface SnapshotJson {
  id: string;
  name: string;
  'vm-state-size': number;
  'date-sec': number;
  'date-nsec': number;
  'vm-clock-sec': number;
  'vm-clock-nsec': number;
  icount?: number;
}

/** A driver's snapshot entry as SnapshotInfo; no instruction count leaves the member out, as QEMU. */
export function snapshotJson(s: { id: string; name: string; vmStateSize: number; dateSec: number; dateNsec: number; vmClockNsec: number; icount?: number }): SnapshotJson {
  const j: SnapshotJson = {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    'vm-clock-nsec': s.vmClockNsec % 1e9,
  };
  if (s.icount !== undefined && s.icount >= 0) j.icount = s.icount;
  return j;
}
