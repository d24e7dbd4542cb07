/**
 * Closing nodes: a node whose last reference is dropped is drained, flushed
 * and closed, then releases its name and its children.
 */
import type { BlockGraph } from './graph.js';
import type { BlockNode } from './node.js';
import { toBlockError } from './errors.js';
import { refreshPerms } from './perm-update.js';
import { flush } from './request-flush.js';
import { releaseDirtyBitmaps } from './dirty-bitmap.js';
import { drainBegin, drainEnd } from './drain.js';

/** Closes a node whose last reference was dropped: drain, flush, the driver's close, then its links. */
export async function closeNode(graph: BlockGraph, node: BlockNode): Promise<void> {
  if (!node.isOpen) {
    await discardNode(graph, node);
    return;
  }
  const token = await drainBegin(node);
  let flushError: unknown = null;
  try {
    try {
      await flush(node);
    } catch (e) {
      flushError = e;
    }
    await node.instance.close?.();
  } finally {
    drainEnd(token);
    node.isOpen = false;
    releaseDirtyBitmaps(node);
    await discardNode(graph, node);
  }
  if (flushError) throw toBlockError(flushError, { node: node.nodeName });
}

/** Releases the children of a node that failed to open or was closed, and its name. */
export async function discardNode(graph: BlockGraph, node: BlockNode): Promise<void> {
  if (node.isOpen) {
    node.isOpen = false;
    await node.instance?.close?.().catch(() => undefined);
  }
  releaseDirtyBitmaps(node);
  graph.forgetNode(node);
  const children = [...node.children];
  node.children.length = 0;
  for (const c of children.reverse()) {
    const i = c.node.parents.indexOf(c);
    if (i >= 0) c.node.parents.splice(i, 1);
    refreshPerms([c.node]);
    await c.node.unref();
  }
}
