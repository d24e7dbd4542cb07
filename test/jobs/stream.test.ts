/**
 * The stream job on real qcow2 chains made by qemu-img, while a seeded guest
 * writes: afterwards the guest-visible content is unchanged (qemu-img
 * compare against the guest's model), the chain is as QEMU leaves it
 * (qemu-img info --backing-chain), the streamed data lives in top (qemu-img
 * map) and qemu-img check is clean. Same cases as QEMU's iotest 030: stream
 * all, stream to a base, cancel, an intermediate image busy in another job.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockBackend } from '../../src/core/backend.js';
import { createNodeGraph } from '../../src/node.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { streamJob } from '../../src/jobs/stream.js';
import type { JobEvent } from '../../src/jobs/job-types.js';
import { hasQemu } from '../cli/harness.js';
import { startGuest } from './guest-workload.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const dirs: string[] = [];
afterAll(() => {
  if (!process.env.DW_DEBUG) for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** base ← mid ← top, each with its own data, as iotest 030 builds them. */
function makeChain(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dw-stream-'));
  dirs.push(dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', String(SIZE)], dir);
  sh('qemu-io', ['-c', 'write -P 0x11 0 2M', '-c', 'write -P 0x12 6M 1M', 'base.qcow2'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'mid.qcow2'], dir);
  sh('qemu-io', ['-c', 'write -P 0x21 1M 2M', '-c', 'write -z 5M 256k', '-c', 'write -P 0x22 7M 512k', 'mid.qcow2'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
  sh('qemu-io', ['-c', 'write -P 0x31 2M 1M', 'top.qcow2'], dir);
  return dir;
}

function rawContent(dir: string, image: string): Uint8Array {
  sh('qemu-img', ['convert', '-O', 'raw', image, 'model.raw'], dir);
  return new Uint8Array(readFileSync(join(dir, 'model.raw')));
}

async function openTop(dir: string) {
  const graph = createNodeGraph();
  const guest = await BlockBackend.open(graph, {
    driver: 'qcow2',
    discard: 'unmap',
    file: { driver: 'file', filename: join(dir, 'top.qcow2') },
  });
  return { graph, guest };
}

function chainOf(dir: string): string[] {
  const info = JSON.parse(sh('qemu-img', ['info', '--backing-chain', '--output=json', 'top.qcow2'], dir)) as Array<{ filename: string }>;
  return info.map((i) => i.filename.replace(/^.*\//, ''));
}

function expectSameAsModel(dir: string, model: Uint8Array): void {
  writeFileSync(join(dir, 'model.raw'), model);
  if (process.env.DW_DEBUG) console.log(dir);
  const r = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', 'model.raw', 'top.qcow2'], { cwd: dir, encoding: 'utf8' });
  expect(r.stdout + r.stderr).toBe('Images are identical.\n');
  const check = spawnSync('qemu-img', ['check', 'top.qcow2'], { cwd: dir, encoding: 'utf8' });
  expect(check.stdout).toContain('No errors were found on the image.');
  expect(check.status).toBe(0);
}

/** Byte ranges of top.qcow2 that qemu-img map says top itself holds (depth 0). */
function topExtents(dir: string): Array<[number, number]> {
  const map = JSON.parse(sh('qemu-img', ['map', '--output=json', 'top.qcow2'], dir)) as Array<{ start: number; length: number; depth: number; data: boolean; zero: boolean }>;
  return map.filter((e) => e.depth === 0 && (e.data || e.zero)).map((e) => [e.start, e.start + e.length]);
}

/** Is [from, to) inside the union of `extents` (sorted, as qemu-img map lists them)? */
function covered(extents: Array<[number, number]>, from: number, to: number): boolean {
  let reach = from;
  for (const [s, e] of extents) {
    if (s > reach) break;
    if (e > reach) reach = e;
    if (reach >= to) return true;
  }
  return reach >= to;
}

describe.skipIf(!hasQemu())('stream job', () => {
  for (const [label, toBase, seed] of [
    ['the whole chain into top', false, 1],
    ['mid into top, keeping base', true, 2],
  ] as const) {
    it(`streams ${label} while the guest writes`, async () => {
      const dir = makeChain();
      const model = rawContent(dir, 'top.qcow2');
      const { graph, guest } = await openTop(dir);
      const top = guest.node;
      const mid = top.backing!.node;
      const base = mid.backing!.node;
      const reg = new JobRegistry();
      const events: JobEvent[] = [];
      reg.on((e) => events.push(e));
      const job = reg.create(streamJob({ graph, top, base: toBase ? base : undefined }), { id: 'stream0', speed: 32 * MiB });
      const log: string[] = [];
      const g = startGuest(guest, model, seed, 65536, log);
      job.start();
      await job.settled();
      g.stop();
      expect(await g.done).toBeGreaterThan(0);
      expect(top.backing?.node ?? null).toBe(toBase ? base : null);
      await guest.close();
      await graph.closeAll();
      expect(events.filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => (e.data as { status: string }).status)).toEqual([
        'created', 'running', 'waiting', 'pending', 'concluded', 'null',
      ]);
      expect(events.at(-1)?.event).toBe('JOB_STATUS_CHANGE');
      expect(events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')?.data).toMatchObject({ device: 'stream0', len: SIZE, offset: SIZE });
      expect(chainOf(dir)).toEqual(toBase ? ['top.qcow2', 'base.qcow2'] : ['top.qcow2']);
      if (process.env.DW_DEBUG) writeFileSync(join(dir, 'ops.log'), log.join('\n'));
      expectSameAsModel(dir, model);
      // mid's data (1M..3M, the zeroed 5M..5M+256k, 7M..7.5M) now lives in top.
      const ext = topExtents(dir);
      expect(covered(ext, 1 * MiB, 3 * MiB)).toBe(true);
      expect(covered(ext, 7 * MiB, 7 * MiB + 512 * 1024)).toBe(true);
      // base's data is copied only when streaming the whole chain.
      if (!toBase) expect(covered(ext, 0, 1 * MiB)).toBe(true);
    });
  }

  it('cancel leaves the chain and the guest-visible content as they were', async () => {
    const dir = makeChain();
    const model = rawContent(dir, 'top.qcow2');
    const { graph, guest } = await openTop(dir);
    const reg = new JobRegistry();
    const job = reg.create(streamJob({ graph, top: guest.node }), { id: 's', speed: 2 * MiB });
    const g = startGuest(guest, model, 3);
    job.start();
    await new Promise((r) => setTimeout(r, 50));
    job.cancel();
    await expect(job.settled()).rejects.toMatchObject({ code: 'ECANCELED' });
    g.stop();
    await g.done;
    await guest.close();
    await graph.closeAll();
    expect(chainOf(dir)).toEqual(['top.qcow2', 'mid.qcow2', 'base.qcow2']);
    expectSameAsModel(dir, model);
  });

  it('refuses a second job on a chain a job already uses, and a base outside the chain', async () => {
    const dir = makeChain();
    const { graph, guest } = await openTop(dir);
    const top = guest.node;
    const first = streamJob({ graph, top });
    expect(() => streamJob({ graph, top })).toThrow(/busy/);
    const other = await graph.open({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, 'base.qcow2') } }, { readOnly: true });
    expect(() => streamJob({ graph, top: top.backing!.node, base: other })).toThrow(/is not a backing image/);
    await other.unref();
    await first.clean!();
    // Released: a new job may take the chain.
    const again = streamJob({ graph, top });
    await again.clean!();
    await guest.close();
    await graph.closeAll();
  });
});
