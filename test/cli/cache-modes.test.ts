/**
 * Cache modes (-t / -T) as qemu-img 7.2 takes them: every mode it knows is
 * accepted by each command that has the option, unknown ones are refused
 * with its message (golden against qemu-img), and the mode is applied to the
 * opened image: writethrough modes make the BlockBackend write through, the
 * node gets cache.direct / cache.no-flush as bdrv_parse_cache_mode sets them.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';
import { Ctx } from '../../src/cli/img/context.js';
import { parseCacheMode } from '../../src/cli/common.js';

const MODES = ['none', 'off', 'writeback', 'writethrough', 'directsync', 'unsafe', 'bogus'];

describe('cache modes vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 base.qcow2 1M');
      sh('qemu-io -f qcow2 -c "write -P 1 0 64k" base.qcow2 >/dev/null');
      sh('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2');
      sh('qemu-io -f qcow2 -c "write -P 2 64k 64k" top.qcow2 >/dev/null');
    });
  });
  afterAll(() => fx.dispose());

  const commands = [
    'check -T MODE top.qcow2',
    'compare -T MODE top.qcow2 base.qcow2',
    'commit -t MODE top.qcow2',
    'rebase -t MODE -b base.qcow2 -F qcow2 top.qcow2',
    'rebase -T MODE -u -b base.qcow2 -F qcow2 top.qcow2',
    'convert -t MODE -O qcow2 top.qcow2 o.qcow2',
    'convert -T MODE -O qcow2 top.qcow2 o.qcow2',
    'amend -t MODE -o lazy_refcounts=on top.qcow2',
    'bench -t MODE -c 10 top.qcow2',
  ];
  for (const cmd of commands) {
    it(`img ${cmd.replace('MODE', '<mode>')}`, async () => {
      for (const mode of MODES) {
        const line = cmd.replace('MODE', mode);
        const g = await golden(fx, { tool: 'img', args: words(line), sameImages: ['base.qcow2', 'top.qcow2'] });
        expect(g.ours, line).toEqual(g.theirs);
        expect(g.imageDiffs, line).toEqual([]);
      }
    });
  }

  it('the mode reaches the opened image', async () => {
    const dir = fx.copy();
    for (const mode of MODES.filter((m) => m !== 'bogus')) {
      const ctx = new Ctx({ stdout: () => undefined, stderr: () => undefined });
      try {
        const bb = await ctx.open(`${dir}/top.qcow2`, undefined, { readOnly: false, cache: mode });
        const want = parseCacheMode(mode)!;
        expect(bb.writeThrough, mode).toBe(!want.writeback);
        expect(bb.node.options['cache'], mode).toEqual({ direct: want.direct, 'no-flush': want.noFlush });
      } finally {
        await ctx.closeAll();
      }
    }
  });
});
