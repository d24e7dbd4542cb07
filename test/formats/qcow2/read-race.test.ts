/**
 * Reads racing discards, zero writes and allocating writes never return
 * another guest offset's data (fixed-seed sample; read-race.fuzz.ts runs many
 * seeds; the workload is in read-race.ts).
 */
import { describe, it, expect } from 'vitest';
import { raceReads } from './read-race.js';

describe('qcow2 reads racing frees', () => {
  for (const [cs, clusters] of [
    [4096, 48],
    [65536, 24],
  ] as const) {
    it(`${cs / 1024}k clusters: no read returns a cluster freed and reused for another offset`, async () => {
      const res = await raceReads(5150 + cs, { cs, clusters, ops: 1500, inFlight: 12 });
      expect(res.foreign.slice(0, 5)).toEqual([]);
      expect(res.reads).toBeGreaterThan(500);
      // The race did happen: frees were held back for reads in flight.
      expect(res.heldBack).toBeGreaterThan(0);
    });
  }
});
