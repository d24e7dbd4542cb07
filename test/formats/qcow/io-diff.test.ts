/**
 * Seeded qemu-io sessions on qcow (v1) images (with and without a backing file,
 * compressed clusters), run through qemu-io 7.2 and `diskworker io` on copies
 * of the same image: every printed line (timings masked) and the exit code
 * must match, and the image files must end up byte-identical (the same
 * clusters and tables in the same places; compressed clusters partly
 * overwritten are moved as QEMU moves them).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs, type RunResult } from '../../cli/harness.js';
import { session } from '../io-session.js';

const MiB = 1 << 20;

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f qcow plain.qcow 9M');
  sh("qemu-io -f qcow -c 'write -P 0x5a 2M 1M' -c 'write -P 0x11 7M 4k' plain.qcow >/dev/null");
  sh(`qemu-img create -q -f qcow odd.qcow ${3 * MiB + 1000}`);
  sh('qemu-img create -q -f raw base.raw 8M');
  sh("qemu-io -f raw -c 'write -P 0x33 0 8M' -c 'write -P 0x44 1M 100k' base.raw >/dev/null");
  sh('qemu-img create -q -f qcow -b base.raw -F raw over.qcow 10M');
  sh("qemu-io -f raw -c 'write -P 0x21 0 1M' -c 'write -P 0 2M 2M' -c 'write -P 0x22 5M 40k' base.raw >/dev/null");
  // qemu-img 7.2 writes the image, then fails its end-of-compression call on qcow: exit 1.
  sh('qemu-img convert -c -O qcow base.raw packed.qcow || test -s packed.qcow');
}


const norm = (r: RunResult): RunResult => ({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });
const bytesOf = (dir: string, f: string): Buffer => readFileSync(join(dir, f));

/** Image, size, and how much of the usual request sizes its sessions use. */
const IMAGES: Array<[string, number, number]> = [
  ['plain.qcow', 9 * MiB, 1],
  ['odd.qcow', 3 * MiB + 1024, 1],
  // 512-byte clusters, each new one written with two flushes: QEMU takes seconds per MiB.
  ['over.qcow', 10 * MiB, 1 / 32],
  ['packed.qcow', 8 * MiB, 1],
];

it('compares against qemu-io 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('seeded qemu-io sessions on qcow images: same lines, same bytes', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const [file, size, scale] of IMAGES) {
    for (const seed of [21, 22, 23]) {
      it(`${file}, seed ${seed}`, async () => {
        const cmds = session(seed * 37 + size, size, 24, scale);
        const args = ['-f', 'qcow', ...cmds.flatMap((c) => ['-c', c]), file];
        const dq = fx.copy();
        const dd = fx.copy();
        const t = theirs('io', args, dq);
        const o = await ours('io', args, dd);
        expect(norm(o), cmds.join('\n')).toEqual(norm(t));
        const want = bytesOf(dq, file);
        const got = bytesOf(dd, file);
        expect(got.length, 'file length').toBe(want.length);
        expect(got.equals(want), 'file bytes').toBe(true);
        // qemu-img has no check for qcow: it reads our file back as its own.
        const a = theirs('img', ['convert', '-O', 'raw', file, 'a.raw'], dq);
        const b = theirs('img', ['convert', '-O', 'raw', file, 'b.raw'], dd);
        expect([a.code, b.code]).toEqual([0, 0]);
        expect(bytesOf(dd, 'b.raw').equals(bytesOf(dq, 'a.raw')), 'qemu-img reads the same disk').toBe(true);
      }, 60_000);
    }
  }
});
