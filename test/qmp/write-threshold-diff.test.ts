/**
 * block-set-write-threshold with BLOCK_WRITE_THRESHOLD (the writes of a
 * backup job cross it) and query-block, against qemu-storage-daemon 7.2.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, expectImagesEqualAndClean, hasQsd, jobReaches, run, sortNodes, stopAll, type Step } from './harness.js';

afterAll(stopAll);

const node = (name: string, file: string) => ['--blockdev', `{"driver":"qcow2","node-name":"${name}","file":{"driver":"file","filename":"$DIR/${file}"}}`];

describe.skipIf(!hasQsd())('write threshold and query-block against qemu-storage-daemon 7.2', () => {
  it('the event once for the first write above the threshold; errors; query-block', async () => {
    const steps: Step[] = [
      { execute: 'qmp_capabilities' },
      { execute: 'query-block' },
      { execute: 'block-set-write-threshold', arguments: { 'node-name': 'nope', 'write-threshold': 1 } },
      { execute: 'block-set-write-threshold', arguments: { 'node-name': 'dst', 'write-threshold': 'x' } },
      { execute: 'block-set-write-threshold', arguments: { 'node-name': 'dst', 'write-threshold': 65536 } },
      { execute: 'query-named-block-nodes', arguments: { flat: true } },
      { execute: 'blockdev-backup', arguments: { 'job-id': 'k', device: 'src', target: 'dst', sync: 'full' } },
      jobReaches('k', 'null'),
      { execute: 'query-named-block-nodes', arguments: { flat: true } },
      // Off again: a second backup writes without an event.
      { execute: 'block-set-write-threshold', arguments: { 'node-name': 'dst', 'write-threshold': 0 } },
      { execute: 'blockdev-backup', arguments: { 'job-id': 'k2', device: 'src', target: 'dst', sync: 'full' } },
      jobReaches('k2', 'null'),
      { execute: 'query-block' },
    ];
    const r = await both(
      'write-threshold',
      (dir) => {
        run('qemu-img', ['create', '-f', 'qcow2', 'src.qcow2', '1M'], dir);
        run('qemu-io', ['-c', 'write -P 9 128k 64k', 'src.qcow2'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', 'dst.qcow2', '1M'], dir);
      },
      [...node('src', 'src.qcow2'), ...node('dst', 'dst.qcow2')],
      steps,
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expect(r.ours.events.filter((e) => (e as { event: string }).event === 'BLOCK_WRITE_THRESHOLD')).toHaveLength(1);
    expectImagesEqualAndClean(r, ['src.qcow2', 'dst.qcow2']);
  }, 60_000);
});
