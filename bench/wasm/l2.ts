/** L2 mapping of a full 64 KiB-cluster L2 table (8192 entries): WASM vs a straightforward DataView loop. Target: >= 2x. */
import { loadL2, mapL2Ts, RUN_FIELDS, type L2Geometry } from '../../src/wasm/l2.js';
import { opsPerSecond, prng, result, type BenchResult } from './common.js';

/** The straightforward TypeScript loop: one DataView read per entry, a run per kind change. */
function dataViewLoop(table: Uint8Array, out: Float64Array): number {
  const dv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const n = table.byteLength / 8;
  let runs = 0;
  let kind = -1;
  let host = 0;
  let len = 0;
  for (let i = 0; i < n; i++) {
    const e = dv.getBigUint64(i * 8);
    const compressed = (e >> 62n) & 1n;
    const off = Number(e & 0x00fffffffffffe00n);
    const k = compressed ? 5 : e & 1n ? 1 : off ? 0 : 3;
    if (k === kind && k !== 5 && (k !== 0 || host + len === off)) {
      len += 65536;
      continue;
    }
    if (kind >= 0) {
      out[runs * RUN_FIELDS] = kind;
      out[runs * RUN_FIELDS + 2] = host;
      out[runs * RUN_FIELDS + 3] = len;
      runs++;
    }
    kind = k;
    host = off;
    len = 65536;
  }
  return runs + 1;
}

export async function run(): Promise<BenchResult[]> {
  const g: L2Geometry = { clusterBits: 16, extended: false };
  const wasm = await loadL2(8192);
  const slice = wasm.allocSlice(65536);
  const r = prng(1);
  const bytes = slice.bytes;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 65536);
  // A realistic table: mostly allocated, often contiguous, some holes and zero clusters.
  let host = 0x100000;
  for (let i = 0; i < 8192; i++) {
    const k = r() % 100;
    if (k < 70) {
      if (r() % 8 === 0) host += (1 + (r() % 64)) * 65536;
      dv.setUint32(i * 8, 0x80000000 + Math.floor(host / 2 ** 32));
      dv.setUint32(i * 8 + 4, host % 2 ** 32);
      host += 65536;
    } else if (k < 80) {
      dv.setUint32(i * 8 + 4, 1);
    }
  }
  const plain = bytes.slice();
  const out = new Float64Array(8192 * RUN_FIELDS);
  const full = 8192 * 65536;
  const wasmOps = await opsPerSecond(() => wasm.mapRaw(slice, g, 0, 0, full));
  const tsOps = await opsPerSecond(() => mapL2Ts(plain, g, 0, 0, full, out));
  const dvOps = await opsPerSecond(() => dataViewLoop(plain, out));
  return [
    result('l2 map of a full 64 KiB-cluster table: wasm vs DataView loop', 'tables/s', wasmOps, 'DataView getBigUint64 loop', dvOps, 2.0),
    result('l2 map of a full 64 KiB-cluster table: wasm vs TypeScript fallback (mapL2Ts)', 'tables/s', wasmOps, 'mapL2Ts', tsOps),
  ];
}
