/**
 * Storing persistent bitmaps keeps the clusters of those whose bits did not
 * change since they were loaded (or last stored) and rewrites the others:
 * QEMU reads both kinds back with the right dirty extents, `qemu-img check`
 * finds nothing wrong, and a bitmap changed in any way (a write marking it,
 * clear, merge, an undone clear) is stored anew.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { join } from 'node:path';
import { addDirtyBitmap, lookupDirtyBitmap } from '../../../src/core/dirty-bitmap.js';
import type { Qcow2Image } from '../../../src/formats/qcow2/qcow2.js';
import { fileGraph, openQcow2, qemuCheck, qemuImg, qemuIo, tempDir } from './helpers.js';
import { qemuDirtyExtents } from './bitmap-persist.js';

const t = tempDir();
afterAll(() => t.cleanup());

/** Each bitmap's table offset in the image, from a read-only open of ours. */
async function tableOffsets(file: string): Promise<Record<string, number>> {
  const graph = fileGraph();
  const bb = await openQcow2(graph, file, true);
  const img = bb.node.instance as Qcow2Image;
  const out = Object.fromEntries(img.bitmaps.map((b) => [b.name, b.tableOffset]));
  await bb.close();
  await graph.closeAll();
  return out;
}

function image(name: string): string {
  const f = join(t.dir, name);
  qemuImg('create', '-q', '-f', 'qcow2', f, '16M');
  for (const b of ['a', 'b', 'c', 'd']) qemuImg('bitmap', '--add', '-g', '65536', f, b);
  qemuIo(f, ['write 0 64k', 'write 1M 192k']);
  qemuImg('bitmap', '--disable', f, 'b');
  qemuImg('bitmap', '--disable', f, 'c');
  qemuImg('bitmap', '--disable', f, 'd');
  return f;
}

describe('qcow2 bitmap store: unchanged bitmaps keep their clusters', () => {
  it('a session that changes a (writes), c (clear with undo) and d (merge) and leaves b alone', async () => {
    const f = image('keep.qcow2');
    const before = await tableOffsets(f);
    const graph = fileGraph();
    const bb = await openQcow2(graph, f);
    // a is enabled: the write marks it. b, c, d are disabled.
    await bb.write(8 << 20, new Uint8Array(4096).fill(1));
    const undo = lookupDirtyBitmap(bb.node, 'c').clear(true);
    undo.undo();
    const e = addDirtyBitmap(bb.node, 'e', { granularity: 65536 });
    e.setDirty(12 << 20, 65536);
    lookupDirtyBitmap(bb.node, 'd').merge([e]);
    await bb.close();
    await graph.closeAll();

    const after = await tableOffsets(f);
    expect(after['b']).toBe(before['b']);
    for (const n of ['a', 'c', 'd']) expect(after[n], n).not.toBe(before[n]);
    const chk = qemuCheck(f);
    expect([chk['check-errors'], chk.leaks ?? 0, chk.corruptions ?? 0]).toEqual([0, 0, 0]);
    const first: [number, number][] = [[0, 65536], [1 << 20, 196608]];
    expect(await qemuDirtyExtents(f, 'a')).toEqual([...first, [8 << 20, 65536]]);
    expect(await qemuDirtyExtents(f, 'b')).toEqual(first);
    expect(await qemuDirtyExtents(f, 'c')).toEqual(first);
    expect(await qemuDirtyExtents(f, 'd')).toEqual([...first, [12 << 20, 65536]]);
  }, 60_000);

  it('a kept bitmap stays valid across sessions, and a later change stores it anew', async () => {
    const f = image('later.qcow2');
    const start = await tableOffsets(f);
    for (let round = 0; round < 2; round++) {
      const graph = fileGraph();
      const bb = await openQcow2(graph, f);
      await bb.close();
      await graph.closeAll();
      expect(await tableOffsets(f)).toEqual(start);
    }
    const graph = fileGraph();
    const bb = await openQcow2(graph, f);
    lookupDirtyBitmap(bb.node, 'b').setDirty(4 << 20, 1);
    await bb.close();
    await graph.closeAll();
    const now = await tableOffsets(f);
    expect(now['b']).not.toBe(start['b']);
    expect(now['c']).toBe(start['c']);
    expect(await qemuDirtyExtents(f, 'b')).toEqual([[0, 65536], [1 << 20, 196608], [4 << 20, 65536]]);
    expect(qemuCheck(f)['check-errors']).toBe(0);
    qemuImg('check', f);
  }, 60_000);
});
