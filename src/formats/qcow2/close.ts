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
  if (img.readOnly) {
    // QEMU's qcow2_inactivate runs for read-only nodes too: a persistent bitmap added since
    // the open (not one loaded read-only) cannot be written, and is lost with a warning.
    const added = img.node.dirtyBitmaps.some((b) => b.persistent && !b.inconsistent && !b.readonly);
    if (added) img.closeLines.push(`Lost persistent bitmaps during inactivation of node '${img.node.nodeName}': No write access`);
    return;
  }
  if (!img.refs || img.corrupt) return;
  await img.whenIdle(async () => {
    // As QEMU's qcow2_inactivate: both caches are tried, each flush ending with a flush of
    // the file (qcow2_cache_flush); a failure is reported and the image stays marked dirty.
    let failed = false;
    const report = (what: string, e: unknown) => {
      failed = true;
      // A write refused as a corruption ends QEMU's node there (its driver is dropped): nothing more is said.
      if (!img.corrupt) img.closeLines.push(`Failed to flush the ${what} cache: ${STRERROR[toBlockError(e).code]}`);
    };
    try {
      await img.l2cache.flush();
      await img.file.flush();
    } catch (e) {
      report('L2 table', e);
    }
    try {
      // Queued frees are applied only once the L2 tables that dropped them are written.
      if (!failed) await flushAll(img, true);
      else await img.refs.flushCache();
      await img.file.flush();
    } catch (e) {
      report('refcount block', e);
    }
    if (failed) return;
    if (img.storeBitmapsOnClose) await storePersistentBitmaps(img);
    if (img.markedDirty && img.header.incompatible & INCOMPAT.DIRTY) {
      img.header.incompatible &= ~INCOMPAT.DIRTY;
      await img.writeHeader();
    }
  });
}
