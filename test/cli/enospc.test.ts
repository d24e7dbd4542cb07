/**
 * Out of space: every CLI command that writes runs through qemu-img /
 * qemu-io 7.2 and through diskworker against a target on a full (small)
 * tmpfs. Both must report the failure the same way (same lines, same exit
 * code: QEMU's tools use the "report" error policy), never claim success,
 * and leave qcow2 images that `qemu-img check` finds free of corruption.
 *
 * As root (CI) a tmpfs is mounted per run and ours runs in-process; without
 * root both tools run under `prlimit --fsize` instead, and only the failure
 * itself (non-zero exit, an error line) is compared, since the file-size
 * limit hits QEMU's and Node's writes at different points.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, normalize, ours, theirs, type RunResult, type Tool } from './harness.js';
import { canMountTmpfs, mountSmallFs } from './small-fs.js';

interface Case {
  name: string;
  tool: Tool;
  /** Size of the full file system. */
  fsBytes: number;
  /** Shell commands run in the full file system before the tool ($SRC names the source directory). */
  setup?: string[];
  /** Arguments; $F is the full file system, $SRC the source directory. */
  args: string[];
  /** qcow2 images (in $F) that must be free of corruption afterwards. */
  consistent?: string[];
}

const MiB = 1 << 20;

const CASES: Case[] = [
  { name: 'convert qcow2 -> raw', tool: 'img', fsBytes: MiB, args: ['convert', '-O', 'raw', '$SRC/s.qcow2', '$F/o.raw'] },
  { name: 'convert qcow2 -> qcow2', tool: 'img', fsBytes: MiB, args: ['convert', '-O', 'qcow2', '$SRC/s.qcow2', '$F/o.qcow2'], consistent: ['o.qcow2'] },
  {
    name: 'convert raw -> qcow2, fails after some clusters',
    tool: 'img',
    fsBytes: 3 * MiB,
    args: ['convert', '-O', 'qcow2', '$SRC/rnd.raw', '$F/o.qcow2'],
    consistent: ['o.qcow2'],
  },
  {
    name: 'convert -c (compressed clusters)',
    tool: 'img',
    fsBytes: 2 * MiB,
    args: ['convert', '-c', '-O', 'qcow2', '$SRC/rnd.raw', '$F/o.qcow2'],
    consistent: ['o.qcow2'],
  },
  { name: 'create raw, preallocation=full', tool: 'img', fsBytes: MiB, args: ['create', '-f', 'raw', '-o', 'preallocation=full', '$F/p.raw', '4M'] },
  {
    name: 'create qcow2, preallocation=full',
    tool: 'img',
    fsBytes: MiB,
    args: ['create', '-f', 'qcow2', '-o', 'preallocation=full', '$F/p.qcow2', '4M'],
  },
  {
    name: 'resize --preallocation=full',
    tool: 'img',
    fsBytes: MiB,
    setup: ['qemu-img create -q -f raw $F/r.raw 64k'],
    args: ['resize', '-f', 'raw', '--preallocation=full', '$F/r.raw', '4M'],
  },
  {
    name: 'dd',
    tool: 'img',
    fsBytes: MiB,
    args: ['dd', '-O', 'raw', 'if=$SRC/rnd.raw', 'of=$F/d.raw', 'bs=64k'],
  },
  {
    name: 'commit into a base on the full file system',
    tool: 'img',
    fsBytes: 2 * MiB,
    setup: ['qemu-img create -q -f qcow2 $F/base.qcow2 8M', 'qemu-img create -q -f qcow2 -b $F/base.qcow2 -F qcow2 $SRC/top.qcow2', "qemu-io -c 'write -P 7 0 4M' $SRC/top.qcow2 >/dev/null"],
    args: ['commit', '$SRC/top.qcow2'],
    consistent: ['base.qcow2'],
  },
  { name: 'create qcow2 on a file system too small for its metadata', tool: 'img', fsBytes: 64 * 1024, args: ['create', '-f', 'qcow2', '$F/c.qcow2', '64M'] },
  {
    name: 'rebase copying the old backing data into the overlay',
    tool: 'img',
    fsBytes: MiB,
    setup: ['qemu-img create -q -f qcow2 -b $SRC/s.qcow2 -F qcow2 $F/ov.qcow2', 'qemu-img create -q -f qcow2 $SRC/empty.qcow2 8M'],
    args: ['rebase', '-f', 'qcow2', '-b', '$SRC/empty.qcow2', '-F', 'qcow2', '$F/ov.qcow2'],
    consistent: ['ov.qcow2'],
  },
  {
    name: 'bench -w',
    tool: 'img',
    fsBytes: MiB,
    setup: ['qemu-img create -q -f qcow2 $F/b.qcow2 8M'],
    args: ['bench', '-w', '-c', '64', '-s', '64k', '-f', 'qcow2', '$F/b.qcow2'],
    consistent: ['b.qcow2'],
  },
  {
    name: 'io write to qcow2',
    tool: 'io',
    fsBytes: MiB,
    setup: ['qemu-img create -q -f qcow2 $F/w.qcow2 8M'],
    args: ['-f', 'qcow2', '-c', 'write -P 1 0 4M', '-c', 'read -P 1 0 4M', '$F/w.qcow2'],
    consistent: ['w.qcow2'],
  },
  {
    name: 'io writes filling a qcow2 a cluster at a time',
    tool: 'io',
    fsBytes: MiB,
    setup: ['qemu-img create -q -f qcow2 $F/w.qcow2 8M'],
    args: ['-f', 'qcow2', ...Array.from({ length: 20 }, (_, i) => ['-c', `write -P ${i + 1} ${i * 64}k 64k`]).flat(), '-c', 'read -P 1 0 64k', '$F/w.qcow2'],
    consistent: ['w.qcow2'],
  },
  {
    name: 'io writev and aio_write to raw',
    tool: 'io',
    fsBytes: MiB,
    setup: ['qemu-img create -q -f raw $F/w.raw 8M'],
    args: ['-f', 'raw', '-c', 'writev -P 3 0 512k 512k 512k', '-c', 'aio_write -P 4 2M 1M', '-c', 'aio_flush', '-c', 'read -P 3 0 64k', '$F/w.raw'],
  },
  {
    name: 'io write then flush to raw',
    tool: 'io',
    fsBytes: MiB,
    setup: ['qemu-img create -q -f raw $F/w.raw 8M'],
    args: ['-f', 'raw', '-c', 'write -P 5 0 2M', '-c', 'flush', '-c', 'read -P 5 0 512k', '$F/w.raw'],
  },
];

