/**
 * Host cluster placement against QEMU 7.2: the same qemu-io session run
 * through qemu-io and through `diskworker io` on copies of one image must leave
 * the same host layout (`qemu-img map --output=json` with host offsets, the
 * file size and `qemu-img check`'s image end offset), not only the same
 * content. Covers what QEMU's allocator does that a plain first fit does not:
 * clusters freed by a discard or an unmapping zero write handed out again at
 * once (ours first writes the metadata that dropped them, see refcount.ts),
 * the allocation cursor that skips free gaps, a write mapped piece by piece
 * (new clusters right after the piece so far), refcount blocks placed after the
 * run they count and the run searched again, the grown refcount table's place,
 * and compressed data that runs on into the next cluster.
 */
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { copyFileSync, statSync, writeFileSync } from 'node:fs';
import { ours, theirs } from '../../cli/harness.js';
import { runSeeds } from '../../fuzz/qemu-io-session.js';
import { pattern, qemuCheck, qemuImg, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());
beforeAll(() => {
  // 4 KiB that deflate to about 2.5 KiB: seeded noise, then zeros.
  const b = new Uint8Array(4096);
  b.set(pattern(2500, 11));
  writeFileSync(t.path('half-random.bin'), b);
});

interface LayoutCase {
  name: string;
  create: string;
  size: string;
  cmds: string[];
}

const cases: LayoutCase[] = [
  {
    // iotest 250's trick: the first and last 10 clusters trade places.
    name: 'discarded clusters are reused at once (iotest 250 with 64 KiB clusters)',
    create: 'cluster_size=65536',
    size: '64M',
    cmds: ['write -P 1 0 60M', 'discard 0 640k', 'discard 59M 640k', 'write -P 2 59M 640k', 'write -P 3 0 640k'],
  },
  {
    name: 'a zero write with unmap frees clusters that the next write takes',
    create: 'cluster_size=4096',
    size: '8M',
    cmds: ['write -P 1 0 1M', 'write -z -u 64k 64k', 'write -P 2 4M 32k', 'write -z -u 512k 4k', 'write -P 3 6M 16k'],
  },
  {
    name: 'a free gap too short for a run is skipped and stays behind the cursor',
    create: 'cluster_size=4096',
    size: '8M',
    cmds: ['write -P 1 0 256k', 'discard 64k 4k', 'write -P 2 1M 16k', 'write -P 3 2M 4k'],
  },
  {
    name: 'a write over in-place and new clusters is mapped piece by piece',
    create: 'cluster_size=65536',
    size: '4M',
    cmds: ['write -P 1 0 192k', 'write -P 2 1M 64k', 'discard 64k 64k', 'write -P 3 32k 448k'],
  },
  {
    name: 'refcount blocks and a grown refcount table (512-byte clusters)',
    create: 'cluster_size=512',
    size: '64M',
    cmds: ['write -P 1 0 10M', 'discard 1M 2M', 'write -P 2 20M 1M'],
  },
  {
    name: 'refcount table growth with 64-bit refcounts',
    create: 'cluster_size=512,refcount_bits=64',
    size: '8M',
    cmds: ['write -P 1 0 3M', 'write -P 2 6M 64k'],
  },
  {
    // Each cluster compresses to about 2.5 KiB: the second runs on into a new cluster.
    name: 'compressed data packed and running on into the next cluster',
    create: 'cluster_size=4096',
    size: '4M',
    cmds: ['write -c -s half-random.bin 0 4k', 'write -c -s half-random.bin 4k 4k', 'write -c -s half-random.bin 8k 4k', 'write -c -P 7 12k 4k', 'write -P 2 1M 8k', 'write -c -s half-random.bin 16k 4k'],
  },
];

/** qemu-img's view of a result: map with host offsets, file size, image end offset. */
function layoutOf(file: string): { map: string; size: number; end: number | undefined } {
  return { map: qemuImg('map', '-f', 'qcow2', '--output=json', file), size: statSync(file).size, end: qemuCheck(file)['image-end-offset'] };
}

describe('host layout of qemu-io sessions, QEMU against diskworker', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const dir = t.path(c.name.replace(/[^a-z0-9]+/gi, '-'));
      qemuImg('create', '-q', '-f', 'qcow2', '-o', c.create, `${dir}-base.qcow2`, c.size);
      const q = `${dir}-q.qcow2`;
      const d = `${dir}-d.qcow2`;
      copyFileSync(`${dir}-base.qcow2`, q);
      copyFileSync(`${dir}-base.qcow2`, d);
      const args = (f: string) => ['-f', 'qcow2', ...c.cmds.flatMap((x) => ['-c', x]), f];
      const rq = theirs('io', args(q), t.dir);
      const rd = await ours('io', args(d), t.dir);
      expect(rd.code).toBe(rq.code);
      expect(layoutOf(d)).toEqual(layoutOf(q));
      expect(qemuCheck(d).corruptions ?? 0).toBe(0);
      expect(qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', q, d)).toContain('Images are identical');
    });
  }
});

describe('qemu-io fuzzer sessions whose host layout once differed', () => {
  // 5010: a write over a zeroed, in-place and new clusters (piece by piece);
  // the others: clusters freed by discards and zero writes reused at once.
  const seeds = [5010, 5016, 5020, 5044, 5046, 5056, 5075, 5083, 5084];
  for (let i = 0; i < seeds.length; i += 3) {
    const chunk = seeds.slice(i, i + 3);
    it(`seeds ${chunk.join(' ')}`, async () => {
      const r = await runSeeds(chunk, true);
      expect(r.failures).toEqual([]);
    });
  }
});

