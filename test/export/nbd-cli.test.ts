/**
 * `diskworker nbd` command line against qemu-nbd 7.2: the messages and exit
 * codes of bad options and failed starts (program name and temp paths
 * masked), TCP on a free port, the -e client limit, --pid-file, -l.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nbdMain } from '../../src/cli/nbd/main.js';
import type { CliIo } from '../../src/cli/common.js';
import { BIN, ensureBuiltBin, hasQemu } from '../cli/harness.js';
import { RawNbd, goPayload, run, startOurs, type ServerHandle } from './nbd-harness.js';

async function ours(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) };
  const ac = new AbortController();
  // A start that succeeds would serve forever: stop it as soon as it listens.
  const code = await nbdMain(args, io, { signal: ac.signal, onListening: () => ac.abort() });
  return { code, stdout, stderr };
}

describe.skipIf(!hasQemu())('diskworker nbd command line vs qemu-nbd 7.2', () => {
  let dir: string;
  let img: string;
  const servers: ServerHandle[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dw-nbdc-'));
    img = join(dir, 'a.qcow2');
    expect((await run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1M'])).code).toBe(0);
    expect((await run('qemu-img', ['snapshot', '-c', 'snap1', img])).code).toBe(0);
    expect((await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x42 0 4k', img])).code).toBe(0);
  });
  afterAll(async () => {
    for (const s of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: string[][] = [
    ['-z'],
    ['--foo'],
    ['-p'],
    ['--socket'],
    ['--read-only=x', 'f'],
    ['-e', 'x', 'f'],
    ['-e', '-1', 'f'],
    ['--cache=bad', 'f'],
    ['-n', '-n', 'f'],
    ['-n', '--cache=none', 'f'],
    ['--discard=x', 'f'],
    ['--discard=unmap', '--discard=unmap', 'f'],
    ['--aio=x', 'f'],
    ['--detect-zeroes=x', 'f'],
    ['--detect-zeroes=unmap', 'f'],
    ['-k', 'rel.sock', 'f'],
    ['-o', 'x', 'f'],
    [],
    ['a', 'b'],
    ['-L', 'x'],
    ['--fork', '-L'],
    ['-x', 'a', '-L'],
    ['--tls-authz=a', 'f'],
    ['--tls-hostname=a', 'f'],
    ['--image-opts', '-f', 'raw', '-k', 'SOCK', 'f'],
    ['-k', 'SOCK', 'NOFILE'],
    ['-k', 'SOCK', '-B', 'nob', '-r', 'IMG'],
    ['-k', 'SOCK', '-l', 'nosnap', 'IMG'],
    ['-k', 'SOCK', '-l', 'snapshot.foo=1', 'IMG'],
    ['-k', '/nonexistent-dir/x.sock', 'IMG'],
    ['-p', 'abc', 'IMG'],
    ['-x', 'x'.repeat(4097), 'f'],
  ];

  it.each(cases.map((c) => [c.join(' ').slice(0, 60), c]))('%s', async (_name, c) => {
    const sock = join(dir, 'c.sock');
    const args = (c as string[]).map((a) => (a === 'SOCK' ? sock : a === 'IMG' ? img : a === 'NOFILE' ? join(dir, 'nofile.qcow2') : a));
    const q = await run('qemu-nbd', args);
    const d = await ours(args);
    const mask = (t: string): string => t.replaceAll('qemu-nbd', 'PROG').replaceAll('diskworker nbd', 'PROG').replaceAll(dir, 'DIR');
    expect(mask(d.stderr)).toBe(mask(q.stderr));
    expect(d.code).toBe(q.code);
    expect(q.code).toBe(1);
  });

  it('--help, --version and -c (the kernel device is refused)', async () => {
    const h = await ours(['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('Usage: diskworker nbd [OPTIONS] FILE');
    const v = await ours(['-V']);
    expect(v.stdout).toContain('qemu-nbd 7.2');
    const c = await ours(['-c', '/dev/nbd0', img]);
    expect(c).toEqual({ code: 1, stdout: '', stderr: 'diskworker nbd: Kernel /dev/nbdN support not available\n' });
  });

  it('serves TCP on a free port, writes the pid file, exports a loaded snapshot read-only', async () => {
    const pidFile = join(dir, 'pid');
    const ac = new AbortController();
    let port = 0;
    const io: CliIo = { stdout: () => undefined, stderr: () => undefined };
    let listening!: () => void;
    const up = new Promise<void>((r) => (listening = r));
    const done = nbdMain(['-b', '127.0.0.1', '-p', '0', '-t', '--pid-file', pidFile, '-l', 'snap1', '-f', 'qcow2', img], io, {
      signal: ac.signal,
      onListening: (a) => {
        if (typeof a !== 'string') port = a.port;
        listening();
      },
    });
    await up;
    try {
      expect(port).toBeGreaterThan(0);
      expect(readFileSync(pidFile, 'utf8')).toBe(`${process.pid}\n`);
      // The snapshot predates the 0x42 write: zeros, and the export is read-only.
      const r = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0 0 4k', `nbd://127.0.0.1:${port}`]);
      expect(r.stdout + r.stderr).toContain('read 4096/4096 bytes at offset 0');
      expect(r.stdout).not.toContain('Pattern verification failed');
      const w = await run('qemu-io', ['-f', 'raw', '-c', 'write 0 4k', `nbd://127.0.0.1:${port}`]);
      expect(w.stderr).toContain('Could not open image: Permission denied');
    } finally {
      ac.abort();
      expect(await done).toBe(0);
    }
  });

  it('-e 1 holds a second client until the first leaves; -e 2 serves both', async () => {
    for (const shared of ['1', '2']) {
      const s = await startOurs(['-t', '-e', shared, '-f', 'qcow2', img], join(dir, `e${shared}.sock`));
      servers.push(s);
      const first = await RawNbd.open(s.sock);
      first.write(Buffer.alloc(0));
      const greeting1 = await first.greet();
      expect(greeting1.startsWith('4e42444d41474943')).toBe(true);
      const second = await RawNbd.open(s.sock);
      // Any greeting the second client gets within a short while shows it is served.
      const early = await Promise.race([second.read(18), new Promise<null>((r) => setTimeout(() => r(null), 300))]);
      expect(early !== null).toBe(shared === '2');
      first.end();
      if (shared === '1') {
        const later = await second.read(18);
        expect(later?.toString('hex').startsWith('4e42444d41474943')).toBe(true);
        second.write(Buffer.from([0, 0, 0, 3]));
        expect((await second.option(7, goPayload(''))).at(-1)).toBe('1:');
      }
      second.end();
      await s.stop();
      expect(existsSync(s.sock)).toBe(false);
    }
  });

  it('--fork (real process): the parent exits once the detached server serves, or relays its error', async () => {
    ensureBuiltBin();
    const sock = join(dir, 'fork.sock');
    const pidFile = join(dir, 'fork.pid');
    const r = await run('node', [BIN, 'nbd', '--fork', '-t', '-k', sock, '--pid-file', pidFile, '-f', 'qcow2', img]);
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    try {
      const info = await run('qemu-img', ['info', '--output=json', `nbd+unix:///?socket=${sock}`]);
      expect(JSON.parse(info.stdout)['virtual-size']).toBe(1048576);
    } finally {
      process.kill(pid, 'SIGTERM');
    }
    for (let i = 0; i < 200 && existsSync(sock); i++) await new Promise((res) => setTimeout(res, 25));
    expect(existsSync(sock)).toBe(false);
    const bad = await run('node', [BIN, 'nbd', '--fork', '-k', join(dir, 'fork2.sock'), join(dir, 'nofile.qcow2')]);
    const q = await run('qemu-nbd', ['--fork', '-k', join(dir, 'fork3.sock'), join(dir, 'nofile.qcow2')]);
    expect(bad.code).toBe(q.code);
    expect(bad.stderr.replace('diskworker nbd', 'qemu-nbd')).toBe(q.stderr);
  }, 60_000);
});
