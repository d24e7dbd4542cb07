/**
 * block-stream into a read-only image, against qemu-storage-daemon 7.2: the
 * image (and the file it opened itself) is reopened read-write for the job
 * and read-only again when the job is gone; a file given its own read-only
 * stays so, and the stream is refused. Replies and events compared, with the
 * ro flag of the named nodes in between (the job's own copy-on-read filter
 * is compared in job-filter-nodes-diff), the images afterwards equal and clean.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, expectImagesEqualAndClean, hasQsd, jobReaches, run, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);

const NAMED = new Set(['a', 'af', 'b', 'bf', 'c', 'cf']);

/** query-named-block-nodes reduced to "name:ro" of the nodes the script named. */
function roFlags(reply: Json): Json {
  const list = (reply as { return?: Array<{ 'node-name': string; ro: boolean }> }).return;
  if (!Array.isArray(list) || !list.every((n) => typeof n === 'object' && n !== null && 'ro' in n)) return reply;
  return list.filter((n) => NAMED.has(n['node-name'])).map((n) => `${n['node-name']}:${n.ro}`).sort();
}

describe.skipIf(!hasQsd())('block-stream into a read-only node against qemu-storage-daemon 7.2', () => {
  it('reopened read-write for the job, read-only again after; a read-only file of its own refuses', async () => {
    const nodes = x('query-named-block-nodes', { flat: true });
    const r = await both(
      'stream-read-only',
      (dir) => {
        run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
        run('qemu-io', ['-c', 'write -P 5 0 128k', '-c', 'write -P 6 512k 64k', 'b.qcow2'], dir);
        for (const n of ['a', 'c']) run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', `${n}.qcow2`, '1M'], dir);
        run('qemu-io', ['-c', 'write -P 7 64k 128k', 'a.qcow2'], dir);
      },
      [
        ...blockdev({ driver: 'qcow2', 'node-name': 'b', 'read-only': true, file: { driver: 'file', 'node-name': 'bf', filename: '$DIR/b.qcow2' } }),
        ...blockdev({ driver: 'qcow2', 'node-name': 'a', 'read-only': true, backing: 'b', file: { driver: 'file', 'node-name': 'af', filename: '$DIR/a.qcow2' } }),
        ...blockdev({ driver: 'qcow2', 'node-name': 'c', 'read-only': true, backing: 'b', file: { driver: 'file', 'node-name': 'cf', 'read-only': true, filename: '$DIR/c.qcow2' } }),
      ],
      [
        x('qmp_capabilities'),
        nodes,
        x('block-stream', { device: 'c', 'job-id': 'j0' }),
        nodes,
        x('block-stream', { device: 'a', 'job-id': 'j1', 'auto-finalize': false }),
        jobReaches('j1', 'pending'),
        nodes,
        x('job-finalize', { id: 'j1' }),
        jobReaches('j1', 'null'),
        nodes,
        x('block-stream', { device: 'a', 'job-id': 'j2' }),
        jobReaches('j2', 'null'),
        nodes,
      ],
    );
    expect(r.ours.replies.map(roFlags)).toEqual(r.qemu.replies.map(roFlags));
    expect(r.qemu.replies.map(roFlags)[5]).toEqual(['a:false', 'af:false', 'b:true', 'bf:true', 'c:true', 'cf:true']);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'c.qcow2']);
  }, 60_000);
});
