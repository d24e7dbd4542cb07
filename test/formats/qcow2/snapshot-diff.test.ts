/**
 * Internal snapshots against QEMU 7.2, differentially: the same seeded
 * session runs on two copies of an image, one driven by `diskworker img
 * snapshot` / `diskworker io`, the other by qemu-img / qemu-io. Sessions mix
 * writes, zero writes, discards and compressed writes with snapshot create,
 * apply and delete (by name and by id, duplicate names included), over
 * several image kinds. After every step both images must give the same
 * command output, the same `qemu-img check` (clean, same counters and end
 * offset), the same `qemu-img map` (same host offsets: our allocator places
 * clusters as QEMU's does) and the same snapshot list; at the end every
 * snapshot reads the same through `qemu-img convert -l` on both images and
 * through our `img convert -l` on QEMU's.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { hasQemu, normalize, ours, theirs } from '../../cli/harness.js';
import { prng } from '../../prng.js';

interface Kind {
  name: string;
  opts: string;
  size: number;
  backing?: boolean;
}

const KINDS: Kind[] = [
  { name: '64 KiB clusters', opts: 'cluster_size=65536', size: 4 << 20 },
  { name: '512-byte clusters', opts: 'cluster_size=512', size: 1 << 20 },
  { name: '4 KiB clusters, 4-bit refcounts', opts: 'cluster_size=4096,refcount_bits=4', size: 2 << 20 },
  { name: 'v2 (compat=0.10)', opts: 'compat=0.10,cluster_size=4096', size: 2 << 20 },
  { name: 'extended L2', opts: 'extended_l2=on,cluster_size=65536', size: 4 << 20 },
  { name: 'lazy refcounts', opts: 'lazy_refcounts=on,cluster_size=4096', size: 2 << 20 },
  { name: '64-bit refcounts, zstd', opts: 'refcount_bits=64,cluster_size=4096,compression_type=zstd', size: 2 << 20 },
  { name: 'overlay over qcow2', opts: 'cluster_size=4096', size: 2 << 20, backing: true },
];

const NAMES = ['s0', 's1', 's2'];

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  return `${r.status}\n${r.stdout}${r.stderr}`;
}

/** The snapshot list without the DATE column (the two tools create at different times). */
function snapshotList(file: string, cwd: string): string {
  return run('qemu-img', ['snapshot', '-l', file], cwd).replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/g, 'DATE');
}

/**
 * `qemu-img map --output=json`, with one difference of the file layer merged
 * away: qemu-io zeroes the untouched part of a newly allocated cluster by
 * punching a hole in the file, which map then reports as `zero` inside the
 * data; node-file writes the zeros (it has no hole punching). The mapping
 * itself, host offsets included, must be equal.
 */
function mapOf(file: string, cwd: string): string {
  const r = spawnSync('qemu-img', ['map', '--output=json', file], { cwd, encoding: 'utf8' });
  if (r.status !== 0) return `${r.status}\n${r.stderr}`;
  type E = { start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean; offset?: number };
  const out: E[] = [];
  for (const e of JSON.parse(r.stdout) as E[]) {
    if (e.data) e.zero = false;
    const last = out.at(-1);
    const contiguous = last && last.start + last.length === e.start && last.depth === e.depth && last.present === e.present && last.zero === e.zero && last.data === e.data;
    if (contiguous && (last.offset === undefined ? e.offset === undefined : e.offset === last.offset + last.length)) last.length += e.length;
    else out.push(e);
  }
  return JSON.stringify(out);
}

function ids(file: string, cwd: string): string[] {
  const r = spawnSync('qemu-img', ['snapshot', '-l', file], { cwd, encoding: 'utf8' });
  return [...r.stdout.matchAll(/^(\d+)\s/gm)].map((m) => m[1]!);
}

/** One random step: a qemu-io command line or a snapshot operation. */
function step(rnd: () => number, kind: Kind, cluster: number, idsNow: string[]): { tool: 'io' | 'img'; args: (file: string) => string[] } {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
  const r = rnd();
  const span = kind.size;
  const off = () => Math.floor(rnd() * (span / 512)) * 512;
  const len = (o: number) => Math.max(512, Math.min(span - o, Math.floor(rnd() * 4 * cluster / 512) * 512));
  const io = (cmd: string) => ({ tool: 'io' as const, args: (f: string) => ['-f', 'qcow2', '-c', cmd, f] });
  if (r < 0.25) {
    const o = off();
    return io(`write -P ${1 + Math.floor(rnd() * 250)} ${o} ${len(o)}`);
  }
  if (r < 0.33) {
    const o = off();
    return io(`write -z ${rnd() < 0.5 ? '-u ' : ''}${o} ${len(o)}`);
  }
  if (r < 0.4) {
    const o = off();
    return io(`discard ${o} ${len(o)}`);
  }
  if (r < 0.6) {
    const name = pick(NAMES);
    return { tool: 'img', args: (f) => ['snapshot', '-c', name, f] };
  }
  if (r < 0.78) {
    // By name, by id, or one that does not exist.
    const x = rnd();
    const target = idsNow.length > 0 && x < 0.7 ? pick(idsNow) : x < 0.9 ? pick(NAMES) : '99';
    return { tool: 'img', args: (f) => ['snapshot', '-a', target, f] };
  }
  const name = rnd() < 0.9 ? pick(NAMES) : 'nope';
  return { tool: 'img', args: (f) => ['snapshot', '-d', name, f] };
}

