/**
 * The same QMP scripts against qemu-storage-daemon 7.2 and `diskworker
 * daemon`, over copies of the same qcow2 images: replies and events equal
 * after masking timestamps, generated node names and directories; the images
 * afterwards equal (qemu-img compare) and clean (qemu-img check).
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, compareImages, expectImagesEqualAndClean, hasQsd, jobReaches, run, sortNodes, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const qcow2 = (dir: string, name: string, size = '1M', extra: string[] = []) => run('qemu-img', ['create', '-f', 'qcow2', ...extra, name, size], dir);
const write = (dir: string, name: string, pattern: number, offset: string, len: string) => run('qemu-io', ['-c', `write -P ${pattern} ${offset} ${len}`, name], dir);

describe.skipIf(!hasQsd())('diskworker daemon against qemu-storage-daemon 7.2', () => {
  it('blockdev-add of qcow2 over file, its errors, query-named-block-nodes and blockdev-del', async () => {
    const r = await both(
      'blockdev',
      (dir) => {
        qcow2(dir, 'a.qcow2');
        write(dir, 'a.qcow2', 7, '0', '64k');
      },
      [],
      [
        cap,
        { execute: 'blockdev-add', arguments: { 'node-name': 'f', driver: 'file', filename: '$DIR/a.qcow2' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'q', driver: 'qcow2', file: 'f' }, id: 7 },
        { execute: 'blockdev-add', arguments: { 'node-name': 'x' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'x', driver: 'qcow2', file: 'f', bogus: 1 } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'q', driver: 'qcow2', file: 'f' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'x', driver: 'qcow2', file: 'f', 'read-only': 'yes' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'x', driver: 'nosuch' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'x', driver: 'file' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'x', driver: 'qcow2', file: { driver: 'file', filename: '$DIR/a.qcow2', nope: true } } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'x', driver: 'qcow2', file: 5 } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'x', driver: 'file', filename: '$DIR/a.qcow2', 'detect-zeroes': 'sometimes' } },
        { execute: 'blockdev-add', arguments: { driver: 'file', filename: '$DIR/a.qcow2' } },
        { execute: 'query-named-block-nodes' },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
        { execute: 'blockdev-del', arguments: { 'node-name': 'f' } },
        { execute: 'blockdev-del', arguments: { 'node-name': 'zz' } },
        { execute: 'blockdev-del', arguments: { 'node-name': 'q' } },
        { execute: 'blockdev-del', arguments: { 'node-name': 'f' } },
        { execute: 'query-named-block-nodes' },
      ],
    );
    const norm = (x: typeof r.qemu) => x.replies.map(sortNodes);
    expect(norm(r.ours)).toEqual(norm(r.qemu));
    expect(r.ours.events).toEqual(r.qemu.events);
    expect(r.ours.code).toBe(r.qemu.code);
    expectImagesEqualAndClean(r, ['a.qcow2']);
  }, 60_000);

  it('dirty bitmaps: add, merge, clear, enable, disable, remove and their errors; persistent ones stored', async () => {
    const r = await both(
      'bitmaps',
      (dir) => qcow2(dir, 'a.qcow2'),
      ['--blockdev', '{"driver":"qcow2","node-name":"q","file":{"driver":"file","node-name":"f","filename":"$DIR/a.qcow2"}}'],
      [
        cap,
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'b', persistent: true } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'b' } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'c', granularity: 1000 } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'c', granularity: -1 } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: '' } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'zz', name: 'c' } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'f', name: 'p', persistent: true } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'c', granularity: 4096, disabled: true } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'd', persistent: 'yes' } },
        { execute: 'block-dirty-bitmap-merge', arguments: { node: 'q', target: 'b', bitmaps: ['c', { node: 'q', name: 'c' }] } },
        { execute: 'block-dirty-bitmap-merge', arguments: { node: 'q', target: 'b', bitmaps: ['zz'] } },
        { execute: 'block-dirty-bitmap-merge', arguments: { node: 'q', target: 'b', bitmaps: [1] } },
        { execute: 'block-dirty-bitmap-merge', arguments: { node: 'q', target: 'zz', bitmaps: [] } },
        { execute: 'block-dirty-bitmap-merge', arguments: { node: 'q', target: 'b', bitmaps: [{ node: 'nn', name: 'c' }] } },
        { execute: 'block-dirty-bitmap-clear', arguments: { node: 'q', name: 'zz' } },
        { execute: 'block-dirty-bitmap-clear', arguments: { node: 'zz', name: 'b' } },
        { execute: 'block-dirty-bitmap-clear', arguments: { node: 'q', name: 'b' } },
        { execute: 'block-dirty-bitmap-enable', arguments: { node: 'q', name: 'c' } },
        { execute: 'block-dirty-bitmap-disable', arguments: { node: 'q', name: 'c' } },
        { execute: 'block-dirty-bitmap-disable', arguments: { node: 'q', name: 'zz' } },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
        { execute: 'block-dirty-bitmap-remove', arguments: { node: 'q', name: 'c' } },
        { execute: 'block-dirty-bitmap-remove', arguments: { node: 'q', name: 'c' } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'gone', persistent: true } },
        { execute: 'block-dirty-bitmap-remove', arguments: { node: 'q', name: 'gone' } },
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2']);
    const info = (dir: string) => run('qemu-img', ['info', '--output=json', `${dir}/a.qcow2`], dir);
    const bitmaps = (dir: string) => (JSON.parse(info(dir)) as { 'format-specific': { data: { bitmaps?: Json } } })['format-specific'].data.bitmaps;
    expect(bitmaps(r.ours.dir)).toEqual(bitmaps(r.qemu.dir));
    expect(bitmaps(r.ours.dir)).toEqual([{ flags: ['auto'], name: 'b', granularity: 65536 }]);
  }, 60_000);

  it('a persistent bitmap added on a read-only node: accepted, then lost at exit with the same warning', async () => {
    const r = await both(
      'bitmaps-read-only',
      (dir) => qcow2(dir, 'a.qcow2'),
      ['--blockdev', '{"driver":"qcow2","node-name":"q","read-only":true,"file":{"driver":"file","filename":"$DIR/a.qcow2"}}'],
      [cap, { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'p', persistent: true } }, { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 't' } }],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    const lost = (e: string) => e.split('\n').filter((l) => l.includes('Lost persistent bitmaps'));
    expect(lost(r.qemu.stderr)).toEqual(["qemu-storage-daemon: Lost persistent bitmaps during inactivation of node 'q': No write access"]);
    expect(lost(r.ours.stderr).map((l) => l.replace(/^[^:]*:/, 'qemu-storage-daemon:'))).toEqual(lost(r.qemu.stderr));
    expectImagesEqualAndClean(r, ['a.qcow2']);
  }, 60_000);

  it('NBD exports: nbd-server-start / -stop, block-export-add / -del, query-block-exports, their errors and events', async () => {
    const add = (o: Json) => ({ execute: 'block-export-add', arguments: o });
    const r = await both(
      'exports',
      (dir) => qcow2(dir, 'a.qcow2'),
      ['--blockdev', '{"driver":"qcow2","node-name":"q","file":{"driver":"file","filename":"$DIR/a.qcow2"}}'],
      [
        cap,
        { execute: 'query-block-exports' },
        add({ type: 'nbd', id: 'e1', 'node-name': 'q' }),
        { execute: 'nbd-server-stop' },
        { execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: {} } } },
        { execute: 'nbd-server-start', arguments: { addr: { type: 'unix' } } },
        { execute: 'nbd-server-start', arguments: { addr: { type: 'carrier-pigeon', data: {} } } },
        { execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } }, 'max-connections': -1 } },
        { execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } } },
        { execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: '$DIR/other.sock' } } } },
        add({ type: 'nbd', id: 'e1', 'node-name': 'q' }),
        add({ type: 'nbd', id: 'e1', 'node-name': 'q' }),
        add({ type: 'nbd', id: 'e2', 'node-name': 'q' }),
        add({ type: 'nbd', id: 'e2', 'node-name': 'zz' }),
        add({ type: 'nbd', id: '2x', 'node-name': 'q' }),
        add({ type: 'nbd', id: 'e2', 'node-name': 'q', name: 'w', bitmaps: ['nope'] }),
        add({ type: 'nbd', id: 'e2', 'node-name': 'q', name: 'w', bitmaps: [{ node: 'zz', name: 'b' }] }),
        add({ type: 'nbd', id: 'e2', 'node-name': 'q', name: 'w', foo: 1 }),
        add({ type: 'nbd', id: 'e2' }),
        add({ type: 'fuse', id: 'e3', 'node-name': 'q' }),
        add({ type: 'tape', id: 'e3', 'node-name': 'q' }),
        add({ id: 'e3', 'node-name': 'q' }),
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: 'b' } },
        add({ type: 'nbd', id: 'e2', 'node-name': 'q', name: 'w', writable: true, description: 'the w export', bitmaps: ['b'], 'allocation-depth': true }),
        { execute: 'block-dirty-bitmap-clear', arguments: { node: 'q', name: 'b' } },
        { execute: 'query-block-exports' },
        { execute: 'block-export-del', arguments: { id: 'zz' } },
        { execute: 'block-export-del', arguments: { id: 'e2', mode: 'gentle' } },
        { execute: 'block-export-del', arguments: { id: 'e2' } },
        { execute: 'block-dirty-bitmap-clear', arguments: { node: 'q', name: 'b' } },
        { execute: 'query-block-exports' },
        { execute: 'nbd-server-stop' },
        { execute: 'nbd-server-stop' },
        { execute: 'query-block-exports' },
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2']);
  }, 60_000);

  it('internal snapshots: create, delete and their errors', async () => {
    const r = await both(
      'snapshots',
      (dir) => {
        qcow2(dir, 'a.qcow2');
        write(dir, 'a.qcow2', 1, '0', '128k');
        run('qemu-img', ['create', '-f', 'raw', 'r.img', '1M'], dir);
      },
      [
        '--blockdev', 'driver=file,node-name=f,filename=$DIR/a.qcow2',
        '--blockdev', 'driver=qcow2,node-name=q,file=f',
        '--blockdev', 'driver=file,node-name=rf,filename=$DIR/r.img',
        '--blockdev', 'driver=raw,node-name=r,file=rf',
        '--blockdev', 'driver=file,node-name=ro,filename=$DIR/a.qcow2,read-only=on,force-share=on',
      ],
      [
        cap,
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'q', name: 's1' } },
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'q', name: 's1' } },
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'q', name: '' } },
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'zz', name: 's' } },
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'f', name: 's' } },
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'r', name: 's' } },
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'ro', name: 's' } },
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'q', name: 2 } },
        { execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'q', name: 's2' } },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
        { execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: 'q', name: 's1' } },
        { execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: 'q', name: 's1' } },
        { execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: 'q' } },
        { execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: 'q', id: '9' } },
        { execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: 'q', id: '2', name: 'nope' } },
        { execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: 'f', name: 's2' } },
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expectImagesEqualAndClean(r, ['a.qcow2']);
    const names = (dir: string) => run('qemu-img', ['snapshot', '-l', `${dir}/a.qcow2`], dir).split('\n').slice(2).map((l) => l.split(/\s+/).slice(0, 3).join(' '));
    expect(names(r.ours.dir)).toEqual(names(r.qemu.dir));
  }, 60_000);

  it('block-stream to completion: the event sequence, the chain afterwards', async () => {
    const r = await both(
      'stream',
      (dir) => {
        qcow2(dir, 'base.qcow2');
        write(dir, 'base.qcow2', 1, '0', '192k');
        qcow2(dir, 'top.qcow2', '1M', ['-b', 'base.qcow2', '-F', 'qcow2']);
        write(dir, 'top.qcow2', 2, '64k', '64k');
      },
      ['--blockdev', '{"driver":"qcow2","node-name":"top","file":{"driver":"file","filename":"$DIR/top.qcow2"}}'],
      [
        cap,
        { execute: 'block-stream', arguments: { device: 'top' } },
        { execute: 'block-stream', arguments: { 'job-id': 's', device: 'top', base: 'nope.qcow2' } },
        { execute: 'block-stream', arguments: { 'job-id': 's', device: 'top', 'backing-file': 'x' } },
        { execute: 'block-stream', arguments: { 'job-id': 's', device: 'top', speed: 0 } },
        jobReaches('s', 'null'),
        { execute: 'query-jobs' },
        { execute: 'query-named-block-nodes' },
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['top.qcow2', 'base.qcow2']);
    const backing = (dir: string) => run('qemu-img', ['info', `${dir}/top.qcow2`], dir).includes('backing file');
    expect(backing(r.ours.dir)).toBe(false);
    expect(backing(r.qemu.dir)).toBe(false);
  }, 60_000);

  it('blockdev-mirror to ready, job-pause / job-resume, job-complete; events and the copy', async () => {
    const r = await both(
      'mirror',
      (dir) => {
        qcow2(dir, 'src.qcow2');
        write(dir, 'src.qcow2', 3, '0', '128k');
        write(dir, 'src.qcow2', 4, '512k', '64k');
        qcow2(dir, 'dst.qcow2');
      },
      [
        '--blockdev', '{"driver":"qcow2","node-name":"src","file":{"driver":"file","filename":"$DIR/src.qcow2"}}',
        '--blockdev', '{"driver":"qcow2","node-name":"dst","file":{"driver":"file","filename":"$DIR/dst.qcow2"}}',
      ],
      [
        cap,
        { execute: 'blockdev-mirror', arguments: { 'job-id': 'm', device: 'src', target: 'zz', sync: 'full' } },
        { execute: 'blockdev-mirror', arguments: { 'job-id': 'm', device: 'src', target: 'dst', sync: 'sideways' } },
        { execute: 'blockdev-mirror', arguments: { 'job-id': 'm', device: 'src', target: 'dst', sync: 'full', speed: 0 } },
        jobReaches('m', 'ready'),
        { execute: 'blockdev-mirror', arguments: { 'job-id': 'm', device: 'src', target: 'dst', sync: 'full' } },
        { execute: 'job-pause', arguments: { id: 'm' } },
        jobReaches('m', 'standby'),
        { execute: 'job-pause', arguments: { id: 'm' } },
        { execute: 'query-jobs' },
        { execute: 'block-job-cancel', arguments: { device: 'm' } },
        { execute: 'job-resume', arguments: { id: 'm' } },
        { execute: 'job-resume', arguments: { id: 'm' } },
        { execute: 'job-finalize', arguments: { id: 'm' } },
        { execute: 'job-complete', arguments: { id: 'm' } },
        jobReaches('m', 'null'),
        { execute: 'query-block-jobs' },
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['src.qcow2', 'dst.qcow2']);
    expect(compareImages(`${r.ours.dir}/src.qcow2`, `${r.ours.dir}/dst.qcow2`).code).toBe(0);
  }, 60_000);

  it('a ready mirror: query-block-jobs, set-speed, the filter node, operations its blockers refuse, a soft cancel', async () => {
    const r = await both(
      'mirror-ready',
      (dir) => {
        qcow2(dir, 'a.qcow2');
        write(dir, 'a.qcow2', 5, '0', '128k');
        qcow2(dir, 'b.qcow2');
      },
      [
        '--blockdev', '{"driver":"qcow2","node-name":"a","file":{"driver":"file","filename":"$DIR/a.qcow2"}}',
        '--blockdev', '{"driver":"qcow2","node-name":"b","file":{"driver":"file","filename":"$DIR/b.qcow2"}}',
      ],
      [
        cap,
        { execute: 'blockdev-mirror', arguments: { 'job-id': 'm', device: 'a', target: 'b', sync: 'full', 'filter-node-name': 'mf' } },
        jobReaches('m', 'ready'),
        { execute: 'query-block-jobs' },
        { execute: 'block-job-set-speed', arguments: { device: 'm', speed: -5 } },
        { execute: 'block-job-set-speed', arguments: { device: 'm', speed: 1000000 } },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
        { execute: 'query-named-block-nodes' },
        { execute: 'blockdev-del', arguments: { 'node-name': 'a' } },
        { execute: 'block_resize', arguments: { 'node-name': 'a', size: 2097152 } },
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'a', name: 'x' } },
        { execute: 'block-job-pause', arguments: { device: 'm' } },
        jobReaches('m', 'standby'),
        { execute: 'block-job-cancel', arguments: { device: 'm' } },
        { execute: 'block-job-resume', arguments: { device: 'm' } },
        { execute: 'block-job-cancel', arguments: { device: 'm' } },
        jobReaches('m', 'null'),
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2']);
  }, 60_000);

  it('block-commit: an intermediate commit, then an active commit with manual dismiss', async () => {
    const r = await both(
      'commit',
      (dir) => {
        qcow2(dir, 'base.qcow2');
        write(dir, 'base.qcow2', 1, '0', '64k');
        qcow2(dir, 'mid.qcow2', '1M', ['-b', 'base.qcow2', '-F', 'qcow2']);
        write(dir, 'mid.qcow2', 2, '64k', '64k');
        qcow2(dir, 'top.qcow2', '1M', ['-b', 'mid.qcow2', '-F', 'qcow2']);
        write(dir, 'top.qcow2', 3, '128k', '64k');
      },
      ['--blockdev', '{"driver":"qcow2","node-name":"top","file":{"driver":"file","filename":"$DIR/top.qcow2"},"backing":{"driver":"qcow2","node-name":"mid","file":{"driver":"file","filename":"$DIR/mid.qcow2"},"backing":{"driver":"qcow2","node-name":"base","file":{"driver":"file","filename":"$DIR/base.qcow2"}}}}'],
      [
        cap,
        { execute: 'block-commit', arguments: { 'job-id': 'c', device: 'nope' } },
        { execute: 'block-commit', arguments: { 'job-id': 'c', device: 'mid' } },
        { execute: 'block-commit', arguments: { 'job-id': 'c', device: 'top', 'top-node': 'base', 'base-node': 'base' } },
        { execute: 'block-commit', arguments: { 'job-id': 'c', device: 'top', 'top-node': 'mid', top: 'x' } },
        { execute: 'block-commit', arguments: { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'base-node': 'base' } },
        jobReaches('c', 'null'),
        { execute: 'block-commit', arguments: { 'job-id': 'c2', device: 'top', 'auto-dismiss': false } },
        jobReaches('c2', 'ready'),
        { execute: 'job-finalize', arguments: { id: 'c2' } },
        { execute: 'job-dismiss', arguments: { id: 'c2' } },
        { execute: 'block-job-complete', arguments: { device: 'c2' } },
        jobReaches('c2', 'concluded'),
        { execute: 'query-jobs' },
        { execute: 'block-job-dismiss', arguments: { id: 'c2' } },
        { execute: 'query-jobs' },
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['top.qcow2', 'mid.qcow2', 'base.qcow2']);
  }, 60_000);

  it('blockdev-backup: full, then incremental with a bitmap; its errors', async () => {
    const r = await both(
      'backup',
      (dir) => {
        qcow2(dir, 'src.qcow2');
        write(dir, 'src.qcow2', 5, '0', '128k');
        qcow2(dir, 'full.qcow2');
        qcow2(dir, 'inc.qcow2');
      },
      [
        '--blockdev', '{"driver":"qcow2","node-name":"src","file":{"driver":"file","filename":"$DIR/src.qcow2"}}',
        '--blockdev', '{"driver":"qcow2","node-name":"full","file":{"driver":"file","filename":"$DIR/full.qcow2"}}',
        '--blockdev', '{"driver":"qcow2","node-name":"inc","file":{"driver":"file","filename":"$DIR/inc.qcow2"}}',
      ],
      [
        cap,
        { execute: 'block-dirty-bitmap-add', arguments: { node: 'src', name: 'bm' } },
        { execute: 'blockdev-backup', arguments: { 'job-id': 'k', device: 'src', target: 'full', sync: 'full' } },
        jobReaches('k', 'null'),
        { execute: 'blockdev-backup', arguments: { 'job-id': 'k2', device: 'src', target: 'inc', sync: 'incremental', bitmap: 'bm' } },
        jobReaches('k2', 'null'),
        { execute: 'blockdev-backup', arguments: { 'job-id': 'k3', device: 'src', target: 'inc', sync: 'bitmap' } },
        { execute: 'blockdev-backup', arguments: { 'job-id': 'k3', device: 'src', target: 'inc', sync: 'full', 'bitmap-mode': 'never' } },
        { execute: 'blockdev-backup', arguments: { 'job-id': 'k3', device: 'src', target: 'nope', sync: 'full' } },
        { execute: 'blockdev-backup', arguments: { 'job-id': 'k3', device: 'src', target: 'inc', sync: 'full', compress: 'yes' } },
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    expectImagesEqualAndClean(r, ['src.qcow2', 'full.qcow2', 'inc.qcow2']);
    expect(compareImages(`${r.ours.dir}/src.qcow2`, `${r.ours.dir}/full.qcow2`).code).toBe(0);
  }, 60_000);

  it('protocol and argument errors, unknown jobs and commands, negotiation', async () => {
    const r = await both(
      'errors',
      (dir) => qcow2(dir, 'a.qcow2'),
      ['--blockdev', 'driver=file,node-name=f,filename=$DIR/a.qcow2', '--blockdev', 'driver=qcow2,node-name=q,file=f'],
      [
        { execute: 'query-named-block-nodes' },
        { execute: 'qmp_capabilities', arguments: { enable: ['nope'] } },
        { execute: 'qmp_capabilities', id: 'neg' },
        { execute: 'qmp_capabilities', id: { deep: [1] } },
        { execute: 'no-such-command', id: 3 },
        { execute: 'human-monitor-command', arguments: { 'command-line': 'info' } },
        { execute: 'block_resize', arguments: { 'node-name': 'q', size: 'x' } },
        { execute: 'block_resize', arguments: { 'node-name': 'q', size: 1.5 } },
        { execute: 'block_resize', arguments: { 'node-name': 'q' } },
        { execute: 'block_resize', arguments: { device: 'q', size: 2097152 } },
        { execute: 'block_resize', arguments: { 'node-name': 'q', size: 2097152, extra: 1 } },
        { execute: 'block_resize', arguments: { 'node-name': 'q', size: 2097152 } },
        { execute: 'query-jobs', arguments: { x: 1 } },
        '{"execute": "query-jobs", "arguments": 1}',
        '{"execute": 1}',
        '{"execute": "query-jobs", "what": 1}',
        '{"arguments": {}}',
        '[1, 2]',
        { execute: 'job-pause', arguments: { id: 'nope' } },
        { execute: 'job-resume', arguments: { id: 'nope' } },
        { execute: 'job-cancel', arguments: { id: 'nope' } },
        { execute: 'job-complete', arguments: { id: 'nope' } },
        { execute: 'job-finalize', arguments: { id: 'nope' } },
        { execute: 'job-dismiss', arguments: { id: 'nope' } },
        { execute: 'job-pause', arguments: { id: 5 } },
        { execute: 'block-job-set-speed', arguments: { device: 'nope', speed: 1 } },
        { execute: 'block-job-set-speed', arguments: { device: 'nope', speed: 'fast' } },
        { execute: 'block-job-pause', arguments: { device: 'nope' } },
        { execute: 'block-job-resume', arguments: { device: 'nope' } },
        { execute: 'block-job-cancel', arguments: { device: 'nope', force: true } },
        { execute: 'block-job-complete', arguments: { device: 'nope' } },
        { execute: 'block-job-finalize', arguments: { id: 'nope' } },
        { execute: 'block-job-dismiss', arguments: { id: 'nope' } },
        { execute: 'block-stream', arguments: { device: 'q' } },
        { execute: 'block-stream', arguments: { 'job-id': '1bad', device: 'q' } },
        { execute: 'block-stream', arguments: { 'job-id': 's', device: 'zz' } },
        { execute: 'query-block-jobs' },
        { execute: 'query-jobs' },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
      ],
    );
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expectImagesEqualAndClean(r, ['a.qcow2']);
  }, 60_000);
});
