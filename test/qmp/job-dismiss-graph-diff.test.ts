/**
 * What a concluded job that is not dismissed still holds, against
 * qemu-storage-daemon 7.2: x-debug-query-block-graph after each job
 * concludes with auto-dismiss off, and again after job-dismiss. A stream
 * keeps its "main node" (the dropped copy-on-read filter, childless) and
 * "active node" links, a commit its "main node", "intermediate node" and
 * "base" links (the dropped intermediate image stays open), until the
 * dismiss; mirror and backup have let go at conclusion. Needs
 * `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, hasQsd, jobReaches, run, stopAll, x, type Step } from './harness.js';

afterAll(stopAll);

const graph = x('x-debug-query-block-graph');
const qcow2 = (name: string) => blockdev({ driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: `$DIR/${name}.qcow2` } });

describe.skipIf(!hasQsd())('concluded, undismissed jobs in the block graph against qemu-storage-daemon 7.2', () => {
  it('backup, mirror, stream, commit and active commit: the graph while concluded and after the dismiss', async () => {
    const steps: Step[] = [
      x('qmp_capabilities'),
      x('blockdev-backup', { 'job-id': 'b', device: 'src', target: 'dst', sync: 'full', 'auto-dismiss': false }),
      jobReaches('b', 'concluded'), graph,
      x('job-dismiss', { id: 'b' }), graph,
      x('blockdev-mirror', { 'job-id': 'm', device: 'src', target: 'dst', sync: 'full', 'auto-dismiss': false }),
      jobReaches('m', 'ready'),
      x('job-complete', { id: 'm' }),
      jobReaches('m', 'concluded'), graph,
      x('job-dismiss', { id: 'm' }), graph,
      x('blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: { driver: 'file', filename: '$DIR/top.qcow2' }, backing: 'src' }),
      x('block-stream', { 'job-id': 's', device: 'top', 'auto-dismiss': false }),
      jobReaches('s', 'concluded'), graph,
      // Still held: the stream's links share no resize on top.
      x('block_resize', { 'node-name': 'top', size: 8 << 20 }),
      x('job-dismiss', { id: 's' }), graph,
      x('blockdev-add', { driver: 'qcow2', 'node-name': 'o1', file: { driver: 'file', filename: '$DIR/o1.qcow2' }, backing: 'src' }),
      x('blockdev-add', { driver: 'qcow2', 'node-name': 'o2', file: { driver: 'file', filename: '$DIR/o2.qcow2' }, backing: 'o1' }),
      x('block-commit', { 'job-id': 'c', device: 'o2', 'top-node': 'o1', 'base-node': 'src', 'auto-dismiss': false }),
      jobReaches('c', 'concluded'), graph,
      x('blockdev-del', { 'node-name': 'o1' }),
      x('job-dismiss', { id: 'c' }), graph,
      x('block-commit', { 'job-id': 'a', device: 'o2', 'auto-dismiss': false }),
      jobReaches('a', 'ready'),
      x('job-complete', { id: 'a' }),
      jobReaches('a', 'concluded'), graph,
      x('job-dismiss', { id: 'a' }), graph,
    ];
    const r = await both(
      'job-dismiss-graph',
      (d) => {
        run('qemu-img', ['create', '-q', '-f', 'qcow2', 'src.qcow2', '4M'], d);
        run('qemu-io', ['-c', 'write -P 5 0 1M', 'src.qcow2'], d);
        run('qemu-img', ['create', '-q', '-f', 'qcow2', 'dst.qcow2', '4M'], d);
        run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'src.qcow2', '-F', 'qcow2', 'top.qcow2'], d);
        run('qemu-img', ['create', '-q', '-f', 'qcow2', 'o1.qcow2', '4M'], d);
        run('qemu-io', ['-c', 'write -P 7 1M 1M', 'o1.qcow2'], d);
        run('qemu-img', ['create', '-q', '-f', 'qcow2', 'o2.qcow2', '4M'], d);
        run('qemu-io', ['-c', 'write -P 8 2M 1M', 'o2.qcow2'], d);
      },
      [...qcow2('src'), ...qcow2('dst')],
      steps,
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
  }, 60_000);
});
