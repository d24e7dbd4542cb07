/**
 * The `transaction` command (QEMU 7.2's qapi/transaction.json and
 * blockdev.c): a list of actions, each `{"type", "data"}`, run
 * all-or-nothing by transaction.ts; `properties.completion-mode` 'grouped'
 * puts the jobs the actions start into one job group (only the backup
 * actions accept it).
 */
import type { BlockQmp } from './block-qmp.js';
import { bitmapAction } from './bitmap-actions.js';
import { bitmapAddType, bitmapMergeType, bitmapType } from './commands-bitmaps.js';
import { blockdevSnapshotSyncType, blockdevSnapshotType, externalSnapshotAction } from './commands-external-snapshot.js';
import { backupAction, blockdevBackupType } from './commands-job-start.js';
import { driveBackupAction, driveBackupType } from './commands-drive.js';
import { internalSnapshotAction, internalSnapshotType } from './commands-snapshots.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { checkMembers, m, struct, type QapiCustom, type QapiStruct } from './schema.js';
import { runTransaction, type CompletionMode, type TxnAction, type TxnContext } from './transaction.js';

/** The data type of each TransactionActionKind, in QEMU's enum order. */
const ACTION_DATA: Record<string, QapiStruct> = {
  abort: struct('Abort', []),
  'block-dirty-bitmap-add': bitmapAddType,
  'block-dirty-bitmap-remove': bitmapType,
  'block-dirty-bitmap-clear': bitmapType,
  'block-dirty-bitmap-enable': bitmapType,
  'block-dirty-bitmap-disable': bitmapType,
  'block-dirty-bitmap-merge': bitmapMergeType,
  'blockdev-backup': blockdevBackupType,
  'blockdev-snapshot': blockdevSnapshotType,
  'blockdev-snapshot-internal-sync': internalSnapshotType,
  'blockdev-snapshot-sync': blockdevSnapshotSyncType,
  'drive-backup': driveBackupType,
};

/** TransactionAction: the discriminator, then the one `data` member of its branch, then nothing else. */
const transactionActionType: QapiCustom = {
  custom: 'TransactionAction',
  check(value, path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw genericError(`Invalid parameter type for '${path}', expected: object`);
    }
    const v = value as Record<string, unknown>;
    const kind = { enum: Object.keys(ACTION_DATA) };
    checkMembers(v, struct('TransactionAction', [m('type', kind)], true), path);
    const branch = struct(`${v.type as string}Wrapper`, [m('type', kind), m('data', ACTION_DATA[v.type as string]!)]);
    checkMembers(v, branch, path);
  },
};

const transactionArgs = struct('transaction', [
  m('actions', { list: transactionActionType }),
  m('*properties', struct('TransactionProperties', [m('*completion-mode', { enum: ['individual', 'grouped'] })])),
]);

/** The action of one checked TransactionAction. */
function makeAction(q: BlockQmp, type: string, data: Record<string, unknown>, ctx: TxnContext): TxnAction {
  const bitmap = bitmapAction(q, type, data, ctx);
  if (bitmap) return bitmap;
  switch (type) {
    case 'abort':
      return {
        prepare() {
          throw genericError('Transaction aborted using Abort action');
        },
      };
    case 'blockdev-snapshot':
    case 'blockdev-snapshot-sync':
      return externalSnapshotAction(q, { kind: type, args: data }, ctx);
    case 'blockdev-snapshot-internal-sync':
      return internalSnapshotAction(q, data, ctx);
    case 'blockdev-backup':
      return backupAction(q, data, ctx);
    case 'drive-backup':
      return driveBackupAction(q, data, ctx);
    default:
      return {
        prepare() {
          throw genericError(`DiskWorker's transaction does not take the action '${type}'`);
        },
      };
  }
}

/** The transaction command of `q`. */
export function transactionCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'transaction',
      args: transactionArgs,
      run: async (args) => {
        const actions = args.actions as Array<{ type: string; data: Record<string, unknown> }>;
        const props = args.properties as { 'completion-mode'?: CompletionMode } | undefined;
        await runTransaction(
          actions.map((a) => ({ kind: a.type, make: (ctx: TxnContext) => makeAction(q, a.type, a.data, ctx) })),
          props?.['completion-mode'] ?? 'individual',
          q.graph,
        );
      },
    },
  ];
}

