/**
 * Cost of the generic request path: reads through BlockBackend → raw → null
 * against calling the null back end's driver directly (issue 2: 4 KiB ≥ 0.5×,
 * 1 MiB ≥ 0.95×).
 */
import { BlockBackend, BlockGraph, nullDriver, rawDriver } from '../../src/node.js';
import { bestOf, opsPerSecond, type BenchResult } from '../types.js';

export async function run(): Promise<BenchResult[]> {
  const graph = new BlockGraph([nullDriver, rawDriver], 'null-co');
  const size = 1 << 30;
  // read-zeroes: the reads fill the buffer, as a real back end would (null-co's default leaves it).
  const bb = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'null-co', size, 'read-zeroes': true } });
  const nullNode = bb.node.file!.node;
  const direct = nullNode.instance;
  const out: BenchResult[] = [];
  for (const [label, len, target] of [
    ['4 KiB', 4096, 0.5],
    ['1 MiB', 1 << 20, 0.95],
  ] as const) {
    const buf = new Uint8Array(len);
    const slots = Math.floor(size / len);
    let i = 0;
    const viaBackend = () => bb.pread(((i++ * 7919) % slots) * len, buf);
    let j = 0;
    const viaDriver = () => direct.preadv!(((j++ * 7919) % slots) * len, len, buf, 0);
    // Interleave rounds so both see the same machine state.
    let a = 0;
    let b = 0;
    for (let round = 0; round < 3; round++) {
      b = Math.max(b, await opsPerSecond(viaDriver, 700));
      a = Math.max(a, await opsPerSecond(viaBackend, 700));
    }
    out.push({
      name: `${label} reads, BlockBackend → raw → null-co`,
      unit: 'ops/s',
      value: a,
      baseline: 'null-co driver called directly',
      baselineValue: b,
      ratio: a / b,
      target,
    });
  }
  void bestOf;
  await bb.close();
  return out;
}
