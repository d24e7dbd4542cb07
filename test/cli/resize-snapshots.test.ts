/**
 * Resizing qcow2 images that have internal snapshots, against qemu-img 7.2
 * (the steps of iotest 061's "resize with snapshots"): a v2 image keeps its
 * size (its snapshot entries need not record one), a v3 image grows and
 * shrinks, `amend` changes size and version in one go, a downgrade with
 * snapshots fails after the size changed, and applying a snapshot restores
 * its size. After each step: the same messages and exit codes, the same
 * header fields, check, snapshot list (ids and names: the dates differ)
 * and every snapshot's content.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs, words } from './harness.js';

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

/** Version, size and snapshot count from the header (as 061's _qcow2_dump_header lines). */
function header(dir: string, file: string): { version: number; size: bigint; snapshots: number } {
  const b = readFileSync(join(dir, file));
  return { version: b.readUInt32BE(4), size: b.readBigUInt64BE(24), snapshots: b.readUInt32BE(60) };
}

describe('img resize / amend / snapshot of qcow2 images with snapshots vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 32M');
      sh("qemu-io -c 'write -P 0x2a 24M 64k' v2.qcow2 >/dev/null");
      sh('qemu-img snapshot -c foo v2.qcow2');
      sh('qemu-img create -q -f qcow2 v3.qcow2 32M');
      sh("qemu-io -c 'write -P 0x2a 24M 64k' -c 'write -P 0x3b 1M 128k' v3.qcow2 >/dev/null");
      sh('qemu-img snapshot -c foo v3.qcow2');
      sh("qemu-io -c 'write -P 0x4c 30M 64k' v3.qcow2 >/dev/null");
    });
  }, 30_000);
  afterAll(() => fx.dispose());

  // Each sequence runs in one copy per tool; every step is compared.
  const sequences: Array<[string, string, string[]]> = [
    ['v2: no resize while it has snapshots, then amend to v3 and 128M', 'v2.qcow2', ['resize v2.qcow2 64M', 'resize --shrink v2.qcow2 16M', 'amend -o compat=1.1,size=128M v2.qcow2']],
    [
      'v3: shrink past written data and grow back, with a second snapshot; downgrade refused after the resize; apply restores the size',
      'v3.qcow2',
      [
        'resize --shrink v3.qcow2 16M',
        'resize v3.qcow2 64M',
        'snapshot -c bar v3.qcow2',
        'resize --shrink v3.qcow2 8M',
        'amend -o compat=0.10,size=32M v3.qcow2',
        'snapshot -a bar v3.qcow2',
        'snapshot -d bar v3.qcow2',
        'snapshot -d foo v3.qcow2',
        'amend -o compat=0.10,size=32M v3.qcow2',
      ],
    ],
  ];
  for (const [what, img, steps] of sequences) {
    it(what, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      for (const step of steps) {
        const t = theirs('img', words(step), dq);
        const o = await ours('img', words(step), dd);
        expect({ step, code: o.code, out: normalize(o.stdout + o.stderr) }).toEqual({ step, code: t.code, out: normalize(t.stdout + t.stderr) });
        expect(header(dd, img), step).toEqual(header(dq, img));
        const check = (dir: string) => normalize(theirs('img', ['check', img], dir).stdout);
        expect(check(dd), `${step}; check`).toBe(check(dq));
        const list = (dir: string) => [...theirs('img', ['snapshot', '-l', img], dir).stdout.matchAll(/^(\d+)\s+(\S+)/gm)].map((m) => `${m[1]} ${m[2]}`);
        expect(list(dd), `${step}; snapshot -l`).toEqual(list(dq));
        const snaps = list(dq).map((l) => l.split(' ')[1]!);
        for (const s of ['', ...snaps]) {
          const args = ['convert', ...(s ? ['-l', s] : []), '-O', 'raw', img, 'out.raw'];
          expect(theirs('img', args, dq).code).toBe(0);
          expect(theirs('img', args, dd).code).toBe(0);
          expect(readFileSync(join(dd, 'out.raw')).equals(readFileSync(join(dq, 'out.raw'))), `${step}; content of ${s || 'the active layer'}`).toBe(true);
        }
      }
    });
  }
});
