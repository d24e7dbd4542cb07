/**
 * `img create -f vhdx` against qemu-img 7.2: the same printed lines and exit
 * codes, and the same file but for the random GUIDs and sequence numbers
 * (and checksums over them); qemu-img sees both images alike and finds
 * nothing wrong in ours.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, theirs } from '../../cli/harness.js';
import { both, expectValidChecksums, maskVolatile } from './helpers.js';

/** Options and size: block and log sizes (given, rounded, automatic), subformats, zero blocks, refusals. */
const CREATES: Array<[string, string]> = [
  ['', '64M'],
  ['', '100'],
  ['', '0'],
  ['', '1G'],
  ['', '1025M'],
  ['', '101G'],
  ['-o block_size=1M', '300M'],
  ['-o block_size=3000000', '10M'],
  ['-o block_size=1000', '10M'],
  ['-o block_size=512M', '10M'],
  ['-o block_size=0', '10M'],
  ['-o block_size=256M', '3G'],
  ['-o log_size=1500K', '10M'],
  ['-o log_size=4M', '10M'],
  ['-o subformat=fixed', '10M'],
  ['-o subformat=fixed,block_state_zero=off', '10000001'],
  ['-o subformat=dynamic,block_state_zero=off', '10M'],
  ['-o block_state_zero=on', '5M'],
  ['-o preallocation=off', '1M'],
  ['-o nocow=on', '1M'],
  // Refused.
  ['-o block_size=3M', '10M'],
  ['-o log_size=0', '10M'],
  ['-o log_size=5G', '10M'],
  ['-o subformat=bogus', '10M'],
  ['-o block_state_zero=maybe', '10M'],
  ['-o cluster_size=64k', '1M'],
  ['', '65T'],
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('img create -f vhdx', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(() => {});
  });
  afterAll(() => fx.dispose());

  CREATES.forEach(([opts, size], i) => {
    it(`create ${opts} ${size}: qemu-img's output and file`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const args = ['create', '-f', 'vhdx', ...opts.split(' ').filter(Boolean), `c${i}.vhdx`, size];
      const r = await both('img', args, dq, dd);
      expect(r.ours).toEqual(r.theirs);
      if (r.theirs.code !== 0) return;
      const q = readFileSync(join(dq, `c${i}.vhdx`));
      const o = readFileSync(join(dd, `c${i}.vhdx`));
      expect(o.length).toBe(q.length);
      expectValidChecksums(o);
      expect(maskVolatile(o).equals(maskVolatile(q)), 'bytes differ beyond GUIDs, sequence numbers and checksums').toBe(true);
      // qemu-img sees both alike and finds ours sound.
      const info = (d: string) => theirs('img', ['info', '-f', 'vhdx', '--output=json', `c${i}.vhdx`], d).stdout.replace(/"actual-size": \d+/, '');
      expect(info(dd)).toEqual(info(dq));
      const c = theirs('img', ['check', `c${i}.vhdx`], dd);
      expect(c.code, c.stderr).toBe(0);
    });
  });
});
