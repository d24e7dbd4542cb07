/**
 * Writes that failed on an injected error and are then retried must be on
 * storage after a clean close: a failed metadata update (an L1 entry naming
 * a new L2 table, a refcount block) may not leave the in-memory tables
 * pointing where the disk does not, or the retried data is written into a
 * table that no reopen finds. Found when a mirror job retried target writes
 * after an error and the copy read back as zeros once reopened.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { BlockBackend } from '../../../src/node.js';
import { memGraph, qemuImg, tempDir, pattern } from './helpers.js';
import { hasQemu } from '../../cli/harness.js';

const MiB = 1 << 20;

async function attempt(clusterSize: number, failAfter: number, concurrent: boolean): Promise<string | undefined> {
  const t = tempDir();
  try {
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${clusterSize}`, t.path('t.qcow2'), '16M');
    const { graph, storage } = memGraph();
    const bytes = new Uint8Array(readFileSync(t.path('t.qcow2')));
    const file = storage.create('t.qcow2', bytes.length);
    file.writeRaw(0, bytes);
    const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { driver: 'memory', filename: 't.qcow2' } });
    // Regions in different L2 tables (a 4 KiB-cluster L2 covers 2 MiB).
    const regions = [0, 3 * MiB, 6 * MiB + 4096, 13 * MiB].map((off, i) => ({ off, data: pattern(256 * 1024, 100 + i) }));
    file.faults = { failAfterWrites: file.writeCount + failAfter };
    const run = async (r: (typeof regions)[number]) => bb.write(r.off, r.data).catch(() => undefined);
    if (concurrent) await Promise.all(regions.map(run));
    else for (const r of regions) await run(r);
    file.faults = {};
    for (const r of regions) await bb.write(r.off, r.data);
    await bb.flush();
    await bb.close();
    await graph.closeAll();
    const again = await BlockBackend.open(graph, { driver: 'qcow2', file: { driver: 'memory', filename: 't.qcow2' } }, { readOnly: true });
    try {
      for (const r of regions) {
        const got = await again.read(r.off, r.data.length);
        if (Buffer.compare(Buffer.from(got), Buffer.from(r.data)) !== 0) return `region at ${r.off} lost (fail after ${failAfter}, cluster ${clusterSize}, concurrent ${concurrent})`;
      }
    } finally {
      await again.close();
      await graph.closeAll();
    }
    return undefined;
  } finally {
    t.cleanup();
  }
}

describe.skipIf(!hasQemu())('qcow2 writes retried after injected errors', () => {
  for (const clusterSize of [4096, 65536]) {
    it(`${clusterSize >> 10} KiB clusters: every retried write survives a reopen, whichever write failed`, async () => {
      const lost: string[] = [];
      for (let failAfter = 0; failAfter < 24; failAfter++) {
        for (const concurrent of [false, true]) {
          const r = await attempt(clusterSize, failAfter, concurrent);
          if (r) lost.push(r);
        }
      }
      expect(lost).toEqual([]);
    });
  }
});
