/**
 * The filter nodes of block jobs in query-named-block-nodes, against
 * qemu-storage-daemon 7.2: while a job waits (pending, ready) the whole
 * answer, flat and nested, is compared — a stream's implicit copy-on-read
 * filter above the image it fills, a mirror's mirror_top above its
 * source, a backup's copy-before-write with its bitmaps (and the block-copy
 * bitmap on the source) — and after the job the filters are gone. Replies and events
 * compared, images afterwards equal and clean.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, expectImagesEqualAndClean, hasQsd, jobReaches, qcow2, queryNodesFlat as nodes, queryNodesNested as nested, run, sortNodes, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);


describe.skipIf(!hasQsd())('job filter nodes against qemu-storage-daemon 7.2', () => {
  it('stream, mirror and backup filters while the jobs wait, gone after', async () => {
    const r = await both(
      'job-filter-nodes',
      (dir) => {
        run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
        run('qemu-io', ['-c', 'write -P 5 0 128k', 'b.qcow2'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '1M'], dir);
        run('qemu-io', ['-c', 'write -P 6 512k 64k', 'a.qcow2'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', 'c.qcow2', '1M'], dir);
      },
      [...qcow2('b'), ...qcow2('a', { backing: 'b' }), ...qcow2('c')],
      [
        x('qmp_capabilities'),
        x('block-stream', { device: 'a', 'job-id': 'j1', 'auto-finalize': false }),
        jobReaches('j1', 'pending'),
        nodes,
        nested,
        x('job-finalize', { id: 'j1' }),
        jobReaches('j1', 'null'),
        nodes,
        // A named filter shows its own names.
        x('block-stream', { device: 'a', 'job-id': 'j5', 'auto-finalize': false, 'filter-node-name': 'cor1' }),
        jobReaches('j5', 'pending'),
        nodes,
        nested,
        x('job-finalize', { id: 'j5' }),
        jobReaches('j5', 'null'),
        x('blockdev-mirror', { device: 'a', target: 'c', sync: 'full', 'job-id': 'j2' }),
        jobReaches('j2', 'ready'),
        nodes,
        nested,
        x('block-job-cancel', { device: 'j2' }),
        jobReaches('j2', 'null'),
        nodes,
        // A backup's copy-before-write, with its two bitmaps and the block-copy one on the source.
        x('blockdev-backup', { device: 'a', target: 'c', sync: 'full', 'job-id': 'j3', 'auto-finalize': false }),
        jobReaches('j3', 'pending'),
        nodes,
        nested,
        x('job-finalize', { id: 'j3' }),
        jobReaches('j3', 'null'),
        nodes,
        // sync none copies nothing until the guest writes: every bit still set.
        x('blockdev-backup', { device: 'a', target: 'c', sync: 'none', 'job-id': 'j4' }),
        nodes,
        x('block-job-cancel', { device: 'j4' }),
        jobReaches('j4', 'null'),
        nodes,
      ],
    );
    const replies = (side: 'qemu' | 'ours') => r[side].replies.map(sortNodes);
    expect(replies('ours')).toEqual(replies('qemu'));
    const drivers = (reply: Json) => (reply as { return: Array<{ drv: string }> }).return.map((n) => n.drv).filter((d) => !['qcow2', 'file'].includes(d));
    // QEMU's answers: the filters while the jobs wait, none after.
    expect([2, 5, 7, 8, 11, 14, 16, 19, 21, 23].map((i) => drivers(r.qemu.replies[i]!))).toEqual([
      ['copy-on-read'],
      [],
      ['copy-on-read'],
      ['copy-on-read'],
      ['mirror_top'],
      [],
      ['copy-before-write'],
      [],
      ['copy-before-write'],
      [],
    ]);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'c.qcow2']);
  }, 60_000);
});
