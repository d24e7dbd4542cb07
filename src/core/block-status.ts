/**
 * Block status over a backing chain (QEMU's bdrv_block_status_above and
 * bdrv_is_allocated_above): the walk that map, stream, commit and
 * copy-on-read share.
 */
import type { BlockNode } from './node.js';
import { Status, type BlockStatusResult } from './driver.js';
import { blockStatus } from './io.js';

/** A block status answer plus the depth (0 = top) of the layer that answered. */
export interface StatusAbove extends BlockStatusResult {
  depth: number;
}

/** The next layer below `n` in the chain: backing for formats, the filtered child for filters. */
export function cowChild(n: BlockNode): BlockNode | undefined {
  return n.backing?.node ?? n.filtered?.node;
}

/**
 * Status of the range in the chain from `top` down to (but not including)
 * `base`: the first layer that has the range allocated answers; unallocated
 * everywhere reads as zeros beyond each layer's end. `pnum` is the length for
 * which the answer (and the depth) holds.
 */
export async function blockStatusAbove(
  top: BlockNode,
  base: BlockNode | undefined,
  wantZero: boolean,
  offset: number,
  bytes: number,
): Promise<StatusAbove> {
  let n: BlockNode | undefined = top;
  let depth = 0;
  let limit = bytes;
  let first: BlockStatusResult | undefined;
  while (n && n !== base) {
    if (offset >= n.length && n !== top) {
      // Past the end of a lower layer: zeros, unless something above had it.
      return { status: Status.ZERO | Status.ALLOCATED, pnum: limit, depth };
    }
    const st = await blockStatus(n, wantZero, offset, limit);
    first ??= st;
    if (st.pnum === 0) return { ...st, depth };
    limit = Math.min(limit, st.pnum);
    if (st.status & Status.ALLOCATED || n.filtered === undefined && n.backing === undefined) {
      return { ...st, pnum: limit, depth };
    }
    const wasFilter = n.filtered !== undefined;
    n = cowChild(n);
    if (!wasFilter) depth++;
  }
  // Nothing in the chain above base has it.
  return { status: first ? first.status & ~Status.ALLOCATED & ~Status.EOF : 0, pnum: limit, depth };
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
