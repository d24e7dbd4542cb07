/**
 * `img convert --bitmaps [--skip-broken-bitmaps]` against qemu-img 7.2: the
 * same messages and exit codes, the target's bitmaps listed by `qemu-img
 * info` with the same names, granularity and flags, and the same dirty
 * extents as qemu-nbd exports them (x-dirty-bitmap).
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Fixture, golden, hasQemu, words } from './harness.js';
import { infoBitmaps, qemuDirtyExtents } from '../formats/qcow2/bitmap-persist.js';

describe.skipIf(!hasQemu())('img convert --bitmaps', () => {
  const fx = new Fixture((_dir, sh) => {
    sh('qemu-img create -q -f qcow2 src.qcow2 64M');
    sh('qemu-img bitmap --add src.qcow2 b0');
    sh('qemu-img bitmap --add -g 128k src.qcow2 b1');
    sh("qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 10M 64k' -c 'write -z 20M 300k' src.qcow2");
    sh('qemu-img bitmap --disable src.qcow2 b1');
    sh("qemu-io -f qcow2 -c 'write -P 3 40M 4k' src.qcow2");
    sh('qemu-img create -q -f raw plain.raw 64M');
    // b2 left in use by a killed writer: inconsistent.
    sh('cp src.qcow2 broken.qcow2');
    sh('qemu-img bitmap --add broken.qcow2 b2');
    sh("qemu-io -f qcow2 -c 'write 0 4k' -c 'sigraise 9' broken.qcow2 || true");
    // mixed.qcow2: the three in use, and one added afterwards that is fine.
    sh('cp broken.qcow2 mixed.qcow2');
    sh('qemu-img bitmap --add mixed.qcow2 ok');
  });
  afterAll(() => fx.dispose());

  it('copies every persistent bitmap with its state and its dirty extents', async () => {
    const g = await golden(fx, { tool: 'img', args: words('convert --bitmaps -O qcow2 src.qcow2 dst.qcow2'), sameImages: ['dst.qcow2'] });
    expect(g.ours).toEqual(g.theirs);
    expect(g.imageDiffs).toEqual([]);
    // Both runs' directories: the last two copies the fixture made.
    const dq = join(fx.root, 'run0');
    const dd = join(fx.root, 'run1');
    expect(infoBitmaps(join(dd, 'dst.qcow2'))).toEqual(infoBitmaps(join(dq, 'dst.qcow2')));
    expect(infoBitmaps(join(dd, 'dst.qcow2')).map((b) => b.name)).toEqual(['b0', 'b1']);
    for (const name of ['b0', 'b1']) {
      const theirs = await qemuDirtyExtents(join(dq, 'dst.qcow2'), name, join(dq, `${name}.sock`));
      const ours = await qemuDirtyExtents(join(dd, 'dst.qcow2'), name, join(dd, `${name}.sock`));
      expect(ours).toEqual(theirs);
      expect(ours.length).toBeGreaterThan(0);
    }
  });

  for (const line of [
    'convert --bitmaps -O raw src.qcow2 dst.raw',
    'convert --bitmaps -O qcow2 plain.raw dst.qcow2',
    'convert --bitmaps -O qcow2 src.qcow2 src.qcow2 dst.qcow2',
    'convert --bitmaps -O qcow2 broken.qcow2 dst.qcow2',
    'convert --bitmaps --skip-broken-bitmaps -O qcow2 broken.qcow2 dst.qcow2',
    'convert --skip-broken-bitmaps -O qcow2 broken.qcow2 dst.qcow2',
    'convert --bitmaps -O qcow2 mixed.qcow2 dst.qcow2',
    'convert --bitmaps --skip-broken-bitmaps -O qcow2 mixed.qcow2 dst.qcow2',
  ]) {
    it(line, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  it('--skip-broken-bitmaps copies the consistent ones', async () => {
    const g = await golden(fx, { tool: 'img', args: words('convert --bitmaps --skip-broken-bitmaps -O qcow2 mixed.qcow2 dst.qcow2') });
    expect(g.ours).toEqual(g.theirs);
    const runs = Number(/run(\d+)$/.exec(fx.copy())![1]);
    const dq = join(fx.root, `run${runs - 2}`);
    const dd = join(fx.root, `run${runs - 1}`);
    expect(infoBitmaps(join(dd, 'dst.qcow2'))).toEqual(infoBitmaps(join(dq, 'dst.qcow2')));
    expect(infoBitmaps(join(dd, 'dst.qcow2')).map((b) => b.name)).toEqual(['ok']);
  });
});
