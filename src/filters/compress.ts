/**
 * The compress filter (QEMU 7.2's block/filter-compress.c): every write
 * through it reaches its `file` node as a compressed write; reads, zero
 * writes and discards pass through. Requests are aligned to the file node's
 * cluster size (the generic request path reads, merges and writes whole
 * clusters around an unaligned write), and the file node must take
 * compressed writes.
 */
import type { BlockDriver, DriverInstance, ReqFlags } from '../core/driver.js';
import { ReqFlag } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import { BlockError } from '../core/errors.js';
import type { OptionReader } from '../core/options.js';
import { ROLE_FILTERED_PRIMARY } from '../core/permissions.js';

async function openCompress(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  const file = (await node.openChild(options, 'file', ROLE_FILTERED_PRIMARY))!;
  const child = file.node;
  const childFlags = child.instance.supportedWriteFlags ?? 0;
  if (!(childFlags & ReqFlag.COMPRESSED)) {
    await node.graph.detachChild(file);
    throw new BlockError('ENOTSUP', `Compression is not supported for underlying format: ${child.driver.name}`);
  }
  const zeroFlags = child.instance.supportedZeroFlags ?? 0;
  return {
    getLength: () => file.length,
    supportedWriteFlags: (ReqFlag.WRITE_UNCHANGED | (childFlags & ReqFlag.FUA)) as ReqFlags,
    supportedZeroFlags: (ReqFlag.WRITE_UNCHANGED | (zeroFlags & (ReqFlag.FUA | ReqFlag.MAY_UNMAP | ReqFlag.NO_FALLBACK))) as ReqFlags,
    preadv: (offset, bytes, buf, flags) => file.preadv(offset, bytes, buf, flags),
    pwritev: (offset, bytes, buf, flags) => file.pwritev(offset, bytes, buf, flags | ReqFlag.COMPRESSED),
    pwriteZeroes: (offset, bytes, flags) => file.pwriteZeroes(offset, bytes, flags),
    pdiscard: (offset, bytes) => file.pdiscard(offset, bytes),
    refreshLimits(l) {
      // Whole clusters only: a compressed cluster is written in one piece.
      let cs = 0;
      try {
        cs = child.instance.getInfo?.()?.clusterSize ?? 0;
      } catch {
        cs = 0;
      }
      if (cs > 0) l.requestAlignment = Math.max(l.requestAlignment, cs);
    },
    async reopenPrepare() {},
  };
}

/** The compress filter driver. */
export const compressDriver: BlockDriver = {
  name: 'compress',
  kind: 'filter',
  open: openCompress,
};
