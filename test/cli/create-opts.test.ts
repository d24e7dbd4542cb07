/**
 * `img create -o` option lists as qemu-img 7.2 reads them (QemuOpts): `,,`
 * escapes, bare keys as booleans (`lazy_refcounts`, `nolazy_refcounts`),
 * values checked while parsing (sizes in hex, a hex size with a suffix warned
 * about twice), the size given twice, and the file protocol's
 * extent_size_hint through qcow2. Golden: same command line, same output,
 * same exit code, same image.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';
import { isValidOptionList, parseOptionList } from '../../src/cli/qemu-opts.js';

describe('img create -o vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f qcow2 base.qcow2 1M'));
  });
  afterAll(() => fx.dispose());

  const lines = [
    // The size twice (iotest 049's case) and once.
    'create -f qcow2 -o size=1M o.qcow2 2M',
    'create -f qcow2 -o size=1M -o size=2M o.qcow2',
    // Hex sizes (214).
    'create -f qcow2 -o cluster_size=0x10000 o.qcow2 1M',
    'create -f qcow2 -o cluster_size=0x1000k o.qcow2 1M',
    'create -f qcow2 -o size=0x10k o.qcow2',
    'create -f qcow2 -o refcount_bits=0x10 o.qcow2 1M',
    // ,, escapes and bare keys (082).
    'create -f qcow2 -o backing_file=base.qcow2,,x,backing_fmt=qcow2 -u o.qcow2 1M',
    'create -f qcow2 -o backing_file=a,b o.qcow2 1M',
    'create -f qcow2 -o a,,b o.qcow2 1M',
    'create -f qcow2 -o ,, o.qcow2 1M',
    'create -f qcow2 -o , o.qcow2 1M',
    'create -f qcow2 -o cluster_size=64k,,foo=bar o.qcow2 1M',
    // A `,,help` inside a value names a file, it is no help request (082).
    'create -f qcow2 -u -o backing_file=base.qcow2,,help -F qcow2 o.qcow2 1M',
    'create -f qcow2 -u -o backing_file=base.qcow2,,? -F qcow2 o.qcow2 1M',
    // amend's own option list (082).
    'amend -f qcow2 -o help base.qcow2',
    'amend -f qcow2 -o cluster_size=4k,? base.qcow2',
    'amend -f qcow2 -o help',
    'create -f qcow2 -o lazy_refcounts o.qcow2 1M',
    'create -f qcow2 -o nolazy_refcounts o.qcow2 1M',
    'create -f qcow2 -o compat=1.1,lazy_refcounts=yes o.qcow2 1M',
    'create -f qcow2 -o compat=0.10,lazy_refcounts=true o.qcow2 1M',
    'create -f qcow2 -o cluster_size o.qcow2 1M',
    'create -f qcow2 -o lazy_refcounts=x o.qcow2 1M',
    'create -f qcow2 -o refcount_bits=x o.qcow2 1M',
    // extent_size_hint (243).
    'create -f qcow2 -o extent_size_hint=1M o.qcow2 1M',
    'create -f qcow2 -o extent_size_hint=0 o.qcow2 1M',
    'create -f qcow2 -o extent_size_hint=-1 o.qcow2 1M',
    'create -f qcow2 -o extent_size_hint=4G o.qcow2 1M',
    'create -f raw -o extent_size_hint=4G o.raw 1M',
    // Sizes out of range.
    'create -f qcow2 o.qcow2 18E',
    'create -f qcow2 o.qcow2 16E',
    'create -f qcow2 o.qcow2 9223372036854775808',
    'create -f qcow2 o.qcow2 99999999999999999999999',
  ];
  for (const line of lines) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  it('img create -o lazy_refcounts makes the same image', async () => {
    const g = await golden(fx, { tool: 'img', args: words('create -q -f qcow2 -o lazy_refcounts,cluster_size=0x1000 o.qcow2 1M'), sameImages: ['o.qcow2'] });
    expect(g.ours).toEqual(g.theirs);
    expect(g.imageDiffs).toEqual([]);
  });
});

describe('option list parsing', () => {
  it('splits at single commas and reads bare keys as booleans', () => {
    expect(parseOptionList('a=1,,2,b,noc,d=')).toEqual([['a', '1,2'], ['b', 'on'], ['c', 'off'], ['d', '']]);
    expect([',', '', 'a,', 'a,,,', 'a,,b', 'a=1'].map(isValidOptionList)).toEqual([false, false, false, false, true, true]);
  });
});
