/**
 * `img commit -b NAME` finds the base as QEMU's bdrv_find_backing_image does
 * (iotest 020): a relative name is taken relative to the directory of the
 * image whose backing file it is, so for a chain in a subdirectory
 * `-b sub/mid.qcow2` (relative to the cwd) is not found while `-b mid.qcow2`
 * is. Same output, exit code and images as qemu-img.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, hasQemu } from './harness.js';

describe.skipIf(!hasQemu())('img commit -b: names of the base', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('mkdir sub');
      sh('qemu-img create -q -f qcow2 sub/base.qcow2 1M');
      sh(`qemu-io -c 'write -P 1 0 64k' sub/base.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 sub/mid.qcow2');
      sh(`qemu-io -c 'write -P 2 64k 64k' sub/mid.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 sub/top.qcow2');
      sh(`qemu-io -c 'write -P 3 128k 64k' sub/top.qcow2 >/dev/null`);
    });
  });
  afterAll(() => fx.dispose());

  const images = ['sub/top.qcow2', 'sub/mid.qcow2', 'sub/base.qcow2'];
  for (const line of ['commit -b sub/mid.qcow2 sub/top.qcow2', 'commit -b mid.qcow2 sub/top.qcow2', 'commit -b base.qcow2 sub/top.qcow2', 'commit -b sub/base.qcow2 sub/top.qcow2']) {
    it(line, async () => {
      // qemu-img commit runs a mirror: which of its parallel writes allocates first varies
      // between QEMU's own runs, so only the contents are compared.
      const g = await golden(fx, { tool: 'img', sameMaps: false, args: line.split(' '), sameImages: images });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});
