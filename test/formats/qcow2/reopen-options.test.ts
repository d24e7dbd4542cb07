/**
 * qcow2's runtime options on reopen (iotest 137), against qemu-io 7.2: valid
 * values of every option are taken and the image keeps working; invalid ones
 * are refused with QEMU's messages, in QEMU's order of checks; a reopen that
 * is refused changes nothing (lazy-refcounts given with a bad overlap-check
 * leaves the dirty bit clear after a kill; the sigraise runs ours as a child
 * process).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { BIN, Fixture, ensureBuiltBin, normalize, ours, theirs } from '../../cli/harness.js';

const fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f qcow2 t.qcow2 64M'));
afterAll(() => fx.dispose());

/** Runs one qemu-io command list through both tools on fresh copies; returns both outputs. */
async function both(cmds: string[]): Promise<{ q: string; d: string; qDir: string; dDir: string }> {
  const args = [...cmds.flatMap((c) => ['-c', c]), 't.qcow2'];
  const qDir = fx.copy();
  const dDir = fx.copy();
  const q = theirs('io', args, qDir);
  const d = await ours('io', args, dDir);
  return { q: `${q.code}\n${normalize(q.stdout + q.stderr)}`, d: `${d.code}\n${normalize(d.stdout + d.stderr)}`, qDir, dDir };
}

const VALID = [
  'lazy-refcounts=on,pass-discard-request=on', 'lazy-refcounts=off,pass-discard-request=off',
  'pass-discard-snapshot=on,pass-discard-other=on', 'pass-discard-snapshot=off,pass-discard-other=off',
  'overlap-check=all', 'overlap-check=none', 'overlap-check=cached', 'overlap-check=constant',
  'overlap-check.template=all', 'overlap-check.template=constant', 'overlap-check.main-header=on',
  'overlap-check.active-l2=off', 'overlap-check.inactive-l2=on', 'cache-size=1M', 'l2-cache-size=512k',
  'l2-cache-entry-size=512', 'l2-cache-entry-size=4k', 'l2-cache-entry-size=64k', 'refcount-cache-size=128k',
  'cache-clean-interval=5', 'cache-clean-interval=0', 'cache-clean-interval=10',
];

const INVALID = [
  'lazy-refcounts=42', 'cache-size=1M,l2-cache-size=64k,refcount-cache-size=64k', 'cache-size=1M,l2-cache-size=2M',
  'cache-size=1M,refcount-cache-size=2M', 'l2-cache-entry-size=33k', 'l2-cache-entry-size=128k',
  'refcount-cache-size=256T', 'overlap-check=constant,overlap-check.template=all', 'overlap-check=blubb',
  'overlap-check.template=blubb', 'cache-clean-interval=-1', 'cache-clean-interval=abc', 'overlap-check.active-l1=maybe',
  // Not an option of QEMU 7.2 (8.1 added it).
  'discard-no-unref=on',
];

describe('qcow2 runtime options on reopen, as qemu-io', () => {
  it('valid values of every option, then writes, reads, discards and zero writes', async () => {
    const r = await both([
      ...VALID.map((o) => `reopen -o ${o}`),
      'write -P 55 0 4M', 'read -P 55 0 4M', 'discard 0 4M', 'write -z 0 4M', 'read -P 0 0 4M',
    ]);
    expect(r.d).toBe(r.q);
  });

  for (const o of INVALID) {
    it(`refuses ${o}`, async () => {
      const r = await both([`reopen -o ${o}`, 'read 0 512']);
      expect(r.d).toBe(r.q);
    });
  }

  it('a refused reopen does not turn lazy refcounts on (killed after a write)', () => {
    // sigraise kills the process: ours runs as a child process here.
    ensureBuiltBin();
    const args = ['-c', 'reopen -o lazy-refcounts=on,overlap-check=blubb', '-c', 'write -P 0x5a 0 512', '-c', 'sigraise 9', 't.qcow2'];
    const qDir = fx.copy();
    const dDir = fx.copy();
    const q = theirs('io', args, qDir);
    const d = spawnSync('node', [BIN, 'io', ...args], { cwd: dDir, encoding: 'utf8', timeout: 60_000 });
    expect(d.signal).toBe('SIGKILL');
    expect(normalize(d.stdout ?? '')).toBe(normalize(q.stdout));
    // The incompatible features field (byte 0x4f holds the dirty bit 0x01).
    const dirty = (dir: string) => readFileSync(join(dir, 't.qcow2'))[0x4f]! & 1;
    expect(dirty(dDir)).toBe(dirty(qDir));
    expect(dirty(dDir)).toBe(0);
  });
});
