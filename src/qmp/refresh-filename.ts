/**
 * QEMU's bdrv_refresh_filename where a node's backing link is not the one its
 * image names (an external snapshot's overlay, a blockdev-reopen that changed
 * or dropped the backing file): the node's filename becomes json:{...}.
 */
import { cowChild } from '../core/block-status.js';
import type { BlockNode } from '../core/node.js';
import { qdictJsonNested, type QdictValue } from '../core/qemu-json.js';

/** A node's options as QEMU's json: filenames spell them: the driver, then its file (and an overridden backing) child. */
function fullOptions(node: BlockNode): QdictValue {
  const entries: Array<readonly [string, QdictValue]> = [['driver', node.driver.name]];
  if (node.driver.kind === 'protocol') entries.push(['filename', node.filename]);
  else if (node.filename.startsWith('json:')) return { entries: [] };
  if (node.file) entries.push(['file', fullOptions(node.file.node)]);
  return { entries };
}

/**
 * QEMU's bdrv_refresh_filename for an overlay: when its backing node is not
 * the one its image names, the filename becomes json:{...} with the
 * backing node's options; otherwise it is its file's name again.
 */
export function refreshOverlayFilename(overlay: BlockNode): void {
  const plain = overlay.file?.node.filename ?? overlay.filename;
  // fullOptions reads the node's own filename: start again from its file's.
  if (overlay.file) overlay.filename = plain;
  const backing = cowChild(overlay);
  const named = overlay.instance.backingFile?.()?.filename;
  // A backing file dropped while the image names one shows as "backing": null.
  const dropped = !backing && named !== undefined && named !== '';
  if ((!backing && !dropped) || backing?.filename === named || overlay.driver.kind !== 'format' || plain.startsWith('json:')) {
    overlay.filename = plain;
    return;
  }
  const own = fullOptions(overlay) as { entries: Array<readonly [string, QdictValue]> };
  overlay.filename = `json:${qdictJsonNested([['backing', backing ? fullOptions(backing) : null], ...own.entries])}`;
}
