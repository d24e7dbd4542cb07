/**
 * `img amend -p` against qemu-img 7.2: the progress steps of a refcount width
 * change (QEMU's walks over the refcount table, more of them when a walk's
 * allocations need yet another refblock, iotest 112), of an upgrade folded
 * with a width change, of a downgrade, and of a width change that fails at an
 * overflowing refcount. Golden: the same stdout byte for byte (every
 * "(x/100%)" step), the same messages, the same image afterwards.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';

describe('img amend -p vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      // 112's image: the first new 64-bit refblock is one entry short, so QEMU walks four times.
      sh('qemu-img create -q -f qcow2 -o refcount_bits=1,cluster_size=512 walks.qcow2 64k');
      sh(`qemu-io -f qcow2 -c "write 0 ${58 * 512}" walks.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 plain.qcow2 64M');
      sh('qemu-io -f qcow2 -c "write -P 1 0 1M" -c "write -P 2 32M 64k" plain.qcow2 >/dev/null');
      sh('qemu-img create -q -f qcow2 -o cluster_size=4096 small.qcow2 16M');
      sh('qemu-io -f qcow2 -c "write -P 3 0 2M" -c "write -z 4M 64k" small.qcow2 >/dev/null');
      sh('qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 16M');
      sh('qemu-io -f qcow2 -c "write -P 4 0 256k" v2.qcow2 >/dev/null');
      // A snapshot makes refcounts of 2, which one bit cannot hold.
      sh('qemu-img create -q -f qcow2 snap.qcow2 1M');
      sh('qemu-io -f qcow2 -c "write -P 5 0 64k" snap.qcow2 >/dev/null');
      sh('qemu-img snapshot -c s1 snap.qcow2');
    });
  });
  afterAll(() => fx.dispose());

  const lines = [
    'amend -p -o refcount_bits=64 walks.qcow2',
    'amend -p -o refcount_bits=8 walks.qcow2',
    'amend -p -o refcount_bits=1 plain.qcow2',
    'amend -p -o refcount_bits=64 plain.qcow2',
    'amend -p -o refcount_bits=2 small.qcow2',
    'amend -p -o refcount_bits=32 small.qcow2',
    'amend -p -o compat=1.1,refcount_bits=4 v2.qcow2',
    'amend -p -o compat=1.1 v2.qcow2',
    'amend -p -o compat=0.10 small.qcow2',
    'amend -p -o compat=0.10 plain.qcow2',
    'amend -p -o refcount_bits=1 snap.qcow2',
    'amend -p -o refcount_bits=16 plain.qcow2',
  ];
  for (const line of lines) {
    it(`img ${line}`, async () => {
      const image = words(line).at(-1)!;
      const g = await golden(fx, { tool: 'img', args: words(line), sameImages: [image] });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});
