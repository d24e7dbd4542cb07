/**
 * qemu-io's `write -b` / `read -b` (the VM state area after the disk) against
 * qemu-io 7.2: the same seeded command lines on copies of one image give the
 * same output lines, and the images end byte-identical (VM state placed
 * where QEMU places it, the L1 table grown as QEMU grows it). Also the
 * refusals: unaligned requests, raw images (no VM state).
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { hasQemu, normalize, ours, theirs } from './harness.js';
import { prng } from '../prng.js';

const KINDS = [
  { name: '64 KiB clusters', opts: 'cluster_size=65536', size: '8M' },
  { name: '512-byte clusters (the state spans several L1 entries)', opts: 'cluster_size=512', size: '1M' },
  { name: 'extended L2', opts: 'cluster_size=65536,extended_l2=on', size: '4M' },
];

function session(seed: number): string[] {
  const r = prng(seed);
  const cmds: string[] = [];
  for (let i = 0; i < 12; i++) {
    const off = Math.floor(r() * 512) * 512;
    const len = (1 + Math.floor(r() * 256)) * 512;
    const k = r();
    if (k < 0.35) cmds.push(`write -b -P ${1 + i} ${off} ${len}`);
    else if (k < 0.6) cmds.push(`read -b -P ${1 + i} ${off} ${len}`);
    else if (k < 0.75) cmds.push(`read -b ${off} ${len}`);
    else if (k < 0.9) cmds.push(`write -P ${1 + i} ${off} ${len}`);
    else cmds.push(`write -b -z ${off} ${len}`);
  }
  return cmds;
}

describe.skipIf(!hasQemu())('qemu-io write -b / read -b', () => {
  KINDS.forEach((kind, k) => {
    it(`matches qemu-io: ${kind.name}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dw-vmstate-'));
      try {
        for (const f of ['q.qcow2', 'o.qcow2']) spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', kind.opts, f, kind.size], { cwd: dir });
        const args = (f: string) => ['-f', 'qcow2', ...session(50 + k).flatMap((c) => ['-c', c]), f];
        const q = theirs('io', args('q.qcow2'), dir);
        const o = await ours('io', args('o.qcow2'), dir);
        expect(normalize(o.stdout)).toBe(normalize(q.stdout));
        expect(o.code).toBe(q.code);
        expect(o.stdout).toMatch(/wrote/);
        expect(Buffer.compare(readFileSync(join(dir, 'o.qcow2')), readFileSync(join(dir, 'q.qcow2')))).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  it('refuses what qemu-io refuses', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dw-vmstate-'));
    try {
      spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M'], { cwd: dir });
      spawnSync('qemu-img', ['create', '-q', '-f', 'raw', 'a.raw', '1M'], { cwd: dir });
      for (const [file, fmt, cmd] of [
        ['a.qcow2', 'qcow2', 'write -b 1 512'],
        ['a.qcow2', 'qcow2', 'read -b 0 100'],
        ['a.qcow2', 'qcow2', 'write -b -f 0 512'],
        ['a.raw', 'raw', 'write -b 0 512'],
        ['a.raw', 'raw', 'read -b 0 512'],
      ] as const) {
        const args = ['-f', fmt, '-c', cmd, file];
        const q = theirs('io', args, dir);
        const o = await ours('io', args, dir);
        expect(normalize(o.stdout + o.stderr), cmd).toBe(normalize(q.stdout + q.stderr));
        expect(o.code, cmd).toBe(q.code);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
