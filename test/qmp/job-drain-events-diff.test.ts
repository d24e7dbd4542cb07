/**
 * The pause / resume pairs a ready mirror job reports when commands drain
 * its nodes, against qemu-storage-daemon 7.2: transactions (and the commands
 * QEMU runs as one: snapshots, backups) drain every node first, snapshots
 * drain their node, blockdev-reopen the reopened subtree, blockdev-add an
 * existing node it attaches (twice, even when refused), block-export-del
 * the exported node (twice); bitmap commands, blockdev-del, export-add and
 * commands on other nodes none. Replies and every event compared.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, hasQsd, jobReaches, run, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);

const qcow2 = (name: string) => blockdev({ driver: 'qcow2', 'node-name': name, file: { driver: 'file', 'node-name': `${name}f`, filename: `$DIR/${name}.qcow2` } });

describe.skipIf(!hasQsd())('drains of a job\'s nodes against qemu-storage-daemon 7.2', () => {
  it('standby / ready pairs where QEMU drains, none elsewhere', async () => {
    const r = await both(
      'job-drain-events',
      (dir) => {
        for (const n of ['c', 'd', 'e']) run('qemu-img', ['create', '-f', 'qcow2', `${n}.qcow2`, '1M'], dir);
        run('qemu-io', ['-c', 'write -P 4 0 128k', 'c.qcow2'], dir);
      },
      [...qcow2('c'), ...qcow2('d'), ...qcow2('e')],
      [
        x('qmp_capabilities'),
        x('blockdev-mirror', { device: 'c', target: 'd', sync: 'full', 'job-id': 'j1' }),
        jobReaches('j1', 'ready'),
        // No drain of the job's nodes.
        x('blockdev-add', { driver: 'null-co', 'node-name': 'n1' }),
        x('blockdev-del', { 'node-name': 'n1' }),
        x('block-dirty-bitmap-add', { node: 'c', name: 'b1' }),
        x('block-dirty-bitmap-clear', { node: 'c', name: 'b1' }),
        x('block-dirty-bitmap-remove', { node: 'c', name: 'b1' }),
        x('blockdev-reopen', { options: [{ driver: 'qcow2', 'node-name': 'e', file: 'ef' }] }),
        x('blockdev-snapshot-delete-internal-sync', { device: 'e', name: 's0' }),
        // Attaching a job's node (or its file) to a new parent: two drains, also when refused.
        x('blockdev-add', { driver: 'raw', 'node-name': 'r1', file: 'c' }),
        x('blockdev-del', { 'node-name': 'r1' }),
        x('blockdev-add', { driver: 'raw', 'node-name': 'r2', file: 'df' }),
        x('blockdev-add', { driver: 'qcow2', 'node-name': 'r3', file: 'cf' }),
        // Transactions drain everything; snapshots their node too.
        x('transaction', { actions: [{ type: 'block-dirty-bitmap-add', data: { node: 'e', name: 'b2' } }] }),
        x('blockdev-snapshot-internal-sync', { device: 'e', name: 's1' }),
        x('blockdev-snapshot-internal-sync', { device: 'c', name: 's1' }),
        x('blockdev-snapshot-sync', { 'node-name': 'c', 'snapshot-file': '$DIR/snap.qcow2', format: 'qcow2' }),
        // A reopen drains the subtree it reopens.
        x('blockdev-reopen', { options: [{ driver: 'qcow2', 'node-name': 'c', file: 'cf' }] }),
        x('blockdev-reopen', { options: [{ driver: 'qcow2', 'node-name': 'd', file: 'df' }] }),
        // An export on the job's source: adding it drains nothing, deleting it twice.
        x('nbd-server-start', { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } }),
        x('block-export-add', { type: 'nbd', id: 'x', 'node-name': 'c' }),
        x('block-export-del', { id: 'x' }),
        { wait: (e) => e.event === 'BLOCK_EXPORT_DELETED' },
        x('nbd-server-stop'),
        x('block-job-cancel', { device: 'j1' }),
        jobReaches('j1', 'null'),
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    const pairs = (events: Json[]) => events.filter((e) => (e as { data?: { status?: string } }).data?.status === 'standby').length;
    expect(pairs(r.qemu.events)).toBe(15);
  }, 60_000);
});
