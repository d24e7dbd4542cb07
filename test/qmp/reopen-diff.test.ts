/**
 * blockdev-reopen against qemu-storage-daemon 7.2: read-only <-> read-write,
 * qcow2's run-time options, backing links changed and dropped, and QEMU's
 * errors for options that cannot change, the missing backing, unknown nodes
 * and bad arguments; replies, events and the images afterwards compared.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blockdev, both, expectImagesEqualAndClean, hasQsd, run, sortNodes, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const reopen = (...options: Json[]): Step => ({ execute: 'blockdev-reopen', arguments: { options } });
const nodes: Step = { execute: 'query-named-block-nodes', arguments: { flat: true } };
const setup = (dir: string) => {
  run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '1M'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', 'c.qcow2', '1M'], dir);
  run('qemu-io', ['-c', 'write -P 5 0 64k', 'b.qcow2'], dir);
};
const daemonArgs = [
  ...blockdev({ driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2' } }),
  ...blockdev({ driver: 'file', 'node-name': 'cf', filename: '$DIR/c.qcow2' }),
  ...blockdev({ driver: 'qcow2', 'node-name': 'c', file: 'cf' }),
];

describe.skipIf(!hasQsd())('blockdev-reopen against qemu-storage-daemon 7.2', () => {
  it('errors: argument checks, unknown nodes, the missing backing, unchangeable options', async () => {
    const r = await both('reopen-errors', setup, daemonArgs, [
      cap,
      reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f', 'read-only': true }),
      reopen({ driver: 'qcow2', 'node-name': 'q' }),
      reopen({ driver: 'qcow2', 'node-name': 'zz', file: 'f' }),
      reopen({ driver: 'qcow2', file: 'f' }),
      reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f', bogus: 1 }),
      reopen('q'),
      { execute: 'blockdev-reopen', arguments: {} },
      { execute: 'blockdev-reopen', arguments: { options: {} } },
      reopen({ driver: 'file', 'node-name': 'f', filename: '$DIR/b.qcow2' }),
      reopen({ driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2', aio: 'native' }),
      reopen({ driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2', 'read-only': true }),
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', discard: 'unmap', 'detect-zeroes': 'unmap' }),
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', 'detect-zeroes': 'unmap' }),
      reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f', backing: 'zz' }),
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', backing: 'q' }),
      reopen({ driver: 'raw', 'node-name': 'c', file: 'cf' }),
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', 'l2-cache-size': 1, 'refcount-cache-size': 1, 'cache-size': 1 }),
      nodes,
    ]);
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'c.qcow2']);
  }, 60_000);

  it('read-only <-> read-write, run-time options, backing dropped and replaced, file replaced', async () => {
    const write = (node: string, pattern: number): Step => ({
      execute: 'block-export-add', arguments: { type: 'nbd', id: `w${pattern}`, 'node-name': node, writable: true },
    });
    const r = await both('reopen-changes', setup, daemonArgs, [
      cap,
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', 'read-only': true }),
      nodes,
      reopen({ driver: 'file', 'node-name': 'cf', filename: '$DIR/c.qcow2', 'read-only': true }),
      nodes,
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf' }),
      reopen({ driver: 'file', 'node-name': 'cf', filename: '$DIR/c.qcow2' }, { driver: 'qcow2', 'node-name': 'c', file: 'cf' }),
      nodes,
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', 'lazy-refcounts': true, 'cache-clean-interval': 5, 'pass-discard-other': true }),
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', discard: 'unmap', 'detect-zeroes': 'unmap', 'read-only': false }),
      nodes,
      reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f', backing: null }),
      nodes,
      reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f', backing: 'c' }),
      nodes,
      reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f' }),
      reopen({ driver: 'qcow2', 'node-name': 'c', file: 'cf', backing: 'q' }),
      reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f', backing: null, 'read-only': true }),
      nodes,
      reopen({ driver: 'qcow2', 'node-name': 'q', file: 'f', backing: null }),
      reopen({ driver: 'qcow2', 'node-name': 'q', backing: null, file: { driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2', 'read-only': true } }),
      reopen({ driver: 'qcow2', 'node-name': 'q', backing: null, file: { driver: 'file', 'node-name': 'f', filename: '$DIR/b.qcow2' } }),
      reopen({ driver: 'qcow2', 'node-name': 'q', backing: null, 'read-only': true, file: { driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2' } }),
      nodes,
      reopen({ driver: 'qcow2', 'node-name': 'q', backing: null, file: { driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2' } }),
      nodes,
      { execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } } },
      write('q', 1),
      { execute: 'block-export-del', arguments: { id: 'w1' } },
    ]);
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'c.qcow2']);
  }, 60_000);
});
