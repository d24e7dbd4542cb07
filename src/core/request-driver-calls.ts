/**
 * The bottom of the request path: calling the driver instance (or, for a
 * filter without its own method, the filtered child), split at maxTransfer,
 * with only the request flags the driver supports.
 */
import type { BlockNode } from './node.js';
import { ReqFlag, type IoResult, type ReqFlags } from './driver.js';
import { BlockError } from './errors.js';

/** Calls the driver, split at maxTransfer. */
export async function driverRead(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
  const max = node.limits.maxTransfer;
  if (max === 0 || bytes <= max) {
    return callRead(node, offset, bytes, buf.length === bytes ? buf : buf.subarray(0, bytes), flags);
  }
  for (let done = 0; done < bytes; done += max) {
    const n = Math.min(max, bytes - done);
    await callRead(node, offset + done, n, buf.subarray(done, done + n), flags);
  }
}

export function callRead(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult {
  const inst = node.instance;
  if (inst.preadv) return inst.preadv(offset, bytes, buf, flags & ~(ReqFlag.COPY_ON_READ | ReqFlag.NO_SERIALISING | ReqFlag.WANT_COPY_ON_READ));
  const filtered = node.filtered;
  if (filtered) return filtered.preadv(offset, bytes, buf, flags & ~ReqFlag.WANT_COPY_ON_READ);
  return Promise.reject(
    new BlockError('ENOTSUP', `Driver '${node.driver.name}' cannot read`, { node: node.nodeName, offset }),
  );
}

/**
 * An aligned write of the request path (QEMU's bdrv_aligned_pwritev): the
 * driver write announced to a debugging node as pwritev (none for compressed
 * writes) and pwritev_done (after failures too).
 */
export async function alignedWrite(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
  const dbg = node.instance.debug;
  if (!dbg) return driverWriteSplit(node, offset, bytes, buf, flags);
  if (!(flags & ReqFlag.COMPRESSED)) await dbg.event('pwritev');
  try {
    await driverWriteSplit(node, offset, bytes, buf, flags);
  } finally {
    await dbg.event('pwritev_done');
  }
}

export async function driverWriteSplit(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags) {
  const max = node.limits.maxTransfer;
  const inst = node.instance;
  const supported = inst.supportedWriteFlags ?? 0;
  const passFlags = flags & (supported | ReqFlag.WRITE_UNCHANGED | ReqFlag.COMPRESSED);
  if (max === 0 || bytes <= max) {
    await callWrite(node, offset, bytes, buf, passFlags);
  } else {
    for (let done = 0; done < bytes; done += max) {
      const n = Math.min(max, bytes - done);
      await callWrite(node, offset + done, n, buf.subarray(done, done + n), passFlags);
    }
  }
}

export function callWrite(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult {
  const inst = node.instance;
  if (flags & ReqFlag.COMPRESSED && !((inst.supportedWriteFlags ?? 0) & ReqFlag.COMPRESSED)) {
    return Promise.reject(
      new BlockError('ENOTSUP', `Driver '${node.driver.name}' does not support compressed writes`, {
        node: node.nodeName,
      }),
    );
  }
  if (inst.pwritev) return inst.pwritev(offset, bytes, buf, flags);
  const filtered = node.filtered;
  if (filtered) return filtered.pwritev(offset, bytes, buf, flags);
  return Promise.reject(
    new BlockError('ENOTSUP', `Driver '${node.driver.name}' does not support writing`, { node: node.nodeName, offset }),
  );
}
