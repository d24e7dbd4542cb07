/**
 * Block status over a backing chain (QEMU's bdrv_block_status_above and
 * bdrv_is_allocated_above): the walk that map, stream, commit and
 * copy-on-read share.
 */
import type { BlockNode } from './node.js';
import { Status, type BlockStatusResult } from './driver.js';
import { blockStatus } from './request-path.js';

/** A block status answer plus the depth (0 = top) of the layer that answered. */
export interface StatusAbove extends BlockStatusResult {
  depth: number;
}

/** The next layer below `n` in the chain: backing for formats, the filtered child for filters. */
export function cowChild(n: BlockNode): BlockNode | undefined {
  return n.backing?.node ?? n.filtered?.node;
}

/**
 * Status of the range in the chain from `top` down to (not including) `base`,
 * the way `qemu-img map` walks it: ask each layer with single-layer block
 * status and stop at the first that says DATA or ZERO; `depth` counts the
 * backing steps taken (filters do not count). A range unallocated in every
 * layer answers status 0 (not present, not zero, not data), as qemu-img does.
 * `pnum` is the length for which the whole answer holds.
 */
export async function blockStatusAbove(
  top: BlockNode,
  base: BlockNode | undefined,
  wantZero: boolean,
  offset: number,
  bytes: number,
): Promise<StatusAbove> {
  let n = top;
  let depth = 0;
  let st = await blockStatus(n, wantZero, offset, bytes);
  if (st.pnum === 0) return { ...st, depth };
  for (;;) {
    if (st.status & (Status.ZERO | Status.DATA)) break;
    const next = n.backing?.node;
    if (!next || next === base) {
      st = { status: 0, pnum: st.pnum };
      break;
    }
    depth++;
    n = next;
    const below = await blockStatus(n, wantZero, offset, st.pnum);
    // Past the end of a lower layer (only possible without wantZero): zeros.
    st = below.pnum === 0 ? { status: Status.ZERO, pnum: st.pnum } : below;
  }
  return { ...st, depth };
}

/**
 * Whether the range from `offset` is allocated in some layer from `top` down to
 * `base` (exclusive; inclusive with `includeBase`), and for how many bytes the
 * answer holds.
 */
export async function isAllocatedAbove(
  top: BlockNode,
  base: BlockNode | undefined,
  includeBase: boolean,
  offset: number,
  bytes: number,
): Promise<{ allocated: boolean; pnum: number; depth: number }> {
  let n: BlockNode | undefined = top;
  let depth = 0;
  let limit = bytes;
  for (;;) {
    if (!n) break;
    if (n === base && !includeBase) break;
    if (offset < n.length) {
      const st = await blockStatus(n, false, offset, limit);
      if (st.pnum > 0) {
        limit = Math.min(limit, st.pnum);
        if (st.status & Status.ALLOCATED) return { allocated: true, pnum: limit, depth };
      }
    } else if (n !== top) {
      // Reads past a lower layer's end are zeros that the upper layer provides.
      return { allocated: true, pnum: limit, depth };
    }
    if (n === base) break;
    n = cowChild(n);
    depth++;
  }
  return { allocated: false, pnum: limit, depth };
}
