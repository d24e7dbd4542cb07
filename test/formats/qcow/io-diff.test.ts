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
import { prng } from '../../prng.js';

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

/** A seeded session of `n` commands on an image of `size` bytes. */
export function session(seed: number, size: number, n: number, scale = 1): string[] {
  const rnd = prng(seed);
  const range = (max: number): [number, number] => {
    const unit = rnd() < 0.5 ? 512 : 4096;
    const len = Math.max(unit, Math.floor((rnd() * Math.min(size, max * scale)) / unit) * unit);
    return [Math.floor((rnd() * (size - len)) / unit) * unit, len];
  };
  const cmds: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = rnd();
    const p = `0x${(1 + Math.floor(rnd() * 254)).toString(16)}`;
    if (k < 0.35) {
      const [o, l] = range(2.5 * MiB);
      cmds.push(`write -P ${p} ${o} ${l}`);
    } else if (k < 0.47) {
      const [o, l] = range(2 * MiB);
      cmds.push(`write -z ${rnd() < 0.5 ? '-u ' : ''}${o} ${l}`);
    } else if (k < 0.55) {
      const [o, l] = range(MiB);
      const half = Math.max(512, Math.floor(l / 1024) * 512);
      cmds.push(`writev -P ${p} ${o} ${half} ${Math.max(512, l - half)}`);
    } else if (k < 0.65) {
      const [o, l] = range(48);
      cmds.push(`read -v ${o} ${l}`);
    } else if (k < 0.72) {
      const [o, l] = range(4 * MiB);
      cmds.push(`alloc ${o} ${l}`);
    } else if (k < 0.77) {
      cmds.push('map');
    } else if (k < 0.84) {
      const [o, l] = range(MiB);
      cmds.push(`readv -P 0 ${o} ${l}`);
    } else if (k < 0.9) {
      const [o, l] = range(MiB);
      cmds.push(`aio_write -P ${p} ${o} ${l}`, 'aio_flush');
    } else if (k < 0.95) {
      cmds.push('flush');
    } else {
      cmds.push('info');
    }
  }
  return cmds;
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
