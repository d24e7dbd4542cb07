/**
 * Closing a qcow2 image (QEMU's qcow2_inactivate / qcow2_close): the caches
 * written, queued frees made durable, the persistent bitmaps stored, and the
 * dirty bit of lazy refcounts cleared last.
 */
import { STRERROR, toBlockError } from '../../core/errors.js';
import { storePersistentBitmaps } from './bitmap-store.js';
import { INCOMPAT } from './constants.js';
import { flushAll } from './cow.js';
import type { Qcow2Image } from './qcow2.js';

export async function closeImage(img: Qcow2Image): Promise<void> {
  if (img.readOnly || !img.refs || img.corrupt) return;
  await img.whenIdle(async () => {
    // As QEMU's qcow2_inactivate: a cache that cannot be written is reported
    // and the close goes on; the image then stays marked dirty.
    let ok = true;
    const failed = (what: string, e: unknown) => {
      ok = false;
      // A write refused as a corruption ends QEMU's node there (its driver is dropped): nothing more is said.
      if (!img.corrupt) img.closeLines.push(`Failed to flush the ${what} cache: ${STRERROR[toBlockError(e).code]}`);
    };
    try {
      await img.l2cache.flush();
    } catch (e) {
      failed('L2 table', e);
    }
    try {
      if (ok) await flushAll(img, true);
      else await img.refs.flushCache();
    } catch (e) {
      failed('refcount block', e);
    }
    if (!ok) return;
    await img.file.flush();
    if (img.storeBitmapsOnClose) await storePersistentBitmaps(img);
    if (img.markedDirty && img.header.incompatible & INCOMPAT.DIRTY) {
      img.header.incompatible &= ~INCOMPAT.DIRTY;
      await img.writeHeader();
    }
  });
}
