/**
 * qemu-io -s / `open -s` (QEMU's temporary snapshot overlay) against qemu-io
 * 7.2: writes land in a temporary qcow2 overlay, reads see them through it,
 * map and info describe the overlay, and the image itself is left as it was,
 * for qcow2 and raw images; `-r -s` stays read-only as in QEMU.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { hasQemu, normalize, ours, theirs } from './harness.js';

const CASES: Array<{ name: string; args: string[] }> = [
  { name: 'qcow2: writes go to the overlay', args: ['-s', '-c', 'write -P 7 0 4k', '-c', 'read -P 7 0 4k', '-c', 'read -P 5 4k 60k', '-c', 'map', '-c', 'info', 'a.qcow2'] },
  { name: 'raw: the overlay is qcow2', args: ['-f', 'raw', '-s', '-c', 'write -P 7 0 4k', '-c', 'read -P 7 0 4k', '-c', 'read -P 0 4k 4k', '-c', 'info', 'a.raw'] },
  { name: 'open -s from the prompt', args: ['-c', 'open -s a.qcow2', '-c', 'write -z 0 64k', '-c', 'read -P 0 0 64k', '-c', 'alloc 0 1M'] },
  { name: '-r -s stays read-only', args: ['-r', '-s', '-c', 'write -P 7 0 4k', 'a.qcow2'] },
];

describe.skipIf(!hasQemu())('qemu-io -s (temporary overlay)', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dw-io-s-'));
      try {
        spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M'], { cwd: dir });
        spawnSync('qemu-io', ['-c', 'write -P 5 0 64k', 'a.qcow2'], { cwd: dir });
        spawnSync('qemu-img', ['create', '-q', '-f', 'raw', 'a.raw', '1M'], { cwd: dir });
        const before = { q: readFileSync(join(dir, 'a.qcow2')), r: readFileSync(join(dir, 'a.raw')) };
        const q = theirs('io', c.args, dir);
        const o = await ours('io', c.args, dir);
        expect(normalize(o.stdout)).toBe(normalize(q.stdout));
        expect(normalize(o.stderr)).toBe(normalize(q.stderr));
        expect(o.code).toBe(q.code);
        // Neither tool changed the images.
        expect(Buffer.compare(readFileSync(join(dir, 'a.qcow2')), before.q)).toBe(0);
        expect(Buffer.compare(readFileSync(join(dir, 'a.raw')), before.r)).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
