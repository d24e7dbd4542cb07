/**
 * What each cache mode does to the image file, counted at the system calls
 * (strace) of qemu-io 7.2 and of the built `diskworker io` running the same
 * session: the fdatasync calls (writeback: a flush on `flush` and at close
 * when something was written; writethrough / directsync: one after each
 * write, qcow2's metadata updates ordered by their own flushes; unsafe:
 * none, the probed protocol node inheriting cache.no-flush from its format),
 * and the open flags (none / directsync: O_DIRECT; reopen -c and -o
 * cache.direct reopen the file in the new mode). Then O_DIRECT I/O itself
 * against qemu-io: unaligned requests on a file whose length is no multiple
 * of the block size, and more requests in flight than there are bounce
 * buffers, give the same output and bytes.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ensureBuiltBin, hasQemu, normalize } from './harness.js';

const hasStrace = spawnSync('strace', ['-V'], { encoding: 'utf8' }).status === 0;

/** One traced run: the fdatasync/fsync calls on `image` and the flags it was opened read-write with. */
function traced(which: 'qemu' | 'ours', args: string[], cwd: string, image: string): { out: string; syncs: number; rwOpens: string[]; opens: string[] } {
  const log = join(cwd, `strace-${which}.log`);
  const cmd = which === 'qemu' ? ['qemu-io', ...args] : [process.execPath, BIN, 'io', ...args];
  const r = spawnSync('strace', ['-f', '-qq', '-y', '-e', 'trace=fdatasync,fsync,openat', '-o', log, ...cmd], { cwd, encoding: 'utf8' });
  const lines = readFileSync(log, 'utf8').split('\n');
  rmSync(log);
  const syncs = lines.filter((l) => /\b(fdatasync|fsync)\(\d+<[^>]*>\)/.test(l) && l.includes(`/${image}>`)).length;
  // The opens of the image for writing (qemu-io probes it read-only first; the lock helper reads it).
  const rwOpens = lines
    .filter((l) => l.includes('openat(') && l.includes(`"${image}"`) && l.includes('O_RDWR') && !/= -1/.test(l))
    .map((l) => /O_RDWR[A-Z_|]*/.exec(l)![0].split('|').filter((f) => f !== 'O_CLOEXEC').join('|'));
  // Every open of the image but qemu-io's read-only probes (O_NONBLOCK), in order.
  const opens = lines
    .filter((l) => l.includes('openat(') && l.includes(`"${image}"`) && !l.includes('O_NONBLOCK') && !/= -1/.test(l))
    .map((l) => /O_(RDWR|RDONLY)[A-Z_|]*/.exec(l)![0].split('|').filter((f) => f !== 'O_CLOEXEC').join('|'));
  return { out: normalize(r.stdout + r.stderr), syncs, rwOpens, opens };
}

const MODES = ['writeback', 'writethrough', 'none', 'directsync', 'unsafe'];
const SESSION = ['-c', 'write -P 1 0 64k', '-c', 'write -P 2 64k 64k', '-c', 'flush', '-c', 'write -P 3 1M 4k', '-c', 'read -P 3 1M 4k'];

