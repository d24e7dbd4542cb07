/**
 * blockdev-create (file and qcow2) then blockdev-add of the new image, the
 * same script against qemu-storage-daemon 7.2 and `diskworker daemon`:
 * replies, the create jobs' events, and the images (qemu-img compare, check,
 * info) equal. Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, expectImagesEqualAndClean, hasQsd, jobReaches, run, sortNodes, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const create = (id: string, options: Record<string, Json>): Step => ({ execute: 'blockdev-create', arguments: { 'job-id': id, options } });
const dismiss = (id: string): Step => ({ execute: 'job-dismiss', arguments: { id } });
/** Creates `name` as a file, adds a file node on it, then creates qcow2 on that node with `qcow2` options. */
const makeQcow2 = (n: string, name: string, size: number, qcow2: Record<string, Json>): Step[] => [
  create(`${n}f`, { driver: 'file', filename: `$DIR/${name}`, size: 0 }),
  jobReaches(`${n}f`, 'concluded'),
  dismiss(`${n}f`),
  { execute: 'blockdev-add', arguments: { driver: 'file', 'node-name': `${n}-file`, filename: `$DIR/${name}` } },
  create(`${n}q`, { driver: 'qcow2', file: `${n}-file`, size, ...qcow2 }),
  jobReaches(`${n}q`, 'concluded'),
  { execute: 'query-jobs' },
  dismiss(`${n}q`),
];

describe.skipIf(!hasQsd())('blockdev-create against qemu-storage-daemon 7.2', () => {
  it('file and qcow2 images with their options, then blockdev-add; argument and job errors', async () => {
    const r = await both(
      'create',
      (dir) => run('qemu-img', ['create', '-f', 'qcow2', 'base.qcow2', '4M'], dir),
      [],
      [
        cap,
        ...makeQcow2('a', 'a.qcow2', 4194304, {}),
        { execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': 'a', file: 'a-file' } },
        ...makeQcow2('b', 'b.qcow2', 1048576, { version: 'v2', 'cluster-size': 4096, 'backing-file': 'base.qcow2', 'backing-fmt': 'qcow2' }),
        ...makeQcow2('c', 'c.qcow2', 2097152, { 'extended-l2': true, 'cluster-size': 131072, 'lazy-refcounts': true, preallocation: 'metadata', 'refcount-bits': 8 }),
        { execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': 'c', file: 'c-file' } },
        // Failures inside the job: query-jobs shows the error.
        ...makeQcow2('d', 'd.qcow2', 1048576, { 'cluster-size': 1000 }),
        create('e1', { driver: 'qcow2', file: 'a-file', size: 1048576, version: 'v2', 'lazy-refcounts': true }),
        jobReaches('e1', 'concluded'),
        { execute: 'query-jobs' },
        dismiss('e1'),
        create('e2', { driver: 'qcow2', file: 'a-file', size: 1048576, version: 'v2', 'refcount-bits': 8 }),
        jobReaches('e2', 'concluded'),
        { execute: 'query-jobs' },
        dismiss('e2'),
        create('e3', { driver: 'qcow2', file: 'nope', size: 1048576 }),
        jobReaches('e3', 'concluded'),
        { execute: 'query-jobs' },
        dismiss('e3'),
        // Refused before a job exists.
        create('x', { driver: 'raw', size: 1 }),
        create('1x', { driver: 'file', filename: '$DIR/x', size: 1 }),
        create('x', { driver: 'file', filename: '$DIR/x' }),
        create('x', { driver: 'file', filename: '$DIR/x', size: 1, bogus: 1 }),
        create('x', { driver: 'nosuch' }),
        create('x', { driver: 'qcow2', file: 'a-file', size: 1, version: 'v9' }),
        { execute: 'blockdev-create', arguments: { options: { driver: 'file', filename: '$DIR/x', size: 1 } } },
        // A create job is no block job.
        create('z', { driver: 'file', filename: '$DIR/z', size: 0 }),
        { execute: 'block-job-dismiss', arguments: { id: 'z' } },
        jobReaches('z', 'concluded'),
        { execute: 'query-block-jobs' },
        dismiss('z'),
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'c.qcow2']);
    const info = (dir: string, name: string) => run('qemu-img', ['info', '--output=json', name], dir).replaceAll(dir, '$DIR').replace(/"actual-size": \d+/, '');
    for (const name of ['a.qcow2', 'b.qcow2', 'c.qcow2']) expect(info(r.ours.dir, name), name).toBe(info(r.qemu.dir, name));
    const map = (dir: string, name: string) => run('qemu-img', ['map', '--output=json', name], dir);
    for (const name of ['a.qcow2', 'c.qcow2']) expect(map(r.ours.dir, name), name).toBe(map(r.qemu.dir, name));
  }, 60_000);
});
