/**
 * Permission conflicts against qemu-storage-daemon 7.2: the error of each
 * refused blockdev-add, block_resize and block-export-add word for word
 * ("Permission conflict on node ...: permissions ... are both required by
 * ... and unshared by ..."), with the users named as QEMU names them (node
 * 'x', an unnamed block device, stream job 'j'), the pair QEMU meets
 * first, the permissions a mirror's target takes and shares (write only;
 * nobody else may read or write it) and those a stream keeps on the images
 * it reads (no writer, no resize). Replies and events compared (with the standby /
 * ready pairs of the drains of the ready job's nodes).
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, hasQsd, jobReaches, qcow2, run, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);


describe.skipIf(!hasQsd())('permission conflicts against qemu-storage-daemon 7.2', () => {
  it('the same desc for each refused user', async () => {
    const r = await both(
      'perm-conflict',
      (dir) => {
        run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '1M'], dir);
        for (const n of ['c', 'd', 'e']) run('qemu-img', ['create', '-f', 'qcow2', `${n}.qcow2`, '1M'], dir);
        run('qemu-io', ['-c', 'write -P 3 0 192k', 'c.qcow2'], dir);
      },
      [...qcow2('b'), ...qcow2('a', { backing: 'b' }), ...qcow2('c'), ...qcow2('d'), ...qcow2('e')],
      [
        x('qmp_capabilities'),
        // A second format on a file a format writes.
        x('blockdev-add', { driver: 'qcow2', 'node-name': 'x1', file: 'af' }),
        x('blockdev-add', { driver: 'raw', 'node-name': 'x2', file: 'af' }),
        // A read-only format shares no write with the writer already there.
        x('blockdev-add', { driver: 'qcow2', 'node-name': 'x3', file: 'bf', 'read-only': true }),
        // Resizing a file its format does not let resize.
        x('block_resize', { 'node-name': 'b', size: 2097152 }),
        x('block_resize', { 'node-name': 'bf', size: 2097152 }),
        x('blockdev-mirror', { device: 'c', target: 'd', sync: 'full', 'job-id': 'j1' }),
        jobReaches('j1', 'ready'),
        x('blockdev-backup', { device: 'e', target: 'd', sync: 'full', 'job-id': 'j2' }),
        x('blockdev-add', { driver: 'raw', 'node-name': 'x4', file: 'd' }),
        x('blockdev-add', { driver: 'raw', 'node-name': 'x5', file: 'df' }),
        x('blockdev-add', { driver: 'raw', 'node-name': 'x6', file: 'cf' }),
        x('block_resize', { 'node-name': 'd', size: 2097152 }),
        x('nbd-server-start', { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } }),
        // The mirror's target and its file: nobody else reads or writes them.
        x('block-export-add', { type: 'nbd', id: 'e1', 'node-name': 'd', writable: true }),
        x('block-export-add', { type: 'nbd', id: 'e2', 'node-name': 'd' }),
        x('block-export-add', { type: 'nbd', id: 'e3', 'node-name': 'df', writable: true }),
        // The source is shared: a writable export on it is fine.
        x('block-export-add', { type: 'nbd', id: 'e4', 'node-name': 'c', writable: true }),
        // The export keeps the size: the node may not be resized, and a node that must resize refuses it.
        x('block_resize', { 'node-name': 'cf', size: 2097152 }),
        x('block-export-add', { type: 'nbd', id: 'e5', 'node-name': 'b', writable: true }),
        // A stream keeps writers off the images it reads once (the export writing b refuses it).
        x('block-stream', { device: 'a', 'job-id': 'j4' }),
        x('block-export-del', { id: 'e4' }),
        { wait: (e) => e.event === 'BLOCK_EXPORT_DELETED' },
        x('block-export-del', { id: 'e5' }),
        { wait: (e) => e.event === 'BLOCK_EXPORT_DELETED' },
        x('block-job-cancel', { device: 'j1' }),
        jobReaches('j1', 'null'),
        // Once the job is gone, the target is free.
        x('block-export-add', { type: 'nbd', id: 'e6', 'node-name': 'd', writable: true }),
        x('nbd-server-stop'),
        x('query-block-jobs'),
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    // QEMU's refusals: the permission conflicts among them.
    expect(r.qemu.replies.filter((x) => JSON.stringify(x).includes('Permission conflict')).length).toBeGreaterThanOrEqual(7);
  }, 60_000);
});
