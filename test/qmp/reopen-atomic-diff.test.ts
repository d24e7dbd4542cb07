/**
 * blockdev-reopen is all or nothing, against qemu-storage-daemon 7.2: the
 * backing and file links it changes belong to the reopen transaction, so a
 * refusal (a cycle two changes make together, a read-write node given a
 * read-only file) leaves every node's flags and links as they were, and
 * the links take their permissions as the nodes will be (a node becoming
 * read-only may take a read-only file). Replies (the graph by
 * query-named-block-nodes after each step) and events compared, the images
 * equal and clean. Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, expectImagesEqualAndClean, hasQsd, run, sortNodes, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);

const reopen = (...options: Json[]): Step => x('blockdev-reopen', { options });
const nodes = x('query-named-block-nodes', { flat: true });

describe.skipIf(!hasQsd())('blockdev-reopen all or nothing against qemu-storage-daemon 7.2', () => {
  it('a refused reopen changes no flag and no link; links take the permissions of the reopened state', async () => {
    const r = await both(
      'reopen-atomic',
      (dir) => {
        run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
        run('qemu-io', ['-c', 'write -P 5 0 64k', 'b.qcow2'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a2.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', 'c.qcow2', '1M'], dir);
      },
      [
        ...blockdev({ driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2' } }),
        ...blockdev({ driver: 'file', 'node-name': 'cf', filename: '$DIR/c.qcow2' }),
        ...blockdev({ driver: 'qcow2', 'node-name': 'c', file: 'cf' }),
        ...blockdev({ driver: 'file', 'node-name': 'gro', 'read-only': true, filename: '$DIR/a2.qcow2' }),
      ],
      [
        x('qmp_capabilities'),
        // Each change alone is fine; together they make a cycle.
        reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f', backing: 'c' }, { driver: 'qcow2', 'node-name': 'c', file: 'cf', backing: 'q' }),
        nodes,
        // c would become read-only and q get c as backing, but q (read-write) cannot use the read-only file.
        reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', 'read-only': true }, { driver: 'qcow2', 'node-name': 'q', backing: 'c', file: 'gro' }),
        nodes,
        reopen({ driver: 'qcow2', 'node-name': 'q', backing: null, file: 'gro' }),
        nodes,
        // Read-only itself, q may take the read-only file (and c as backing) in the same reopen.
        reopen({ driver: 'qcow2', 'node-name': 'q', backing: 'c', file: 'gro', 'read-only': true }),
        nodes,
        reopen({ driver: 'qcow2', 'node-name': 'q', backing: 'c', file: 'f', 'read-only': false }),
        nodes,
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'a2.qcow2', 'b.qcow2', 'c.qcow2']);
  }, 60_000);
});
