/**
 * Reads racing discards, zero writes and allocating writes (shared by
 * read-race.test.ts, a fixed-seed sample, and read-race.fuzz.ts): every write
 * fills whole clusters with sectors tagged with their guest cluster, so a
 * read that returns a sector tagged with another cluster has read a host
 * cluster that was freed and reused meanwhile. The back end is the memory one
 * with random delays on every read and write, so requests really interleave.
 */
import { BlockBackend, BlockGraph, MemoryStorage, createImage, createMemoryDriver, qcow2Driver, rawDriver, ReqFlag } from '../../../src/node.js';
import type { BlockDriver, DriverInstance, IoResult } from '../../../src/core/driver.js';
import type { Qcow2Image } from '../../../src/formats/qcow2/qcow2.js';
import { prng } from '../../prng.js';

/**
 * A memory back end whose reads and writes complete after a random delay
 * (up to readMs / writeMs ms): reads slower than writes, so that a discard,
 * the flush that frees the cluster and a write that reuses it can all happen
 * while a read is on its way.
 */
function delayedMemoryDriver(storage: MemoryStorage, r: () => number, readMs: number, writeMs: number): BlockDriver {
  const base = createMemoryDriver(storage);
  const pause = (maxMs: number) => new Promise<void>((res) => setTimeout(res, Math.floor(r() * (maxMs + 1))));
  return {
    ...base,
    async open(node, options) {
      const inst = await base.open(node, options);
      const delayed = Object.create(inst) as DriverInstance;
      // The data moves when the delay is over, as with a real device.
      delayed.preadv = (o, b, buf, f): IoResult => pause(readMs).then(() => inst.preadv!(o, b, buf, f));
      delayed.pwritev = (o, b, buf, f): IoResult => pause(writeMs).then(() => inst.pwritev!(o, b, buf, f));
      return delayed;
    },
  };
}

/** Sector `s` of a write of version `v` to guest cluster `c`. */
function fillSector(out: Uint8Array, c: number, v: number): void {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(0, c);
  dv.setUint32(4, v);
  out.fill((c * 31 + v) & 0xff, 8);
}

/** What a sector read from guest cluster `c` holds: 'zero', 'ok' (tagged c), or the cluster it is tagged with. */
function sectorOwner(s: Uint8Array, c: number): 'zero' | 'ok' | number {
  if (s.every((x) => x === 0)) return 'zero';
  const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
  const owner = dv.getUint32(0);
  const v = dv.getUint32(4);
  const body = (owner * 31 + v) & 0xff;
  for (let i = 8; i < s.length; i++) if (s[i] !== body) return -1;
  return owner === c ? 'ok' : owner;
}

export interface RaceResult {
  /** Sectors read that belong to another guest cluster (or are torn). */
  foreign: Array<{ op: number; cluster: number; sector: number; owner: number }>;
  reads: number;
  /** Frees held back because a read that started before them was still running. */
  heldBack: number;
}

/**
 * Runs `ops` random requests over `clusters` guest clusters of `cs` bytes,
 * up to `inFlight` at a time, and checks every read. `gate` false switches
 * the read gate off (to show the test fails without it).
 */
export async function raceReads(seed: number, opts: { cs: number; clusters: number; ops: number; inFlight: number; gate?: boolean }): Promise<RaceResult> {
  const { cs, clusters } = opts;
  const r = prng(seed);
  const storage = new MemoryStorage();
  const graph = new BlockGraph([delayedMemoryDriver(storage, prng(seed + 1), 20, 1), rawDriver, qcow2Driver], 'memory');
  await createImage(graph, 'qcow2', 'memory:img', { size: clusters * cs, cluster_size: cs });
  const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:img' }, discard: 'unmap' });
  const img = bb.node.instance as unknown as Qcow2Image;
  if (opts.gate === false) img.refs.readers = null;
  const result: RaceResult = { foreign: [], reads: 0, heldBack: 0 };
  const refs = img.refs;
  const apply = refs.applyFrees.bind(refs);
  refs.applyFrees = async () => {
    const freed = await apply();
    // Under the image lock nothing is queued meanwhile: what is left was held back.
    result.heldBack += refs.pendingCount;
    return freed;
  };
  let version = 0;
  const one = async (i: number) => {
    const k = r();
    const c = Math.floor(r() * clusters);
    const n = Math.min(clusters - c, 1 + Math.floor(r() * 3));
    const writeClusters = async (c: number, n: number) => {
      const v = ++version;
      const data = new Uint8Array(n * cs);
      for (let j = 0; j < n; j++) for (let s = 0; s < cs / 512; s++) fillSector(data.subarray(j * cs + s * 512, j * cs + s * 512 + 512), c + j, v);
      await bb.write(c * cs, data);
    };
    if (k < 0.45) {
      const buf = await bb.read(c * cs, n * cs);
      result.reads++;
      for (let j = 0; j < n; j++) {
        for (let s = 0; s < cs / 512; s++) {
          const o = sectorOwner(buf.subarray(j * cs + s * 512, j * cs + s * 512 + 512), c + j);
          if (typeof o === 'number') result.foreign.push({ op: i, cluster: c + j, sector: s, owner: o });
        }
      }
    } else if (k < 0.6) {
      await writeClusters(c, n);
    } else if (k < 0.9) {
      // Free (discard or zero write), make the free take effect (frees are
      // applied at a flush) and allocate again at once: the quickest reuse.
      if (k < 0.75) await bb.discard(c * cs, n * cs);
      else await bb.writeZeroes(c * cs, n * cs, ReqFlag.MAY_UNMAP);
      await bb.flush();
      const d = Math.floor(r() * clusters);
      await writeClusters(d, Math.min(clusters - d, n));
    } else {
      await bb.flush();
    }
  };
  const running = new Set<Promise<void>>();
  try {
    for (let i = 0; i < opts.ops; i++) {
      while (running.size >= opts.inFlight) await Promise.race(running);
      const p: Promise<void> = one(i).finally(() => running.delete(p));
      running.add(p);
    }
    await Promise.all(running);
  } finally {
    await bb.close();
  }
  return result;
}
