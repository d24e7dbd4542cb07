/**
 * drive-mirror and drive-backup (the forms that create their target image)
 * against qemu-storage-daemon 7.2: sync full / top / none, modes existing and
 * absolute-paths, a format given, argument and lookup errors; replies, job
 * events, the created images (qemu-img info of their backing files, the
 * contents by qemu-img compare, qemu-img check).
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { QmpClient, both, checkImage, compareImages, expectImagesEqualAndClean, startDaemon, twinDirs, hasQsd, jobReaches, run, sortNodes, stopAll, type Step } from './harness.js';

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

  it("drive-mirror sync none with a new image: refused by DiskWorker (QEMU's target gets the source as backing file)", async () => {
    const { ours: dir } = twinDirs(setup);
    const d = startDaemon('ours', dir, args.map((a) => a.replaceAll('$DIR', dir)));
    const c = await QmpClient.connect(d.sock);
    try {
      expect(await c.send({ execute: 'qmp_capabilities' })).toEqual({ return: {} });
      expect(await c.send({ execute: 'drive-mirror', arguments: { device: 'q', target: `${dir}/none.qcow2`, sync: 'none' } })).toEqual({
        error: { class: 'GenericError', desc: "DiskWorker's drive-mirror does not take sync 'none' with a new image" },
      });
    } finally {
      c.close();
      await d.stop();
    }
  }, 60_000);
});
