/**
 * Two backups of one source at once, against qemu-storage-daemon 7.2: the
 * second copy-before-write filter goes below the first, a guest write
 * through the top filter saves the old data into both targets, the jobs
 * block their filters and targets but not the source, and each filter
 * leaves the graph on its own. Replies and events compared (the drains'
 * paused / running pairs masked: QEMU drains at places our commands do not),
 * the images afterwards equal and clean.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, expectImagesEqualAndClean, hasQsd, jobReaches, run, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);

const qcow2 = (name: string) => blockdev({ driver: 'qcow2', 'node-name': name, file: { driver: 'file', 'node-name': `${name}f`, filename: `$DIR/${name}.qcow2` } });

/** The events without the pause / resume pairs of drains. */
const undrained = (events: Json[]) =>
  events.filter((e) => {
    const { event, data } = e as { event: string; data: { status?: string } };
    return !(event === 'JOB_STATUS_CHANGE' && (data.status === 'paused' || data.status === 'running'));
  });

describe.skipIf(!hasQsd())('two backups of one source against qemu-storage-daemon 7.2', () => {
  it('both run, a guest write reaches both targets, blockers on filters and targets only', async () => {
    const r = await both(
      'backup-twice',
      (dir) => {
        for (const n of ['a', 'c', 'd', 'e']) run('qemu-img', ['create', '-f', 'qcow2', `${n}.qcow2`, '1M'], dir);
        run('qemu-io', ['-c', 'write -P 7 0 256k', 'a.qcow2'], dir);
      },
      [...qcow2('a'), ...qcow2('c'), ...qcow2('d'), ...qcow2('e')],
      [
        x('qmp_capabilities'),
        x('blockdev-backup', { device: 'a', target: 'c', sync: 'none', 'job-id': 'j1', 'filter-node-name': 'cbw1' }),
        x('blockdev-backup', { device: 'a', target: 'd', sync: 'none', 'job-id': 'j2', 'filter-node-name': 'cbw2' }),
        x('blockdev-backup', { device: 'a', target: 'c', sync: 'full', 'job-id': 'j3' }),
        x('blockdev-backup', { device: 'cbw1', target: 'e', sync: 'full', 'job-id': 'j3' }),
        x('blockdev-backup', { device: 'e', target: 'cbw2', sync: 'full', 'job-id': 'j3' }),
        x('blockdev-del', { 'node-name': 'cbw1' }),
        x('blockdev-del', { 'node-name': 'a' }),
        x('query-jobs'),
        x('nbd-server-start', { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } }),
        x('block-export-add', { type: 'nbd', id: 'exp', 'node-name': 'cbw1', writable: true }),
        { call: (dir) => run('qemu-io', ['-f', 'raw', '-c', 'write -P 9 0 64k', `nbd+unix:///cbw1?socket=${dir}/nbd.sock`], dir) },
        x('block-export-del', { id: 'exp' }),
        { wait: (e) => e.event === 'BLOCK_EXPORT_DELETED' },
        // A third, full one, while the two others run.
        x('blockdev-backup', { device: 'a', target: 'e', sync: 'full', 'job-id': 'j3', 'auto-dismiss': false }),
        jobReaches('j3', 'concluded'),
        x('query-block-jobs'),
        x('job-dismiss', { id: 'j3' }),
        x('block-job-cancel', { device: 'j2' }),
        jobReaches('j2', 'null'),
        x('query-block-jobs'),
        x('block-job-cancel', { device: 'j1' }),
        jobReaches('j1', 'null'),
        x('query-block-jobs'),
        x('nbd-server-stop'),
        x('blockdev-del', { 'node-name': 'a' }),
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(undrained(r.ours.events)).toEqual(undrained(r.qemu.events));
    expectImagesEqualAndClean(r, ['a.qcow2', 'c.qcow2', 'd.qcow2', 'e.qcow2']);
    // c and d hold the old data of the one cluster written, e the image after the write.
    const verify = (file: string, ...reads: string[]) => {
      const out = run('qemu-io', [...reads.flatMap((c) => ['-c', c]), file], r.ours.dir);
      expect(out, file).not.toContain('Pattern verification failed');
      expect(out.match(/^read /gm), file).toHaveLength(reads.length);
    };
    for (const f of ['c.qcow2', 'd.qcow2']) verify(f, 'read -P 7 0 64k', 'read -P 0 64k 960k');
    verify('e.qcow2', 'read -P 9 0 64k', 'read -P 7 64k 192k', 'read -P 0 256k 768k');
  }, 60_000);
});