function subst(s: string, src: string, full: string): string {
  return s.replaceAll('$SRC', src).replaceAll('$F', full);
}

function sh(cmd: string, cwd: string): void {
  const r = spawnSync('sh', ['-c', cmd], { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`setup failed: ${cmd}\n${r.stderr}`);
}

/** Output with the run's own directories replaced by names. */
function masked(r: RunResult, src: string, full: string): RunResult {
  const m = (t: string) => normalize(t).replaceAll(full, '$F').replaceAll(src, '$SRC');
  return { code: r.code, stdout: m(r.stdout), stderr: m(r.stderr) };
}

/** `qemu-img check` exit code of an image (0 clean, 3 leaks only, 2 corrupt). */
function checkStatus(path: string): { status: number; out: string } {
  const r = spawnSync('qemu-img', ['check', path], { encoding: 'utf8' });
  return { status: r.status ?? -1, out: r.stdout + r.stderr };
}

describe('CLI on a full file system (ENOSPC)', () => {
  let srcRoot: string;
  beforeAll(() => {
    srcRoot = mkdtempSync(join(tmpdir(), 'dw-enospc-'));
    sh('qemu-img create -q -f qcow2 s.qcow2 8M', srcRoot);
    sh("qemu-io -f qcow2 -c 'write -P 0x21 0 4M' s.qcow2 >/dev/null", srcRoot);
    sh('head -c 4194304 /dev/urandom > rnd.raw', srcRoot);
  });
  afterAll(() => rmSync(srcRoot, { recursive: true, force: true }));

  if (canMountTmpfs()) {
    for (const c of CASES) {
      it(`${c.name}: same report as QEMU, no success claimed, image consistent`, async () => {
        const runs: RunResult[] = [];
        const consistent: Array<{ status: number; out: string }> = [];
        for (const who of ['theirs', 'ours'] as const) {
          const fs = mountSmallFs(c.fsBytes);
          const src = mkdtempSync(join(srcRoot, `${who}-`));
          try {
            sh(`cp ${srcRoot}/s.qcow2 ${srcRoot}/rnd.raw ${src}/`, srcRoot);
            for (const cmd of c.setup ?? []) sh(subst(cmd, src, fs.dir), src);
            const args = c.args.map((a) => subst(a, src, fs.dir));
            const r = who === 'theirs' ? theirs(c.tool, args, src) : await ours(c.tool, args, src);
            runs.push(masked(r, src, fs.dir));
            if (who === 'ours') for (const img of c.consistent ?? []) consistent.push(checkStatus(join(fs.dir, img)));
          } finally {
            fs.dispose();
          }
        }
        const [q, d] = runs as [RunResult, RunResult];
        expect(q.code).not.toBe(0);
        expect(d).toEqual(q);
        for (const r of consistent) expect(r.status, r.out).not.toBe(2);
      });
    }
  } else {
    it('fails under prlimit --fsize for every case, as QEMU does', () => {
      expect(existsSync(BIN), `${BIN} is built by npm test`).toBe(true);
      for (const c of CASES) {
        for (const who of ['theirs', 'ours'] as const) {
          const full = mkdtempSync(join(srcRoot, `lim-${who}-`));
          for (const cmd of c.setup ?? []) sh(subst(cmd, srcRoot, full), srcRoot);
          const args = c.args.map((a) => subst(a, srcRoot, full));
          const prog = c.tool === 'img' ? 'qemu-img' : 'qemu-io';
          const cmd = who === 'theirs' ? [prog, ...args] : ['node', BIN, c.tool, ...args];
          const r = spawnSync('prlimit', [`--fsize=${c.fsBytes}`, ...cmd], { cwd: srcRoot, encoding: 'utf8' });
          const failed = r.status !== 0 || /failed|error/i.test(r.stdout + r.stderr);
          expect(failed, `${who}: ${c.name}: ${r.stdout}${r.stderr}`).toBe(true);
        }
      }
    });
  }
});
