/**
 * Writing VHDX images against qemu-io / qemu-img 7.2:
 * - seeded qemu-io command sequences on copies of one image give the same
 *   printed lines (timings masked) and the same final file but for GUIDs,
 *   sequence numbers and checksums (block allocation at the next MiB, BAT
 *   updates journalled through the log, header updates);
 * - images created and written by diskworker pass qemu-img check and read
 *   back in qemu-img as the written model says.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, ours, theirs } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { both, commandSequence, expectSame, expectSameRaw, expectValidChecksums, maskVolatile } from './helpers.js';

it('compares against qemu-io 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('seeded qemu-io sequences: same lines and same final file', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f vhdx dyn.vhdx 20000000');
      sh('qemu-img create -q -f vhdx -o block_size=1M,log_size=2M small.vhdx 12M');
      sh('qemu-img create -q -f vhdx -o subformat=fixed fixed.vhdx 10000000');
      sh('qemu-img create -q -f vhdx -o subformat=fixed,block_state_zero=off prealloc.vhdx 10000000');
      sh('qemu-img create -q -f vhdx -o block_state_zero=off nz.vhdx 20000000');
      // Blocks already allocated (and log entries already in the ring) by qemu-io.
      sh('qemu-img create -q -f vhdx used.vhdx 20000000 && qemu-io -c "write -P 9 2000000 300000" -c "write -P 8 17000000 4096" used.vhdx > /dev/null');
    });
  });
  afterAll(() => fx.dispose());

  const MB8 = 8 << 20;
  const used: Array<[number, number, number]> = [
    [9, 2000000, 300000],
    [8, 17000000, 4096],
  ];
  const cases: Array<[string, number, number, number]> = [
    ['dyn.vhdx', 20000256, MB8, 1],
    ['dyn.vhdx', 20000256, MB8, 2],
    ['small.vhdx', 12 << 20, 1 << 20, 3],
    ['small.vhdx', 12 << 20, 1 << 20, 4],
    ['fixed.vhdx', 10000384, MB8, 5],
    ['prealloc.vhdx', 10000384, MB8, 6],
    ['nz.vhdx', 20000256, MB8, 7],
    ['used.vhdx', 20000256, MB8, 8],
  ];
  for (const [image, size, block, seed] of cases) {
    it(`${image}, seed ${seed}`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const cmds = commandSequence(seed, size, block, 30, image === 'used.vhdx' ? used : []);
      const args = ['-f', 'vhdx', ...cmds.flatMap((c) => ['-c', c]), image];
      const r = await both('io', args, dq, dd);
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.out).not.toMatch(/Pattern verification failed/);
      const q = readFileSync(join(dq, image));
      const o = readFileSync(join(dd, image));
      expect(o.length).toBe(q.length);
      expectValidChecksums(o);
      expect(maskVolatile(o).equals(maskVolatile(q)), `${image}: final files differ`).toBe(true);
      await expectSame('img', ['check', image], dq, dd);
      const c = theirs('img', ['check', image], dd);
      expect(c.code, c.stdout + c.stderr).toBe(0);
    });
  }
});

describe('images created and written by diskworker, read by qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(() => {});
  });
  afterAll(() => fx.dispose());

  const cases: Array<[string, string, number]> = [
    ['', '30000000', 11],
    ['-o subformat=fixed', '10000000', 12],
    ['-o block_size=1M,log_size=1M', '40M', 13],
    ['-o block_state_zero=off', '20M', 14],
  ];
  for (const [opts, size, seed] of cases) {
    it(`create ${opts} ${size}, seeded writes (seed ${seed})`, async () => {
      const dd = fx.copy();
      const dq = join(dd, 'q');
      mkdirSync(dq);
      const o = opts.split(' ').filter(Boolean);
      expect((await ours('img', ['create', '-q', '-f', 'vhdx', ...o, 'img.vhdx', size], dd)).code).toBe(0);
      const length = JSON.parse(theirs('img', ['info', '-f', 'vhdx', '--output=json', 'img.vhdx'], dd).stdout)['virtual-size'] as number;
      // Writes only (more than a 1 MiB log's ring holds for the 1 MiB blocks): the model is what the image must hold.
      const rnd = prng(seed);
      const model = new Uint8Array(length);
      const cmds: string[] = [];
      for (let i = 0; i < 40; i++) {
        const len = 1 + Math.floor(rnd() * 300000);
        const off = Math.floor(rnd() * (length - len));
        const pat = 1 + Math.floor(rnd() * 254);
        cmds.push(`write -P ${pat} ${off} ${len}`);
        model.fill(pat, off, off + len);
      }
      const wo = await ours('io', ['-f', 'vhdx', ...cmds.flatMap((c) => ['-c', c]), 'img.vhdx'], dd);
      expect(wo.code, wo.stderr).toBe(0);
      const c = theirs('img', ['check', 'img.vhdx'], dd);
      expect(c.code, c.stdout + c.stderr).toBe(0);
      const raw = await expectSameRaw(dd, 'img.vhdx', 'vhdx');
      expect(Buffer.from(model).equals(raw), 'contents differ from the model').toBe(true);
    });
  }
});
