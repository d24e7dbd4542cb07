/**
 * Operation blockers on backing files, against qemu-storage-daemon 7.2: a
 * node used as the backing file of another refuses deletion, resize,
 * snapshots, mirroring and being the commit source ("Node 'b' is busy: node
 * is used as backing hd of 'a'"), lets backups, streams and commits through,
 * names its latest overlay, and is free again once the overlay lets go.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, expectImagesEqualAndClean, hasQsd, jobReaches, run, sortNodes, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);

const qcow2 = (name: string, file: string, extra: Record<string, Json> = {}) =>
  blockdev({ driver: 'qcow2', 'node-name': name, ...extra, file: { driver: 'file', 'node-name': `${name}f`, filename: `$DIR/${file}` } });
const setup = (dir: string) => {
  run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
  run('qemu-io', ['-c', 'write -P 3 0 192k', 'b.qcow2'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '1M'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a2.qcow2', '1M'], dir);
  for (const n of ['c', 'd']) run('qemu-img', ['create', '-f', 'qcow2', `${n}.qcow2`, '1M'], dir);
};

describe.skipIf(!hasQsd())('op blockers of backing files against qemu-storage-daemon 7.2', () => {
  it('every command on a backing node: refused or let through as QEMU does', async () => {
    const r = await both(
      'backing-blockers',
      setup,
      [...qcow2('b', 'b.qcow2'), ...qcow2('a', 'a.qcow2', { backing: 'b' }), ...qcow2('c', 'c.qcow2'), ...qcow2('d', 'd.qcow2')],
      [
        x('qmp_capabilities'),
        x('blockdev-del', { 'node-name': 'b' }),
        x('block_resize', { 'node-name': 'b', size: 2097152 }),
        x('blockdev-snapshot-internal-sync', { device: 'b', name: 's' }),
        x('blockdev-snapshot-delete-internal-sync', { device: 'b', name: 's' }),
        x('blockdev-snapshot-sync', { 'node-name': 'b', 'snapshot-file': '$DIR/o.qcow2', format: 'qcow2' }),
        x('blockdev-snapshot', { node: 'b', overlay: 'c' }),
        x('transaction', { actions: [{ type: 'blockdev-snapshot-internal-sync', data: { device: 'b', name: 's' } }] }),
        x('transaction', { actions: [{ type: 'blockdev-snapshot-sync', data: { 'node-name': 'b', 'snapshot-file': '$DIR/o.qcow2', 'snapshot-node-name': 'o' } }] }),
        x('block-commit', { device: 'b', 'job-id': 'j1' }),
        x('block-commit', { device: 'a', top: '$DIR/b.qcow2', 'job-id': 'j1' }),
        x('blockdev-mirror', { device: 'b', target: 'c', sync: 'full', 'job-id': 'j2' }),
        x('blockdev-mirror', { device: 'c', target: 'b', sync: 'full', 'job-id': 'j3' }),
        x('drive-mirror', { device: 'b', target: '$DIR/m.qcow2', sync: 'full', format: 'qcow2', 'job-id': 'j4' }),
        x('block-set-write-threshold', { 'node-name': 'b', 'write-threshold': 4096 }),
        x('block-dirty-bitmap-add', { node: 'b', name: 'bm' }),
        // Let through: backups from and into a backing file, a stream through it.
        x('blockdev-backup', { device: 'b', target: 'c', sync: 'full', 'job-id': 'j5' }),
        jobReaches('j5', 'null'),
        x('blockdev-backup', { device: 'd', target: 'b', sync: 'full', 'job-id': 'j6' }),
        jobReaches('j6', 'null'),
        x('block-stream', { device: 'b', 'job-id': 'j7' }),
        jobReaches('j7', 'null'),
        x('query-block-jobs'),
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'c.qcow2', 'd.qcow2']);
  }, 60_000);

  it('two overlays: the latest is named; the block goes with the link (reopen without backing, blockdev-del)', async () => {
    const r = await both(
      'backing-blockers-two',
      setup,
      [...qcow2('b', 'b.qcow2'), ...qcow2('a', 'a.qcow2', { backing: 'b' }), ...qcow2('a2', 'a2.qcow2', { backing: 'b' }), ...qcow2('c', 'c.qcow2')],
      [
        x('qmp_capabilities'),
        x('block_resize', { 'node-name': 'b', size: 2097152 }),
        x('blockdev-snapshot', { node: 'b', overlay: 'c' }),
        x('blockdev-del', { 'node-name': 'a2' }),
        x('blockdev-snapshot', { node: 'b', overlay: 'c' }),
        x('blockdev-reopen', { options: [{ driver: 'qcow2', 'node-name': 'a', backing: null, file: 'af' }] }),
        x('block_resize', { 'node-name': 'b', size: 2097152 }),
        x('blockdev-snapshot', { node: 'b', overlay: 'c' }),
        x('block_resize', { 'node-name': 'b', size: 1048576 }),
        x('blockdev-del', { 'node-name': 'b' }),
        x('query-named-block-nodes', { flat: true }),
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'a2.qcow2', 'c.qcow2']);
  }, 60_000);
});
