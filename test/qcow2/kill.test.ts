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
    let flushedSeen = 0;
    for (const seed of [101, 202, 303]) {
      const r = await killOnce(t.dir, seed, 1500);
      if (r.durable > 0) flushedSeen++;
    }
    // The kills came after some flushes had completed (the content check checked something).
    expect(flushedSeen).toBeGreaterThan(0);
  });
});
