/**
 * Real-process kill, a few fixed seeds (kill.fuzz.ts runs many; the run and
 * the checks are in kill.ts): SIGKILL during compressed writes, writes, zero
 * writes and discards with 4 requests in flight leaves an image qemu-img check
 * calls free of corruptions, with the flushed data intact.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { killOnce } from './kill.js';
import { tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

describe('qcow2 killed writer', () => {
  it('3 kills at seeded moments leave a consistent image with the flushed data intact', async () => {
    // The three children run side by side (start-up is most of the time).
    const results = await Promise.all([101, 202, 303].map((seed) => killOnce(t.dir, seed, 1500)));
    // Killed after a completed flush: the content check had data to check.
    for (const r of results) expect({ seed: r.seed, flushed: r.durable > 0 }).toEqual({ seed: r.seed, flushed: true });
  });
});
