/**
 * `img amend` against qemu-img 7.2: each -o checked as a list of its own, the
 * options read against the driver's amend list (types, bare booleans, the
 * create-only hint), the backing file refused with rebase's hint, the cache
 * mode, the order of the checks, and the progress line's end on every exit.
 * Golden: same lines, same exit code, same image afterwards.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';

describe('img amend vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 base.qcow2 1M');
      sh('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 1M');
      sh('qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M');
      sh('qemu-img create -q -f raw r.raw 1M');
    });
  });
  afterAll(() => fx.dispose());

  const lines = [
    // Option lists (082).
    'amend -f qcow2 -o backing_file=base.qcow2, -o help base.qcow2',
    'amend -f qcow2 -o lazy_refcounts=on -o ,help base.qcow2',
    'amend -f qcow2 -o lazy_refcounts=on -o ,, -o help base.qcow2',
    'amend -o , base.qcow2',
    // The backing file: only the current one may be named (082, 061).
    'amend -f qcow2 -o backing_file=base.qcow2,,help base.qcow2',
    'amend -o backing_file=other.qcow2 top.qcow2',
    'amend -o backing_file=base.qcow2,backing_fmt=qcow2 top.qcow2',
    'amend -o backing_file=base.qcow2 top.qcow2',
    'amend -o backing_fmt=qcow2 top.qcow2',
    'amend -o backing_file= base.qcow2',
    // Values against the amend list; creation-only options get a hint.
    'amend -o cluster_size=4k base.qcow2',
    'amend -o extended_l2=on base.qcow2',
    'amend -o preallocation=full base.qcow2',
    'amend -o compression_type=zstd base.qcow2',
    'amend -o encryption=on base.qcow2',
    'amend -o foo=bar base.qcow2',
    'amend -o cluster_size=4k,foo=bar base.qcow2',
    'amend -o lazy_refcounts=x base.qcow2',
    'amend -o refcount_bits=x base.qcow2',
    'amend -o size=1x base.qcow2',
    'amend -o compat=2 base.qcow2',
    'amend -o lazy_refcounts base.qcow2',
    'amend -o nolazy_refcounts base.qcow2',
    'amend -o lazy_refcounts=yes base.qcow2',
    'amend -o lazy_refcounts=on v2.qcow2',
    'amend -o compat=v3,refcount_bits=8,lazy_refcounts=on v2.qcow2',
    // Cache modes and the order of the checks.
    'amend -t writethrough -o lazy_refcounts=on base.qcow2',
    'amend -t directsync -o lazy_refcounts=on base.qcow2',
    'amend -t unsafe -o lazy_refcounts=on base.qcow2',
    'amend -t bogus -o lazy_refcounts=on base.qcow2',
    'amend -t bogus -o lazy_refcounts=on',
    'amend -t bogus -f qcow2 -o help',
    'amend -o lazy_refcounts=on -f raw r.raw',
    // -p: the progress line, and its end on errors too.
    'amend -p -o lazy_refcounts=on base.qcow2',
    'amend -p -o lazy_refcounts=on',
    'amend -p -o foo=bar base.qcow2',
    'amend -p -f qcow2 -o help',
    'amend -p -q -o lazy_refcounts=on base.qcow2',
    // No -U: amend always writes.
    'amend -U -o lazy_refcounts=on base.qcow2',
    'amend --force-share -o lazy_refcounts=on base.qcow2',
    'amend --force -o lazy_refcounts=on base.qcow2',
  ];
  for (const line of lines) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line), sameImages: ['base.qcow2', 'top.qcow2', 'v2.qcow2'] });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});