describe.skipIf(!hasQemu() || !hasStrace)('cache modes at the system calls vs qemu-io 7.2', () => {
  let tmp: string;
  beforeAll(() => {
    ensureBuiltBin();
    tmp = mkdtempSync(join(tmpdir(), 'dw-cache-'));
  }, 240_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /** A fresh image for each side: qcow2 allocates (its metadata flushes count), raw does not. */
  function fresh(side: string, fmt: 'qcow2' | 'raw'): string {
    const dir = join(tmp, `${side}-${Math.random().toString(36).slice(2)}`);
    spawnSync('mkdir', ['-p', dir]);
    spawnSync('qemu-img', ['create', '-q', '-f', fmt, `t.${fmt}`, '4M'], { cwd: dir });
    return dir;
  }

  for (const fmt of ['qcow2', 'raw'] as const) {
    for (const mode of MODES) {
      for (const flag of [['-t', mode], [`--cache=${mode}`]]) {
        it(`io -f ${fmt} ${flag.join(' ')}: the same fdatasync calls and open flags`, () => {
          const args = ['-f', fmt, ...flag, ...SESSION, `t.${fmt}`];
          const q = traced('qemu', args, fresh('q', fmt), `t.${fmt}`);
          const d = traced('ours', args, fresh('d', fmt), `t.${fmt}`);
          expect(d).toEqual(q);
          // What each mode means, beyond agreeing with QEMU.
          if (mode === 'unsafe') expect(q.syncs).toBe(0);
          if (mode === 'writethrough' || mode === 'directsync') expect(q.syncs).toBeGreaterThanOrEqual(3);
          expect(q.rwOpens.at(-1)).toBe(mode === 'none' || mode === 'directsync' ? 'O_RDWR|O_DIRECT' : 'O_RDWR');
        });
      }
    }
  }

  it('reopen -c and -o cache.direct reopen the file with and without O_DIRECT, as qemu-io does', () => {
    const args = ['-f', 'raw', '-c', 'reopen -c none', '-c', 'write -P 1 1 4k', '-c', 'reopen -o cache.direct=off', '-c', 'write -P 2 8k 4k', '-c', 'reopen -o cache.direct=on', '-c', 'read -P 1 1 4k', '-c', 'reopen -r -c writeback', '-c', 'read -P 2 8k 1', 't.raw'];
    const q = traced('qemu', args, fresh('q', 'raw'), 't.raw');
    const d = traced('ours', args, fresh('d', 'raw'), 't.raw');
    expect(d).toEqual(q);
    expect(q.opens).toEqual(['O_RDWR', 'O_RDWR|O_DIRECT', 'O_RDWR', 'O_RDWR|O_DIRECT', 'O_RDONLY']);
  });

  it('a read-write reopen keeps O_DIRECT, as QEMU does', () => {
    const args = ['-f', 'qcow2', '-t', 'none', '-r', '-c', 'reopen -w', '-c', 'write -P 4 0 4k', '-c', 'read -P 4 0 4k', 't.qcow2'];
    const q = traced('qemu', args, fresh('q', 'qcow2'), 't.qcow2');
    const d = traced('ours', args, fresh('d', 'qcow2'), 't.qcow2');
    expect(d).toEqual(q);
  });
});

describe.skipIf(!hasQemu())('O_DIRECT I/O vs qemu-io 7.2', () => {
  let tmp: string;
  beforeAll(() => {
    ensureBuiltBin();
    tmp = mkdtempSync(join(tmpdir(), 'dw-direct-'));
    // 1000 bytes: the last block is partial, and O_DIRECT reads there stop short.
    writeFileSync(join(tmp, 'odd.raw'), Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff)));
    spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', 'big.qcow2', '32M'], { cwd: tmp });
  }, 240_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const cases: Array<[string, string[]]> = [
    ['odd.raw', ['-f', 'raw', '-t', 'none', '-c', 'read -v 990 20', '-c', 'write -P 7 995 10', '-c', 'read -v 990 20', '-c', 'read -v 1 7', '-c', 'write -P 9 1 3']],
    // Twelve 2 MiB writes in flight (more than the eight 1 MiB bounce buffers), then read back unaligned.
    ['big.qcow2', ['-t', 'directsync', ...Array.from({ length: 12 }, (_, i) => ['-c', `aio_write -P ${i + 1} ${i * 2}M 2M`]).flat(), '-c', 'aio_flush', '-c', 'read -P 12 22M 2M', '-c', 'read -P 5 8M 7']],
  ];
  for (const [image, args] of cases) {
    it(`io ${args.join(' ')} ${image}`, () => {
      const run = (which: 'qemu' | 'ours') => {
        const dir = join(tmp, which);
        spawnSync('mkdir', ['-p', dir]);
        copyFileSync(join(tmp, image), join(dir, image));
        const cmd = which === 'qemu' ? ['qemu-io', ...args, image] : [process.execPath, BIN, 'io', ...args, image];
        const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd: dir, encoding: 'utf8' });
        // Requests in flight complete in an order neither tool fixes: their lines are compared sorted.
        const out = normalize(r.stdout + r.stderr);
        return { code: r.status, out: args.some((a) => a.startsWith('aio_')) ? out.split('\n').sort().join('\n') : out, bytes: readFileSync(join(dir, image)).toString('base64') };
      };
      const q = run('qemu');
      expect(q.code).toBe(0);
      expect(run('ours')).toEqual(q);
    });
  }
});
