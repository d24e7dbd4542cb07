/**
 * The read path: guest data through the mapping walk, run by run — data from
 * the image or data file, zeros, compressed clusters, and unallocated ranges
 * from the backing file (zeros past its end or without one).
 */
import { ClusterType } from './l2-entry.js';
import { lookup } from './lookup.js';
import { readCompressedClusters } from './compressed.js';
import type { Qcow2Image } from './qcow2.js';
import { decryptHost } from './crypt.js';

/**
 * Reads guest data at `offset` into `buf` (`bytes` long). Takes no lock: the
 * caller holds it when it needs a stable mapping (copy-on-write reads do).
 */
export async function readGuest(img: Qcow2Image, offset: number, bytes: number, buf: Uint8Array): Promise<void> {
  let pos = 0;
  while (pos < bytes) {
    const run = await lookup(img, offset + pos, bytes - pos);
    if (run.type === ClusterType.COMPRESSED) {
      pos += await readCompressedClusters(img, run, offset + pos, buf.subarray(pos, bytes));
      continue;
    }
    const n = run.bytes;
    const out = buf.subarray(pos, pos + n);
    switch (run.type) {
      case ClusterType.NORMAL:
        await readHost(img, run.host, offset + pos, n, out);
        break;
      case ClusterType.ZERO_PLAIN:
      case ClusterType.ZERO_ALLOC:
        out.fill(0);
        break;
      default:
        await readBacking(img, offset + pos, n, out);
    }
    pos += n;
  }
}

/** Reads data clusters as QEMU does: what lies past the end of the file reads as zeros. */
async function readHost(img: Qcow2Image, host: number, guest: number, n: number, out: Uint8Array): Promise<void> {
  const len = img.dataChild.length;
  const k = host >= len ? 0 : Math.min(n, len - host);
  await img.file.debugEvent('read_aio');
  if (k > 0) await img.dataChild.preadv(host, k, out.subarray(0, k));
  if (k < n) out.fill(0, k, n);
  if (img.crypto) decryptHost(img, host, guest, out.subarray(0, n));
}

/** Reads an unallocated range from the backing file; zeros past its end or without one. */
async function readBacking(img: Qcow2Image, offset: number, n: number, out: Uint8Array): Promise<void> {
  const b = img.node.backing;
  if (!b) {
    out.fill(0, 0, n);
    return;
  }
  await img.file.debugEvent('read_backing_aio');
  const blen = b.node.length;
  const k = offset >= blen ? 0 : Math.min(n, blen - offset);
  if (k > 0) await b.preadv(offset, k, out.subarray(0, k));
  if (k < n) out.fill(0, k, n);
}
