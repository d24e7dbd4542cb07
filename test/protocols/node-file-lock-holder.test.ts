/**
 * QEMU sees DiskWorker's image locks (issue #16; src/protocols/node-file-lock-holder.ts),
 * differentially: the same image is held once by qemu-io and once by
 * `node dist/cli/diskworker.js io` (each reading commands from a pipe kept
 * open), with the same arguments. The bytes locked (from /proc/locks) must be
 * the same, and qemu-img / qemu-io command lines run against the held image
 * must answer the same. Once the holder ends, even by SIGKILL, the locks go.
 *
 * Needs the CLI bundle (npm run build:ts), QEMU 7.2, perl and Linux /proc/locks.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { hasQemu } from '../cli/harness.js';
import { lockBytes, lockKey } from '../../src/protocols/node-file-locks.js';
import { LockHolder } from '../../src/protocols/node-file-lock-holder.js';
import { Perm, PERM_ALL } from '../../src/core/permissions.js';

const CLI = resolve('dist/cli/diskworker.js');
const canRun = hasQemu() && existsSync(CLI) && existsSync('/proc/locks') && spawnSync('perl', ['-v']).status === 0;

let dir = '';
const holders: ChildProcess[] = [];

/** The locked bytes of `file` in /proc/locks, as "start-end" strings, sorted (who holds them left out). */
function lockedBytes(file: string): string[] {
  const st = statSync(join(dir, file));
  const key = lockKey(st.dev, st.ino);
  const out: string[] = [];
  for (const line of readFileSync('/proc/locks', 'latin1').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || f[1] === '->' || (f[1] !== 'POSIX' && f[1] !== 'OFDLCK')) continue;
    const [maj, min, ino] = f[5]!.split(':');
    if (`${parseInt(maj!, 16).toString(16)}:${parseInt(min!, 16).toString(16)}:${ino}` !== key) continue;
    for (let b = Number(f[6]); b <= Number(f[7]); b++) out.push(`${f[3]} ${b}`);
  }
  return out.sort();
}

async function until(what: string, cond: () => boolean, p?: ChildProcess): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (p && p.exitCode !== null) throw new Error(`holder exited with ${p.exitCode} while waiting for ${what}`);
    if (i > 1500) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `tool` holding `file` with `args` and returns once the image is open: both tools
 * take and narrow their locks in steps while opening (QEMU first locks 100, 101 and 103,
 * then 201 and 203), so the first lock seen is not yet the held set. The answer to
 * `length`, the first command read, says the open has ended.
 */
async function hold(tool: 'qemu' | 'ours', args: string[], file: string): Promise<ChildProcess> {
  const [cmd, argv] = tool === 'qemu' ? ['qemu-io', args] : [process.execPath, [CLI, 'io', ...args]];
  const p = spawn(cmd, argv, { cwd: dir, stdio: ['pipe', 'pipe', 'ignore'] });
  holders.push(p);
  let out = '';
  p.stdout!.on('data', (d: Buffer) => void (out += d.toString()));
  p.stdin!.write('length\n');
  await until(`${tool} to open ${file}`, () => /\d+ (bytes|KiB|MiB)\n/.test(out), p);
  expect(lockedBytes(file).length).toBeGreaterThan(0);
  return p;
}

async function end(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill(signal);
  await done;
}

/** What a QEMU command line answers: exit code and first line of its output. */
function qemu(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', input: '', timeout: 60_000 });
  return `${r.status} ${`${r.stdout}${r.stderr}`.split('\n')[0]}`;
}

const PROBES: Array<[string, string[]]> = [
  ['qemu-img', ['info', 'IMG']],
  ['qemu-img', ['info', '-U', 'IMG']],
  ['qemu-img', ['check', 'IMG']],
  ['qemu-img', ['resize', 'IMG', '2M']],
  ['qemu-img', ['convert', '-O', 'raw', 'IMG', 'out.raw']],
  ['qemu-io', ['-c', 'write 0 512', 'IMG']],
  ['qemu-io', ['-r', '-c', 'read 0 512', 'IMG']],
];

