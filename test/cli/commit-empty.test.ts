/**
 * What `img commit` leaves of the top image, against qemu-img 7.2 (QEMU's
 * qcow2_make_empty): a v3 top without snapshots or bitmaps is reset to a
 * fresh image, byte for byte as QEMU leaves it (the file cut after header,
 * refcount table, refcount block and L1 table); a top with a snapshot has
 * its clusters discarded instead. Errors injected by blkdebug at each step of
 * the reset (iotest 098) give QEMU's message, and the image QEMU's next
 * read-write open repairs is the same.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs } from './harness.js';

const sh = (cwd: string, line: string) => spawnSync('sh', ['-c', line], { cwd, encoding: 'utf8' });

describe.skipIf(!hasQemu())('img commit empties the top image as qemu-img does', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, run) => {
      run('qemu-img create -q -f qcow2 base.qcow2 64M');
      run("qemu-io -c 'write -P 1 0 1M' base.qcow2");
      run('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 64M');
      run("qemu-io -c 'write -P 2 64k 256k' -c 'write -z 1M 64k' -c 'write -P 3 40M 64k' top.qcow2");
      run('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 snap.qcow2 64M');
      run("qemu-io -c 'write -P 2 64k 256k' snap.qcow2");
      run('qemu-img snapshot -c s snap.qcow2');
      run("qemu-io -c 'write -P 4 128k 64k' snap.qcow2");
    });
  });
  afterAll(() => fx.dispose());

  for (const img of ['top.qcow2', 'snap.qcow2']) {
    it(`commit ${img}`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const t = theirs('img', ['commit', img], dq);
      const o = await ours('img', ['commit', img], dd);
      expect({ code: o.code, out: normalize(o.stdout), err: normalize(o.stderr) }).toEqual({ code: t.code, out: normalize(t.stdout), err: normalize(t.stderr) });
      for (const f of [img, 'base.qcow2']) {
        const q = sh(dq, `qemu-img check ${f}; qemu-img map --output=json ${f}; qemu-img compare -U ${f} ${join(dd, f)}`);
        const d = sh(dd, `qemu-img check ${f}; qemu-img map --output=json ${f}; qemu-img compare -U ${f} ${join(dq, f)}`);
        expect(d.stdout + d.stderr, f).toBe(q.stdout + q.stderr);
      }
      // The reset leaves exactly QEMU's file.
      if (img === 'top.qcow2') expect(readFileSync(join(dd, img)).equals(readFileSync(join(dq, img)))).toBe(true);
    });
  }

  for (const event of ['l1_update', 'empty_image_prepare', 'reftable_update', 'refblock_alloc']) {
    it(`an error injected at ${event} while emptying`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      for (const d of [dq, dd]) writeFileSync(join(d, 'bd.conf'), `[inject-error]\nevent = "${event}"\n`);
      const args = ['commit', 'blkdebug:bd.conf:top.qcow2'];
      const t = theirs('img', args, dq);
      const o = await ours('img', args, dd);
      expect({ code: o.code, err: normalize(o.stderr) }).toEqual({ code: t.code, err: normalize(t.stderr) });
      // The next read-write open repairs what the failure left (the dirty bit); then both agree.
      for (const d of [dq, dd]) sh(d, "qemu-io -c close top.qcow2");
      const q = sh(dq, 'qemu-img check top.qcow2; qemu-img map --output=json top.qcow2');
      const d = sh(dd, 'qemu-img check top.qcow2; qemu-img map --output=json top.qcow2');
      expect(d.stdout + d.stderr).toBe(q.stdout + q.stderr);
    });
  }
});
