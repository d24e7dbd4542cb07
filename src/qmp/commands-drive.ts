/**
 * drive-mirror and drive-backup (QEMU 7.2's qmp_drive_mirror and
 * drive_backup_prepare): the legacy forms that take the target as a file
 * name. Unless `mode` is existing, the target image is created first, the
 * source's size, in the source's format unless `format` says otherwise, with
 * a backing file where the sync mode leaves data below (sync top: the
 * source's backing file; backup's sync none: the source); then it is opened
 * (its node is the job's only) and the job starts as with blockdev-mirror /
 * blockdev-backup. drive-mirror's sync none onto a new image is refused (see
 * its command).
 */
import { cowChild } from '../core/block-status.js';
import { createImage } from '../core/create.js';
import type { BlockNode } from '../core/node.js';
import { checkOp } from '../core/op-blockers.js';
import { ROLE_BACKING } from '../core/permissions.js';
import type { BlockQmp } from './block-qmp.js';
import { backupAction, blockdevBackupType, onError, startMirror, syncMode } from './commands-job-start.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { m, struct } from './schema.js';
import { runTransaction, type TxnAction, type TxnContext } from './transaction.js';

const newImageMode = { enum: ['existing', 'absolute-paths'] } as const;

/** DriveBackup: BackupCommon with the target's file name, format and mode. */
export const driveBackupType = struct('DriveBackup', [
  ...blockdevBackupType.members.filter((x) => x.name !== 'target'),
  m('target', 'str'),
  m('*format', 'str'),
  m('*mode', newImageMode),
]);

/** DriveMirror. */
const driveMirrorType = struct('drive-mirror', [
  m('*job-id', 'str'), m('device', 'str'), m('target', 'str'), m('*format', 'str'), m('*node-name', 'str'), m('*replaces', 'str'),
  m('sync', syncMode), m('*mode', newImageMode), m('*speed', 'int'), m('*granularity', 'uint32'), m('*buf-size', 'int'),
  m('*on-source-error', onError), m('*on-target-error', onError), m('*unmap', 'bool'),
  m('*copy-mode', { enum: ['background', 'write-blocking'] }), m('*auto-finalize', 'bool'), m('*auto-dismiss', 'bool'),
]);

/** Creates the target image (bdrv_img_create): `backing` names its backing file. */
async function createTarget(q: BlockQmp, file: string, format: string, size: number, backing: BlockNode | undefined): Promise<void> {
  if (!q.graph.lookupDriver(format)) throw genericError(`Unknown file format '${format}'`);
  const opts: Record<string, string | number> = { size };
  if (backing) {
    opts.backing_file = backing.filename;
    opts.backing_fmt = backing.driver.name;
  }
  await createImage(q.graph, format, file, opts);
}

/** Opens the target image; the caller owns the reference. */
function openTarget(q: BlockQmp, file: string, options: Record<string, unknown>, noBacking: boolean): Promise<BlockNode> {
  return q.graph.open({ filename: file, ...options }, noBacking ? { noBacking: true } : {});
}

/** Gives `target` the backing node `backing` (QEMU's bdrv_set_backing_hd). */
async function setBacking(q: BlockQmp, target: BlockNode, backing: BlockNode): Promise<void> {
  backing.ref();
  try {
    await q.graph.attachChild(target, backing, 'backing', ROLE_BACKING);
  } catch (e) {
    await backing.unref();
    throw e;
  }
}

/** The drive-backup action: creates and opens the target, then runs as blockdev-backup on it. */
export function driveBackupAction(q: BlockQmp, args: Record<string, unknown>, ctx: TxnContext): TxnAction {
  let target: BlockNode | undefined;
  let inner: TxnAction | undefined;
  return {
    async prepare() {
      const mode = (args.mode as string | undefined) ?? 'absolute-paths';
      const bs = q.lookupNode(args.device as string, args.device as string);
      const format = (args.format as string | undefined) ?? (mode !== 'existing' ? bs.driver.name : undefined);
      checkOp(bs, 'backup-source');
      let sync = args.sync as string;
      let below: BlockNode | undefined;
      if (sync === 'top') {
        below = cowChild(bs);
        if (!below) sync = 'full';
      }
      if (sync === 'none') below = bs;
      if (mode !== 'existing') await createTarget(q, args.target as string, format!, bs.length, below);
      const options: Record<string, unknown> = { discard: 'unmap', 'detect-zeroes': 'unmap', ...(format ? { driver: format } : {}) };
      const node = await openTarget(q, args.target as string, options, sync === 'none');
      target = node;
      if (sync === 'none') await setBacking(q, node, bs);
      inner = backupAction(q, { ...withoutImageArgs(args), sync, target: node.nodeName }, ctx);
      await inner.prepare();
    },
    async commit() {
      await inner?.commit?.();
    },
    async abort() {
      await inner?.abort?.();
    },
    async clean() {
      await inner?.clean?.();
      // The job holds the target now (or nothing does, and it closes).
      await target?.unref();
    },
  };
}

/** The DriveBackup arguments without those that only the image creation reads. */
function withoutImageArgs(args: Record<string, unknown>): Record<string, unknown> {
  const { format: _format, mode: _mode, ...rest } = args;
  return rest;
}

/** drive-mirror and drive-backup of `q`. */
export function driveCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'drive-mirror',
      args: driveMirrorType,
      run: async (args) => {
        const bs = q.rootNode(args.device as string);
        checkOp(bs, 'mirror-source');
        const mode = (args.mode as string | undefined) ?? 'absolute-paths';
        const format = (args.format as string | undefined) ?? (mode === 'existing' ? undefined : bs.driver.name);
        let sync = args.sync as string;
        let below: BlockNode | undefined = cowChild(bs);
        if (!below && sync === 'top') sync = 'full';
        if (sync === 'none') below = bs;
        if (args.replaces !== undefined && args['node-name'] === undefined) {
          throw genericError('a node-name must be provided when replacing a named node of the graph');
        }
        // A new image gets the chain below it as backing file unless the sync copies everything.
        const withBacking = sync !== 'full' && below !== undefined;
        if (mode !== 'existing') await createTarget(q, args.target as string, format!, bs.length, withBacking ? below : undefined);
        const options: Record<string, unknown> = {
          ...(args['node-name'] !== undefined ? { 'node-name': args['node-name'] } : {}),
          ...(format ? { driver: format } : {}),
        };
        // As QEMU, the target opens without its backing file: the job gives it one when it ends
        // (a new image: the source for sync none, the source's backing for sync top; an existing
        // image: the file it names), so the target shows no backing while the job runs.
        // Left out by the options, not by a flag: the node shows its name as json with backing null.
        const target = await openTarget(q, args.target as string, { ...options, backing: null }, true);
        try {
          const onExit = mode === 'existing' ? 'open' : sync === 'none' ? bs : withBacking ? below : undefined;
          const zeroTarget = sync === 'full' && (mode === 'existing' || !target.instance.hasZeroInit?.());
          await startMirror(q, { ...withoutImageArgs(args), sync }, bs, target, zeroTarget, onExit);
        } finally {
          // The job keeps the target while it runs.
          await target.unref();
        }
      },
    },
    {
      name: 'drive-backup',
      args: { ...driveBackupType, struct: 'drive-backup' },
      // QEMU runs it as a one-action transaction.
      run: (args) => runTransaction([{ kind: 'drive-backup', make: (ctx) => driveBackupAction(q, args, ctx) }], 'individual', q.graph),
    },
  ];
}
