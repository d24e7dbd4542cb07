/**
 * Shared by lookup-wasm.test.ts (a fixed-seed sample) and lookup-wasm.fuzz.ts (many
 * tables). The qcow2 mapping walk counts long runs of standard L2 entries in WASM (lookup.ts). Its
 * answers must be exactly those of the TypeScript walk: random L2 tables (contiguous and
 * broken host runs, COPIED set or not, zero, compressed, unallocated, unaligned and
 * reserved-bit entries) are read and block-status-walked with the WASM path on and off,
 * and the results (or errors) must match.
 */
import { expect } from 'vitest';
import { BlockBackend, BlockError, blockStatus, createImage } from '../../../src/node.js';
import { setL2MapperEnabled } from '../../../src/formats/qcow2/lookup.js';
import { memGraph, prng } from './helpers.js';

/** 32-bit integers from the test PRNG. */
function ints(seed: number): () => number {
  const f = prng(seed);
  return () => Math.floor(f() * 4294967296);
}
import { MemoryStorage } from '../../../src/protocols/memory.js';

const CS = 65536;
const DATA_CLUSTERS = 256; // host data area after the metadata

/** An image whose first L2 table holds random entries; returns the file bytes. */
async function craftImage(seed: number, extended: boolean): Promise<Uint8Array> {
  const { graph, storage } = memGraph();
  await createImage(graph, 'qcow2', 'memory:base', { size: 2 ** 30, cluster_size: CS, extended_l2: extended });
  const bb = await BlockBackend.open(graph, 'memory:base', { format: 'qcow2' });
  await bb.write(0, new Uint8Array(512).fill(1));
  await bb.close();
  const file = storage.get('base')!.toBytes();
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const l1 = Number(dv.getBigUint64(40));
  const l2 = Number(dv.getBigUint64(l1) & 0x00fffffffffffe00n);
  const esz = extended ? 16 : 8;
  const entries = CS / esz;
  const dataStart = Math.ceil(file.byteLength / CS) * CS;
  const out = new Uint8Array(dataStart + DATA_CLUSTERS * CS);
  out.set(file);
  const r = ints(seed);
  for (let i = dataStart; i < out.length; i++) out[i] = r() & 0xff;
  const odv = new DataView(out.buffer);
  const put = (i: number, hi: number, lo: number, zero = 0, alloc = 0) => {
    odv.setUint32(l2 + i * esz, hi >>> 0);
    odv.setUint32(l2 + i * esz + 4, lo >>> 0);
    if (extended) (odv.setUint32(l2 + i * esz + 8, zero >>> 0), odv.setUint32(l2 + i * esz + 12, alloc >>> 0));
  };
  const host = (k: number) => dataStart + (k % DATA_CLUSTERS) * CS;
  for (let i = 0; i < entries; ) {
    const run = 1 + (r() % 40);
    const kind = r() % 100;
    let k = r() % DATA_CLUSTERS;
    for (let j = 0; j < run && i < entries; j++, i++) {
      const copied = r() % 4 ? 0x80000000 : 0;
      // Mostly contiguous hosts, now and then a jump.
      if (r() % 16 === 0) k = r() % DATA_CLUSTERS;
      const h = host(k++);
      const full = 0xffffffff;
      if (kind < 40) put(i, copied, h, 0, full);
      else if (kind < 50) put(i, 0, 0, extended ? full : 0, 0);
      else if (kind < 55 && !extended) put(i, copied, h | 1);
      else if (kind < 60 && !extended) put(i, 0, 1);
      else if (kind < 70) put(i, 0x40000000 | ((r() % 4) << 14), dataStart + (r() % (DATA_CLUSTERS * CS - CS)));
      else if (kind < 75 && extended) {
        // Subcluster patterns: runs of allocated / zero / unallocated subclusters.
        const a = r() >>> 0;
        put(i, copied, h, (~a & (r() >>> 0)) >>> 0, a);
      } else if (kind < 77) put(i, copied, h + 512 * (1 + (r() % 3))); // unaligned host: corrupt
      else if (kind < 79) put(i, copied | 0x01000000, h); // reserved bits
      else if (kind < 80 && extended) put(i, copied, h, 1, 1); // zero and allocated: invalid
      else put(i, 0, 0);
    }
  }
  return out;
}

interface Outcome {
  status: string[];
  data: string;
}

async function walk(bytes: Uint8Array, seed: number, on: boolean): Promise<Outcome> {
  setL2MapperEnabled(on);
  const storage = new MemoryStorage();
  storage.create('img', 0).writeRaw(0, bytes);
  const { graph } = memGraph(storage);
  const bb = await BlockBackend.open(graph, 'memory:img', { format: 'qcow2', readOnly: true });
  const r = ints(seed);
  const status: string[] = [];
  const span = (CS / 8) * CS; // guest bytes mapped by the first L2 table (standard entries)
  let data = 0;
  try {
    for (let q = 0; q < 120; q++) {
      const off = r() % 3 === 0 ? (r() % 2048) * CS : r() % span;
      const len = 1 + (r() % (r() % 2 ? 64 * CS : 2048 * CS));
      try {
        const st = await blockStatus(bb.node, true, off, Math.min(len, 2 ** 30 - off));
        status.push(`${off}:${st.status}/${st.pnum}/${st.map ?? '-'}`);
      } catch (e) {
        if (!(e instanceof BlockError)) throw e;
        status.push(`${off}: ${e.code} ${e.message}`);
      }
      if (q % 4 === 0) {
        const n = Math.min(1 + (r() % (16 * CS)), 2 ** 30 - off);
        const buf = new Uint8Array(n);
        try {
          await bb.pread(off, buf);
          for (let i = 0; i < n; i += 97) data = (data * 31 + buf[i]!) >>> 0;
        } catch (e) {
          if (!(e instanceof BlockError)) throw e;
          status.push(`read ${off}: ${e.code} ${e.message}`);
        }
      }
    }
  } finally {
    await bb.close();
  }
  return { status, data: String(data) };
}

/**
 * Crafts the random tables of `seeds`, walks each with the WASM mapper on and off, and
 * expects the same answers; returns how many block status answers covered a long run.
 * Leaves the mapper on.
 */
export async function compareTables(seeds: number[]): Promise<number> {
  let longRuns = 0;
  try {
    for (const t of seeds) {
      const img = await craftImage(1000 + t, false);
      const a = await walk(img, t, true);
      const b = await walk(img, t, false);
      expect({ table: t, ...a }).toEqual({ table: t, ...b });
      longRuns += a.status.filter((s) => /\/(\d+)\//.test(s) && Number(/\/(\d+)\//.exec(s)![1]) >= 16 * CS).length;
    }
  } finally {
    setL2MapperEnabled(true);
  }
  return longRuns;
}
