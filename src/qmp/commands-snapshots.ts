/**
 * The internal snapshot commands (QEMU 7.2's blockdev.c):
 * blockdev-snapshot-internal-sync and blockdev-snapshot-delete-internal-sync,
 * on a root node, through core/snapshot.ts.
 */
import { drainPulse } from '../core/drain.js';
import type { SnapshotInfo } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import { checkOp } from '../core/op-blockers.js';
import { createSnapshot, deleteSnapshot, listSnapshots, snapshotFallback } from '../core/snapshot.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { m, struct } from './schema.js';
import { requireIndividual, runTransaction, type TxnAction, type TxnContext } from './transaction.js';

/** QEMU's bdrv_can_snapshot: writable, and a driver down the fallback children takes snapshots. */
function canSnapshot(node: BlockNode): boolean {
  if (node.readOnly) return false;
  for (let n: BlockNode | undefined = node; n; n = snapshotFallback(n)) {
    if (n.instance.snapshotCreate) return !n.readOnly;
  }
  return false;
}

/** QEMU's bdrv_snapshot_find_by_id_and_name: both must match when both are given. */
function findSnapshot(node: BlockNode, id: string | undefined, name: string | undefined): SnapshotInfo | undefined {
  return listSnapshots(node).find((s) => (id === undefined || s.id === id) && (name === undefined || s.name === name));
}

/** BlockdevSnapshotInternal: the root node and the snapshot's name. */
export const internalSnapshotType = struct('BlockdevSnapshotInternal', [m('device', 'str'), m('name', 'str')]);

/**
 * The internal snapshot action (QEMU's internal_snapshot_*): the snapshot
 * is taken in prepare and deleted again when the transaction aborts.
 */
export function internalSnapshotAction(q: BlockQmp, args: Record<string, unknown>, ctx: TxnContext): TxnAction {
  let created: { node: BlockNode; id: string; name: string } | undefined;
  return {
    async prepare() {
      requireIndividual(ctx);
      const device = args.device as string;
      const name = args.name as string;
      const node = q.rootNode(device);
      // QEMU drains the node before its checks (internal_snapshot_prepare).
      await drainPulse([node]);
      checkOp(node, 'internal-snapshot');
      if (node.readOnly) throw genericError(`Device '${device}' is read only`);
      if (!canSnapshot(node)) throw genericError(`Block format '${node.driver.name}' used by device '${device}' does not support internal snapshots`);
      if (name === '') throw genericError('Name is empty');
      if (findSnapshot(node, undefined, name)) throw genericError(`Snapshot with name '${name}' already exists on device '${device}'`);
      const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
      await createSnapshot(node, {
        id: '',
        name,
        vmStateSize: 0,
        dateSec: Math.floor(us / 1e6),
        dateNsec: (us % 1e6) * 1000,
        // No guest runs here. qemu-storage-daemon stores the host clock; its nanoseconds since
        // 1970 exceed a safe JS integer, so this is the time since the process started.
        vmClockNsec: Math.round(performance.now()) * 1e6,
        // No record/replay: QEMU stores -1 (no instruction count).
        icount: -1,
      });
      created = { node, id: findSnapshot(node, undefined, name)?.id ?? '', name };
    },
    async abort() {
      if (!created) return;
      try {
        await deleteSnapshot(created.node, created.id, created.name);
      } catch (e) {
        // QEMU reports the failure and goes on with the abort.
        q.graph.report(`Failed to delete snapshot with id '${created.id}' and name '${created.name}' on device '${created.node.nodeName}' in abort: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
  };
}

/** The snapshot commands of `q`. */
export function snapshotCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'blockdev-snapshot-internal-sync',
      args: { ...internalSnapshotType, struct: 'blockdev-snapshot-internal-sync' },
      // QEMU runs it as a one-action transaction.
      run: (args) => runTransaction([{ kind: 'blockdev-snapshot-internal-sync', make: (ctx) => internalSnapshotAction(q, args, ctx) }], 'individual', q.graph),
    },
    {
      name: 'blockdev-snapshot-delete-internal-sync',
      args: struct('blockdev-snapshot-delete-internal-sync', [m('device', 'str'), m('*id', 'str'), m('*name', 'str')]),
      run: async (args) => {
        const device = args.device as string;
        const id = args.id as string | undefined;
        const name = args.name as string | undefined;
        const node = q.rootNode(device);
        if (id === undefined && name === undefined) throw genericError('Name or id must be provided');
        checkOp(node, 'internal-snapshot-delete');
        const sn = findSnapshot(node, id, name);
        if (!sn) throw genericError(`Snapshot with id '${id ?? 'null'}' and name '${name ?? 'null'}' does not exist on device '${device}'`);
        await deleteSnapshot(node, id, name);
        const icount = sn.icount !== undefined && sn.icount >= 0 && sn.icount < Number.MAX_SAFE_INTEGER ? { icount: sn.icount } : {};
        return {
          id: sn.id,
          name: sn.name,
          'date-sec': sn.dateSec,
          'date-nsec': sn.dateNsec,
          'vm-clock-sec': Math.floor(sn.vmClockNsec / 1e9),
          'vm-clock-nsec': sn.vmClockNsec % 1e9,
          'vm-state-size': sn.vmStateSize,
          ...icount,
        };
      },
    },
  ];
}
