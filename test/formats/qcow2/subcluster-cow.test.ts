/**
 * Extended L2 writes as QEMU's calculate_l2_meta makes them (the cases of
 * iotest 271): copy-on-write of a cluster shared with a snapshot spans only
 * its allocated subclusters and keeps the rest of its bitmap; an in-place
 * write over data leaves the entry alone, bits QEMU ignores included; an
 * entry whose bitmap no valid image has makes a write fail with QEMU's
 * corruption message before anything is written. The same qemu-io commands
 * run through qemu-io 7.2 and ours on copies of one image, and the L2
 * entries, outputs and `qemu-img check` are compared.
 */
import { describe, expect, it } from 'vitest';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasQemu, normalize, ours, theirs } from '../../cli/harness.js';

/** The first L2 table's entries 0..n-1 as "descriptor bitmap" hex pairs. */
function l2Entries(file: string, n: number): string[] {
  const b = readFileSync(file);
  const l1 = Number(b.readBigUInt64BE(40));
  const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  return Array.from({ length: n }, (_, i) => `${b.readBigUInt64BE(l2 + i * 16).toString(16)} ${b.readBigUInt64BE(l2 + i * 16 + 8).toString(16)}`);
}

function poke(file: string, at: number, bytes: number[]): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from(bytes), 0, bytes.length, at);
  closeSync(fd);
}

function l2Offset(file: string): number {
  const b = readFileSync(file);
  return Number(b.readBigUInt64BE(Number(b.readBigUInt64BE(40))) & 0x00fffffffffffe00n);
}

/** Runs qemu-io's -c commands on copies of `base` through both tools; compares outputs, entries and check. */
async function both(dir: string, base: string, cmds: string[], entries: number, label: string) {
  const q = join(dir, `q-${label}.qcow2`);
  const o = join(dir, `o-${label}.qcow2`);
  copyFileSync(base, q);
  copyFileSync(base, o);
  const args = (f: string) => [...cmds.flatMap((c) => ['-c', c]), f];
  const tq = theirs('io', args(q), dir);
  const to = await ours('io', args(o), dir);
  const strip = (s: string) => normalize(s).replace(/[qo]-(\w+)\.qcow2/g, 'X.qcow2');
  expect({ out: strip(to.stdout), err: strip(to.stderr), code: to.code }, label).toEqual({ out: strip(tq.stdout), err: strip(tq.stderr), code: tq.code });
  expect(l2Entries(o, entries), label).toEqual(l2Entries(q, entries));
  const cq = theirs('img', ['check', q], dir);
  const co = theirs('img', ['check', o], dir);
  expect(strip(co.stdout + co.stderr), label).toBe(strip(cq.stdout + cq.stderr));
}

describe.skipIf(!hasQemu())('qcow2 extended L2 writes vs qemu-io 7.2', () => {
  it('copy-on-write of clusters shared with a snapshot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dw-subcow-'));
    try {
      const base = join(dir, 'base.qcow2');
      theirs('img', ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', base, '1M'], dir);
      // Each of clusters 0..9: subcluster 7 zero, 13 and 18 allocated (iotest 271's layout).
      for (let c = 0; c < 10; c++) {
        const r = theirs('io', ['-c', `write -q -z ${64 * c + 14}k 2k`, '-c', `write -q -P ${0xd0 + c} ${64 * c + 26}k 2k`, '-c', `write -q -P ${0xe0 + c} ${64 * c + 36}k 2k`, base], dir);
        expect(r.code).toBe(0);
      }
      expect(theirs('img', ['snapshot', '-c', 'snap1', base], dir).code).toBe(0);
      // Before, at, between and after the allocated subclusters; data and zero writes.
      await both(
        dir,
        base,
        [
          'write -q -P 0xf0 30k 1k',
          'write -q -P 0xf1 84k 1k',
          'write -q -P 0xf2 168k 1k',
          'write -q -P 0xf3 218k 1k',
          'write -q -P 0xf4 270k 1k',
          'write -q -P 0xf5 321k 1k',
          'write -q -z 414k 3k',
          'write -q -z 474k 2k',
          'write -q -z 538k 1k',
          'write -q -z 588k 1k',
          'read -q -P 0xd0 26k 2k',
          'read -q -P 0xe9 612k 2k',
        ],
        10,
        'shared',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('in-place writes keep the entry; invalid bitmaps fail the write as corruption', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dw-subcow-'));
    try {
      // The 'cluster is zero' bit of the standard descriptor, which extended L2 ignores.
      const a = join(dir, 'a.qcow2');
      theirs('img', ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', a, '1M'], dir);
      theirs('io', ['-c', 'write -q -P 0x11 0 2k', a], dir);
      poke(a, l2Offset(a) + 7, [1]);
      await both(dir, a, ['write -q -P 0x11 0 1k', 'read -q -P 0x11 0 2k'], 1, 'zero-bit');

      // Cluster 1 allocated with subcluster 0 both allocated and zero: a write across it fails.
      const b = join(dir, 'b.qcow2');
      theirs('img', ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', b, '1M'], dir);
      theirs('io', ['-c', 'write -q 32k 128k', b], dir);
      poke(b, l2Offset(b) + 24, [0, 0, 0, 1]);
      await both(dir, b, ['write 0 192k'], 3, 'alloc-and-zero');

      // Unallocated cluster 0 with an allocated subcluster bit (the L2 table made by a write to cluster 4).
      const c = join(dir, 'c.qcow2');
      theirs('img', ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', c, '1M'], dir);
      theirs('io', ['-c', 'write -q 256k 1k', c], dir);
      poke(c, l2Offset(c) + 15, [1]);
      await both(dir, c, ['write 0 1k'], 1, 'unallocated-alloc-bit');
      // The same entry read: QEMU's read path names it too.
      await both(dir, c, ['read 0 1k'], 1, 'unallocated-alloc-bit-read');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
