/**
 * VDI images made by qemu-img / qemu-io 7.2 (dynamic and static, several
 * sizes, seeded writes) and one in VirtualBox's layout: `diskworker img
 * convert -O raw` gives the bytes `qemu-img convert -O raw` gives, and info
 * (human and JSON), map (human and JSON) and check print what qemu-img prints.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, normalize, ours, theirs, type RunResult } from '../../cli/harness.js';
import { both, bytesOf, ioLine, MiB, seededWrites, vboxImage } from './helpers.js';

function build(dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vdi empty.vdi 0');
  sh('qemu-img create -q -f vdi odd.vdi 1000');
  sh(`qemu-io ${ioLine(['write -P 7 0 512', 'write -P 8 700 300'], 'odd.vdi')} >/dev/null`);
  sh('qemu-img create -q -f vdi small.vdi 3M');
  sh(`qemu-io ${ioLine(['write -P 0xaa 1M 4k'], 'small.vdi')} >/dev/null`);
  sh('qemu-img create -q -f vdi dyn.vdi 37M');
  sh(`qemu-io ${ioLine(seededWrites(1, 37 * MiB, 14), 'dyn.vdi')} >/dev/null`);
  sh(`qemu-img create -q -f vdi big.vdi ${5 * MiB + 512}`);
  sh(`qemu-io ${ioLine(seededWrites(2, 5 * MiB + 512, 6), 'big.vdi')} >/dev/null`);
  // Static: one left sparse (qemu-img map sees its holes, Node cannot), one written whole.
  sh('qemu-img create -q -f vdi -o static=on sparse.vdi 5M');
  sh(`qemu-io ${ioLine(['write -P 3 2M 100k'], 'sparse.vdi')} >/dev/null`);
  sh('qemu-img create -q -f vdi -o static=on full.vdi 6M');
  sh(`qemu-io ${ioLine(['write -P 0 0 6M', ...seededWrites(3, 6 * MiB, 6)], 'full.vdi')} >/dev/null`);
  vboxImage(`${dir}/vbox.vdi`);
}

const ALL = ['empty.vdi', 'odd.vdi', 'small.vdi', 'dyn.vdi', 'big.vdi', 'sparse.vdi', 'full.vdi', 'vbox.vdi'];
/** Images without holes in their data area (map compares them). */
const MAPPABLE = ALL.filter((f) => f !== 'sparse.vdi');

const norm = (r: RunResult): RunResult => ({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('vdi images made by QEMU, read by diskworker', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const file of ALL) {
    it(`${file}: convert -O raw gives qemu-img's bytes`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const t = theirs('img', ['convert', '-O', 'raw', file, 'out.raw'], dq);
      const o = await ours('img', ['convert', '-O', 'raw', file, 'out.raw'], dd);
      expect(norm(o)).toEqual(norm(t));
      const want = bytesOf(dq, 'out.raw');
      const got = bytesOf(dd, 'out.raw');
      expect(got.length).toBe(want.length);
      expect(got.equals(want)).toBe(true);
    });

    for (const line of [`info ${file}`, `info --output=json ${file}`, `check ${file}`, `check --output=json ${file}`, `check -r all ${file}`]) {
      it(`img ${line}`, async () => {
        const r = await both(fx, 'img', line);
        expect(r.ours).toEqual(r.theirs);
      });
    }
  }

  for (const file of MAPPABLE) {
    for (const line of [`map ${file}`, `map --output=json ${file}`]) {
      it(`img ${line}`, async () => {
        const r = await both(fx, 'img', line);
        expect(r.ours).toEqual(r.theirs);
      });
    }
  }

  it('vbox.vdi: every byte as qemu-io reads it, discarded and unallocated blocks as zeros', async () => {
    const cmds = ['read -P 0 6M 1M', 'read -P 0 1M 1M', 'read -v 0 64', 'read -v 5242880 16', 'read -P 0 8387608 1000', 'alloc 0 8M', 'map'];
    const r = await both(fx, 'io', ioLine(cmds, 'vbox.vdi'));
    expect(r.ours).toEqual(r.theirs);
  });

  it('img compare of a vdi image with its raw copy, both ways', async () => {
    const dq = fx.copy();
    theirs('img', ['convert', '-O', 'raw', 'dyn.vdi', 'dyn.raw'], dq);
    for (const args of [['compare', 'dyn.vdi', 'dyn.raw'], ['compare', '-f', 'vdi', '-F', 'raw', 'dyn.vdi', 'dyn.raw'], ['compare', 'dyn.vdi', 'small.vdi']]) {
      const t = theirs('img', args, dq);
      const o = await ours('img', args, dq);
      expect(norm(o), args.join(' ')).toEqual(norm(t));
    }
  });
});
