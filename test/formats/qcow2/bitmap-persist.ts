/**
 * Shared code of the persistent-bitmap tests (bitmap-persist.test.ts and
 * bitmap-persist.fuzz.ts): a seeded workload through our block layer on a
 * qcow2 file with persistent bitmaps, a per-granule model of what it must
 * mark, and QEMU's view of the stored bitmaps (qemu-img info and the dirty
 * extents qemu-nbd exports).
 */
import { expect } from 'vitest';
import { addDirtyBitmap, lookupDirtyBitmap } from '../../../src/core/dirty-bitmap.js';
import { checkCanStoreBitmap } from '../../../src/formats/qcow2/bitmap-store.js';
import type { Qcow2Image } from '../../../src/formats/qcow2/qcow2.js';
import { fileGraph, openQcow2, prng, qemuCheck, qemuImg, qemuIo } from './helpers.js';
import { qemuDirtyExtents } from '../../qemu-nbd.js';

export { qemuDirtyExtents };
import { normalize, ours, theirs } from '../../cli/harness.js';

export interface InfoBitmap {
  name: string;
  flags: string[];
  granularity: number;
}

export function infoBitmaps(file: string): InfoBitmap[] {
  const info = JSON.parse(qemuImg('info', '-U', '--output=json', file)) as { 'format-specific': { data: { bitmaps?: InfoBitmap[] } } };
  return info['format-specific'].data.bitmaps ?? [];
}

/** Per-granule model of a bitmap, as extents clipped to `size`. */
export class GranuleModel {
  readonly bits: Uint8Array;
  constructor(
    readonly size: number,
    readonly granularity: number,
  ) {
    this.bits = new Uint8Array(Math.ceil(size / granularity));
  }
  mark(off: number, len: number): void {
    for (let x = Math.floor(off / this.granularity); x < Math.ceil((off + len) / this.granularity); x++) this.bits[x] = 1;
  }
  extents(): [number, number][] {
    const out: [number, number][] = [];
    const g = this.granularity;
    for (let i = 0; i < this.bits.length; i++) {
      if (!this.bits[i]) continue;
      let j = i;
      while (j < this.bits.length && this.bits[j]) j++;
      out.push([i * g, Math.min(this.size, j * g) - i * g]);
      i = j;
    }
    return out;
  }
}

export interface PersistCase {
  clusterSize: number;
  extendedL2: boolean;
  size: number;
  seed: number;
  ops: number;
}

/**
 * Creates the image with qemu-img, adds persistent bitmaps through our
 * layer (one disabled), runs a seeded workload of writes / zero writes /
 * discards through our request path, closes, and compares QEMU's view of the
 * stored bitmaps with the model. Then QEMU writes more (qemu-io) and our open
 * must read back what qemu-nbd exports. Returns the number of extents compared.
 */
export async function runPersistCase(dir: string, c: PersistCase): Promise<number> {
  const file = `${dir}/p-${c.clusterSize}-${c.extendedL2 ? 'x' : 'n'}-${c.seed}.qcow2`;
  const sock = `${file}.sock`;
  const opts = `cluster_size=${c.clusterSize}${c.extendedL2 ? ',extended_l2=on' : ''}`;
  qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, file, String(c.size));
  const grans = [512 * 2 ** Math.floor(prng(c.seed)() * 8), 65536, c.clusterSize];
  const names = ['a', 'b', 'off'];
  let graph = fileGraph();
  let bb = await openQcow2(graph, file, false, { discard: 'unmap' });
  const img = bb.node.instance as unknown as Qcow2Image;
  const models = grans.map((g) => new GranuleModel(c.size, g));
  names.forEach((n, i) => {
    checkCanStoreBitmap(img, n, grans[i]!);
    addDirtyBitmap(bb.node, n, { granularity: grans[i]!, persistent: true, disabled: n === 'off' });
  });
  const r = prng(c.seed);
  for (let i = 0; i < c.ops; i++) {
    const off = Math.floor(r() * c.size);
    const len = 1 + Math.floor(r() * Math.min(c.size - off - 1, 4 * c.clusterSize + 70_000));
    if (off + len > c.size) continue;
    const k = r();
    if (k < 0.6) await bb.write(off, new Uint8Array(len).fill(1 + (i % 250)));
    else if (k < 0.85) await bb.writeZeroes(off, len);
    else await bb.discard(off, len);
    models[0]!.mark(off, len);
    models[1]!.mark(off, len);
  }
  await bb.close();
  const info = infoBitmaps(file);
  expect(info).toEqual(names.map((n, i) => ({ name: n, granularity: grans[i]!, flags: n === 'off' ? [] : ['auto'] })));
  // Our check counts the bitmap clusters as qemu-img's does.
  const args = ['check', '--output=json', file];
  const mine = await ours('img', args, dir);
  const ref = theirs('img', args, dir);
  expect({ code: mine.code, out: normalize(mine.stdout) }).toEqual({ code: ref.code, out: normalize(ref.stdout) });
  const chk = qemuCheck(file);
  expect(chk['check-errors']).toBe(0);
  expect(chk.leaks ?? 0).toBe(0);
  expect(chk.corruptions ?? 0).toBe(0);
  let compared = 0;
  for (let i = 0; i < names.length; i++) {
    const theirs = await qemuDirtyExtents(file, names[i]!, sock);
    expect(theirs, `bitmap ${names[i]} after our writes`).toEqual(models[i]!.extents());
    compared += theirs.length;
  }
  // QEMU writes on top; our open reads back what qemu-nbd exports.
  const q = prng(c.seed + 1);
  const cmds: string[] = [];
  for (let i = 0; i < 5; i++) {
    const off = Math.floor(q() * (c.size - 70_000));
    cmds.push(`write ${off} ${1 + Math.floor(q() * 65536)}`);
  }
  qemuIo(file, cmds);
  graph = fileGraph();
  bb = await openQcow2(graph, file, true);
  for (const n of names) {
    const theirs = await qemuDirtyExtents(file, n, sock);
    expect([...lookupDirtyBitmap(bb.node, n).dirtyExtents()], `bitmap ${n} read back`).toEqual(theirs);
    compared += theirs.length;
  }
  await bb.close();
  return compared;
}
