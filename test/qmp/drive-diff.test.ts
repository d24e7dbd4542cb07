/**
 * drive-mirror and drive-backup (the forms that create their target image)
 * against qemu-storage-daemon 7.2: sync full / top / none, modes existing and
 * absolute-paths (sync none onto a new image too), a format given, argument
 * and lookup errors; replies, job
 * events, the created images (qemu-img info of their backing files, the
 * contents by qemu-img compare, qemu-img check).
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, checkImage, compareImages, expectImagesEqualAndClean, hasQsd, jobReaches, run, sortNodes, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const setup = (dir: string) => {
  run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
  run('qemu-io', ['-c', 'write -P 1 0 128k', 'b.qcow2'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '1M'], dir);
  run('qemu-io', ['-c', 'write -P 2 64k 128k', 'a.qcow2'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', 'exist.qcow2', '1M'], dir);
  run('qemu-io', ['-c', 'write -P 9 512k 64k', 'exist.qcow2'], dir);
};
const args = ['--blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2' } })];
const info = (dir: string, name: string) => {
  const j = JSON.parse(run('qemu-img', ['info', '--output=json', name], dir)) as Record<string, unknown>;
  return { format: j.format, 'virtual-size': j['virtual-size'], 'backing-filename': (j['backing-filename'] as string | undefined)?.replaceAll(dir, '$DIR') };
};

describe.skipIf(!hasQsd())('drive-mirror and drive-backup against qemu-storage-daemon 7.2', () => {
  it('drive-mirror: full, top and existing targets to completion; its errors', async () => {
    const r = await both('drive-mirror', setup, args, [
      cap,
      { execute: 'drive-mirror', arguments: { device: 'zz', target: '$DIR/x.qcow2', sync: 'full' } },
      { execute: 'drive-mirror', arguments: { device: 'f', target: '$DIR/x.qcow2', sync: 'full' } },
      { execute: 'drive-mirror', arguments: { device: 'q', target: '$DIR/x.qcow2', sync: 'full', mode: 'bogus' } },
      { execute: 'drive-mirror', arguments: { device: 'q', target: '$DIR/x.qcow2' } },
      { execute: 'drive-mirror', arguments: { device: 'q', target: '$DIR/x.qcow2', sync: 'full', replaces: 'q' } },
      { execute: 'drive-mirror', arguments: { device: 'q', target: '$DIR/none/x.qcow2', sync: 'full' } },
      { execute: 'drive-mirror', arguments: { 'job-id': 'm1', device: 'q', target: '$DIR/full.qcow2', sync: 'full', 'node-name': 't1' } },
      jobReaches('m1', 'ready'),
      { execute: 'query-named-block-nodes', arguments: { flat: true } },
      { execute: 'job-complete', arguments: { id: 'm1' } },
      jobReaches('m1', 'null'),
      { execute: 'drive-mirror', arguments: { 'job-id': 'm2', device: 'q', target: '$DIR/top.qcow2', sync: 'top', format: 'qcow2' } },
      jobReaches('m2', 'ready'),
      { execute: 'block-job-cancel', arguments: { device: 'm2' } },
      jobReaches('m2', 'null'),
      { execute: 'drive-mirror', arguments: { 'job-id': 'm3', device: 'q', target: '$DIR/exist.qcow2', sync: 'full', mode: 'existing' } },
      jobReaches('m3', 'ready'),
      { execute: 'job-complete', arguments: { id: 'm3' } },
      jobReaches('m3', 'null'),
      { execute: 'query-named-block-nodes', arguments: { flat: true } },
    ]);
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    for (const n of ['full.qcow2', 'top.qcow2', 'exist.qcow2']) expect(info(r.ours.dir, n), n).toEqual(info(r.qemu.dir, n));
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'full.qcow2', 'top.qcow2']);
    // The existing target's old cluster: QEMU's mirror zeroes it through its BlockBackend, where
    // MAY_UNMAP is not masked by the node's discard mode, and frees it; ours keeps it as a zero
    // cluster. Same contents, both clean; the allocation differs by that cluster.
    expect(compareImages(`${r.qemu.dir}/exist.qcow2`, `${r.ours.dir}/exist.qcow2`)).toEqual({ code: 0, out: 'Images are identical.\n' });
    expect(checkImage(`${r.ours.dir}/exist.qcow2`).code).toBe(0);
  }, 60_000);

  it('drive-backup: full, top, none, existing, in a transaction; its errors', async () => {
    const r = await both('drive-backup', setup, args, [
      cap,
      { execute: 'drive-backup', arguments: { device: 'zz', target: '$DIR/x.qcow2', sync: 'full' } },
      { execute: 'drive-backup', arguments: { device: 'q', target: '$DIR/x.qcow2', sync: 'full', format: 'nosuch' } },
      { execute: 'drive-backup', arguments: { device: 'q', target: '$DIR/x.qcow2', sync: 'full', 'job-id': '1bad' } },
      { execute: 'drive-backup', arguments: { device: 'q', target: '$DIR/nope.qcow2', sync: 'full', mode: 'existing' } },
      { execute: 'drive-backup', arguments: { 'job-id': 'b1', device: 'q', target: '$DIR/full.qcow2', sync: 'full' } },
      jobReaches('b1', 'null'),
      { execute: 'drive-backup', arguments: { 'job-id': 'b2', device: 'q', target: '$DIR/top.qcow2', sync: 'top', format: 'qcow2' } },
      jobReaches('b2', 'null'),
      { execute: 'drive-backup', arguments: { 'job-id': 'b3', device: 'q', target: '$DIR/exist.qcow2', sync: 'full', mode: 'existing' } },
      jobReaches('b3', 'null'),
      { execute: 'transaction', arguments: { actions: [{ type: 'drive-backup', data: { 'job-id': 'b4', device: 'q', target: '$DIR/raw.img', sync: 'full', format: 'raw' } }] } },
      jobReaches('b4', 'null'),
      { execute: 'drive-backup', arguments: { 'job-id': 'b5', device: 'q', target: '$DIR/none.qcow2', sync: 'none' } },
      jobReaches('b5', 'running'),
      { execute: 'block-job-cancel', arguments: { device: 'b5' } },
      jobReaches('b5', 'null'),
      { execute: 'query-named-block-nodes', arguments: { flat: true } },
    ]);
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(r.ours.events).toEqual(r.qemu.events);
    for (const n of ['full.qcow2', 'top.qcow2', 'exist.qcow2', 'raw.img', 'none.qcow2']) expect(info(r.ours.dir, n), n).toEqual(info(r.qemu.dir, n));
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'full.qcow2', 'top.qcow2', 'exist.qcow2']);
  }, 60_000);

  it('drive-mirror sync none onto a new image: a guest write mirrored, the source its backing file from the end of the job', async () => {
    const job = (id: string, status: string): Step => jobReaches(id, status);
    const r = await both('drive-mirror-none', setup, args, [
      cap,
      { execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } } },
      { execute: 'block-export-add', arguments: { type: 'nbd', id: 'e', 'node-name': 'q', writable: true } },
      { execute: 'drive-mirror', arguments: { 'job-id': 'n1', device: 'q', target: '$DIR/none.qcow2', sync: 'none', format: 'qcow2', mode: 'absolute-paths' } },
      job('n1', 'ready'),
      { call: (dir) => run('qemu-io', ['-f', 'raw', '-c', 'write -P 7 128k 64k', '-c', 'write -P 8 0 4k', `nbd+unix:///q?socket=${dir}/nbd.sock`], dir) },
      { execute: 'block-export-del', arguments: { id: 'e' } },
      { wait: (e) => e.event === 'BLOCK_EXPORT_DELETED' },
      { execute: 'job-complete', arguments: { id: 'n1' } },
      job('n1', 'null'),
      { execute: 'query-named-block-nodes', arguments: { flat: true } },
      { execute: 'drive-mirror', arguments: { 'job-id': 'n2', device: 'q', target: '$DIR/none2.qcow2', sync: 'none' } },
      job('n2', 'ready'),
      // A soft cancel once ready: the target keeps the source as its backing file, the guest stays on the source.
      { execute: 'block-job-cancel', arguments: { device: 'n2' } },
      job('n2', 'null'),
      { execute: 'query-named-block-nodes', arguments: { flat: true } },
    ]);
    // The drains' standby / ready pairs differ (QEMU drains where our commands do not).
    const status = (e: Json | undefined) => ((e as { event?: string } | undefined)?.event === 'JOB_STATUS_CHANGE' ? (e as { data: { status: string } }).data.status : undefined);
    const undrained = (events: Json[]) => events.filter((e, i) => status(e) !== 'standby' && !(status(e) === 'ready' && status(events[i - 1]) === 'standby'));
    expect(r.ours.replies.map(sortNodes)).toEqual(r.qemu.replies.map(sortNodes));
    expect(undrained(r.ours.events)).toEqual(undrained(r.qemu.events));
    for (const name of ['none.qcow2', 'none2.qcow2']) expect(info(r.ours.dir, name)).toEqual(info(r.qemu.dir, name));
    expect(info(r.ours.dir, 'none.qcow2')['backing-filename']).toBe('$DIR/a.qcow2');
    // Host offsets left out: the two clusters' copies run in parallel, which lands first varies.
    const map = (dir: string, name: string) =>
      (JSON.parse(run('qemu-img', ['map', '--output=json', name], dir)) as Array<Record<string, unknown>>).map(({ offset: _offset, ...rest }) => rest);
    expect(map(r.ours.dir, 'none.qcow2')).toEqual(map(r.qemu.dir, 'none.qcow2'));
    expectImagesEqualAndClean(r, ['a.qcow2', 'b.qcow2', 'none.qcow2', 'none2.qcow2']);
  }, 60_000);
});