describe.skipIf(!hasQemu())('internal snapshots against qemu-img 7.2', () => {
  KINDS.forEach((kind, k) => {
    it(`same images, outputs and snapshots as QEMU: ${kind.name}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dw-snap-'));
      try {
        const cluster = Number(/cluster_size=(\d+)/.exec(kind.opts)?.[1] ?? 65536);
        const back = kind.backing ? ['-b', 'base.qcow2', '-F', 'qcow2'] : [];
        if (kind.backing) {
          run('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', String(kind.size)], dir);
          run('qemu-io', ['-c', `write -P 0x5a 0 ${kind.size}`, 'base.qcow2'], dir);
        }
        for (const f of ['a.qcow2', 'b.qcow2']) {
          expect(run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', kind.opts, ...back, f, String(kind.size)], dir)).toBe('0\n');
          // Compressed data from the start, so snapshots share compressed clusters too.
          run('qemu-io', ['-c', `write -c -P 0x33 0 ${cluster}`, '-c', `write -P 0x44 ${cluster} ${cluster}`, f], dir);
        }
        const rnd = prng(1000 + k);
        const done = { c: 0, a: 0, d: 0 };
        // At least 18 steps, and on until each kind of snapshot operation has succeeded once.
        for (let n = 0; n < 40 && (n < 18 || !done.c || !done.a || !done.d); n++) {
          const s = step(rnd, kind, cluster, ids('b.qcow2', dir));
          const mine = await ours(s.tool, s.args('a.qcow2'), dir);
          const ref = theirs(s.tool, s.args('b.qcow2'), dir);
          const what = `step ${n}: ${s.tool} ${s.args('x').join(' ')}`;
          expect(normalize(mine.stdout + mine.stderr).replaceAll('a.qcow2', 'x'), what).toBe(normalize(ref.stdout + ref.stderr).replaceAll('b.qcow2', 'x'));
          expect(mine.code, what).toBe(ref.code);
          const op = s.tool === 'img' ? s.args('x')[1]!.slice(1) : '';
          if (ref.code === 0 && (op === 'c' || op === 'a' || op === 'd')) done[op]++;
          const checkA = run('qemu-img', ['check', 'a.qcow2'], dir);
          expect(checkA, what).toMatch(/^0\nNo errors were found on the image\./);
          expect(checkA, what).toBe(run('qemu-img', ['check', 'b.qcow2'], dir));
          expect(mapOf('a.qcow2', dir), what).toBe(mapOf('b.qcow2', dir));
          expect(snapshotList('a.qcow2', dir), what).toBe(snapshotList('b.qcow2', dir));
        }
        // The session did what it is for: snapshots made, applied and deleted.
        expect(done.c, JSON.stringify(done)).toBeGreaterThan(0);
        expect(done.a, JSON.stringify(done)).toBeGreaterThan(0);
        expect(done.d, JSON.stringify(done)).toBeGreaterThan(0);
        expect(run('qemu-img', ['compare', 'a.qcow2', 'b.qcow2'], dir)).toBe('0\nImages are identical.\n');
        for (const id of ids('b.qcow2', dir)) {
          for (const f of ['a', 'b']) run('qemu-img', ['convert', '-l', `snapshot.id=${id}`, '-O', 'raw', `${f}.qcow2`, `${f}-${id}.raw`], dir);
          expect(Buffer.compare(readFileSync(join(dir, `a-${id}.raw`)), readFileSync(join(dir, `b-${id}.raw`))), `snapshot ${id}`).toBe(0);
          // And our convert -l reads the same snapshot of QEMU's image.
          expect((await ours('img', ['convert', '-l', id, '-O', 'raw', 'b.qcow2', `o-${id}.raw`], dir)).code).toBe(0);
          expect(Buffer.compare(readFileSync(join(dir, `o-${id}.raw`)), readFileSync(join(dir, `b-${id}.raw`))), `convert -l ${id}`).toBe(0);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
  });
});
