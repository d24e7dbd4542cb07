/**
 * Block status over an allocated qcow2 image (what `img map` and convert ask for every
 * extent): the mapping walk with the WASM L2 mapper measuring long runs, against the
 * TypeScript entry-by-entry walk, in the same run on the same open image. The image is
 * 64 GiB with preallocation=metadata (every cluster allocated, host-contiguous: each
 * answer covers a whole 512 MiB L2 slice), on node-file in a temporary directory, with
 * an L2 cache large enough for all of its tables.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, blockStatus, createImage, createNodeGraph } from '../../src/node.js';
import { setL2MapperEnabled } from '../../src/formats/qcow2/lookup.js';
import type { BenchResult } from '../types.js';
import { opsPerSecond } from '../wasm/common.js';

export async function run(): Promise<BenchResult[]> {
  const size = 64 * 2 ** 30;
  const dir = mkdtempSync(join(tmpdir(), 'dw-bench-bs-'));
  try {
    const graph = createNodeGraph();
    const path = join(dir, 'a.qcow2');
    await createImage(graph, 'qcow2', path, { size, cluster_size: 65536, preallocation: 'metadata' });
    // An L2 cache that holds every table (8 MiB for 64 GiB), so the walk measures the
    // mapping, not reads of L2 tables from the file.
    const bb = await BlockBackend.open(graph, { driver: 'qcow2', 'l2-cache-size': 8 * 2 ** 20, file: { driver: 'file', filename: path } }, { readOnly: true });
    const walk = async (): Promise<number> => {
      let n = 0;
      for (let off = 0; off < size; n++) off += (await blockStatus(bb.node, true, off, size - off)).pnum;
      return n;
    };
    // Both walks must give the same number of extents (the mapping is the same).
    const extents = await walk();
    let wasm = 0;
    let ts = 0;
    try {
      for (let round = 0; round < 2; round++) {
        setL2MapperEnabled(true);
        wasm = Math.max(wasm, await opsPerSecond(walk, 300, 2));
        setL2MapperEnabled(false);
        if ((await walk()) !== extents) throw new Error('block status walks differ between the WASM and TypeScript mapping');
        ts = Math.max(ts, await opsPerSecond(walk, 300, 2));
      }
    } finally {
      setL2MapperEnabled(true);
      await bb.close();
    }
    return [
      {
        name: `qcow2 block status walk of a 64 GiB allocated image (${extents} extents): WASM L2 mapper vs TypeScript walk`,
        unit: 'walks/s',
        value: wasm,
        baseline: 'TypeScript walk',
        baselineValue: ts,
        ratio: wasm / ts,
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
