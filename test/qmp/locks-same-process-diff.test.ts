/**
 * QEMU's image locks between two nodes of one daemon (issue #16), against
 * qemu-storage-daemon 7.2. QEMU's locks are OFD locks, one set per open of
 * the file, so a second `file` node on an image the first holds is refused
 * or let through exactly as another process would be: a writer next to a
 * writer fails on the "write" lock, a reader that does not share writes on
 * the shared "write" lock; force-share (read-only only) and locking=off pass;
 * closing or reopening the first node read-only frees the image again, and
 * a reopen back to read-write is refused while the second node reads.
 * Needs `npm run build:ts` (the bundled bin) and Linux.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, hasQsd, queryNodesFlat, run, sortNodes, stopAll, x, type Json, type Step } from './harness.js';

afterAll(async () => {
  await stopAll();
});

const setup = (dir: string): void => {
  run('qemu-img', ['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M'], dir);
  run('qemu-img', ['create', '-q', '-f', 'raw', 'r.raw', '1M'], dir);
};

/** A qcow2 node `name` over a new file node `<name>f` of `file`. */
const qcow2 = (name: string, file: string, extra: Record<string, Json> = {}, fileExtra: Record<string, Json> = {}): Json => ({
  driver: 'qcow2',
  'node-name': name,
  ...extra,
  file: { driver: 'file', 'node-name': `${name}f`, filename: `$DIR/${file}`, ...fileExtra },
});
const add = (o: Json): Step => x('blockdev-add', o);
const del = (name: string): Step => x('blockdev-del', { 'node-name': name });
const reopen = (o: Json): Step => x('blockdev-reopen', { options: [o] });
const reopenQcow2 = (name: string, ro: boolean): Step => reopen({ driver: 'qcow2', 'node-name': name, file: `${name}f`, 'read-only': ro });

/** Runs `steps` on both daemons (first node `q1`, read-write, on a.qcow2); the replies must be the same. */
async function expectSame(name: string, steps: Step[], args: string[] = ['--blockdev', JSON.stringify(qcow2('q1', 'a.qcow2'))]): Promise<Json[]> {
  const r = await both(name, setup, args, [x('qmp_capabilities'), ...steps, queryNodesFlat]);
  const replies = (side: 'qemu' | 'ours') => [...r[side].replies.slice(0, -1), nodeNames(r[side].replies.at(-1)!)];
  expect(replies('ours')).toEqual(replies('qemu'));
  return r.qemu.replies;
}

/** The node names of a query-named-block-nodes reply, sorted (their details are other tests' business). */
function nodeNames(reply: Json): Json {
  const r = sortNodes(reply) as { return?: Array<{ 'node-name': string }> };
  return (r.return ?? []).map((n) => n['node-name']).sort();
}

const errorOf = (reply: Json): string | undefined => (reply as { error?: { desc: string } }).error?.desc;

describe.skipIf(!hasQsd())('two nodes of one daemon on one image', () => {
  it('a second writer and a second plain reader are refused with QEMU words; force-share and locking=off pass', async () => {
    const replies = await expectSame('locks-same-process-add', [
      add(qcow2('q2', 'a.qcow2')),
      add(qcow2('q3', 'a.qcow2', { 'read-only': true })),
      add(qcow2('q4', 'a.qcow2', { 'force-share': true })),
      add(qcow2('q5', 'a.qcow2', { 'read-only': true, 'force-share': true })),
      add(qcow2('q6', 'a.qcow2', {}, { locking: 'off' })),
      // A bare file node takes nothing until someone uses it.
      add({ driver: 'file', 'node-name': 'f7', filename: '$DIR/a.qcow2' }),
    ]);
    expect(errorOf(replies[1]!)).toBe('Failed to get "write" lock');
    expect(errorOf(replies[2]!)).toBe('Failed to get shared "write" lock');
    expect(errorOf(replies[3]!)).toBe('force-share=on can only be used with read-only images');
    expect(errorOf(replies[4]!)).toBeUndefined();
    expect(errorOf(replies[5]!)).toBeUndefined();
    expect(errorOf(replies[6]!)).toBeUndefined();
  }, 60_000);

  it('the locks go with the node, and follow its reopens', async () => {
    const replies = await expectSame('locks-same-process-reopen', [
      del('q1'),
      add(qcow2('q2', 'a.qcow2', { 'read-only': true })),
      add(qcow2('q3', 'a.qcow2', { 'read-only': true })),
      // q2 back to read-write: q3 reads and does not share writes.
      reopenQcow2('q2', false),
      del('q3'),
      reopenQcow2('q2', false),
      // Now q2 writes: a reader is refused again, and q2 read-only lets it in.
      add(qcow2('q4', 'a.qcow2', { 'read-only': true })),
      reopenQcow2('q2', true),
      add(qcow2('q4', 'a.qcow2', { 'read-only': true })),
    ]);
    expect(errorOf(replies[4]!)).toBe('Failed to get "write" lock');
    expect(errorOf(replies[6]!)).toBeUndefined();
    expect(errorOf(replies[7]!)).toBe('Failed to get shared "write" lock');
    expect(errorOf(replies[9]!)).toBeUndefined();
  }, 60_000);

  it('a raw image: writers share writes, with an offset too; a writable export shares no resize', async () => {
    const raw = (name: string, extra: Record<string, Json> = {}): Json => ({
      driver: 'raw',
      'node-name': name,
      ...extra,
      file: { driver: 'file', 'node-name': `${name}f`, filename: '$DIR/r.raw' },
    });
    const replies = await expectSame(
      'locks-same-process-raw',
      [
        add(raw('r2')),
        add(raw('r3', { offset: 512, size: 4096 })),
        x('nbd-server-start', { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } }),
        x('block-export-add', { type: 'nbd', id: 'e3', 'node-name': 'r3', writable: true }),
        x('block-export-add', { type: 'nbd', id: 'e2', 'node-name': 'r2', writable: true }),
        x('block_resize', { 'node-name': 'r1', size: 2097152 }),
        x('block-export-del', { id: 'e3' }),
        del('r3'),
        x('block_resize', { 'node-name': 'r1', size: 2097152 }),
      ],
      ['--blockdev', JSON.stringify(raw('r1'))],
    );
    // Only the resizes fail: the writable export of r2 shares no resize (nor would r3, while it lived).
    expect(replies.slice(1, -1).map(errorOf)).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      'Failed to get "resize" lock',
      undefined,
      undefined,
      'Failed to get "resize" lock',
    ]);
  }, 60_000);

  it('blockdev-create of a file another node holds: the job fails on the lock', async () => {
    await expectSame('locks-same-process-create', [
      x('blockdev-create', { 'job-id': 'c', options: { driver: 'file', filename: '$DIR/a.qcow2', size: 1048576 } }),
      { wait: (e) => e.event === 'JOB_STATUS_CHANGE' && e.data?.id === 'c' && e.data?.status === 'concluded' },
      x('query-jobs'),
      x('job-dismiss', { id: 'c' }),
      del('q1'),
      x('blockdev-create', { 'job-id': 'd', options: { driver: 'file', filename: '$DIR/a.qcow2', size: 1048576 } }),
      { wait: (e) => e.event === 'JOB_STATUS_CHANGE' && e.data?.id === 'd' && e.data?.status === 'concluded' },
      x('query-jobs'),
    ]);
  }, 60_000);
});
