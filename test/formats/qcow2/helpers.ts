/** Shared helpers of the qcow2 tests: temp dirs, qemu-img / qemu-io, graphs, a PRNG. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, BlockGraph, MemoryStorage, createMemoryDriver, nodeFileDriver, rawDriver, qcow2Driver, nullDriver } from '../../../src/node.js';

export function tempDir(): { dir: string; path: (n: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'dw-qcow2-'));
  return { dir, path: (n) => join(dir, n), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** qemu-img that may fail: returns status and output. */
export function qemuImgTry(...args: string[]): { status: number; out: string } {
  try {
    return { status: 0, out: qemuImg(...args) };
  } catch (e) {
    const err = e as { status: number; stdout?: string; stderr?: string };
    return { status: err.status ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

export function qemuIo(file: string, cmds: string[], format = 'qcow2', extra: string[] = []): string {
  const args = ['-f', format, ...extra];
  for (const c of cmds) args.push('-c', c);
  args.push(file);
  return execFileSync('qemu-io', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface CheckJson {
  'check-errors': number;
  corruptions?: number;
  leaks?: number;
  'image-end-offset'?: number;
  'total-clusters'?: number;
  'allocated-clusters'?: number;
  'fragmented-clusters'?: number;
  'compressed-clusters'?: number;
}

/** `qemu-img check --output=json` of `file`; `-U` with forceShare (the image is open for writing here). */
export function qemuCheck(file: string, forceShare = false): CheckJson {
  const r = qemuImgTry('check', '--output=json', ...(forceShare ? ['-U'] : []), file);
  try {
    return JSON.parse(r.out.slice(r.out.indexOf('{'), r.out.lastIndexOf('}') + 1)) as CheckJson;
  } catch {
    throw new Error(`qemu-img check failed: ${r.out}`);
  }
}

export function fileGraph(): BlockGraph {
  return new BlockGraph([nodeFileDriver, rawDriver, qcow2Driver, nullDriver], 'file');
}

export function memGraph(storage = new MemoryStorage()): { graph: BlockGraph; storage: MemoryStorage } {
  return { graph: new BlockGraph([createMemoryDriver(storage), rawDriver, qcow2Driver, nullDriver], 'memory'), storage };
}

export async function openQcow2(graph: BlockGraph, filename: string, readOnly = false, extra: Record<string, unknown> = {}) {
  return BlockBackend.open(graph, { driver: 'qcow2', file: { filename }, ...extra }, { readOnly });
}

export { prng } from '../../prng.js';
import { prng } from '../../prng.js';

export function pattern(len: number, seed: number): Uint8Array {
  const r = prng(seed);
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (r() * 256) | 0;
  return b;
}

/** qemu-img map --output=json, parsed. */
export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}
export function qemuMap(file: string): MapEntry[] {
  return JSON.parse(qemuImg('map', '--output=json', file)) as MapEntry[];
}

/** A guest operation of the random workloads, and the qemu-io command that does the same. */
export type Op = { kind: 'write' | 'zero' | 'zero-unmap' | 'discard'; off: number; len: number; val: number };

export function qemuIoCommand(op: Op): string {
  switch (op.kind) {
    case 'write':
      return `write -P ${op.val} ${op.off} ${op.len}`;
    case 'zero':
      return `write -z ${op.off} ${op.len}`;
    case 'zero-unmap':
      return `write -z -u ${op.off} ${op.len}`;
    case 'discard':
      return `discard ${op.off} ${op.len}`;
  }
}
