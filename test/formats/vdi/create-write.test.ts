/**
 * Images made and written by diskworker: `img create -f vdi` prints what
 * qemu-img create prints (its options, errors and exit codes) and lays the
 * file out as QEMU does (same bytes but the two random UUIDs); images we
 * create and fill with seeded writes (`io -f vdi`, `img convert -O vdi`)
 * pass `qemu-img check` and read in qemu-img exactly as we wrote them.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs, words, type RunResult } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { both, bytesOf, F, MiB, seededWrites } from './helpers.js';

const norm = (r: RunResult): RunResult => ({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });

/** A file's bytes with the two UUIDs QEMU draws at random blanked. */
function withoutUuids(b: Buffer): Buffer {
  const c = Buffer.from(b);
  if (c.length >= F.uuidLastSnap + 16) c.fill(0, F.uuidImage, F.uuidLastSnap + 16);
  return c;
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('img create -f vdi vs qemu-img create', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f vdi src.vdi 1M'));
  });
  afterAll(() => fx.dispose());

  const made = [
    'create -f vdi a.vdi 0',
    'create -f vdi a.vdi 1000',
    'create -f vdi a.vdi 3M',
    `create -f vdi a.vdi ${130 * MiB + 7}`,
    'create -f vdi a.vdi 2G',
    // A 12 MiB block map, written in pieces.
    'create -f vdi a.vdi 3T',
    'create -f vdi -o static=on a.vdi 3M',
    'create -f vdi -o static=on a.vdi 0',
    'create -f vdi -o static=on a.vdi 5000000',
    'create -f vdi -o static=off,size=5M a.vdi',
    'create -f vdi -o static=yes a.vdi 1M',
    'create -f vdi -o static a.vdi 1M',
    'create -f vdi -o preallocation=full a.vdi 3M',
    'create -f vdi -o static=on,preallocation=full a.vdi 3M',
    'create -f vdi -o nocow=on a.vdi 1M',
    'create -q -f vdi a.vdi 1M',
  ];
  for (const line of made) {
    it(`img ${line}: same output, same file but the UUIDs`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const t = theirs('img', words(line), dq);
      const o = await ours('img', words(line), dd);
      expect(norm(o)).toEqual(norm(t));
      expect(o.code).toBe(0);
      const want = bytesOf(dq, 'a.vdi');
      const got = bytesOf(dd, 'a.vdi');
      expect(got.length).toBe(want.length);
      expect(withoutUuids(got).equals(withoutUuids(want))).toBe(true);
      // The UUIDs are fresh: random, version 4 as QEMU stores it (byte 7's high nibble).
      expect(got.subarray(F.uuidImage, F.uuidImage + 16).equals(Buffer.alloc(16))).toBe(false);
      expect(got[F.uuidImage + 7]! >> 4).toBe(4);
      expect(got[F.uuidLastSnap + 7]! >> 4).toBe(4);
    });
  }

  // Refused options and sizes, help, and a large static image (its 2 TiB file is a hole).
  const others = [
    'create -f vdi -o cluster_size=2M a.vdi 3M',
    'create -f vdi -o static=maybe a.vdi 1M',
    'create -f vdi a.vdi 600T',
    'create -f vdi -o preallocation=full,static=on a.vdi 2T',
    'create -f vdi a.vdi',
    'create -f vdi -o help',
    'create -f vdi a.vdi -o help',
    'create -f vdi -o extent_size_hint=8G a.vdi 1M',
    'amend -f vdi -o help',
    'convert -O vdi -o help',
  ];
  for (const line of others) {
    it(`img ${line}: same output and exit code`, async () => {
      const r = await both(fx, 'img', line);
      expect(r.ours).toEqual(r.theirs);
    });
  }

  it('a refused size leaves the empty file behind, as QEMU (it creates the file first)', async () => {
    const dq = fx.copy();
    const dd = fx.copy();
    theirs('img', words('create -f vdi a.vdi 600T'), dq);
    await ours('img', words('create -f vdi a.vdi 600T'), dd);
    expect(existsSync(join(dq, 'a.vdi'))).toBe(true);
    expect(statSync(join(dd, 'a.vdi')).size).toBe(statSync(join(dq, 'a.vdi')).size);
  });

  for (const line of ['resize src.vdi 2M', 'amend -f vdi -o static=on src.vdi', 'measure -O vdi --size 1G', 'snapshot -l src.vdi', 'commit src.vdi', 'info --backing-chain src.vdi']) {
    it(`img ${line}: what vdi cannot do, said as qemu-img says it`, async () => {
      const r = await both(fx, 'img', line);
      expect(r.ours).toEqual(r.theirs);
    });
  }
});

