/**
 * Seeded qemu-io sessions on VDI images, run through qemu-io 7.2 and
 * `diskworker io` on copies of the same image: every printed line (timings
 * masked) and the exit code must match, and the image files must end up
 * byte-identical (new blocks in the same slots, the same header and map).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, normalize, ours, theirs, type RunResult } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { bytesOf, ioLine, MiB, vboxImage } from './helpers.js';

function build(dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vdi dyn.vdi 9M');
  sh(`qemu-io ${ioLine(['write -P 0x5a 2M 1M', 'write -P 0x11 7M 4k'], 'dyn.vdi')} >/dev/null`);
  sh('qemu-img create -q -f vdi empty.vdi 6M');
  sh(`qemu-img create -q -f vdi odd.vdi ${3 * MiB + 1000}`);
  sh('qemu-img create -q -f vdi -o static=on static.vdi 5M');
  sh(`qemu-io ${ioLine(['write -P 0 0 5M'], 'static.vdi')} >/dev/null`);
  vboxImage(`${dir}/vbox.vdi`);
}

/** A seeded session of `n` commands on an image of `size` bytes. */
function session(seed: number, size: number, n: number): string[] {
  const rnd = prng(seed);
  const range = (max: number): [number, number] => {
    const unit = rnd() < 0.5 ? 512 : 1;
    const len = Math.max(unit, Math.floor((rnd() * Math.min(size, max)) / unit) * unit);
    return [Math.floor((rnd() * (size - len)) / unit) * unit, len];
  };
  const cmds: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = rnd();
    const p = `0x${(1 + Math.floor(rnd() * 254)).toString(16)}`;
    if (k < 0.3) {
      const [o, l] = range(2.5 * MiB);
      cmds.push(`write -P ${p} ${o} ${l}`);
    } else if (k < 0.4) {
      const [o, l] = range(2 * MiB);
      cmds.push(`write -z ${rnd() < 0.5 ? '-u ' : ''}${o} ${l}`);
    } else if (k < 0.5) {
      const [o, l] = range(MiB);
      const half = Math.max(1, Math.floor(l / 2));
      cmds.push(`writev -P ${p} ${o} ${half} ${l - half || 1}`);
    } else if (k < 0.6) {
      const [o, l] = range(48);
      cmds.push(`read -v ${o} ${l}`);
    } else if (k < 0.67) {
      const [o, l] = range(4 * MiB);
      cmds.push(`alloc ${o} ${l}`);
    } else if (k < 0.72) {
      cmds.push('map');
    } else if (k < 0.78) {
      const [o, l] = range(2 * MiB);
      cmds.push(`discard ${o} ${l}`);
    } else if (k < 0.84) {
      const [o, l] = range(MiB);
      cmds.push(`readv -P 0 ${o} ${l}`);
    } else if (k < 0.9) {
      // One request in flight at a time: the completion order of concurrent ones is timing.
      const [o, l] = range(MiB);
      cmds.push(`aio_write -P ${p} ${o} ${l}`, 'aio_flush');
    } else if (k < 0.94) {
      cmds.push('flush');
    } else {
      cmds.push(rnd() < 0.5 ? 'info' : 'write -c 0 64k');
    }
  }
  return cmds;
}

const norm = (r: RunResult): RunResult => ({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });

const IMAGES: Array<[string, number]> = [
  ['dyn.vdi', 9 * MiB],
  ['empty.vdi', 6 * MiB],
  ['odd.vdi', 3 * MiB + 1024],
  ['static.vdi', 5 * MiB],
  ['vbox.vdi', 8 * MiB - 512],
];

it('compares against qemu-io 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('seeded qemu-io sessions on vdi images: same lines, same bytes', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const [file, size] of IMAGES) {
    for (const seed of [11, 12, 13]) {
      it(`${file}, seed ${seed}`, async () => {
        const cmds = session(seed * 31 + size, size, 24);
        const args = ['-f', 'vdi', ...cmds.flatMap((c) => ['-c', c]), file];
        const dq = fx.copy();
        const dd = fx.copy();
        const t = theirs('io', args, dq);
        const o = await ours('io', args, dd);
        expect(norm(o), cmds.join('\n')).toEqual(norm(t));
        const want = bytesOf(dq, file);
        const got = bytesOf(dd, file);
        expect(got.length, 'file length').toBe(want.length);
        expect(got.equals(want), 'file bytes').toBe(true);
        // And QEMU finds the result consistent.
        const c = theirs('img', ['check', file], dd);
        expect(c.stdout).toBe('No errors were found on the image.\n');
      });
    }
  }

  it('the session can start from the interactive prompt too', async () => {
    const cmds = session(99, 6 * MiB, 12);
    const dq = fx.copy();
    const dd = fx.copy();
    const t = theirs('io', ['-f', 'vdi', 'empty.vdi'], dq, cmds.join('\n') + '\n');
    const o = await ours('io', ['-f', 'vdi', 'empty.vdi'], dd, cmds.join('\n') + '\n');
    expect(norm(o)).toEqual(norm(t));
    expect(bytesOf(dd, 'empty.vdi').equals(bytesOf(dq, 'empty.vdi'))).toBe(true);
  });
});
