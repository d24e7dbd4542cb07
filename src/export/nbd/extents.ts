/**
 * The answers of NBD_CMD_BLOCK_STATUS and the hole detection of structured
 * reads: status over the whole backing chain (QEMU's
 * bdrv_block_status_above with no base), allocation depth, dirty bitmaps,
 * gathered into a bounded extent list as qemu-nbd builds it.
 */
import { blockStatus, isAllocatedAbove } from '../../core/block-status.js';
import type { BdrvDirtyBitmap } from '../../core/dirty-bitmap.js';
import { Status } from '../../core/driver.js';
import type { BlockNode } from '../../core/node.js';
import { State } from './constants.js';

/**
 * Status of the range from `offset` through the chain below `top`: the first
 * layer that allocates it answers; a range no layer allocates answers with the
 * bottom layer's status (zero when that layer has no backing), and a layer
 * shorter than the range reads as zeros past its end. `pnum` > 0 for a
 * request inside the node.
 */
export async function chainStatus(top: BlockNode, offset: number, bytes: number): Promise<{ status: number; pnum: number }> {
  let st = await blockStatus(top, true, offset, bytes);
  let n = top;
  let pnum = st.pnum;
  while (!(st.status & Status.ALLOCATED)) {
    const next = n.backing?.node ?? n.filtered?.node;
    if (!next) break;
    n = next;
    const below = await blockStatus(n, true, offset, pnum);
    if (below.pnum === 0) {
      // Past the end of the lower layer: zeros.
      st = { status: Status.ZERO | Status.ALLOCATED, pnum };
      break;
    }
    st = below;
    pnum = Math.min(pnum, below.pnum);
  }
  return { status: st.status, pnum };
}

/** One extent of a BLOCK_STATUS reply. */
export interface Extent {
  length: number;
  flags: number;
}

/**
 * A bounded extent list that merges neighbours with equal flags (while the
 * sum fits in 32 bits); {@link add} returns false once it is full.
 */
export class ExtentList {
  readonly items: Extent[] = [];
  constructor(private readonly max: number) {}

  add(length: number, flags: number): boolean {
    if (length === 0) return true;
    const last = this.items[this.items.length - 1];
    if (last && last.flags === flags && last.length + length <= 0xffffffff) {
      last.length += length;
      return true;
    }
    if (this.items.length >= this.max) return false;
    this.items.push({ length, flags });
    return true;
  }
}

/** base:allocation extents: HOLE where no layer has data, ZERO where reads give zeros. */
export async function allocationExtents(top: BlockNode, offset: number, bytes: number, max: number): Promise<ExtentList> {
  const list = new ExtentList(max);
  while (bytes > 0) {
    const st = await chainStatus(top, offset, bytes);
    const flags = (st.status & Status.DATA ? 0 : State.HOLE) | (st.status & Status.ZERO ? State.ZERO : 0);
    if (!list.add(st.pnum, flags)) break;
    offset += st.pnum;
    bytes -= st.pnum;
  }
  return list;
}

/** qemu:allocation-depth extents: 0 unallocated, 1 the top layer, 2 its backing, ... */
export async function depthExtents(top: BlockNode, offset: number, bytes: number, max: number): Promise<ExtentList> {
  const list = new ExtentList(max);
  while (bytes > 0) {
    const a = await isAllocatedAbove(top, undefined, false, offset, bytes);
    const pnum = a.pnum > 0 ? a.pnum : bytes;
    if (!list.add(pnum, a.allocated ? a.depth + 1 : 0)) break;
    offset += pnum;
    bytes -= pnum;
  }
  return list;
}

/** qemu:dirty-bitmap extents: DIRTY where the bitmap has bits set. */
export function bitmapExtents(bm: BdrvDirtyBitmap, offset: number, bytes: number, max: number): ExtentList {
  const list = new ExtentList(max);
  const end = Math.min(offset + bytes, bm.size);
  let start = offset;
  for (;;) {
    const area = start < end ? bm.nextDirtyArea(start, end, 0x7fffffff) : undefined;
    if (!area) break;
    const [dirtyStart, dirtyCount] = area;
    if (!list.add(dirtyStart - start, 0) || !list.add(dirtyCount, State.DIRTY)) return list;
    start = dirtyStart + dirtyCount;
  }
  list.add(offset + bytes - start, 0);
  return list;
}
