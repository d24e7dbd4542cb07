/**
 * qcow2 runtime options given to qemu-io's `open -o` (iotests 103-style cache
 * options, overlap-check as a template or per metadata kind,
 * cache-clean-interval's range) against qemu-io 7.2: the same stdout, stderr
 * and exit code (the value our errors carry as detail is not printed).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';

describe('qemu-io open -o with qcow2 options vs qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 in.qcow2 4M');
      sh(`qemu-io -c 'write -P 42 0 64k' in.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 -b in.qcow2 -F qcow2 top.qcow2');
    });
  });
  afterAll(() => fx.dispose());

  const same = [
    'l2-cache-size=1M,refcount-cache-size=1M,cache-size=1M',
    'l2-cache-size=1M,cache-size=512k',
    'refcount-cache-size=1M,cache-size=512k',
    'l2-cache-size=512k,cache-size=1M',
    'cache-clean-interval=-1',
    'cache-clean-interval=4294967296',
    'cache-clean-interval=4294967295',
    'cache-clean-interval=0',
    'overlap-check=foo',
    'overlap-check=cached',
    'overlap-check.template=all',
    'overlap-check.template=foo',
    'overlap-check.inactive-l2=off,overlap-check.main-header=on',
    'overlap-check.bogus=on',
    'cache-clean-interval=x',
    'overlap-check.inactive-l2=x',
    'lazy-refcounts=maybe',
  ];
  for (const o of same) {
    it(`open -o ${o}`, async () => {
      const g = await golden(fx, { tool: 'io', args: words(`-c 'open -o ${o} in.qcow2' -c 'read -P 42 0 4k'`) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  // The filename names the file child, merged with file.* options given beside it (iotest 033).
  for (const line of [
    "-c 'open -o driver=qcow2,file.align=4k blkdebug::in.qcow2' -c 'read -P 42 0 4k' -c 'write -P 7 512 1k' -c 'read -P 7 512 1k'",
    "-c 'open -o driver=qcow2,file.driver=file in.qcow2' -c 'read -P 42 0 4k'",
    // The backing file of an image under blkdebug lives beside the image, on its protocol.
    "-c 'open blkdebug::top.qcow2' -c 'read -P 42 0 4k' -c 'write -P 5 4k 4k'",
  ]) {
    it(line, async () => {
      const g = await golden(fx, { tool: 'io', args: words(line), sameImages: ['in.qcow2'] });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});
