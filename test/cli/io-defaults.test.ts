/**
 * `diskworker io`'s open defaults and cache / discard options against qemu-io
 * 7.2: images open with discard=unmap and a disabled write cache
 * (writethrough), -d / --discard, -t / --cache, -n and the open and reopen
 * commands change them as qemu-io's do. The crash cases (sigraise 9, iotest
 * 039) run the built bin as a real process.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ensureBuiltBin, Fixture, golden, normalize, words } from './harness.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f qcow2 a.qcow2 4M');
  sh('qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M');
  sh(`qemu-io -c 'write -P 3 0 4M' v2.qcow2 >/dev/null`);
  sh('qemu-img create -q -f raw r.raw 1M');
}

const CASES = [
  // The reproduction: discard works without -d.
  `-c 'write -P 1 0 128k' -c 'discard 0 2M' -c 'read -P 0 0 128k' -c map a.qcow2`,
  `-d ignore -c 'write -P 1 0 128k' -c 'discard 0 2M' -c 'read -P 1 0 128k' -c map a.qcow2`,
  `-d off -c 'write -P 1 0 128k' -c 'discard 0 2M' -c 'read -P 1 0 128k' a.qcow2`,
  `--discard=on -c 'write -P 1 0 128k' -c 'discard 0 2M' -c 'read -P 0 0 128k' a.qcow2`,
  `--discard=unmap -c 'write -P 1 0 64k' -c 'write -z -u 0 64k' -c map a.qcow2`,
  `-d ignore -c 'write -P 1 0 64k' -c 'write -z -u 0 64k' -c map a.qcow2`,
  `-c 'discard 64k 1M' -c 'read -P 3 0 64k' -c 'read -P 0 64k 1M' -c map v2.qcow2`,
  `-c 'write -z 64k 64k' -c 'read -P 0 64k 64k' -c map v2.qcow2`,
  `-t writeback -c 'write -P 2 0 64k' -c flush -c 'read -P 2 0 64k' a.qcow2`,
  `-t none -c 'write -P 2 0 64k' -c 'read -P 2 0 64k' a.qcow2`,
  `-t unsafe -c 'write -P 2 0 64k' -c 'read -P 2 0 64k' a.qcow2`,
  `-t directsync -c 'write -P 2 0 64k' -c 'read -P 2 0 64k' a.qcow2`,
  `--cache=writethrough -c 'write -P 2 0 64k' -c 'read -P 2 0 64k' a.qcow2`,
  `-n -c 'write -P 2 0 64k' -c 'read -P 2 0 64k' a.qcow2`,
  `-t bogus -c 'read 0 1' a.qcow2`,
  `--discard=bogus -c 'read 0 1' a.qcow2`,
  `-c 'open -d ignore a.qcow2' -c 'write -P 1 0 64k' -c 'discard 0 1M' -c 'read -P 1 0 64k'`,
  `-c 'open -t none -d unmap a.qcow2' -c 'write -P 1 0 64k' -c 'discard 0 1M' -c 'read -P 0 0 64k'`,
  `-c 'open -d bogus a.qcow2'`,
  `-c 'open -t bogus a.qcow2'`,
  `-c 'reopen -c writeback' -c 'write -P 5 0 64k' -c 'reopen -c none' -c 'read -P 5 0 64k' -c 'reopen -c bogus' a.qcow2`,
  `-f raw -c 'write -P 1 0 4k' -c 'discard 0 4k' -c 'read -P 0 0 4k' r.raw`,
];

describe('diskworker io open defaults vs qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());
  for (const line of CASES) {
    it(`io ${line}`, async () => {
      const file = /(a|v2)\.qcow2/.exec(line)?.[0];
      const g = await golden(fx, { tool: 'io', args: words(line), ...(file ? { sameImages: [file] } : {}) });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});



describe('writethrough: acknowledged writes survive a kill (iotest 039)', () => {
  let tmp: string;
  beforeAll(() => {
    ensureBuiltBin();
    tmp = mkdtempSync(join(tmpdir(), 'dw-039-'));
  }, 240_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /** Runs `io` with `opts` on a fresh lazy-refcounts image, killed after one write; then reads it back. */
  function crash(which: 'qemu' | 'ours', opts: string[]): { code: number | null; out: string; after: string } {
    const dir = join(tmp, `${which}-${opts.join('') || 'default'}`);
    spawnSync('mkdir', ['-p', dir]);
    spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', 't.qcow2', '1M'], { cwd: dir });
    const args = [...opts, '-c', 'write -P 0x5a 0 512', '-c', 'sigraise 9', 't.qcow2'];
    const r = which === 'qemu' ? spawnSync('qemu-io', args, { cwd: dir, encoding: 'utf8' }) : spawnSync('node', [BIN, 'io', ...args], { cwd: dir, encoding: 'utf8' });
    const after = spawnSync('qemu-io', ['-r', '-c', 'read -P 0x5a 0 512', 't.qcow2'], { cwd: dir, encoding: 'utf8' });
    return { code: r.status, out: normalize(r.stdout), after: normalize(after.stdout) };
  }

  for (const opts of [[], ['-t', 'writethrough'], ['-t', 'writeback'], ['-n']]) {
    it(`io ${opts.join(' ') || '(default cache)'}`, () => {
      const q = crash('qemu', opts);
      const d = crash('ours', opts);
      expect(d).toEqual(q);
    });
  }
});
