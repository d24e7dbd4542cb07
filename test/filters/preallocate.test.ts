/**
 * The preallocate filter against qemu-io 7.2 (the cases of QEMU's iotest
 * 298 and more): the same interactive qemu-io sessions through both tools,
 * with the file's length taken after the open, after every command and
 * after exit; outputs, the lengths (the file grown ahead of the writes while
 * the image is open, cut back to the data on close, reopen read-only and
 * truncate) and the files' bytes must agree.
 *
 *   qcow2 ─file→ preallocate ─file→ file (t.qcow2)
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize } from '../cli/harness.js';
import { oursSession, theirsSession, type Session } from './interactive.js';

const opts = (fmt: 'qcow2' | 'raw', image: string, extra = '') =>
  `driver=${fmt},file.driver=preallocate${extra ? ',' + extra : ''},file.file.filename=${image}`;

interface Case {
  name: string;
  args: string[];
  image: string;
  io: string[];
  /** qemu-io's exit code (1 when a command failed). */
  code?: number;
}

const MiB = 1 << 20;

const CASES: Case[] = [
  {
    name: 'qcow2: the file grows 128 MiB ahead of the writes and is cut back on close (iotest 298)',
    args: ['--image-opts', opts('qcow2', 't.qcow2')],
    image: 't.qcow2',
    io: ['write -P 1 0 1M', 'flush', 'write -P 2 3M 64k', 'read -P 0 5M 64k', 'write -z 6M 64k', 'read -P 2 3M 64k'],
  },
  {
    name: 'qcow2: small prealloc-size and prealloc-align grow the file in several steps',
    args: ['--image-opts', opts('qcow2', 't.qcow2', 'file.prealloc-size=256k,file.prealloc-align=64k')],
    image: 't.qcow2',
    io: ['write -P 1 0 64k', 'write -P 2 64k 64k', 'write -P 3 1M 512k', 'write -P 4 4M 1M', 'read -P 4 4M 1M', 'write -P 5 9M 1M'],
  },
  {
    name: 'qcow2: a reopen to read-only drops the preallocation, back to read-write grows again',
    args: ['--image-opts', opts('qcow2', 't.qcow2')],
    image: 't.qcow2',
    io: ['write -P 1 0 1M', 'reopen -r', 'read -P 1 0 1M', 'reopen -w', 'write -P 2 2M 1M', 'read -P 2 2M 1M'],
  },
  {
    name: 'qcow2 opened read-only: nothing is preallocated',
    args: ['-r', '--image-opts', opts('qcow2', 'w.qcow2')],
    image: 'w.qcow2',
    io: ['read -P 7 0 64k', 'read -P 0 64k 64k'],
  },
  {
    name: 'qcow2: truncate drops the preallocation first (iotest 298, off)',
    args: ['--image-opts', opts('qcow2', 's.qcow2')],
    image: 's.qcow2',
    io: ['write -P 1 0 4M', 'truncate -m off 50M', 'write -P 2 20M 1M', 'truncate -m off 150M', 'truncate 2M', 'read -P 1 0 2M'],
  },
  {
    name: 'qcow2: truncate with metadata preallocation inside and over the preallocated area (iotest 298)',
    args: ['--image-opts', opts('qcow2', 's.qcow2')],
    image: 's.qcow2',
    io: ['write -P 1 0 4M', 'truncate -m metadata 50M', 'write -P 2 30M 64k', 'truncate -m metadata 150M', 'read -P 2 30M 64k'],
  },
  {
    name: 'qcow2: truncate with preallocation cannot shrink (the filter drops its tail all the same)',
    args: ['--image-opts', opts('qcow2', 's.qcow2')],
    image: 's.qcow2',
    io: ['write -P 1 0 4M', 'truncate -m falloc 1M', 'truncate -m full 2M', 'read -P 1 0 4M'],
    code: 1,
  },
  {
    name: 'raw over preallocate: writes inside the file, truncate grows and shrinks it',
    args: ['--image-opts', opts('raw', 'r.raw')],
    image: 'r.raw',
    io: ['write -P 1 0 64k', 'truncate 2M', 'write -P 2 1536k 512k', 'read -P 2 1536k 512k', 'truncate 1M', 'write -z 512k 64k'],
  },
  {
    name: 'preallocate as the top node over a raw file',
    args: ['--image-opts', 'driver=preallocate,file.filename=r.raw'],
    image: 'r.raw',
    io: ['write -P 3 0 64k', 'truncate 3M', 'write -P 4 2M 1M', 'read -P 4 2M 1M', 'discard 0 64k', 'flush'],
  },
];

const BAD_OPTIONS: Array<[string, string]> = [
  ['prealloc-align not a multiple of 512', 'file.prealloc-align=100'],
  ['prealloc-align not a multiple of 512 (large)', 'file.prealloc-align=1000000'],
  ['prealloc-size not a size', 'file.prealloc-size=1x'],
  ['an unknown option', 'file.bogus=1'],
];

function sizeOf(dir: string, image: string): () => number {
  return () => statSync(join(dir, image)).size;
}

function clean<T>(s: Session<T>) {
  return { code: s.run.code, stdout: normalize(s.run.stdout), stderr: normalize(s.run.stderr), probes: s.probes };
}

describe.skipIf(!hasQemu())('preallocate filter vs qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 t.qcow2 200M');
      sh('qemu-img create -q -f qcow2 s.qcow2 10M');
      sh('qemu-img create -q -f qcow2 w.qcow2 1M');
      sh(`qemu-io -c 'write -P 7 0 64k' w.qcow2 >/dev/null`);
      sh('qemu-img create -q -f raw r.raw 1M');
    });
  });
  afterAll(() => fx.dispose());

  for (const c of CASES) {
    it(c.name, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const t = clean(await theirsSession(c.args, dq, c.io, sizeOf(dq, c.image)));
      const o = clean(await oursSession(c.args, dd, c.io, sizeOf(dd, c.image)));
      expect(o).toEqual(t);
      expect(t.code).toBe(c.code ?? 0);
      expect(Buffer.compare(readFileSync(join(dd, c.image)), readFileSync(join(dq, c.image)))).toBe(0);
    }, 50_000);
  }

  it('grows the file past the data while open (the lengths are not all the same)', async () => {
    const dq = fx.copy();
    const t = await theirsSession(CASES[0]!.args, dq, CASES[0]!.io, sizeOf(dq, 't.qcow2'));
    // After the first write the file holds the data plus 128 MiB, rounded to 1 MiB; after exit only the data.
    expect(t.probes[1]).toBeGreaterThan(128 * MiB);
    expect(t.probes[t.probes.length - 1]).toBeLessThan(10 * MiB);
  }, 50_000);

  for (const [name, extra] of BAD_OPTIONS) {
    it(`refuses ${name} as QEMU`, async () => {
      const args = ['--image-opts', opts('qcow2', 't.qcow2', extra)];
      const dq = fx.copy();
      const dd = fx.copy();
      const t = clean(await theirsSession(args, dq, ['read 0 512'], sizeOf(dq, 't.qcow2')));
      const o = clean(await oursSession(args, dd, ['read 0 512'], sizeOf(dd, 't.qcow2')));
      expect(o).toEqual(t);
      expect(t.code).toBe(1);
    }, 30_000);
  }
});
