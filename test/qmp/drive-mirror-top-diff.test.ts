/**
 * drive-mirror sync=top against qemu-storage-daemon 7.2: the target opens
 * without a backing file and gets one when the job completes (a new image:
 * the source's backing node; mode existing: the file its image names), so
 * while the job is ready the target shows no backing_file (and its name is
 * json with backing null). The whole query-named-block-nodes (the job's
 * mirror_top filter included) is compared while ready and after the pivot;
 * images afterwards equal and clean.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, expectImagesEqualAndClean, hasQsd, jobReaches, qcow2, queryNodesFlat as nodes, queryNodesNested as nested, run, sortNodes, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);


describe.skipIf(!hasQsd())('drive-mirror sync=top against qemu-storage-daemon 7.2', () => {
  it('the target gets its backing file at completion, not at the start', async () => {
    const r = await both(
      'drive-mirror-top',
      (dir) => {
        run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
        run('qemu-io', ['-c', 'write -P 5 0 256k', 'b.qcow2'], dir);
        for (const n of ['a', 'c']) {
          run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', `${n}.qcow2`, '1M'], dir);
          run('qemu-io', ['-c', 'write -P 6 64k 64k', '-c', 'write -P 8 768k 64k', `${n}.qcow2`], dir);
        }
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'ct.qcow2', '1M'], dir);
      },
      // b read-only: the existing target opens b.qcow2 again as its backing file (QEMU's file locks).
      [...qcow2('b', { 'read-only': true }), ...qcow2('a', { backing: 'b' }), ...qcow2('c', { backing: 'b' })],
      [
        x('qmp_capabilities'),
        // A new image, named after the source's backing file.
        x('drive-mirror', { device: 'a', 'job-id': 'j1', target: '$DIR/at.qcow2', format: 'qcow2', sync: 'top', 'node-name': 'at' }),
        jobReaches('j1', 'ready'),
        nodes,
        nested,
        x('job-complete', { id: 'j1' }),
        jobReaches('j1', 'null'),
        nodes,
        nested,
        // An existing image: its own backing file is opened at completion.
        x('drive-mirror', { device: 'c', 'job-id': 'j2', target: '$DIR/ct.qcow2', format: 'qcow2', sync: 'top', mode: 'existing', 'node-name': 'ct' }),
        jobReaches('j2', 'ready'),
        nodes,
        x('job-complete', { id: 'j2' }),
        jobReaches('j2', 'null'),
        nodes,
        nested,
      ],
    );
    const replies = (side: 'qemu' | 'ours') => r[side].replies.map(sortNodes);
    expect(replies('ours')).toEqual(replies('qemu'));
    const backing = (reply: Json, name: string) =>
      (reply as { return: Array<{ 'node-name': string; backing_file?: string }> }).return.find((n) => n['node-name'] === name)?.backing_file ?? null;
    // QEMU's answers: no backing while ready (the target, not named by the monitor, closes after the
    // pivot; its image names the backing file from the start).
    expect([backing(r.qemu.replies[2]!, 'at'), backing(r.qemu.replies[8]!, 'ct'), backing(r.qemu.replies[8]!, 'c')]).toEqual([null, null, '$DIR/b.qcow2']);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'at.qcow2', 'c.qcow2', 'ct.qcow2']);
  }, 60_000);
});
