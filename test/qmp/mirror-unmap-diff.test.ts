/**
 * A full mirror onto an existing target, against qemu-storage-daemon 7.2:
 * the ranges the source reads as zeros are written to the target as zeros
 * that may unmap (the job's BlockBackend asks so whatever the target's
 * discard option, as QEMU's blk_co_pwrite_zeroes), so the qcow2 target frees
 * its old clusters there. Compared: replies, events, and `qemu-img map` of
 * the target (which clusters are data, zero or free), the images equal and
 * clean. Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, expectImagesEqualAndClean, hasQsd, jobReaches, run, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);


/** qemu-img map of `name`, without host offsets (allocation order of parallel copies varies). */
const map = (dir: string, name: string) =>
  (JSON.parse(run('qemu-img', ['map', '--output=json', name], dir)) as Array<Record<string, unknown>>).map(({ offset: _offset, ...rest }) => rest);

describe.skipIf(!hasQsd())('mirror zeroing an existing target against qemu-storage-daemon 7.2', () => {
  const source = blockdev({ driver: 'qcow2', 'node-name': 's', file: { driver: 'file', 'node-name': 'sf', filename: '$DIR/s.qcow2' } });
  const target = (discard: string) => blockdev({ driver: 'qcow2', 'node-name': 't', discard, file: { driver: 'file', 'node-name': 'tf', filename: '$DIR/t.qcow2' } });
  const cases: Array<{ name: string; args: string[]; mirror: Step }> = [
    { name: 'blockdev-mirror, target discard=ignore', args: [...source, ...target('ignore')], mirror: x('blockdev-mirror', { 'job-id': 'm', device: 's', target: 't', sync: 'full' }) },
    { name: 'blockdev-mirror, target discard=unmap', args: [...source, ...target('unmap')], mirror: x('blockdev-mirror', { 'job-id': 'm', device: 's', target: 't', sync: 'full' }) },
    {
      name: 'drive-mirror onto the existing image',
      args: source,
      mirror: x('drive-mirror', { 'job-id': 'm', device: 's', target: '$DIR/t.qcow2', format: 'qcow2', mode: 'existing', sync: 'full' }),
    },
    {
      name: 'drive-mirror onto the existing image, unmap=false',
      args: source,
      mirror: x('drive-mirror', { 'job-id': 'm', device: 's', target: '$DIR/t.qcow2', format: 'qcow2', mode: 'existing', sync: 'full', unmap: false }),
    },
  ];
  for (const c of cases) {
    it(`${c.name}: the target's clusters where the source reads zeros`, async () => {
      const r = await both(
        `mirror-unmap-${cases.indexOf(c)}`,
        (dir) => {
          run('qemu-img', ['create', '-f', 'qcow2', 's.qcow2', '1M'], dir);
          run('qemu-io', ['-c', 'write -P 1 0 64k', '-c', 'write -z 128k 64k', 's.qcow2'], dir);
          run('qemu-img', ['create', '-f', 'qcow2', 't.qcow2', '1M'], dir);
          run('qemu-io', ['-c', 'write -P 9 0 512k', 't.qcow2'], dir);
        },
        c.args,
        [x('qmp_capabilities'), c.mirror, jobReaches('m', 'ready'), x('job-complete', { id: 'm' }), jobReaches('m', 'null')],
      );
      expect(r.ours.replies).toEqual(r.qemu.replies);
      expect(r.ours.events).toEqual(r.qemu.events);
      for (const n of ['s.qcow2', 't.qcow2']) expect(map(r.ours.dir, n), n).toEqual(map(r.qemu.dir, n));
      expectImagesEqualAndClean(r, ['s.qcow2', 't.qcow2']);
    }, 60_000);
  }
});
