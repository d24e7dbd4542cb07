/**
 * How a damaged qcow2 image is reported and what is refused after the
 * report, against qemu-io / qemu-img 7.2 (cases of QEMU's iotest 060): a
 * cluster that cannot be freed is a non-fatal corruption (reported once, the
 * image goes on) and a later fatal one is still reported; allocations that
 * would land on cluster 0 (a refcount block, a compressed cluster) are
 * refused as corruptions; a write to an unaligned preallocated zero cluster
 * names it; a write waiting at a breakpoint while another request finds the
 * image corrupt fails with "No medium found" and writes nothing. Each case
 * builds its image with QEMU's tools, damages it, runs the same command
 * through both tools on copies and compares the output, then `qemu-img check`
 * of both copies.
 */
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { hasQemu, normalize, ours, pokeHex as poke, theirs } from '../../cli/harness.js';

const RT = 0x10000;
const RB = 0x20000;
const L2 = 0x40000;

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  return `${r.status}\n${r.stdout}${r.stderr}`;
}

interface Case {
  name: string;
  /** qemu-io commands that prepare the image (64 MiB, 64 KiB clusters). */
  prepare: string[];
  /** [offset, bytes as hex] written into the file afterwards. */
  damage: Array<[number, string]>;
  /** qemu-io arguments (the image appended) or, with `stdin`, none: the commands come on stdin. */
  io: string[];
  stdin?: (img: string) => string;
  /** A line qemu-io must print, so that the case shows what it is about. */
  expect: RegExp;
}

const CASES: Case[] = [
  {
    name: 'non-fatal corruption on freeing (unaligned data cluster)',
    prepare: ['write 0 64k'],
    damage: [[L2, '8000000000052a00']],
    io: ['-c', 'discard 0 64k'],
    expect: /Image is corrupt: Cannot free unaligned cluster 0x52a00; further non-fatal/,
  },
  {
    name: 'non-fatal and then fatal corruption',
    prepare: ['write 0 128k'],
    damage: [
      [L2, '8000000000052a00'],
      [L2 + 8, '8000000000062a00'],
    ],
    io: ['-c', 'discard 0 64k', '-c', 'read 64k 64k'],
    expect: /Marking image as corrupt: Cluster allocation offset 0x62a00 unaligned \(L2 offset: 0x40000, L2 index: 0x1\)/,
  },
  {
    name: 'empty refcount table with valid L1 and L2: no refcount block at offset 0',
    prepare: ['write 0 64k'],
    damage: [[RT, '0000000000000000']],
    io: ['-c', 'write 0 128k'],
    expect: /Preventing invalid allocation of refcount block at offset 0/,
  },
  {
    name: 'empty refcount block with a compressed write: no compressed cluster at offset 0',
    prepare: ['write 64k 64k'],
    damage: [[RB, '0000000000000000']],
    io: ['-c', 'write -c 0k 64k'],
    expect: /Preventing invalid allocation of compressed cluster at offset 0/,
  },
  {
    name: 'write to an unaligned preallocated zero cluster',
    prepare: ['write 0 64k', 'discard 0 64k'],
    damage: [[L2, '8000000000002a01']],
    io: ['-c', 'write 0 64k'],
    expect: /Preallocated zero cluster offset 0x2a00 unaligned \(guest offset: 0\)/,
  },
  {
    name: 'a copy-on-write waiting at a breakpoint when the image is found corrupt',
    prepare: ['write 0 64k', 'write 512M 64k'],
    // The first data cluster freed, the second L2 table's cluster marked free: the next
    // allocation lands on it.
    damage: [
      [L2, '0000000000000000'],
      [RB + 10, '0000'],
      [RB + 12, '0000'],
    ],
    io: [],
    stdin: (img) => `open -o file.driver=blkdebug ${img}\nbreak cow_read 0\naio_write 0k 1k\nwait_break 0\nwrite 64k 64k\nresume 0\n`,
    expect: /aio_write failed: No medium found/,
  },
];

describe.skipIf(!hasQemu())('corruption reports and what follows them (qemu-io 7.2, iotest 060)', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dw-corrupt-'));
      try {
        if (c.stdin) {
          // A base to copy on write from.
          sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '1G'], dir);
          sh('qemu-io', ['-c', 'write 0 64k', 'base.qcow2'], dir);
          sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'img.qcow2', '1G'], dir);
        } else {
          sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'img.qcow2', '64M'], dir);
        }
        for (const cmd of c.prepare) sh('qemu-io', ['-c', cmd, 'img.qcow2'], dir);
        for (const [off, hex] of c.damage) poke(join(dir, 'img.qcow2'), off, hex);
        copyFileSync(join(dir, 'img.qcow2'), join(dir, 'q.qcow2'));
        copyFileSync(join(dir, 'img.qcow2'), join(dir, 'o.qcow2'));
        const q = theirs('io', c.stdin ? [] : [...c.io, 'q.qcow2'], dir, c.stdin?.('q.qcow2'));
        const o = await ours('io', c.stdin ? [] : [...c.io, 'o.qcow2'], dir, c.stdin?.('o.qcow2'));
        // stdout and stderr each (how they interleave in one pipe depends on buffering); the
        // interactive prompts are dropped, as iotests' filter drops them (where they fall
        // around asynchronous output is timing).
        const text = (r: { code: number; stdout: string; stderr: string }, img: string) => ({
          code: r.code,
          stdout: normalize(r.stdout).replaceAll('qemu-io> ', '').replaceAll(img, 'IMG'),
          stderr: normalize(r.stderr).replaceAll(img, 'IMG'),
        });
        expect(q.stdout + q.stderr).toMatch(c.expect);
        expect(text(o, 'o.qcow2')).toEqual(text(q, 'q.qcow2'));
        const check = (f: string) => sh('qemu-img', ['check', f], dir).replaceAll(f, 'IMG');
        expect(check('o.qcow2')).toBe(check('q.qcow2'));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
