/**
 * Flush on the request path: flush generations skip clean nodes, concurrent
 * flushes join, and the flush goes down to every child written through.
 */
import type { BlockNode } from './node.js';
import { toBlockError } from './errors.js';
import { Perm } from './permissions.js';
import { debugEvent } from './debug-event.js';
import { account, beginInFlight, endInFlight, now } from './request-accounting.js';

/**
 * Flushes a node and its children. A flush when nothing was written since the
 * last one skips the driver (flush generations); concurrent flushes join.
 * `forFua` marks the flush that completes a FUA write: it runs before the
 * write counts (QEMU's order), so the driver's flush to disk (and a debugging
 * child's flush_to_disk event) happens only when earlier writes wait for one,
 * while its caches are always written out.
 */
export async function flush(node: BlockNode, forFua = false): Promise<void> {
  if (!node.isOpen) return;
  while (node.activeFlush) await node.activeFlush.catch(() => undefined);
  const gen = node.writeGeneration;
  const start = now();
  const work = (async () => {
    if (node.instance.flush) {
      await node.instance.flush();
      node.flushedGeneration = gen;
      return;
    }
    // A debugging file child hears of each step, as QEMU's bdrv_co_flush announces them.
    const toOs = debugEvent(node.file, 'flush_to_os');
    if (toOs) await toOs;
    const dirty = gen !== node.flushedGeneration;
    // A FUA write's flush comes before the write counts (QEMU's order): the
    // driver's caches are written all the same, its flush to disk only if
    // earlier writes wait for one.
    if (dirty || forFua) await node.instance.flushToOs?.();
    if (dirty && !node.noFlush) {
      const toDisk = debugEvent(node.file, 'flush_to_disk');
      if (toDisk) await toDisk;
      await node.instance.flushToDisk?.();
    }
    for (const c of node.children) {
      if (c.perm & (Perm.WRITE | Perm.WRITE_UNCHANGED)) await flush(c.node);
    }
    node.flushedGeneration = gen;
  })();
  node.activeFlush = work;
  let failed = true;
  beginInFlight(node);
  try {
    await work;
    failed = false;
  } catch (e) {
    throw toBlockError(e, { node: node.nodeName });
  } finally {
    node.activeFlush = null;
    endInFlight(node);
    account(node.stats.flush, 0, start, failed);
  }
}
