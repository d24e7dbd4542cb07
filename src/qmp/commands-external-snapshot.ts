/**
 * External snapshots (QEMU 7.2's blockdev.c): blockdev-snapshot puts an
 * existing node (the overlay, added with "backing": null) on top of a node;
 * blockdev-snapshot-sync creates the overlay image (qcow2 by default, its
 * backing file the node's) unless mode is 'existing', then opens it. Either
 * way the overlay takes the node's place under its parents, the node becomes
 * its backing child and is made read-only. Both are transaction actions.
 */
import { drainPulse } from '../core/drain.js';
import { cowChild } from '../core/block-status.js';
import { createImage } from '../core/create.js';
import type { BdrvChild } from '../core/child.js';
import type { BlockNode } from '../core/node.js';
import { checkOp } from '../core/op-blockers.js';
import { Perm, ROLE_BACKING } from '../core/permissions.js';
import { refreshFilename } from '../core/filename.js';
import { flush } from '../core/request-flush.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { m, struct } from './schema.js';
import { requireIndividual, runTransaction, type TxnAction, type TxnContext } from './transaction.js';

/** BlockdevSnapshot: the node and the overlay's node name. */
export const blockdevSnapshotType = struct('BlockdevSnapshot', [m('node', 'str'), m('overlay', 'str')]);

/** BlockdevSnapshotSync: the node (device or node-name) and the image to create. */
export const blockdevSnapshotSyncType = struct('BlockdevSnapshotSync', [
  m('*device', 'str'),
  m('*node-name', 'str'),
  m('snapshot-file', 'str'),
  m('*snapshot-node-name', 'str'),
  m('*format', 'str'),
  m('*mode', { enum: ['existing', 'absolute-paths'] }),
]);

/** Which command's arguments an action carries. */
export type ExternalSnapshotArgs =
  | { kind: 'blockdev-snapshot'; args: Record<string, unknown> }
  | { kind: 'blockdev-snapshot-sync'; args: Record<string, unknown> };

/** Opens (sync) or looks up (blockdev-snapshot) the overlay; the caller owns one reference. */
async function openOverlay(q: BlockQmp, old: BlockNode, spec: ExternalSnapshotArgs): Promise<BlockNode> {
  if (spec.kind === 'blockdev-snapshot') {
    const overlay = q.lookupNode(spec.args.overlay as string, spec.args.overlay as string);
    overlay.ref();
    return overlay;
  }
  const a = spec.args;
  const file = a['snapshot-file'] as string;
  const format = (a.format as string | undefined) ?? 'qcow2';
  const overlayName = a['snapshot-node-name'] as string | undefined;
  if (a['node-name'] !== undefined && overlayName === undefined) throw genericError('New overlay node-name missing');
  if (overlayName !== undefined && q.graph.hasNode(overlayName)) throw genericError('New overlay node-name already in use');
  if ((a.mode ?? 'absolute-paths') !== 'existing') {
    // The overlay's backing file is the node's image, named as the node names it.
    refreshFilename(old);
    await createImage(q.graph, format, file, { size: old.length, backing_file: old.filename, backing_fmt: old.driver.name });
  }
  return q.graph.open(
    { driver: format, filename: file, ...(overlayName !== undefined ? { 'node-name': overlayName } : {}) },
    { noBacking: true, readOnly: old.readOnly },
  );
}

/** The external snapshot action (QEMU's external_snapshot_*). */
export function externalSnapshotAction(q: BlockQmp, spec: ExternalSnapshotArgs, ctx: TxnContext): TxnAction {
  let old: BlockNode | undefined;
  let overlay: BlockNode | undefined;
  let backingLink: BdrvChild | undefined;
  return {
    async prepare() {
      requireIndividual(ctx);
      const device = (spec.kind === 'blockdev-snapshot' ? spec.args.node : spec.args.device) as string | undefined;
      const nodeName = (spec.kind === 'blockdev-snapshot' ? spec.args.node : spec.args['node-name']) as string | undefined;
      const node = q.lookupNode(device, nodeName);
      old = node;
      // QEMU drains the node before its checks (external_snapshot_prepare).
      await drainPulse([node]);
      checkOp(node, 'external-snapshot');
      if (!node.readOnly) await flush(node);
      const ov = await openOverlay(q, node, spec);
      overlay = ov;
      // An overlay already read by someone would show them a different image once it gets a backing file.
      if (ov.cumulativePerm & Perm.CONSISTENT_READ) throw genericError('The overlay is already in use');
      if (ov.driver.kind === 'filter') throw genericError('Filters cannot be used as overlays');
      if (cowChild(ov)) throw genericError('The overlay already has a backing image');
      if (!ov.driver.supportsBacking) throw genericError('The overlay does not support backing images');
      // QEMU's bdrv_append: the node becomes the overlay's backing child, the overlay takes its parents.
      node.ref();
      try {
        backingLink = await q.graph.attachChild(ov, node, 'backing', ROLE_BACKING);
      } catch (e) {
        await node.unref();
        throw e;
      }
      await q.graph.replaceNode(node, ov);
      refreshFilename(ov);
    },
    async commit() {
      const node = old!;
      if (node.copyOnRead === 0 && !node.readOnly) await q.graph.reopen([{ node, readOnly: true }]);
    },
    async abort() {
      if (!backingLink || !old || !overlay) return;
      const node = old;
      node.ref();
      try {
        await q.graph.detachChild(backingLink);
        await q.graph.replaceNode(overlay, node);
        refreshFilename(overlay);
      } finally {
        await node.unref();
      }
    },
    async clean() {
      await overlay?.unref();
    },
  };
}

/** The external snapshot commands of `q` (each a one-action transaction, as in QEMU). */
export function externalSnapshotCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'blockdev-snapshot-sync',
      args: { ...blockdevSnapshotSyncType, struct: 'blockdev-snapshot-sync' },
      run: (args) =>
        runTransaction([{ kind: 'blockdev-snapshot-sync', make: (ctx) => externalSnapshotAction(q, { kind: 'blockdev-snapshot-sync', args }, ctx) }], 'individual', q.graph),
    },
    {
      name: 'blockdev-snapshot',
      args: { ...blockdevSnapshotType, struct: 'blockdev-snapshot' },
      run: (args) =>
        runTransaction([{ kind: 'blockdev-snapshot', make: (ctx) => externalSnapshotAction(q, { kind: 'blockdev-snapshot', args }, ctx) }], 'individual', q.graph),
    },
  ];
}
