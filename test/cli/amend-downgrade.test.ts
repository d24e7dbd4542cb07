/**
 * `img amend -o compat=0.10` against qemu-img 7.2 (QEMU's qcow2_downgrade):
 * images with internal snapshots, zero clusters of both kinds in the active
 * and the snapshots' tables, with and without a backing file, and each reason
 * QEMU refuses. The same command runs on two copies; then the messages and
 * exit codes, `check`, `map` with host offsets, the snapshot list, every
 * snapshot's content (`convert -l` on both images), and the files' bytes must
 * be the same.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, normalize, ours, theirs, words } from './harness.js';

const sh = (cwd: string, line: string) => {
  const r = spawnSync('sh', ['-c', line], { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${line}: ${r.stderr}`);
};

describe('img amend -o compat=0.10 vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, run) => {
      run('qemu-img create -q -f qcow2 base.qcow2 4M');
      run("qemu-io -c 'write -P 0x11 0 4M' base.qcow2");
      // Zero clusters before and after a snapshot, plain and preallocated, in tables the snapshot shares.
      for (const [name, backing] of [['snap.qcow2', ''], ['snap-top.qcow2', '-b base.qcow2 -F qcow2']] as const) {
        run(`qemu-img create -q -f qcow2 ${backing} ${name} 4M`);
        run(`qemu-io -c 'write -P 0x22 0 256k' -c 'write -z 64k 64k' -c 'write -z 1M 128k' ${name}`);
        run(`qemu-img snapshot -c s1 ${name}`);
        run(`qemu-io -c 'write -z 128k 64k' -c 'write -z -u 192k 64k' -c 'write -P 0x33 2M 64k' -c 'write -z 3M 64k' ${name}`);
        run(`qemu-img snapshot -c s2 ${name}`);
        run(`qemu-io -c 'write -z 0 64k' ${name}`);
      }
      run('qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 1M');
      run("qemu-io -c 'write -P 1 0 64k' -c 'write -z 64k 64k' lazy.qcow2");
      run('qemu-img create -q -f qcow2 -o extended_l2=on ext.qcow2 1M');
      run('qemu-img create -q -f qcow2 -o compression_type=zstd zstd-c.qcow2 1M');
      run("qemu-io -c 'write -c -P 5 0 64k' zstd-c.qcow2");
      run('qemu-img create -q -f qcow2 -o compression_type=zstd zstd.qcow2 1M');
      run("qemu-io -c 'write -P 5 0 64k' -c 'write -z 64k 64k' zstd.qcow2");
      run('qemu-img create -q -f qcow2 -o refcount_bits=8 rc8.qcow2 1M');
      // A persistent bitmap: QEMU stores it again at close, into the v2 image (which then warns).
      run('qemu-img create -q -f qcow2 bm.qcow2 4M');
      run("qemu-io -c 'write 0 1M' bm.qcow2");
      run('qemu-img bitmap --add bm.qcow2 b0');
      run("qemu-io -c 'write 2M 64k' bm.qcow2");
      // A v2 image with snapshots, for the way up (the table gains v3's extra data).
      run('qemu-img create -q -f qcow2 -o compat=0.10 v2snap.qcow2 1M');
      run("qemu-io -c 'write -P 6 0 64k' v2snap.qcow2");
      run('qemu-img snapshot -c a v2snap.qcow2');
      run('qemu-img snapshot -c b v2snap.qcow2');
      run('qemu-img create -q -f qcow2 resized.qcow2 1M');
      run('qemu-img snapshot -c old resized.qcow2');
      run('qemu-img resize -q resized.qcow2 2M');
    });
  });
  afterAll(() => fx.dispose());

  const cases: Array<[string, string[]]> = [
    ['snap.qcow2', ['s1', 's2']],
    ['snap-top.qcow2', ['s1', 's2']],
    ['lazy.qcow2', []],
    ['ext.qcow2', []],
    ['zstd-c.qcow2', []],
    ['zstd.qcow2', []],
    ['rc8.qcow2', []],
    ['resized.qcow2', ['old']],
    ['bm.qcow2', []],
  ];
  for (const [img, snaps] of cases) {
    it(`amend -p -o compat=0.10 ${img}`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const args = words(`amend -p -o compat=0.10 ${img}`);
      const t = theirs('img', args, dq);
      const o = await ours('img', args, dd);
      expect({ code: o.code, out: normalize(o.stdout), err: normalize(o.stderr) }).toEqual({ code: t.code, out: normalize(t.stdout), err: normalize(t.stderr) });
      // The results, read by qemu-img on both.
      for (const line of [`check ${img}`, `map --output=json ${img}`, `snapshot -l ${img}`, `info ${img}`]) {
        const q = theirs('img', words(line), dq);
        const d = theirs('img', words(line), dd);
        expect(normalize(d.stdout + d.stderr), line).toBe(normalize(q.stdout + q.stderr));
      }
      for (const s of snaps) {
        sh(dq, `qemu-img convert -l ${s} -O raw ${img} ${s}.raw`);
        sh(dd, `qemu-img convert -l ${s} -O raw ${img} ${s}.raw`);
        expect(readFileSync(join(dd, `${s}.raw`)).equals(readFileSync(join(dq, `${s}.raw`))), s).toBe(true);
      }
      expect(readFileSync(join(dd, img)).equals(readFileSync(join(dq, img))), 'file bytes').toBe(true);
    });
  }

  it('reports an invalid snapshot L1 table and keeps the image as QEMU does', async () => {
    const dq = fx.copy();
    const dd = fx.copy();
    for (const d of [dq, dd]) {
      // Snapshot 1's L1 table offset (the table entry's bytes 0..7) made unaligned.
      sh(d, "off=$(od -An -j64 -N8 -tx8 --endian=big snap.qcow2 | tr -d ' '); printf '\\000\\000\\000\\000\\000\\001\\002\\000' | dd of=snap.qcow2 bs=1 seek=$((0x$off)) conv=notrunc status=none");
    }
    const args = words('amend -o compat=0.10 snap.qcow2');
    const t = theirs('img', args, dq);
    const o = await ours('img', args, dd);
    expect({ code: o.code, err: normalize(o.stderr) }).toEqual({ code: t.code, err: normalize(t.stderr) });
    expect(t.stderr).toContain('Snapshot L1 table offset invalid');
    const q = theirs('img', words('check snap.qcow2'), dq);
    const d = theirs('img', words('check snap.qcow2'), dd);
    expect(normalize(d.stdout + d.stderr)).toBe(normalize(q.stdout + q.stderr));
  });

  it('amend -p -o compat=1.1 of a v2 image with snapshots rewrites the table with v3 extra data', async () => {
    const dq = fx.copy();
    const dd = fx.copy();
    const args = words('amend -p -o compat=1.1 v2snap.qcow2');
    const t = theirs('img', args, dq);
    const o = await ours('img', args, dd);
    expect({ code: o.code, out: normalize(o.stdout), err: normalize(o.stderr) }).toEqual({ code: t.code, out: normalize(t.stdout), err: normalize(t.stderr) });
    for (const line of ['check v2snap.qcow2', 'snapshot -l v2snap.qcow2', 'info v2snap.qcow2']) {
      const q = theirs('img', words(line), dq);
      const d = theirs('img', words(line), dd);
      expect(normalize(d.stdout + d.stderr), line).toBe(normalize(q.stdout + q.stderr));
    }
    expect(theirs('img', words('check v2snap.qcow2'), dd).stdout).toContain('No errors were found');
    expect(readFileSync(join(dd, 'v2snap.qcow2')).equals(readFileSync(join(dq, 'v2snap.qcow2'))), 'file bytes').toBe(true);
  });
});