describe('images diskworker creates and writes, checked and read by qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(() => undefined);
  });
  afterAll(() => fx.dispose());

  const cases: Array<{ name: string; size: number; opts: string; seed: number }> = [
    { name: 'dynamic 20 MiB', size: 20 * MiB, opts: '', seed: 5 },
    { name: 'dynamic odd size', size: 7 * MiB + 3000, opts: '', seed: 6 },
    { name: 'dynamic 300 MiB, sparse writes', size: 300 * MiB, opts: '', seed: 7 },
    { name: 'static 9 MiB', size: 9 * MiB, opts: '-o static=on', seed: 8 },
  ];
  for (const c of cases) {
    it(`${c.name}: qemu-img check is clean, qemu-img reads what diskworker reads`, async () => {
      const d = fx.copy();
      const created = await ours('img', ['create', '-q', '-f', 'vdi', ...words(c.opts), 'w.vdi', String(c.size)], d);
      expect(created).toEqual({ code: 0, stdout: '', stderr: '' });
      const virtual = Math.ceil(c.size / 512) * 512;
      const cmds = seededWrites(c.seed, virtual, 20);
      const io = await ours('io', ['-f', 'vdi', ...cmds.flatMap((x) => ['-c', x]), 'w.vdi'], d);
      expect(io.code, io.stderr).toBe(0);
      const check = theirs('img', ['check', 'w.vdi'], d);
      expect(check).toEqual({ code: 0, stdout: 'No errors were found on the image.\n', stderr: '' });
      // The same writes replayed on a raw file by qemu-io: the model of what the disk holds.
      theirs('img', ['create', '-q', '-f', 'raw', 'model.raw', String(virtual)], d);
      const model = theirs('io', ['-f', 'raw', ...cmds.flatMap((x) => ['-c', x]), 'model.raw'], d);
      expect(model.code).toBe(0);
      theirs('img', ['convert', '-O', 'raw', 'w.vdi', 'theirs.raw'], d);
      await ours('img', ['convert', '-O', 'raw', 'w.vdi', 'ours.raw'], d);
      const want = bytesOf(d, 'model.raw');
      expect(bytesOf(d, 'theirs.raw').equals(want)).toBe(true);
      expect(bytesOf(d, 'ours.raw').equals(want)).toBe(true);
      // Info and check agree too.
      for (const line of ['info --output=json w.vdi', 'check --output=json w.vdi']) {
        const t = theirs('img', words(line), d);
        const o = await ours('img', words(line), d);
        expect(norm(o), line).toEqual(norm(t));
      }
    });
  }

  it('the same seeded writes by qemu-io and by diskworker io on copies of one new image give identical files', async () => {
    const dq = fx.copy();
    await ours('img', ['create', '-q', '-f', 'vdi', 'w.vdi', String(33 * MiB)], dq);
    const dd = fx.copy();
    const { copyFileSync } = await import('node:fs');
    copyFileSync(join(dq, 'w.vdi'), join(dd, 'w.vdi'));
    const cmds = seededWrites(21, 33 * MiB, 30);
    const args = ['-f', 'vdi', ...cmds.flatMap((x) => ['-c', x]), 'w.vdi'];
    const t = theirs('io', args, dq);
    const o = await ours('io', args, dd);
    expect(norm(o)).toEqual(norm(t));
    expect(bytesOf(dd, 'w.vdi').equals(bytesOf(dq, 'w.vdi'))).toBe(true);
  });

  it('img convert -O vdi (dynamic and static) makes the file qemu-img convert makes, but the UUIDs', async () => {
    const d = fx.copy();
    theirs('img', ['create', '-q', '-f', 'raw', 'src.raw', String(12 * MiB)], d);
    const rnd = prng(4);
    const cmds: string[] = [];
    for (let i = 0; i < 10; i++) cmds.push(`write -P ${1 + Math.floor(rnd() * 200)} ${Math.floor(rnd() * 11 * MiB)} ${1 + Math.floor(rnd() * 300000)}`);
    theirs('io', ['-f', 'raw', ...cmds.flatMap((x) => ['-c', x]), 'src.raw'], d);
    for (const extra of [[], ['-o', 'static=on']]) {
      const t = theirs('img', ['convert', '-O', 'vdi', ...extra, 'src.raw', 'theirs.vdi'], d);
      const o = await ours('img', ['convert', '-O', 'vdi', ...extra, 'src.raw', 'ours.vdi'], d);
      expect(norm(o)).toEqual(norm(t));
      const want = bytesOf(d, 'theirs.vdi');
      const got = bytesOf(d, 'ours.vdi');
      expect(got.length, extra.join(' ')).toBe(want.length);
      expect(withoutUuids(got).equals(withoutUuids(want)), extra.join(' ')).toBe(true);
      expect(theirs('img', ['compare', 'src.raw', 'ours.vdi'], d).code).toBe(0);
    }
  });
});
