/**
 * Storing the persistent bitmaps while the image stays writable (a
 * checkpoint, for pages that may go away without closing their disk).
 *
 * QEMU stores bitmaps only on close, inactivation and reopen to read-only,
 * and marks them in use for as long as the image is writable. A checkpoint
 * stores them the same way (bitmap-store.ts: in-use flags clear) and leaves
 * them "at rest": valid in the image as long as no guest write happened
 * since. The first write after it (write, zero write, discard, truncate)
 * marks them in use on disk before it proceeds, as a reopen to read-write
 * does. So an image whose bitmaps are not in use always holds bitmaps that
 * cover every write, and a crash after a checkpoint leaves them valid when
 * nothing was written since, inconsistent otherwise.
 */
import { markInUseOnDisk } from './bitmap.js';
import { storePersistentBitmaps } from './bitmap-store.js';
import { flushAll } from './cow.js';
import type { Qcow2Image } from './qcow2.js';

/**
 * Stores the node's persistent bitmaps now (the caller has drained the node,
 * so that every finished write has marked them). Nothing for an image that
 * does not write bitmaps back (read-only, corrupt, opened for check).
 */
export async function checkpointBitmaps(img: Qcow2Image): Promise<void> {
  if (img.readOnly || !img.refs || img.corrupt || !img.storeBitmapsOnClose) return;
  if (!img.node.dirtyBitmaps.some((b) => b.persistent) && !img.header.bitmaps) return;
  // At rest from now: a write that comes in meanwhile waits for the marking, which waits for the lock.
  img.bitmapsAtRest = true;
  await img.whenIdle(async () => {
    await flushAll(img, true);
    await storePersistentBitmaps(img);
  });
  if (!img.header.bitmaps) img.bitmapsAtRest = false;
}

/**
 * Before a guest write: marks bitmaps at rest in use again (one marking;
 * concurrent writes wait for the same). Undefined when there is nothing to do.
 */
export function bitmapsInUseAgain(img: Qcow2Image): Promise<void> | undefined {
  if (!img.bitmapsAtRest) return undefined;
  img.markingInUse ??= (async () => {
    try {
      const ext = img.header.bitmaps;
      if (ext) img.bitmaps = await img.whenIdle(() => markInUseOnDisk(img.file, ext, img.clusterSize, img.header.size));
      img.bitmapsAtRest = false;
    } finally {
      img.markingInUse = null;
    }
  })();
  return img.markingInUse;
}
