/**
 * The copy-on-read filter (QEMU 7.2's block/copy-on-read.c): reads through it
 * copy the data its `file` node does not hold (from that node's backing
 * chain) into that node; with `bottom`, only data from the chain down to and
 * including the `bottom` node is copied, what lies below it is read without
 * copying. Writes and everything else pass through. The chain down to
 * `bottom` stays frozen while the filter is open.
 */
import type { BlockDriver, DriverInstance, ReqFlags } from '../core/driver.js';
import { ReqFlag } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { einval } from '../core/errors.js';
import type { OptionReader } from '../core/options.js';
import { PERM_ALL, Perm, ROLE_FILTERED_PRIMARY } from '../core/permissions.js';
import { cowChild, isAllocatedAbove } from '../core/block-status.js';
import { checkInChain, freezeChain, unfreezeChain } from '../jobs/chain.js';

/** Permissions that pass straight through (QEMU's PERM_PASSTHROUGH of this filter). */
const PASSTHROUGH = Perm.CONSISTENT_READ | Perm.WRITE | Perm.RESIZE;

/** The node `bottom` names, checked as QEMU's cor_open checks it. */
function bottomNode(node: BlockNode, file: BdrvChild, name: string): BlockNode {
  if (!node.graph.hasNode(name)) throw einval(`Bottom node '${name}' not found`);
  const bottom = node.graph.findNode(name);
  if (bottom.driver.kind === 'filter') throw einval(`Bottom node '${name}' is a filter`);
  // QEMU loops for ever on a bottom outside the chain; refuse it instead.
  checkInChain(file.node, bottom);
  return bottom;
}

async function openCor(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  const bottomName = options.string('bottom');
  const file = (await node.openChild(options, 'file', ROLE_FILTERED_PRIMARY))!;
  const bottom = bottomName !== undefined ? bottomNode(node, file, bottomName) : undefined;
  const frozen = bottom ? freezeChain(file.node, bottom) : [];
  const childFlags = () => file.node.instance.supportedWriteFlags ?? 0;
  const childZeroFlags = () => file.node.instance.supportedZeroFlags ?? 0;

  /** Reads with copy-on-read only the ranges that come from the chain down to `bottom`. */
  async function readAbove(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    const top = file.node;
    for (let done = 0; done < bytes; ) {
      let n = bytes - done;
      let local = flags;
      const own = await isAllocatedAbove(top, cowChild(top), false, offset + done, n);
      n = own.pnum;
      const next = cowChild(top);
      if (!own.allocated && next) {
        const below = await isAllocatedAbove(next, bottom, true, offset + done, n);
        if (below.allocated) local |= ReqFlag.WANT_COPY_ON_READ;
        // The end of a shorter backing file: the rest reads through without copying.
        if (below.pnum === 0) n = bytes - done;
        else n = below.pnum;
      }
      if (n <= 0) n = bytes - done;
      await file.preadv(offset + done, n, buf.subarray(done, done + n), local);
      done += n;
    }
  }

  return {
    getLength: () => file.length,
    get supportedWriteFlags(): ReqFlags {
      return ReqFlag.WRITE_UNCHANGED | (childFlags() & ReqFlag.FUA);
    },
    get supportedZeroFlags(): ReqFlags {
      return ReqFlag.WRITE_UNCHANGED | (childZeroFlags() & (ReqFlag.FUA | ReqFlag.MAY_UNMAP | ReqFlag.NO_FALLBACK));
    },
    preadv(offset, bytes, buf, flags) {
      if (!bottom) return file.preadv(offset, bytes, buf, flags | ReqFlag.WANT_COPY_ON_READ);
      return readAbove(offset, bytes, buf, flags);
    },
    pwritev: (offset, bytes, buf, flags) => file.pwritev(offset, bytes, buf, flags),
    // Copying into the file node needs WRITE_UNCHANGED on it whatever the parents take, even
    // read-only (QEMU asks for it unless the node is inactive): a read-only file refuses it.
    childPerm: (_child, _role, perm, shared) => ({
      perm: (perm & PASSTHROUGH) | Perm.WRITE_UNCHANGED,
      shared: (shared & PASSTHROUGH) | (PERM_ALL & ~PASSTHROUGH),
    }),
    async reopenPrepare() {},
    async close() {
      unfreezeChain(frozen);
    },
  };
}

/** The copy-on-read filter driver. */
export const copyOnReadDriver: BlockDriver = {
  name: 'copy-on-read',
  kind: 'filter',
  open: openCor,
};
