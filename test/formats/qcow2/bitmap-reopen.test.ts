/**
 * Persistent bitmaps across a reopen from read-only to read-write: the image
 * becomes writable, our writes do not update the bitmaps, so they must be
 * marked in use on disk as a read-write open marks them (QEMU's
 * reopen_bitmaps_rw). The reference is qemu-io killed right after
 * `reopen -w` (before its close would store and clear the bitmaps); a full
 * session stores them on close, as qemu-io's does.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { BlockBackend } from '../../../src/node.js';
import { ours } from '../../cli/harness.js';
import { fileGraph, memGraph, qemuImg, tempDir } from './helpers.js';
import { expectBlockError } from '../../core/helpers.js';
import { qemuDirtyExtents } from './bitmap-persist.js';

interface InfoBitmap {
  name: string;
  flags: string[];
  granularity: number;
}

function bitmapsOf(file: string): InfoBitmap[] {
  const info = JSON.parse(qemuImg('info', '-U', '--output=json', file)) as {
    'format-specific': { data: { bitmaps?: InfoBitmap[] } };
  };
  return info['format-specific'].data.bitmaps ?? [];
}

describe('qcow2 persistent bitmaps and reopen read-write', () => {
  const t = tempDir();
  const base = t.path('base.qcow2');
  beforeAll(() => {
    qemuImg('create', '-q', '-f', 'qcow2', base, '64M');
    qemuImg('bitmap', '--add', base, 'b0');
    qemuImg('bitmap', '--add', '-g', '128k', '--disable', base, 'b1');
  });
  afterAll(() => t.cleanup());

  /** The flags qemu-io leaves on disk right after `reopen -w` of a read-only image. */
  function qemuAfterReopen(): InfoBitmap[] {
    const f = t.path('theirs.qcow2');
    copyFileSync(base, f);
    const r = spawnSync('qemu-io', ['-r', '-c', 'reopen -w', '-c', 'sigraise 9', f], { encoding: 'utf8' });
    expect(r.signal).toBe('SIGKILL');
    return bitmapsOf(f);
  }

  it('starts with valid bitmaps', () => {
    expect(bitmapsOf(base).map((b) => b.flags)).toEqual([['auto'], []]);
  });

  it('marks them in use while the reopened image is open, as qemu-io does', async () => {
    const expected = qemuAfterReopen();
    expect(expected.every((b) => b.flags.includes('in-use'))).toBe(true);

    const f = t.path('ours-graph.qcow2');
    copyFileSync(base, f);
    const graph = fileGraph();
    const node = await graph.open(f, { format: 'qcow2', readOnly: true });
    // Read-only: nothing changes on disk.
    expect(bitmapsOf(f)).toEqual(bitmapsOf(base));
    await graph.reopen([{ node, readOnly: false }]);
    expect(bitmapsOf(f)).toEqual(expected);
    const info = node.instance.getSpecificInfo?.();
    expect((info?.data['bitmaps'] as InfoBitmap[]).map((b) => b.flags)).toEqual(expected.map((b) => b.flags));
    await node.unref();
  });

  it('diskworker io -r -c "reopen -w" -c write stores them on close as qemu-io does (valid, the write marked)', async () => {
    const theirs = t.path('theirs-io.qcow2');
    copyFileSync(base, theirs);
    const q = spawnSync('qemu-io', ['-r', '-c', 'reopen -w', '-c', 'write 0 4k', theirs], { encoding: 'utf8' });
    expect(q.status).toBe(0);
    const f = t.path('ours-io.qcow2');
    copyFileSync(base, f);
    const r = await ours('io', ['-r', '-c', 'reopen -w', '-c', 'write 0 4k', f], t.dir);
    expect(r).toEqual({ code: 0, stdout: expect.stringContaining('wrote 4096/4096 bytes at offset 0') as unknown, stderr: '' });
    expect(bitmapsOf(f)).toEqual(bitmapsOf(theirs));
    expect(bitmapsOf(f).map((b) => b.flags)).toEqual([['auto'], []]);
    for (const name of ['b0', 'b1']) {
      expect(await qemuDirtyExtents(f, name, `${f}.sock`)).toEqual(await qemuDirtyExtents(theirs, name, `${theirs}.sock`));
    }
    expect(await qemuDirtyExtents(f, 'b0', `${f}.sock`)).toEqual([[0, 65536]]);
  });

  it('a reopen to read-only stores them at once, as qemu-io does (killed right after the reopen)', async () => {
    const theirs = t.path('theirs-ro.qcow2');
    copyFileSync(base, theirs);
    const q = spawnSync('qemu-io', ['-c', 'write 64k 4k', '-c', 'reopen -r', '-c', 'sigraise 9', theirs], { encoding: 'utf8' });
    expect(q.signal).toBe('SIGKILL');
    const f = t.path('ours-ro.qcow2');
    copyFileSync(base, f);
    const graph = fileGraph();
    const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: f } });
    await bb.write(65536, new Uint8Array(4096).fill(3));
    // As qemu-io's reopen does: the backend lets go of its write permission first.
    const node = bb.node;
    node.ref();
    await bb.close();
    await graph.reopen([{ node, readOnly: true }]);
    const ro = await BlockBackend.attach(graph, node, { name: '' });
    await node.unref();
    // What a crash now would leave: a copy of the file while it is open.
    const snap = t.path('ours-ro-snap.qcow2');
    copyFileSync(f, snap);
    expect(bitmapsOf(snap)).toEqual(bitmapsOf(theirs));
    expect(bitmapsOf(snap).map((b) => b.flags)).toEqual([['auto'], []]);
    for (const name of ['b0', 'b1']) {
      expect(await qemuDirtyExtents(snap, name, `${snap}.sock`)).toEqual(await qemuDirtyExtents(theirs, name, `${theirs}.sock`));
    }
    expect(await qemuDirtyExtents(snap, 'b0', `${snap}.sock`)).toEqual([[65536, 65536]]);
    await ro.close();
    expect(bitmapsOf(f)).toEqual(bitmapsOf(theirs));
  });

  it('a read-only session and a reopen to read-only keep them valid', async () => {
    const f = t.path('ro.qcow2');
    copyFileSync(base, f);
    const r = await ours('io', ['-r', '-c', 'reopen -r', '-c', 'read 0 4k', f], t.dir);
    expect(r.code).toBe(0);
    expect(bitmapsOf(f)).toEqual(bitmapsOf(base));
  });

  it('a failed marking is reported and refuses writes until a reopen succeeds', async () => {
    const { graph, storage } = memGraph();
    storage.create('img').writeRaw(0, readFileSync(base));
    const node = await graph.open('memory:img', { format: 'qcow2', readOnly: true });
    const mem = storage.get('img')!;
    mem.faults = { failAfterWrites: mem.writeCount, failCode: 'EIO' };
    await expectBlockError(graph.reopen([{ node, readOnly: false }]), 'EIO', /Failed to make dirty bitmaps writable: Injected EIO/);
    expect(node.readOnly).toBe(false);
    const bb = await BlockBackend.attach(graph, node);
    mem.faults = {};
    await expectBlockError(bb.write(0, new Uint8Array(512)), 'EPERM', /bitmaps could not be marked in use/);
    await bb.close();
    await graph.reopen([{ node, readOnly: false }]);
    const bb2 = await BlockBackend.attach(graph, node);
    await bb2.write(0, new Uint8Array(512).fill(1));
    await bb2.close();
    await node.unref();
  });
});
