/**
 * Fixed-seed sample of the qemu-io differential fuzzer (the long run is
 * qemu-io-diff.fuzz.ts): random sessions of writes, zero writes, discards,
 * reads, vectored and aio requests, compressed writes, map, alloc, flush and
 * truncate over qcow2 images of every kind (512 B to 2 MiB clusters, v2 and
 * v3, extended L2, lazy refcounts, external data files, refcount widths 1 to
 * 64, backing chains over qcow2 and raw), each run through qemu-io 7.2 and
 * diskworker on copies of one image; printed lines, exit code, content, map
 * and check must match (see qemu-io-session.ts).
 */
import { describe, it, expect } from 'vitest';
import { runSeeds } from './qemu-io-session.js';

/** Seeds that once differed, each fixed since (see the commit that added it). */
const REGRESSIONS = [
  // Discard and zero writes: partial subclusters, v2 with and without backing, MAY_UNMAP, extended L2.
  2, 3, 8, 11, 15, 16, 19, 20, 25, 27, 37, 42, 44, 48, 51, 57, 60,
  // Multi-cluster compressed write over allocated clusters; qemu-io's write -c alignment message.
  31, 153,
  // Feature table with 512-byte clusters and a data file; holes seen as zero data.
  53, 119,
  // Truncate: growing over a backing file, the size error text, raw data files.
  128, 133, 208, 215,
  // check's fragmented-clusters key, present only when nonzero (host layout).
  407,
];

/** Sessions per test: each takes a second or two (several qemu-img runs). */
const CHUNK = 7;

function chunks(seeds: number[]): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < seeds.length; i += CHUNK) out.push(seeds.slice(i, i + CHUNK));
  return out;
}

describe('qemu-io sessions that once differed', () => {
  for (const seeds of chunks(REGRESSIONS)) {
    it(`seeds ${seeds.join(' ')}`, async () => {
      const r = await runSeeds(seeds);
      expect(r.failures).toEqual([]);
    });
  }
});

describe('host layout, where diskworker places clusters as QEMU does', () => {
  // A discard under an unallocated L1 entry gets an (empty) L2 table, as in QEMU.
  it('seeds 910 10108', async () => {
    const r = await runSeeds([910, 10108], true);
    expect(r.failures).toEqual([]);
  });
});

describe('random qemu-io sessions (fixed seeds)', () => {
  const sample = Array.from({ length: 35 }, (_, i) => 5000 + i);
  for (const seeds of chunks(sample)) {
    it(`seeds ${seeds[0]}..${seeds[seeds.length - 1]}`, async () => {
      const r = await runSeeds(seeds);
      expect(r.failures).toEqual([]);
    });
  }
});
