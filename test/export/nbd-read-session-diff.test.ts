/**
 * Seeded random sessions through qemu-io over NBD, against qemu-nbd 7.2 and
 * `diskworker nbd` serving copies of the same image: a qcow2 overlay over a
 * shorter backing file, with data, zero, compressed, discarded and
 * unallocated clusters and sub-cluster writes. Reads print every byte
 * (`read -v`), unaligned and across kinds of clusters; writes, zero writes,
 * discards and flushes come between them. Every output line must match, and
 * so must the bytes of a full convert of each export and the images after.
 * (The server fills READ buffers it did not zero first and sends a reply's
 * header and data in one write: a byte it failed to fill would show here.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasQemu } from '../cli/harness.js';
import { prng } from '../prng.js';
import { maskTimings, nbdUri, run, startOurs, startQemuNbd, type ServerHandle } from './nbd-harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 8 * MiB;

/** qemu-io commands of one seeded session (offsets and lengths in bytes). */
function session(seed: number, count: number): string[] {
  const r = prng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const cmds: string[] = [];
  for (let i = 0; i < count; i++) {
    const k = r();
    // Mostly 512-byte aligned (qemu-io's default for raw over NBD), some byte-exact reads.
    const off = k < 0.15 ? int(SIZE - 70 * KiB) : int(SIZE / 512 - 140) * 512;
    const len = (1 + int(128)) * 512;
    if (k < 0.5) cmds.push(`read -v ${off} ${k < 0.15 ? 1 + int(3000) : len}`);
    else if (k < 0.62) cmds.push(`write -P ${1 + int(250)} ${off} ${len}`);
    else if (k < 0.7) cmds.push(`write -z ${off} ${len}`);
    else if (k < 0.76) cmds.push(`discard ${off} ${len}`);
    else if (k < 0.8) cmds.push('flush');
    else cmds.push(`read ${int(SIZE / MiB - 2) * MiB + int(64) * 512} ${(1 + int(4)) * 256 * KiB}`);
  }
  return cmds;
}

describe.skipIf(!hasQemu())('NBD reads in seeded sessions: diskworker nbd vs qemu-nbd 7.2', () => {
  let dir: string;
  const servers: ServerHandle[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dw-nbd-session-'));
    const base = join(dir, 'base.qcow2');
    const top = join(dir, 'top.qcow2');
    const steps: string[][] = [
      ['create', '-q', '-f', 'qcow2', base, '6M'],
      ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top, `${SIZE}`],
    ];
    for (const s of steps) expect((await run('qemu-img', s)).code).toBe(0);
    const r = prng(99);
    const baseCmds: string[] = [];
    for (let i = 0; i < 40; i++) baseCmds.push('-c', `write -P ${1 + Math.floor(r() * 250)} ${Math.floor(r() * 93) * 64 * KiB} ${(1 + Math.floor(r() * 3)) * 64 * KiB}`);
    expect((await run('qemu-io', ['-f', 'qcow2', ...baseCmds, base])).code).toBe(0);
    // Compressed clusters first (QEMU writes them only into unallocated clusters); later writes may land on them.
    const topCmds: string[] = [];
    for (const c of [20, 21, 90, 127]) topCmds.push('-c', `write -c -P ${c} ${c * 64 * KiB} 64k`);
    for (let i = 0; i < 30; i++) {
      const off = Math.floor(r() * (SIZE / 512 - 200)) * 512;
      const len = (1 + Math.floor(r() * 150)) * 512;
      topCmds.push('-c', i % 5 === 4 ? `write -z ${off} ${len}` : `write -P ${1 + Math.floor(r() * 250)} ${off} ${len}`);
    }
    expect((await run('qemu-io', ['-f', 'qcow2', ...topCmds, top])).code).toBe(0);
    expect((await run('qemu-img', ['check', top])).code).toBe(0);
  }, 60_000);

  afterAll(async () => {
    for (const s of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: every qemu-io line, the converted bytes and the images match`, async () => {
      // Each server gets its own copy of the chain's top (the base is shared and only read).
      const a = join(dir, `s${seed}-q.qcow2`);
      const b = join(dir, `s${seed}-d.qcow2`);
      copyFileSync(join(dir, 'top.qcow2'), a);
      copyFileSync(join(dir, 'top.qcow2'), b);
      const rebase = ['rebase', '-u', '-b', join(dir, 'base.qcow2'), '-F', 'qcow2'];
      for (const f of [a, b]) expect((await run('qemu-img', [...rebase, f])).code).toBe(0);
      const theirs = await startQemuNbd(['-t', '-f', 'qcow2', '--discard=unmap', a], join(dir, `s${seed}-q.sock`));
      const ours = await startOurs(['-t', '-f', 'qcow2', '--discard=unmap', b], join(dir, `s${seed}-d.sock`));
      servers.push(theirs, ours);
      const cmds = session(seed, 80);
      const out: string[] = [];
      for (const s of [theirs, ours]) {
        const res = await run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), nbdUri(s.sock)]);
        out.push(maskTimings(`${res.code}\n${res.stdout}\n${res.stderr}`).split(s.sock).join('SOCK'));
      }
      const [q, d] = out as [string, string];
      expect(q).toMatch(/^[0-9a-f]{8}:  [0-9a-f]{2} /m);
      expect(q).not.toContain('failed');
      const ql = q.split('\n');
      const dl = d.split('\n');
      for (let i = 0; i < Math.max(ql.length, dl.length); i++) expect(dl[i], `line ${i + 1}`).toBe(ql[i]);
      const rawQ = join(dir, `s${seed}-q.raw`);
      const rawD = join(dir, `s${seed}-d.raw`);
      expect((await run('qemu-img', ['convert', '-O', 'raw', nbdUri(theirs.sock), rawQ])).code).toBe(0);
      expect((await run('qemu-img', ['convert', '-O', 'raw', nbdUri(ours.sock), rawD])).code).toBe(0);
      expect(readFileSync(rawD).equals(readFileSync(rawQ))).toBe(true);
      await theirs.stop();
      await ours.stop();
      const cmp = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', a, b]);
      expect(cmp.stdout).toBe('Images are identical.\n');
      const chk = await run('qemu-img', ['check', b]);
      expect(chk.code, chk.stdout).toBe(0);
    }, 120_000);
  }
});
