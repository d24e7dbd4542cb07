/**
 * Fixed-seed sample of the check / open differential fuzzer (check-diff.ts):
 * each seed builds an image with qemu-img / qemu-io, mutates one structure,
 * and compares check (human, JSON, -r leaks, -r all and the repaired files),
 * info, a read-only read and a read-write write with QEMU 7.2. The seeds are
 * cases that once differed. Plus the reproductions of issue #11.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCase, report } from './check-diff.js';
import { Fixture, golden, hasQemu, normalize, ours, theirs } from '../../cli/harness.js';

/** Seeds that differed from QEMU once (reserved L1 bits, regions past the end, fragmentation, rebuild placement, bitmap constraints, huge refcount block offsets, messages, ...). */
const SEEDS = [
  1, 6, 9, 10, 18, 22, 28, 29, 40, 46, 56, 66, 86,
  // v3 snapshot table entries without the large VM state / disk size; one corruption notice, in order.
  15, 35,
  // A refcount block created over the refcount table of a truncated image; C's %#x in messages;
  // the non-fatal corruption notice of read-only opens.
  26, 38, 52,
  // A write dropping a reference to a cluster whose refcount is 0: QEMU's notice, the write succeeds.
  63,
  // A read-write open for check loads the bitmaps, marks them in use and stores them on close (new clusters).
  3, 27, 67, 107, 114, 124, 137, 172, 182,
  // A metadata write past 2^53 (L1 entry bit 55): EFBIG as ext4 gives; close reports the failed cache flush.
  72, 80, 164, 188,
  // A read past 2^53 (compressed entry near 2^58) reads zeros: EIO from the decompression; exact offsets printed.
  77, 100, 165,
  // A refcount block offset the file cannot grow to: the file driver's error report before "could not resize".
  71, 92,
  // Overlap checks on L1 / L2 / refcount block writes, several kinds per cluster in QEMU's order;
  // the bitmaps bit without its extension overlaps every write; repaired refcounts flushed later.
  7, 111, 166,
  // Snapshot table: count / offset checked first; -r all discards overhanging snapshots, cuts extra
  // data and rewrites the table (incomplete v3 entries).
  83, 103, 162,
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('check-diff fixed seeds', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}`, async () => {
      const { info, diffs } = await runCase(seed);
      expect(diffs.length === 0 ? '' : report(info, diffs)).toBe('');
    });
  }
});

/**
 * Seeds 20, 47, 78, 132, 145, 155, 169 and 177 (images with bitmaps and snapshots) differ from
 * QEMU 7.2 on purpose: its check -r, marking the bitmaps in use, rewrites the header from a
 * state that has not read the snapshot table yet, so the image loses its snapshots (and -r leaks
 * frees their clusters). We keep them. This pins both sides.
 */
describe('check -r on an image with bitmaps and snapshots keeps the snapshots (QEMU 7.2 drops them)', () => {
  for (const mode of ['leaks', 'all']) {
    it(`check -r ${mode}`, async () => {
      const fx = new Fixture((_dir, sh) => {
        sh('qemu-img create -q -f qcow2 s.qcow2 4M');
        sh(`qemu-io -c 'write -P 1 0 1M' s.qcow2 >/dev/null`);
        sh('qemu-img snapshot -c keep s.qcow2');
        sh(`qemu-io -c 'write -P 2 0 512k' s.qcow2 >/dev/null`);
        sh('qemu-img bitmap --add s.qcow2 b0');
      });
      try {
        const dq = fx.copy();
        const dd = fx.copy();
        theirs('img', ['check', '-r', mode, 's.qcow2'], dq);
        const o = await ours('img', ['check', '-r', mode, 's.qcow2'], dd);
        expect(o.code).toBe(0);
        expect(theirs('img', ['snapshot', '-l', 's.qcow2'], dq).stdout).toBe('');
        expect(theirs('img', ['snapshot', '-l', 's.qcow2'], dd).stdout).toMatch(/^Snapshot list:\n.*\n1 +keep /);
        expect(theirs('img', ['check', 's.qcow2'], dd).stdout).toMatch(/^No errors were found on the image\./);
        expect(theirs('img', ['convert', '-l', 'keep', '-O', 'raw', 's.qcow2', 'keep.raw'], dd).code).toBe(0);
        const keep = readFileSync(join(dd, 'keep.raw'));
        expect(keep.subarray(0, 1 << 20).every((b) => b === 1)).toBe(true);
      } finally {
        fx.dispose();
      }
    });
  }
});

describe('issue #11 reproductions', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((dir, sh) => {
      sh('qemu-img create -q -f qcow2 l.qcow2 4M');
      sh(`qemu-io -f qcow2 -c 'write 0 64k' l.qcow2 >/dev/null`);
      const l = readFileSync(join(dir, 'l.qcow2'));
      l[0x30006] = l[0x30006]! | 0x01; // bit 0x100 of the first L1 entry: reserved
      writeFileSync(join(dir, 'l.qcow2'), l);
      sh('head -c 1M /usr/bin/qemu-img > s.raw && truncate -s 2M s.raw');
      sh('qemu-img convert -c -O qcow2 s.raw z.qcow2 && truncate -s 294912 z.qcow2');
      // Fragmentation counted per L2 table: 512-byte clusters, 1-bit refcounts, compressed 4 KiB clusters.
      sh('qemu-img create -q -f qcow2 -o cluster_size=512 f512.qcow2 1M');
      sh(`qemu-io -f qcow2 -c 'write -P 1 0 200k' -c 'write -P 2 300k 8k' -c 'write -P 3 100k 4k' f512.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=1 r1.qcow2 4M');
      sh(`qemu-io -f qcow2 -c 'write -P 1 2M 1M' -c 'write -P 2 0 1M' -c 'write -P 3 1536k 4k' r1.qcow2 >/dev/null`);
      sh('qemu-img convert -c -O qcow2 -o cluster_size=4k s.raw c4k.qcow2');
    });
  }, 60_000);
  afterAll(() => fx.dispose());

  // Both the corrupt bit and another header defect: which error an open reports (qcow2_do_open's order).
  it('open: the corrupt bit against unknown features, refcount order and table checks', async () => {
    const dir = fx.copy();
    const base = readFileSync(join(dir, 'l.qcow2'));
    const variants: Array<[string, (b: Buffer) => void]> = [
      ['unknown incompatible bit', (b) => (b[0x4f] = b[0x4f]! | 0x80)],
      ['refcount_order 7', (b) => b.writeUInt32BE(7, 0x60)],
      ['L1 table offset unaligned', (b) => b.writeUInt32BE(0x30001, 0x2c)],
      ['refcount table offset unaligned', (b) => b.writeUInt32BE(0x10001, 0x34)],
      ['crypt_method 3', (b) => b.writeUInt32BE(3, 0x20)],
    ];
    for (const [name, mutate] of variants) {
      const b = Buffer.from(base);
      b[0x4f] = b[0x4f]! | 0x02; // the corrupt bit
      mutate(b);
      writeFileSync(join(dir, 'c.qcow2'), b);
      for (const args of [['-c', 'read 0 512', 'c.qcow2'], ['-r', '-c', 'read 0 512', 'c.qcow2']]) {
        const q = theirs('io', args, dir);
        const o = await ours('io', args, dir);
        expect({ name, args, code: o.code, out: normalize(o.stdout + o.stderr) }).toEqual({ name, args, code: q.code, out: normalize(q.stdout + q.stderr) });
      }
    }
  });

  const lines = [
    'check l.qcow2', 'check --output=json l.qcow2', 'check -r all l.qcow2',
    'check z.qcow2', 'check --output=json z.qcow2',
    'check --output=json f512.qcow2', 'check --output=json r1.qcow2', 'check --output=json c4k.qcow2',
  ];
  for (const line of lines) {
    it(`img ${line}`, async () => {
      const image = line.split(' ').pop()!;
      const o = await golden(fx, { tool: 'img', args: line.split(' '), sameImages: line.includes('-r') ? [image] : [] });
      expect(o.ours).toEqual(o.theirs);
      expect(o.imageDiffs).toEqual([]);
    });
  }
});
