/**
 * Copy-on-read on the request path (QEMU's bdrv_co_do_copy_on_readv): reads
 * of ranges this node does not hold are written into it.
 */
import type { BlockNode } from './node.js';
import { ReqFlag, Status, type ReqFlags } from './driver.js';
import { blockStatus } from './block-status.js';
import { driverRead, driverWriteSplit } from './request-driver-calls.js';
import { driverZero } from './request-zero-discard.js';
import { isZeroBuffer } from './zero-detect.js';

/**
 * Copy-on-read: data not allocated in this node is read (from the backing
 * chain) and written into it with WRITE_UNCHANGED, so later reads find it here.
 */
export async function copyOnReadRange(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags) {
  let done = 0;
  while (done < bytes) {
    const st = await blockStatus(node, false, offset + done, bytes - done);
    const n = Math.max(1, Math.min(st.pnum, bytes - done));
    const part = buf.subarray(done, done + n);
    await driverRead(node, offset + done, n, part, flags);
    if (!(st.status & Status.ALLOCATED) && !(st.status & Status.EOF && st.pnum === 0)) {
      // Zeros are copied as a zero write where the driver has one, as QEMU does.
      if (node.instance.pwriteZeroes && isZeroBuffer(part)) await driverZero(node, offset + done, n, ReqFlag.WRITE_UNCHANGED);
      else await driverWriteSplit(node, offset + done, n, part, ReqFlag.WRITE_UNCHANGED);
      node.writeGeneration++;
    }
    done += n;
  }
}
