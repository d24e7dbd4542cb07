/**
 * Preallocated growth laid out as QEMU 7.2 lays it out: `img resize
 * --preallocation=falloc|full|metadata` (and `img create -o preallocation=`)
 * run through qemu-img and through ours on copies of one image must leave the
 * same file length, the same `qemu-img map --output=json` (host offsets
 * included), the same `qemu-img check` output and the same guest content.
 * falloc / full put new refcount structures at the end of the used file and
 * the data right after them (qcow2_refcount_area); the guest cluster holding
 * an unaligned old end gets a new host cluster with its head copied; metadata
 * preallocation copies the parts of the first and last cluster outside the
 * range as a write would.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { copyFileSync, statSync } from 'node:fs';
import { ours } from '../../cli/harness.js';
import { qemuImg, qemuImgTry, qemuIo, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

let serial = 0;

/** What must be equal between the image QEMU left and ours. */
function observe(file: string): { length: number; map: string; check: string } {
  return {
    length: statSync(file).size,
    map: qemuImg('map', '--output=json', file),
    check: qemuImgTry('check', file).out,
  };
}

function expectSame(q: string, d: string): void {
  expect(observe(d)).toEqual(observe(q));
  const cmp = qemuImgTry('compare', q, d);
  expect(cmp.out).toBe('Images are identical.\n');
}

interface GrowCase {
  /** -o options of the image. */
  create: string;
  size: string;
  /** qemu-io commands run on the image before the resize. */
  io: string[];
  mode: 'falloc' | 'full' | 'metadata';
  grow: string;
  /** A longer backing file under the image (the grown area must read as zeros). */
  backing?: boolean;
  /** An internal snapshot before the resize (the clusters are shared). */
  snapshot?: boolean;
}

const MODES = ['falloc', 'full', 'metadata'] as const;

const cases: GrowCase[] = [];
for (const mode of MODES) {
  for (const create of ['cluster_size=65536', 'cluster_size=512', 'cluster_size=2097152', 'refcount_bits=1', 'refcount_bits=64,cluster_size=4096', 'extended_l2=on']) {
    cases.push({ create, size: '1M', io: [], mode, grow: '+1M' });
    cases.push({ create, size: '1M', io: ['write -P 0x11 0 512k'], mode, grow: '+24M' });
  }
  // The old end inside a cluster: its head is copied into the new cluster.
  cases.push({ create: 'cluster_size=65536', size: '1000k', io: ['write -P 0x22 0 1000k'], mode, grow: '+3M' });
  cases.push({ create: 'extended_l2=on', size: '1000k', io: ['write -P 0x22 0 1000k'], mode, grow: '+3M' });
  cases.push({ create: 'cluster_size=65536', size: '1000k', io: ['write -z 960k 40k'], mode, grow: '+3M' });
  // An unaligned new end (metadata: the rest of the last cluster is copied).
  cases.push({ create: 'cluster_size=65536', size: '1M', io: ['write -P 0x33 0 64k'], mode, grow: '6292992' });
  // Over a longer backing file: the new area reads zeros, not the backing's data.
  cases.push({ create: 'cluster_size=65536', size: '1000k', io: ['write -P 5 0 64k'], mode, grow: '6M', backing: true });
  cases.push({ create: 'extended_l2=on', size: '1000k', io: ['write -P 5 0 64k'], mode, grow: '6292992', backing: true });
  // Shared clusters at the old end (an internal snapshot).
  cases.push({ create: 'cluster_size=65536', size: '1000k', io: ['write -P 3 0 1000k'], mode, grow: '+3M', snapshot: true });
}
// A grow whose refcount table has to move to cover it, with small clusters.
cases.push({ create: 'cluster_size=512', size: '1M', io: ['write -P 0x44 0 512k'], mode: 'falloc', grow: '+12M' });
// Large grows: the data is only metadata, or a few large clusters. QEMU maps a
// metadata range in pieces of at most 2 GiB, each a write that copies the rest
// of its last cluster (here 1 MiB, as the old end is in the middle of a cluster).
cases.push({ create: 'cluster_size=65536', size: '1M', io: ['write -P 0x55 0 512k'], mode: 'metadata', grow: '+8G' });
cases.push({ create: 'cluster_size=2097152', size: '1M', io: ['write -P 0x55 0 512k'], mode: 'metadata', grow: '+8G' });
cases.push({ create: 'cluster_size=2097152', size: '1M', io: [], mode: 'falloc', grow: '+256M' });

describe('img resize --preallocation lays out the image as qemu-img 7.2', () => {
  for (const c of cases) {
    const name = `${c.create}, ${c.size}${c.io.length ? ` after ${c.io.join('; ')}` : ''}${c.backing ? ', longer backing' : ''}${c.snapshot ? ', snapshot' : ''}: ${c.mode} ${c.grow}`;
    it(name, { timeout: 60_000 }, async () => {
      const n = serial++;
      const q = t.path(`g${n}-q.qcow2`);
      const d = t.path(`g${n}-d.qcow2`);
      const args = ['create', '-q', '-f', 'qcow2', '-o', c.create];
      if (c.backing) {
        const b = t.path(`g${n}-b.qcow2`);
        qemuImg('create', '-q', '-f', 'qcow2', b, '8M');
        qemuIo(b, ['write -P 9 0 8M']);
        args.push('-b', b, '-F', 'qcow2');
      }
      qemuImg(...args, q, c.size);
      if (c.io.length) qemuIo(q, c.io);
      if (c.snapshot) qemuImg('snapshot', '-c', 's1', q);
      copyFileSync(q, d);
      qemuImg('resize', '-q', '-f', 'qcow2', `--preallocation=${c.mode}`, q, c.grow);
      const r = await ours('img', ['resize', '-q', '-f', 'qcow2', `--preallocation=${c.mode}`, d, c.grow], t.dir);
      expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
      expectSame(q, d);
    });
  }
});

describe('img create -o preallocation lays out the image as qemu-img 7.2', () => {
  for (const mode of MODES) {
    for (const [opts, size] of [
      ['cluster_size=65536', '0'],
      ['cluster_size=65536', '6292992'],
      ['cluster_size=512', '20M'],
      ['extended_l2=on', '6292992'],
      ['refcount_bits=1,cluster_size=4096', '30M'],
    ] as const) {
      it(`${opts}, ${size} bytes, ${mode}`, { timeout: 60_000 }, async () => {
        const n = serial++;
        const q = t.path(`c${n}-q.qcow2`);
        const d = t.path(`c${n}-d.qcow2`);
        qemuImg('create', '-q', '-f', 'qcow2', '-o', `preallocation=${mode},${opts}`, q, size);
        const r = await ours('img', ['create', '-q', '-f', 'qcow2', '-o', `preallocation=${mode},${opts}`, d, size], t.dir);
        expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
        expectSame(q, d);
      });
    }
  }
});
