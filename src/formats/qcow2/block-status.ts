/**
 * Block status (QEMU's qcow2_co_block_status): what a guest range holds, from
 * the mapping walk. Images created with preallocation=metadata have host
 * clusters for every guest cluster, most of them never written; for those QEMU
 * answers RECURSE on data clusters so the generic layer asks the file whether
 * the host range is a hole (reads zeros). Whether an image is preallocated is
 * not recorded anywhere, so it is guessed once per open as QEMU does.
 */
import { Status, type BlockStatusResult } from '../../core/driver.js';
import { ClusterType } from './l2-entry.js';
import { lookup } from './lookup.js';
import type { Qcow2Image } from './qcow2.js';

/** What [offset, offset+bytes) holds (at least one byte answered). */
export async function blockStatusOf(img: Qcow2Image, offset: number, bytes: number): Promise<BlockStatusResult> {
  if (img.metadataPreallocation === undefined) {
    await img.lock.run(async () => {
      img.metadataPreallocation ??= await detectMetadataPreallocation(img);
    });
  }
  const run = await lookup(img, offset, bytes);
  const file = img.dataChild.node;
  switch (run.type) {
    case ClusterType.NORMAL: {
      const recurse = img.metadataPreallocation ? Status.RECURSE : 0;
      return { status: Status.DATA | Status.OFFSET_VALID | recurse, pnum: run.bytes, map: run.host, file };
    }
    case ClusterType.ZERO_PLAIN:
      return { status: Status.ZERO, pnum: run.bytes };
    case ClusterType.ZERO_ALLOC:
      return { status: Status.ZERO | Status.OFFSET_VALID, pnum: run.bytes, map: run.host, file };
    case ClusterType.UNALLOC_ALLOC:
      return { status: Status.OFFSET_VALID, pnum: run.bytes, map: run.host, file };
    case ClusterType.COMPRESSED:
      return { status: Status.DATA | Status.COMPRESSED, pnum: run.bytes };
    default:
      return { status: 0, pnum: run.bytes };
  }
}

/**
 * Guesses whether the image was preallocated with preallocation=metadata
 * (QEMU's qcow2_detect_metadata_preallocation): the refcounts claim clearly
 * more clusters of the image file (over 10 %, and at least 2 more) than the
 * file has allocated in storage. False when the back end cannot tell its
 * allocated size, as in QEMU.
 */
export async function detectMetadataPreallocation(img: Qcow2Image): Promise<boolean> {
  const allocatedSize = img.file.node.instance.getAllocatedFileSize;
  if (!allocatedSize) return false;
  let realAllocation: number;
  try {
    realAllocation = await allocatedSize.call(img.file.node.instance);
  } catch {
    return false;
  }
  const realClusters = Math.floor(realAllocation / img.clusterSize);
  const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
  const endCluster = Math.ceil(img.file.length / img.clusterSize);
  // Stops at the threshold: the walk is bounded by the allocated size, not the image size.
  return (await img.refs.countInUse(endCluster, threshold)) >= threshold;
}
