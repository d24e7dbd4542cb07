/**
 * `transaction` and the external snapshot commands, the same scripts against
 * qemu-storage-daemon 7.2 and `diskworker daemon`: replies, events and the
 * images afterwards equal (after the harness's masking).
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, expectImagesEqualAndClean, hasQsd, jobReaches, run, sortNodes, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const qcow2 = (dir: string, name: string, size = '1M', extra: string[] = []) => run('qemu-img', ['create', '-f', 'qcow2', ...extra, name, size], dir);
const write = (dir: string, name: string, pattern: number, offset: string, len: string) => run('qemu-io', ['-c', `write -P ${pattern} ${offset} ${len}`, name], dir);
const node = (name: string, file: string, extra = '') => ['--blockdev', `{"driver":"qcow2","node-name":"${name}"${extra},"file":{"driver":"file","filename":"$DIR/${file}"}}`];
const tx = (actions: Array<[string, Record<string, Json>]>, properties?: Record<string, Json>): Step => ({
  execute: 'transaction',
  arguments: { actions: actions.map(([type, data]) => ({ type, data })), ...(properties ? { properties } : {}) },
});
const flat: Step = { execute: 'query-named-block-nodes', arguments: { flat: true } };

describe.skipIf(!hasQsd())('transaction against qemu-storage-daemon 7.2', () => {
  it('bitmap actions: all undone when a later action fails, all done otherwise; argument errors', async () => {
    const r = await both(
      'txn-bitmaps',
      (dir) => {
        qcow2(dir, 'src.qcow2');
        write(dir, 'src.qcow2', 5, '0', '192k');
        qcow2(dir, 'dst.qcow2');
      },
      [...node('src', 'src.qcow2'), ...node('dst', 'dst.qcow2')],
      [
        cap,
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'dst', name: 'd' } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'dst', name: 'e', persistent: true } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'dst', name: 'y', disabled: true } },
        // The backup's writes make 'd' and 'e' dirty.
        { execute: 'blockdev-backup', arguments: { 'job-id': 'k', device: 'src', target: 'dst', sync: 'full' } },
        jobReaches('k', 'null'),
        tx([
          ['block-dirty-bitmap-clear', { node: 'dst', name: 'd' }],
          ['block-dirty-bitmap-disable', { node: 'dst', name: 'd' }],
          ['block-dirty-bitmap-enable', { node: 'dst', name: 'y' }],
          ['block-dirty-bitmap-add', { node: 'dst', name: 'x', persistent: true }],
          ['block-dirty-bitmap-merge', { node: 'dst', target: 'y', bitmaps: ['e'] }],
          ['block-dirty-bitmap-remove', { node: 'dst', name: 'e' }],
          ['abort', {}],
        ]),
        flat,
        tx([
          ['block-dirty-bitmap-add', { node: 'dst', name: 'x' }],
          ['block-dirty-bitmap-clear', { node: 'dst', name: 'zz' }],
        ]),
        tx([
          ['block-dirty-bitmap-remove', { node: 'dst', name: 'e' }],
          ['block-dirty-bitmap-clear', { node: 'dst', name: 'e' }],
        ]),
        tx([['block-dirty-bitmap-add', { node: 'nope', name: 'x' }]]),
        tx([['block-dirty-bitmap-add', { node: 'dst', name: 'x' }]], { 'completion-mode': 'grouped' }),
        flat,
        tx([
          ['block-dirty-bitmap-merge', { node: 'dst', target: 'y', bitmaps: ['d'] }],
          ['block-dirty-bitmap-clear', { node: 'dst', name: 'd' }],
          ['block-dirty-bitmap-add', { node: 'dst', name: 'x', granularity: 4096 }],
          ['block-dirty-bitmap-disable', { node: 'dst', name: 'd' }],
          ['block-dirty-bitmap-remove', { node: 'dst', name: 'e' }],
        ]),
        flat,
        tx([]),
        { execute: 'transaction', arguments: { actions: [{ type: 'nope', data: {} }] } },
        { execute: 'transaction', arguments: { actions: [{ type: 'abort' }] } },
        { execute: 'transaction', arguments: { actions: [{ data: {} }] } },
        { execute: 'transaction', arguments: { actions: [{ type: 'abort', data: {}, more: 1 }] } },
        { execute: 'transaction', arguments: { actions: [{ type: 'block-dirty-bitmap-add', data: { node: 'dst' } }] } },
        { execute: 'transaction', arguments: { actions: [{ type: 'abort', data: { x: 1 } }] } },
        { execute: 'transaction', arguments: { actions: [1] } },
        { execute: 'transaction', arguments: { actions: {} } },
        { execute: 'transaction', arguments: { actions: [], properties: { 'completion-mode': 'sometimes' } } },
        { execute: 'transaction', arguments: {} },
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['src.qcow2', 'dst.qcow2']);
    const bitmaps = (dir: string) => JSON.parse(run('qemu-img', ['info', '--output=json', `${dir}/dst.qcow2`], dir))['format-specific'].data.bitmaps;
    expect(bitmaps(r.ours.dir)).toEqual(bitmaps(r.qemu.dir));
  }, 60_000);

  it('external snapshots: blockdev-snapshot-sync, blockdev-snapshot, their errors, undone by abort', async () => {
    const r = await both(
      'txn-external',
      (dir) => {
        qcow2(dir, 'base.qcow2');
        write(dir, 'base.qcow2', 1, '0', '128k');
        qcow2(dir, 'o2.qcow2');
        qcow2(dir, 'o4.qcow2');
        qcow2(dir, 't.qcow2');
        run('qemu-img', ['create', '-f', 'raw', 'r.img', '1M'], dir);
      },
      [
        ...node('b', 'base.qcow2'),
        ...node('o2', 'o2.qcow2', ',"backing":null'),
        ...node('o4', 'o4.qcow2', ',"backing":null'),
        ...node('t', 't.qcow2'),
        '--blockdev', 'driver=file,node-name=rf,filename=$DIR/r.img',
      ],
      [
        cap,
        { execute: 'blockdev-snapshot-sync', arguments: { 'node-name': 'b', 'snapshot-file': '$DIR/o1.qcow2' } },
        { execute: 'blockdev-snapshot-sync', arguments: { 'node-name': 'b', 'snapshot-file': '$DIR/o1.qcow2', 'snapshot-node-name': 'o2' } },
        { execute: 'blockdev-snapshot-sync', arguments: { 'node-name': 'zz', 'snapshot-file': '$DIR/o1.qcow2', 'snapshot-node-name': 'o1' } },
        { execute: 'blockdev-snapshot-sync', arguments: { 'snapshot-file': '$DIR/o1.qcow2' } },
        { execute: 'blockdev-snapshot-sync', arguments: { 'node-name': 'b', 'snapshot-file': '$DIR/none.qcow2', 'snapshot-node-name': 'o1', mode: 'existing' } },
        { execute: 'blockdev-snapshot', arguments: { node: 'b', overlay: 'zz' } },
        { execute: 'blockdev-snapshot', arguments: { node: 'b', overlay: 'rf' } },
        { execute: 'blockdev-snapshot', arguments: { node: 'zz', overlay: 'o2' } },
        tx([
          ['blockdev-snapshot', { node: 'b', overlay: 'o2' }],
          ['abort', {}],
        ]),
        flat,
        { execute: 'blockdev-snapshot', arguments: { node: 'b', overlay: 'o2' } },
        flat,
        { execute: 'blockdev-snapshot', arguments: { node: 'o4', overlay: 'o2' } },
        { execute: 'blockdev-snapshot-sync', arguments: { 'node-name': 'o2', 'snapshot-file': '$DIR/o3.qcow2', 'snapshot-node-name': 'o3' } },
        flat,
        tx([['blockdev-snapshot', { node: 'o4', overlay: 'b' }]], { 'completion-mode': 'grouped' }),
        // The data of the chain as the overlay shows it.
        { execute: 'blockdev-backup', arguments: { 'job-id': 'k', device: 'o2', target: 't', sync: 'full' } },
        jobReaches('k', 'null'),
        flat,
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['base.qcow2', 'o2.qcow2', 'o3.qcow2', 'o4.qcow2', 't.qcow2']);
    // The overlay made by blockdev-snapshot-sync names its backing file as the node's (json:) filename.
    const backing = (dir: string) => (JSON.parse(run('qemu-img', ['info', '--output=json', 'o3.qcow2'], dir)) as Record<string, string>)['backing-filename']!.replaceAll(dir, '$DIR');
    expect(backing(r.ours.dir)).toBe(backing(r.qemu.dir));
    expect(backing(r.ours.dir)).toMatch(/^json:\{"backing": /);
    // The backup read the base's data through the overlay.
    expect(run('qemu-img', ['compare', 'base.qcow2', 't.qcow2'], r.ours.dir)).toBe('Images are identical.\n');
  }, 60_000);

  it('backup and internal snapshot actions: grouped jobs, a job cancelled by abort, a snapshot deleted by abort', async () => {
    const r = await both(
      'txn-backup',
      (dir) => {
        qcow2(dir, 'src.qcow2');
        write(dir, 'src.qcow2', 7, '64k', '128k');
        qcow2(dir, 'src2.qcow2');
        write(dir, 'src2.qcow2', 8, '0', '64k');
        for (const t of ['t1', 't2', 't3']) qcow2(dir, `${t}.qcow2`);
      },
      [...node('src', 'src.qcow2'), ...node('src2', 'src2.qcow2'), ...node('t1', 't1.qcow2'), ...node('t2', 't2.qcow2'), ...node('t3', 't3.qcow2')],
      [
        cap,
        tx([
          ['blockdev-snapshot-internal-sync', { device: 'src', name: 'gone' }],
          ['blockdev-backup', { 'job-id': 'k0', device: 'src', target: 't3', sync: 'full' }],
          ['abort', {}],
        ]),
        { execute: 'query-jobs' },
        tx([['blockdev-snapshot-internal-sync', { device: 'src', name: 'kept' }]]),
        tx([['blockdev-snapshot-internal-sync', { device: 'src', name: 'kept' }]], { 'completion-mode': 'grouped' }),
        tx(
          [
            ['blockdev-backup', { 'job-id': 'k1', device: 'src', target: 't1', sync: 'full', 'auto-finalize': false }],
            ['blockdev-backup', { 'job-id': 'k2', device: 'src2', target: 't2', sync: 'full', 'auto-finalize': false }],
          ],
          { 'completion-mode': 'grouped' },
        ),
        jobReaches('k1', 'pending'),
        jobReaches('k2', 'pending'),
        { execute: 'job-finalize', arguments: { id: 'k1' } },
        jobReaches('k1', 'null'),
        jobReaches('k2', 'null'),
        { execute: 'query-jobs' },
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    // Two jobs run side by side: the order between them is the scheduler's; each job's own sequence must match.
    const perJob = (events: Json[]) => {
      const out: Record<string, Json[]> = {};
      for (const e of events as Array<{ event: string; data: { id?: string; device?: string } }>) (out[e.data.id ?? e.data.device ?? ''] ??= []).push(e as unknown as Json);
      return out;
    };
    expect(perJob(r.ours.events)).toEqual(perJob(r.qemu.events));
    expectImagesEqualAndClean(r, ['src.qcow2', 't1.qcow2', 't2.qcow2', 't3.qcow2']);
    const names = (dir: string) => run('qemu-img', ['snapshot', '-l', 'src.qcow2'], dir).split('\n').slice(2).map((l) => l.split(/\s+/).slice(0, 2).join(' '));
    expect(names(r.ours.dir)).toEqual(names(r.qemu.dir));
    expect(names(r.ours.dir)).toEqual(['1 kept', '']);
  }, 60_000);
});
