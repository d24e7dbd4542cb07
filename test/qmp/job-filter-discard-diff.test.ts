/**
 * The guest's discards and zero writes while a job's filter sits above its
 * disk, against qemu-storage-daemon 7.2. QEMU opens the job filters
 * (mirror_top, copy-before-write, copy-on-read) without discard=unmap, so a
 * discard that reaches one is dropped, and mirror_top takes no MAY_UNMAP, so
 * a zero write through it keeps its clusters (as zero clusters); through
 * copy-before-write and copy-on-read zero writes may still unmap. The guest
 * is qemu-io over the NBD export of the disk; compared: replies, the map the
 * guest sees, `qemu-img map` of the image afterwards, the images equal and
 * clean. Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, checkImage, compareImages, expectImagesEqualAndClean, hasQsd, run, stopAll, x, type Step } from './harness.js';

afterAll(stopAll);

const MiB = 1 << 20;
const nbd = (dir: string) => `nbd+unix:///top?socket=${dir}/nbd.sock`;
/**
 * qemu-img map of `name` over the first 2 MiB (where the guest discards and
 * zeroes what top holds; how far a job has copied elsewhere depends on
 * timing), host offsets left out (the allocation order may differ).
 */
function map(dir: string, name: string): Array<Record<string, unknown>> {
  const extents = JSON.parse(run('qemu-img', ['map', '--output=json', name], dir)) as Array<{ start: number; length: number; offset?: number }>;
  return extents
    .filter((e) => e.start < 2 * MiB)
    .map(({ offset: _o, ...rest }) => ({ ...rest, length: Math.min(rest.length, 2 * MiB - rest.start) }));
}

describe.skipIf(!hasQsd())('guest discards and zero writes through job filters against qemu-storage-daemon 7.2', () => {
  const top = blockdev({ driver: 'qcow2', 'node-name': 'top', discard: 'unmap', file: { driver: 'file', filename: '$DIR/top.qcow2', discard: 'unmap' }, backing: { driver: 'qcow2', 'node-name': 'base', file: { driver: 'file', filename: '$DIR/base.qcow2' } } });
  const dst = blockdev({ driver: 'qcow2', 'node-name': 'dst', file: { driver: 'file', filename: '$DIR/dst.qcow2' } });
  const exportTop = ['--nbd-server', 'addr.type=unix,addr.path=$DIR/nbd.sock', '--export', 'type=nbd,id=e,node-name=top,writable=on'];
  const cases: Array<{ name: string; job: Step; cancel: Step }> = [
    { name: 'mirror (mirror_top)', job: x('blockdev-mirror', { 'job-id': 'j', device: 'top', target: 'dst', sync: 'full', speed: 1 }), cancel: x('block-job-cancel', { device: 'j', force: true }) },
    { name: 'active commit (mirror_top)', job: x('block-commit', { 'job-id': 'j', device: 'top', speed: 1 }), cancel: x('block-job-cancel', { device: 'j', force: true }) },
    { name: 'backup (copy-before-write)', job: x('blockdev-backup', { 'job-id': 'j', device: 'top', target: 'dst', sync: 'full', speed: 1 }), cancel: x('block-job-cancel', { device: 'j', force: true }) },
    { name: 'stream (copy-on-read)', job: x('block-stream', { 'job-id': 'j', device: 'top', speed: 1 }), cancel: x('block-job-cancel', { device: 'j', force: true }) },
  ];
  for (const c of cases) {
    it(`${c.name}: a discard is dropped; zero writes as QEMU's filter passes them`, async () => {
      const seen: Record<string, string> = {};
      const r = await both(
        `job-filter-discard-${cases.indexOf(c)}`,
        (dir) => {
          run('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '4M'], dir);
          run('qemu-io', ['-c', 'write -P 5 0 4M', 'base.qcow2'], dir);
          run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
          run('qemu-io', ['-c', 'write -P 6 0 2M', '-c', 'write -P 7 3M 1M', 'top.qcow2'], dir);
          run('qemu-img', ['create', '-q', '-f', 'qcow2', 'dst.qcow2', '4M'], dir);
        },
        [...top, ...dst, ...exportTop],
        [
          x('qmp_capabilities'),
          c.job,
          { call: (dir) => void run('qemu-io', ['-f', 'raw', '-c', 'discard 0 1M', '-c', 'write -z -u 1M 512k', '-c', 'write -z 1536k 512k', '-c', 'discard 3M 64k', nbd(dir)], dir) },
          { call: (dir) => void (seen[dir] = run('qemu-img', ['map', '--output=json', '--image-opts', `driver=raw,file.driver=nbd,file.path=${dir}/nbd.sock,file.export=top`], dir)) },
          c.cancel,
        ],
      );
      expect(r.ours.replies).toEqual(r.qemu.replies);
      expect(seen[r.ours.dir]).toBe(seen[r.qemu.dir]);
      expect(map(r.ours.dir, 'top.qcow2')).toEqual(map(r.qemu.dir, 'top.qcow2'));
      // The discarded ranges kept their data (what the top held there).
      run('qemu-io', ['-c', 'read -P 6 0 1M', '-c', 'read -P 7 3M 64k', 'top.qcow2'], r.ours.dir);
      if (c.name.startsWith('mirror') || c.name.startsWith('backup')) {
        expectImagesEqualAndClean(r, ['top.qcow2', 'base.qcow2']);
      } else {
        // A stream or commit has copied a timing-dependent part of the chain: the guest's view is the same.
        expect(compareImages(`${r.qemu.dir}/top.qcow2`, `${r.ours.dir}/top.qcow2`)).toEqual({ code: 0, out: 'Images are identical.\n' });
        for (const n of ['top.qcow2', 'base.qcow2']) expect(checkImage(`${r.ours.dir}/${n}`).code).toBe(0);
      }
    }, 60_000);
  }
});