/** Holds `img` with each tool in turn and compares locked bytes and what QEMU's tools answer. */
async function compareHolders(img: string, holdArgs: string[], create: string[]): Promise<void> {
  const seen: Record<string, { bytes: string[]; answers: string[] }> = {};
  for (const tool of ['qemu', 'ours'] as const) {
    expect(spawnSync('qemu-img', ['create', '-q', ...create, img, '1M'], { cwd: dir }).status).toBe(0);
    const p = await hold(tool, [...holdArgs, img], img);
    const bytes = lockedBytes(img);
    const answers = PROBES.map(([cmd, args]) => qemu(cmd, args.map((a) => (a === 'IMG' ? img : a))));
    expect(p.exitCode).toBeNull();
    await end(p);
    await until(`the locks on ${img} to go`, () => lockedBytes(img).length === 0);
    seen[tool] = { bytes, answers };
  }
  // The lock type and bytes; OFD (QEMU) and POSIX (ours) differ only in the column not compared.
  expect(seen.ours!.bytes).toEqual(seen.qemu!.bytes);
  expect(seen.ours!.answers).toEqual(seen.qemu!.answers);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dw-lock-holder-'));
});
afterEach(async () => {
  for (const p of holders.splice(0)) await end(p, 'SIGKILL');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('the bytes QEMU locks', () => {
  it('100+i for each permission held, 200+i for each not shared', () => {
    expect([...lockBytes(Perm.CONSISTENT_READ | Perm.WRITE, PERM_ALL)].sort()).toEqual([100, 101]);
    expect([...lockBytes(Perm.CONSISTENT_READ, Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED)].sort()).toEqual([100, 201, 203]);
    expect(lockBytes(0, PERM_ALL).size).toBe(0);
  });
});

describe.skipIf(!canRun)('QEMU sees our locks', () => {
  it('one process, two owners of one file: the union is locked, and one release keeps the other', { timeout: 60_000 }, async () => {
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'raw', 'u.raw', '1M'], { cwd: dir }).status).toBe(0);
    const holder = (await LockHolder.get())!;
    expect(holder).not.toBeNull();
    const st = statSync(join(dir, 'u.raw'));
    const key = lockKey(st.dev, st.ino);
    const path = join(dir, 'u.raw');
    const a = {};
    const b = {};
    await holder.set(key, path, a, new Set([100, 101]));
    await holder.set(key, path, b, new Set([100, 203]));
    expect(lockedBytes('u.raw')).toEqual(['READ 100', 'READ 101', 'READ 203']);
    await holder.set(key, path, a, new Set());
    expect(lockedBytes('u.raw')).toEqual(['READ 100', 'READ 203']);
    expect(qemu('qemu-io', ['-f', 'raw', '-c', 'write 0 512', 'u.raw'])).toBe('0 wrote 512/512 bytes at offset 0');
    expect(qemu('qemu-img', ['resize', '-f', 'raw', 'u.raw', '2M'])).toMatch(/^1 .*Failed to get "resize" lock/);
    await holder.set(key, path, b, new Set());
    expect(lockedBytes('u.raw')).toEqual([]);
    // A file that cannot be opened: an error, nothing locked.
    await expect(holder.set('0:0:1', join(dir, 'missing'), a, new Set([100]))).rejects.toThrow(/errno 2/);
  });

  it('a read-write qcow2: the same bytes as qemu-io and the same answers', { timeout: 60_000 }, async () => {
    await compareHolders('a.qcow2', [], ['-f', 'qcow2']);
  });

  it('a read-only qcow2 (-r)', { timeout: 60_000 }, async () => {
    await compareHolders('r.qcow2', ['-r'], ['-f', 'qcow2']);
  });

  it('a read-write raw image (-f raw): qemu-io shares writes, so do we', { timeout: 60_000 }, async () => {
    await compareHolders('b.raw', ['-f', 'raw'], ['-f', 'raw']);
  });

  it('truncate takes the resize permission, as qemu-io does', { timeout: 60_000 }, async () => {
    const seen: string[][] = [];
    for (const tool of ['qemu', 'ours'] as const) {
      expect(spawnSync('qemu-img', ['create', '-q', '-f', 'raw', 't.raw', '1M'], { cwd: dir }).status).toBe(0);
      const p = await hold(tool, ['-f', 'raw', 't.raw'], 't.raw');
      p.stdin!.write('truncate 2M\n');
      await until('the truncate and its resize lock', () => statSync(join(dir, 't.raw')).size === 2 << 20 && lockedBytes('t.raw').length === 3, p);
      seen.push(lockedBytes('t.raw'));
      await end(p);
      await until('the locks to go', () => lockedBytes('t.raw').length === 0);
    }
    expect(seen[1]).toEqual(seen[0]);
  });

  it('DISKWORKER_LOCK_HOLDER=off: nothing is locked', { timeout: 60_000 }, async () => {
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', 'off.qcow2', '1M'], { cwd: dir }).status).toBe(0);
    const p = spawn(process.execPath, [CLI, 'io', 'off.qcow2'], { cwd: dir, stdio: ['pipe', 'pipe', 'ignore'], env: { ...process.env, DISKWORKER_LOCK_HOLDER: 'off' } });
    holders.push(p);
    let out = '';
    p.stdout!.on('data', (d: Buffer) => void (out += d.toString()));
    p.stdin!.write('read 0 512\n');
    await until('the read', () => out.includes('read 512/512'), p);
    expect(lockedBytes('off.qcow2')).toEqual([]);
    expect(qemu('qemu-img', ['check', 'off.qcow2'])).toBe('0 No errors were found on the image.');
  });

  it('a holder killed with SIGKILL leaves no lock behind', { timeout: 60_000 }, async () => {
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', 'k.qcow2', '1M'], { cwd: dir }).status).toBe(0);
    const p = await hold('ours', ['k.qcow2'], 'k.qcow2');
    expect(qemu('qemu-img', ['info', 'k.qcow2'])).toMatch(/^1 .*Failed to get shared "write" lock/);
    await end(p, 'SIGKILL');
    await until('the locks to go', () => lockedBytes('k.qcow2').length === 0);
    expect(qemu('qemu-img', ['check', 'k.qcow2'])).toBe('0 No errors were found on the image.');
  });
});
