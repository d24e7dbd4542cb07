/**
 * block-commit into a read-only base, against qemu-storage-daemon 7.2: the
 * command itself reopens the base read-write (before the job exists), so the
 * node shows ro false in the query right after it, and a base whose file was
 * given its own read-only makes the command fail; a commit job puts the base
 * back to read-only when it ends, an active commit leaves it read-write.
 * While the jobs wait (pending, ready) the whole query-named-block-nodes is
 * compared, the jobs' filter nodes (commit_top, and mirror_top for the
 * active commit) included. Images afterwards equal and clean.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, expectImagesEqualAndClean, hasQsd, jobReaches, qcow2, queryNodesFlat as nodes, queryNodesNested as nested, run, sortNodes, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);


describe.skipIf(!hasQsd())('block-commit into a read-only base against qemu-storage-daemon 7.2', () => {
  it('the command reopens the base read-write; the filters show while the jobs wait', async () => {
    const r = await both(
      'commit-read-only-base',
      (dir) => {
        // b <- a <- c (c the active layer); e with its read-only file below d.
        for (const n of ['b', 'e']) run('qemu-img', ['create', '-f', 'qcow2', `${n}.qcow2`, '1M'], dir);
        run('qemu-io', ['-c', 'write -P 5 0 128k', 'b.qcow2'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '1M'], dir);
        run('qemu-io', ['-c', 'write -P 6 64k 128k', 'a.qcow2'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', 'c.qcow2', '1M'], dir);
        run('qemu-io', ['-c', 'write -P 7 512k 64k', 'c.qcow2'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'e.qcow2', '-F', 'qcow2', 'd.qcow2', '1M'], dir);
      },
      [
        ...qcow2('b', { 'read-only': true }),
        ...qcow2('a', { 'read-only': true, backing: 'b' }),
        ...qcow2('c', { backing: 'a' }),
        ...qcow2('e', { 'read-only': true }, { 'read-only': true }),
        ...qcow2('d', { backing: 'e' }),
      ],
      [
        x('qmp_capabilities'),
        // The reopen fails: the command's error, no job.
        x('block-commit', { device: 'd', 'job-id': 'j0' }),
        nodes,
        // a into b, below the active layer c.
        x('block-commit', { device: 'c', 'job-id': 'j1', 'top-node': 'a', 'base-node': 'b', 'auto-finalize': false }),
        nodes,
        jobReaches('j1', 'pending'),
        nodes,
        nested,
        x('job-finalize', { id: 'j1' }),
        jobReaches('j1', 'null'),
        nodes,
        // Active commit of c into the now read-only b.
        x('block-commit', { device: 'c', 'job-id': 'j2' }),
        nodes,
        jobReaches('j2', 'ready'),
        nodes,
        nested,
        x('job-complete', { id: 'j2' }),
        jobReaches('j2', 'null'),
        nodes,
      ],
    );
    // Right after a command the job may or may not have copied yet: there only the ro flags count.
    const early = new Set([4, 10]);
    const roFlags = (reply: Json) =>
      (reply as { return: Array<{ 'node-name': string; ro: boolean }> }).return.map((n) => `${n['node-name']}:${n.ro}`).sort();
    const replies = (side: 'qemu' | 'ours') => r[side].replies.map((reply, i) => (early.has(i) ? roFlags(reply) : sortNodes(reply)));
    expect(replies('ours')).toEqual(replies('qemu'));
    const ro = (reply: Json) => (reply as { return: Array<{ 'node-name': string; ro: boolean }> }).return.filter((n) => n['node-name'] === 'b').map((n) => n.ro);
    // QEMU's answers: read-write right after each command, read-only again after the commit job only.
    expect([4, 5, 8, 10, 14].map((i) => ro(r.qemu.replies[i]!))).toEqual([[false], [false], [true], [false], [false]]);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'c.qcow2', 'd.qcow2', 'e.qcow2']);
  }, 60_000);
});
