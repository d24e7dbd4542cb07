/**
 * Fixtures for job tests on real images: a qcow2 chain made by qemu-img
 * (base ← mid ← top, each with its own data, as QEMU's iotest 030 builds it),
 * the guest's view of it as raw bytes, and checks through qemu-img.
 */
import { Perm } from '../../src/core/permissions.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { BlockBackend } from '../../src/core/backend.js';
import { createNodeGraph } from '../../src/node.js';

/** The guest's backend: as a QEMU guest device it writes but takes no resize permission (block jobs share none). */
const GUEST = { perm: Perm.CONSISTENT_READ | Perm.WRITE };

export const MiB = 1024 * 1024;
export const SIZE = 8 * MiB;
const dirs: string[] = [];
afterAll(() => {
  if (!process.env.DW_DEBUG) for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

export function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** base ← mid ← top, each with its own data, as iotest 030 builds them. */
export function makeChain(): string {
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

export function rawContent(dir: string, image: string): Uint8Array {
  sh('qemu-img', ['convert', '-O', 'raw', image, 'model.raw'], dir);
  return new Uint8Array(readFileSync(join(dir, 'model.raw')));
}

export async function openTop(dir: string) {
  const graph = createNodeGraph();
  const guest = await BlockBackend.open(graph, {
    driver: 'qcow2',
    discard: 'unmap',
    file: { driver: 'file', filename: join(dir, 'top.qcow2') },
  }, {}, GUEST);
  return { graph, guest };
}

export function chainOf(dir: string, image = 'top.qcow2'): string[] {
  const info = JSON.parse(sh('qemu-img', ['info', '--backing-chain', '--output=json', image], dir)) as Array<{ filename: string }>;
  return info.map((i) => i.filename.replace(/^.*\//, ''));
}

export function expectSameAsModel(dir: string, model: Uint8Array, image = 'top.qcow2'): void {
  writeFileSync(join(dir, 'model.raw'), model);
  if (process.env.DW_DEBUG) console.log(dir);
  const r = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', 'model.raw', image], { cwd: dir, encoding: 'utf8' });
  expect(r.stdout + r.stderr).toBe('Images are identical.\n');
  expectClean(dir, image);
}

/** qemu-img check finds nothing wrong with `image`. */
export function expectClean(dir: string, image: string): void {
  const check = spawnSync('qemu-img', ['check', image], { cwd: dir, encoding: 'utf8' });
  expect(check.stdout + check.stderr).toContain('No errors were found on the image.');
  expect(check.status).toBe(0);
}

/** Byte ranges of top.qcow2 that qemu-img map says top itself holds (depth 0). */
export function topExtents(dir: string, image = 'top.qcow2'): Array<[number, number]> {
  const map = JSON.parse(sh('qemu-img', ['map', '--output=json', image], dir)) as Array<{ start: number; length: number; depth: number; data: boolean; zero: boolean }>;
  return map.filter((e) => e.depth === 0 && (e.data || e.zero)).map((e) => [e.start, e.start + e.length]);
}

/** Is [from, to) inside the union of `extents` (sorted, as qemu-img map lists them)? */
export function covered(extents: Array<[number, number]>, from: number, to: number): boolean {
  let reach = from;
  for (const [s, e] of extents) {
    if (s > reach) break;
    if (e > reach) reach = e;
    if (reach >= to) return true;
  }
  return reach >= to;
}

