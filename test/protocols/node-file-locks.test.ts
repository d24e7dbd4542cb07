/**
 * QEMU's image locks (issue #16), differentially: a QEMU process (qemu-io
 * reading commands from a pipe kept open, or qemu-storage-daemon) holds an
 * image; then qemu-img / qemu-io and `node dist/cli/diskworker.js img` / `io`
 * run the same command lines against it, and their exit codes, stdout and
 * stderr must match line for line (program names and timings normalised).
 * The other direction (QEMU sees our locks) is node-file-lock-holder.test.ts.
 *
 * Needs the CLI bundle (npm run build:ts), QEMU 7.2 and Linux /proc/locks.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { hasQemu, normalize } from '../cli/harness.js';
import { checkFileLocks, checkLockRanges, heldRanges, ImageLockCheck, loadLockFs, lockKey, setProcLocksPath } from '../../src/protocols/node-file-locks.js';
import { Perm, PERM_ALL } from '../../src/core/permissions.js';
import { BlockError } from '../../src/core/errors.js';
import { BlockBackend, createNodeGraph } from '../../src/node.js';

const CLI = resolve('dist/cli/diskworker.js');
const canRun = hasQemu() && existsSync(CLI) && existsSync('/proc/locks');

let dir = '';
const holders: ChildProcess[] = [];

interface Out {
  code: number;
  out: string;
}

/** One command line through QEMU's tool and ours (spawned), stdout and stderr as one normalised text. */
function both(tool: 'img' | 'io', args: string[]): { theirs: Out; ours: Out } {
  const run = (cmd: string, argv: string[]): Out => {
    const r = spawnSync(cmd, argv, { cwd: dir, encoding: 'utf8', input: '', timeout: 60_000 });
    return { code: r.status ?? -1, out: normalize(`${r.stdout}${r.stderr}`) };
  };
  return {
    theirs: run(tool === 'img' ? 'qemu-img' : 'qemu-io', args),
    ours: run(process.execPath, [CLI, tool, ...args]),
  };
}

function expectSame(tool: 'img' | 'io', args: string[]): Out {
  const r = both(tool, args);
  expect(r.ours.out).toBe(r.theirs.out);
  expect(r.ours.code).toBe(r.theirs.code);
  return r.theirs;
}

/** The lock table lines for `file` (through our own parser of /proc/locks). */
function locksOn(file: string): number {
  const st = statSync(join(dir, file));
  return heldRanges(readFileSync('/proc/locks', 'latin1'), lockKey(st.dev, st.ino)).length;
}

/** Waits (no time limit but the test's) until `file` has more than `before` lock entries. */
async function waitForLocks(file: string, before: number, p: ChildProcess): Promise<void> {
  while (locksOn(file) <= before) {
    if (p.exitCode !== null) throw new Error(`holder exited with ${p.exitCode}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts a QEMU process that holds `file` open, and returns once its locks show. */
async function hold(cmd: string, args: string[], file: string): Promise<ChildProcess> {
  const before = locksOn(file);
  const p = spawn(cmd, args, { cwd: dir, stdio: ['pipe', 'ignore', 'ignore'] });
  holders.push(p);
  await waitForLocks(file, before, p);
  return p;
}

async function release(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}

function create(args: string): void {
  const r = spawnSync('qemu-img', ['create', ...args.split(' ')], { cwd: dir, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dw-locks-'));
});
afterEach(async () => {
  for (const p of holders.splice(0)) await release(p);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('the lock table', () => {
  it('keys files as /proc/locks prints them and finds POSIX / OFD ranges only', () => {
    expect(lockKey(0xfe00, 2237168)).toBe('fe:0:2237168');
    expect(lockKey(0x10300, 7)).toBe('103:0:7');
    const table = [
      '1: OFDLCK ADVISORY  READ -1 fe:00:42 100 101',
      '1: -> OFDLCK ADVISORY  WRITE -1 fe:00:42 201 201',
      '2: FLOCK  ADVISORY  WRITE 77 fe:00:42 0 EOF',
      '3: POSIX  ADVISORY  READ 78 fe:00:42 203 EOF',
      '4: OFDLCK ADVISORY  READ -1 fe:01:42 200 200',
    ].join('\n');
    expect(heldRanges(table, 'fe:0:42')).toEqual([
      { start: 100, end: 101 },
      { start: 203, end: Infinity },
    ]);
  });

  it('checks wanted permissions first, then unshared ones, with QEMU words', () => {
    const ranges = [
      { start: 100, end: 101 },
      { start: 201, end: 201 },
    ];
    const err = (perm: number, shared: number): BlockError | undefined => {
      try {
        checkLockRanges(ranges, perm, shared, 'x.img');
        return undefined;
      } catch (e) {
        return e as BlockError;
      }
    };
    const e1 = err(Perm.CONSISTENT_READ | Perm.WRITE, Perm.CONSISTENT_READ);
    expect(e1?.text).toBe('Failed to get "write" lock');
    expect(e1?.hint).toBe('Is another process using the image [x.img]?\n');
    expect(err(Perm.CONSISTENT_READ, Perm.CONSISTENT_READ)?.text).toBe('Failed to get shared "write" lock');
    expect(err(Perm.CONSISTENT_READ, PERM_ALL)).toBeUndefined();
    expect(err(Perm.RESIZE, PERM_ALL & ~Perm.RESIZE)).toBeUndefined();
  });
});

describe('where the table comes from', () => {
  afterEach(() => setProcLocksPath('/proc/locks'));

  it('a lock table read from the path given: held bytes refuse, no table (not Linux) checks nothing', async () => {
    await loadLockFs();
    const table = join(dir, 'locks.txt');
    writeFileSync(table, '1: OFDLCK ADVISORY  READ -1 08:01:99 201 201\n2: POSIX  ADVISORY  WRITE 12 08:01:98 101 101\n');
    setProcLocksPath(table);
    expect(() => checkFileLocks('8:1:99', Perm.WRITE, PERM_ALL, 'x')).toThrow('Failed to get "write" lock');
    expect(() => checkFileLocks('8:1:99', Perm.CONSISTENT_READ, PERM_ALL, 'x')).not.toThrow();
    expect(() => checkFileLocks('8:1:98', Perm.CONSISTENT_READ, Perm.CONSISTENT_READ, 'x')).toThrow('Failed to get shared "write" lock');
    // A POSIX lock over everything covers byte 200 too: wanting a read is refused first.
    writeFileSync(table, '3: POSIX  ADVISORY  WRITE 12 08:01:97 0 EOF\n');
    expect(() => checkFileLocks('8:1:97', Perm.CONSISTENT_READ, Perm.CONSISTENT_READ, 'x')).toThrow('Failed to get "consistent read" lock');
    setProcLocksPath(join(dir, 'no-such-table'));
    expect(() => checkFileLocks('8:1:99', Perm.WRITE, 0, 'x')).not.toThrow();
  });

  it("a busy host's table (megabytes): read in pieces, the file's lines found across piece boundaries", async () => {
    await loadLockFs();
    const table = join(dir, 'big-locks.txt');
    // Lines of one length, so that ours can be put across the 64 KiB piece boundaries.
    const filler = (i: number) => `${String(i).padStart(6, '0')}: OFDLCK ADVISORY  READ -1 08:01:${1000 + (i % 500)} 10${i % 8} 10${i % 8}`;
    const len = filler(0).length + 1;
    const lines = Array.from({ length: 60_000 }, (_, i) => filler(i));
    const ours = (kind: string, pid: string, byte: number) => `999999: ${kind} ADVISORY  READ ${pid} 08:01:7777 ${byte} ${byte}`.padEnd(len - 1);
    const across = (boundary: number) => {
      const k = Math.floor(boundary / len);
      expect(k * len < boundary && boundary < (k + 1) * len).toBe(true);
      return k;
    };
    lines[across(65536)] = ours('OFDLCK', '-1', 201);
    lines[across(3 * 65536)] = ours('POSIX ', '4242', 100);
    const text = `${lines.join('\n')}\n${ours('OFDLCK', '-1', 202).trimEnd()}`;
    expect(text.length).toBeGreaterThan(2_500_000);
    writeFileSync(table, text);
    setProcLocksPath(table);
    expect(() => checkFileLocks('8:1:7777', Perm.WRITE, PERM_ALL, 'x')).toThrow('Failed to get "write" lock');
    expect(() => checkFileLocks('8:1:7777', Perm.CONSISTENT_READ, PERM_ALL & ~Perm.WRITE, 'x')).not.toThrow();
    expect(() => checkFileLocks('8:1:7777', Perm.CONSISTENT_READ, PERM_ALL & ~Perm.WRITE_UNCHANGED, 'x')).not.toThrow();
    // Byte 100 (someone reads consistently) is held by pid 4242: not sharing that is refused,
    // unless pid 4242 is our own lock holder.
    expect(() => checkFileLocks('8:1:7777', Perm.CONSISTENT_READ, PERM_ALL & ~Perm.CONSISTENT_READ, 'x')).toThrow('Failed to get shared "consistent read" lock');
    expect(() => checkFileLocks('8:1:7777', Perm.CONSISTENT_READ, PERM_ALL & ~Perm.CONSISTENT_READ, 'x', 4242)).not.toThrow();
    // The other files' lines: inode 1001 holds byte 101 (a writer); inode 5 has no line.
    expect(() => checkFileLocks('8:1:1001', Perm.CONSISTENT_READ, PERM_ALL & ~Perm.WRITE, 'x')).toThrow('Failed to get shared "write" lock');
    expect(() => checkFileLocks('8:1:5', PERM_ALL, 0, 'x')).not.toThrow();
  });
});

describe.skipIf(process.platform !== 'linux')('two opens of one file in this process (QEMU\'s OFD locks are per open)', () => {
  afterEach(() => setProcLocksPath('/proc/locks'));

  it('a check locks the new bytes until commit or abort, so later checks see them; a refused check keeps the old ones', async () => {
    await loadLockFs();
    // No lock table: only the opens of this process count.
    setProcLocksPath(join(dir, 'no-such-table'));
    const st = { dev: 0x801, ino: 4_000_000_001 };
    const a = new ImageLockCheck(st, 'x.img');
    const b = new ImageLockCheck(st, 'x.img');
    const refusal = (f: () => void): string | undefined => {
      try {
        f();
        return undefined;
      } catch (e) {
        expect((e as BlockError).code).toBe('EAGAIN');
        expect((e as BlockError).hint).toBe('Is another process using the image [x.img]?\n');
        return (e as BlockError).text;
      }
    };
    // a wants to write (checked, not yet committed): a reader that does not share writes sees it.
    expect(refusal(() => a.check(Perm.CONSISTENT_READ | Perm.WRITE, PERM_ALL))).toBeUndefined();
    expect([...a.lockedBytes].sort()).toEqual([100, 101]);
    expect(refusal(() => b.check(Perm.CONSISTENT_READ, Perm.CONSISTENT_READ))).toBe('Failed to get shared "write" lock');
    expect(b.lockedBytes.size).toBe(0);
    // a's update is given up: its bytes go, and the reader gets in.
    a.abort();
    expect(a.lockedBytes.size).toBe(0);
    expect(refusal(() => b.check(Perm.CONSISTENT_READ, Perm.CONSISTENT_READ))).toBeUndefined();
    b.commit(Perm.CONSISTENT_READ, Perm.CONSISTENT_READ);
    expect([...b.lockedBytes].sort()).toEqual([100, 201, 202, 203]);
    // Now a writer is refused, wanted permissions first; the refused check locks nothing.
    expect(refusal(() => a.check(Perm.CONSISTENT_READ | Perm.WRITE, PERM_ALL))).toBe('Failed to get "write" lock');
    expect(a.lockedBytes.size).toBe(0);
    // An update that takes nothing new is not checked (QEMU tests only growing permissions).
    expect(refusal(() => b.check(Perm.CONSISTENT_READ, Perm.CONSISTENT_READ))).toBeUndefined();
    // Another file is another key.
    const c = new ImageLockCheck({ dev: 0x801, ino: 4_000_000_002 }, 'y.img');
    expect(refusal(() => c.check(Perm.WRITE, 0))).toBeUndefined();
    await Promise.all([b.release(), c.release()]);
    expect(refusal(() => a.check(Perm.CONSISTENT_READ | Perm.WRITE, 0))).toBeUndefined();
    a.commit(Perm.CONSISTENT_READ | Perm.WRITE, 0);
    await a.release();
    expect(a.lockedBytes.size).toBe(0);
  });

  it('through the graph: a second writer or plain reader is refused, force-share and locking=off pass, a close frees', async () => {
    const file = join(dir, 'same.raw');
    writeFileSync(file, new Uint8Array(1 << 20));
    const graph = createNodeGraph();
    const spec = (extra: Record<string, unknown> = {}, fileExtra: Record<string, unknown> = {}) => ({ driver: 'raw', ...extra, file: { driver: 'file', filename: file, ...fileExtra } });
    const text = (p: Promise<unknown>) =>
      p.then(
        async (bb) => {
          await (bb as BlockBackend).close();
          return 'ok';
        },
        (e: unknown) => `${(e as BlockError).code}: ${(e as BlockError).text}`,
      );
    // A writer that shares no writes (as qemu-img convert's source shares none).
    const w = await BlockBackend.open(graph, spec(), {}, { shared: Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED });
    expect(await text(BlockBackend.open(graph, spec(), {}))).toBe('EAGAIN: Failed to get "write" lock');
    expect(await text(BlockBackend.open(graph, spec(), { readOnly: true }))).toBe('EAGAIN: Failed to get shared "write" lock');
    expect(await text(BlockBackend.open(graph, spec({ 'force-share': true }), { readOnly: true }))).toBe('ok');
    expect(await text(BlockBackend.open(graph, spec({ 'force-share': true }), {}))).toBe('EINVAL: force-share=on can only be used with read-only images');
    expect(await text(BlockBackend.open(graph, spec({}, { locking: 'off' }), {}))).toBe('ok');
    await w.close();
    expect(await text(BlockBackend.open(graph, spec(), {}))).toBe('ok');
  });
});

describe.skipIf(!canRun)('force-share on nodes', () => {
  it('children inherit it, their parents share everything on them, and only read-only nodes take it', async () => {
    create('-f qcow2 fs.qcow2 1M');
    const graph = createNodeGraph();
    const node = await graph.open({ filename: join(dir, 'fs.qcow2'), 'force-share': true }, { readOnly: true });
    const file = node.children.find((c) => c.name === 'file')!;
    expect(node.forceShare).toBe(true);
    expect(file.node.forceShare).toBe(true);
    expect(file.shared).toBe(PERM_ALL);
    await node.unref();
    const plain = await graph.open({ filename: join(dir, 'fs.qcow2') }, { readOnly: true });
    expect(plain.children.find((c) => c.name === 'file')!.shared & Perm.WRITE).toBe(0);
    await plain.unref();
    await expect(graph.open({ filename: join(dir, 'fs.qcow2'), 'force-share': true }, { readOnly: false })).rejects.toThrow(
      'force-share=on can only be used with read-only images',
    );
  });
});

describe.skipIf(!canRun)('QEMU holds the image (differential)', () => {
  it('a read-write qcow2 in qemu-io: img refuses or passes as qemu-img does', { timeout: 60_000 }, async () => {
    create('-f qcow2 a.qcow2 1M');
    const holder = await hold('qemu-io', ['a.qcow2'], 'a.qcow2');
    for (const args of [
      ['info', 'a.qcow2'],
      ['info', '-U', 'a.qcow2'],
      ['check', 'a.qcow2'],
      ['check', '-U', 'a.qcow2'],
      ['map', 'a.qcow2'],
      ['map', '-U', 'a.qcow2'],
      ['resize', 'a.qcow2', '2M'],
      ['snapshot', '-l', 'a.qcow2'],
      ['convert', '-O', 'raw', 'a.qcow2', 'out1.raw'],
      ['convert', '-U', '-O', 'raw', 'a.qcow2', 'out2.raw'],
      ['info', '--image-opts', 'driver=qcow2,file.filename=a.qcow2,file.locking=off'],
      ['info', '--image-opts', 'driver=qcow2,file.driver=file,file.filename=a.qcow2,file.locking=on'],
    ]) {
      expectSame('img', args);
    }
    expect(holder.exitCode).toBeNull();
  });

  it('a read-write qcow2 in qemu-io: io refuses or passes as qemu-io does', { timeout: 60_000 }, async () => {
    const holder = await hold('qemu-io', ['a.qcow2'], 'a.qcow2');
    for (const args of [
      ['-c', 'read 0 512', 'a.qcow2'],
      ['-r', '-c', 'read 0 512', 'a.qcow2'],
      ['-r', '-U', '-c', 'read 0 512', 'a.qcow2'],
      ['-U', '-c', 'read 0 512', 'a.qcow2'],
      // force-share stays on through a reopen (QEMU does not re-read it): the lock check still runs.
      ['-r', '-U', '-c', 'reopen -w', 'a.qcow2'],
      ['-r', '--image-opts', '-c', 'read 0 512', 'driver=qcow2,file.filename=a.qcow2,file.locking=off'],
      ['--image-opts', '-c', 'write 0 512', 'driver=raw,file.filename=a.qcow2,locking=off'],
    ]) {
      expectSame('io', args);
    }
    expect(holder.exitCode).toBeNull();
  });

  it('create on a held image fails before it truncates anything', { timeout: 60_000 }, async () => {
    create('-f qcow2 c.qcow2 1M');
    spawnSync('qemu-io', ['-c', 'write -P 0x5a 0 64k', 'c.qcow2'], { cwd: dir });
    await hold('qemu-io', ['c.qcow2'], 'c.qcow2');
    const before = readFileSync(join(dir, 'c.qcow2'));
    const r = expectSame('img', ['create', '-f', 'qcow2', 'c.qcow2', '1M']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('Failed to get "write" lock');
    expect(readFileSync(join(dir, 'c.qcow2')).equals(before)).toBe(true);
  });

  it('a raw image in qemu-io is shared for writes, except with convert (no-share sources)', { timeout: 60_000 }, async () => {
    writeFileSync(join(dir, 'r.raw'), new Uint8Array(1 << 20));
    await hold('qemu-io', ['-f', 'raw', 'r.raw'], 'r.raw');
    expectSame('img', ['info', '-f', 'raw', 'r.raw']);
    expectSame('img', ['convert', '-f', 'raw', '-O', 'raw', 'r.raw', 'out3.raw']);
    expectSame('io', ['-f', 'raw', '-c', 'write -P 1 0 512', 'r.raw']);
    expectSame('io', ['-f', 'raw', '-r', '-c', 'read -P 1 0 512', 'r.raw']);
  });

  it('a read-only qcow2 in qemu-io: readers pass, writers fail', { timeout: 60_000 }, async () => {
    create('-f qcow2 ro.qcow2 1M');
    await hold('qemu-io', ['-r', 'ro.qcow2'], 'ro.qcow2');
    expectSame('img', ['info', 'ro.qcow2']);
    expectSame('img', ['check', 'ro.qcow2']);
    expectSame('img', ['check', '-r', 'all', 'ro.qcow2']);
    expectSame('io', ['-r', '-c', 'read 0 512', 'ro.qcow2']);
    expectSame('io', ['-c', 'write 0 512', 'ro.qcow2']);
    expectSame('io', ['-r', '-c', 'reopen -w', '-c', 'read 0 512', 'ro.qcow2']);
  });

  it('a qcow2 node in qemu-storage-daemon', { timeout: 60_000 }, async () => {
    create('-f qcow2 d.qcow2 1M');
    await hold(
      'qemu-storage-daemon',
      ['--blockdev', 'driver=file,node-name=f,filename=d.qcow2', '--blockdev', 'driver=qcow2,node-name=q,file=f'],
      'd.qcow2',
    );
    expectSame('img', ['info', 'd.qcow2']);
    expectSame('img', ['info', '-U', 'd.qcow2']);
    expectSame('img', ['check', '-U', 'd.qcow2']);
    expectSame('io', ['-c', 'read 0 512', 'd.qcow2']);
    expectSame('io', ['-r', '-U', '-c', 'read 0 512', 'd.qcow2']);
    expectSame('img', ['info', '-f', 'raw', '--image-opts', 'driver=file,filename=d.qcow2']);
    // A second daemon: the file node alone takes nothing, the qcow2 node on it wants to write.
    const argv = ['--blockdev', 'driver=file,node-name=f,filename=d.qcow2', '--blockdev', 'driver=qcow2,node-name=q,file=f'];
    const daemon = (cmd: string, args: string[]): Out => {
      const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', input: '', timeout: 60_000 });
      return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`.replace(/^(qemu-storage-daemon|diskworker daemon): /gm, '<prog>: ') };
    };
    const theirs = daemon('qemu-storage-daemon', argv);
    const ours = daemon(process.execPath, [CLI, 'daemon', ...argv]);
    expect(theirs.out).toContain('Is another process using the image [d.qcow2]?');
    expect(ours).toEqual(theirs);
  });

  it('force-share on a writable open is refused before any lock is looked at', { timeout: 60_000 }, () => {
    create('-f qcow2 w.qcow2 1M');
    expectSame('img', ['bench', '-w', '-U', '-c', '1', 'w.qcow2']);
    expectSame('img', ['snapshot', '-U', '-c', 's1', 'w.qcow2']);
    expectSame('img', ['check', '-U', '-r', 'all', 'w.qcow2']);
    expectSame('io', ['-U', '-c', 'read 0 512', 'w.qcow2']);
  });

  it('locks taken after the open stop a later reopen -w', { timeout: 60_000 }, async () => {
    create('-f qcow2 late.qcow2 1M');
    const session = async (cmd: string, argv: string[]): Promise<Out> => {
      const p = spawn(cmd, argv, { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      p.stdout!.on('data', (d: Buffer) => void (out += d.toString()));
      p.stderr!.on('data', (d: Buffer) => void (out += d.toString()));
      const exited = new Promise<number>((r) => p.once('exit', (c) => r(c ?? -1)));
      p.stdin!.write('read 0 512\n');
      while (!out.includes('read 512/512')) {
        if (p.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      // QEMU's locks appear only now, after this session opened the image.
      const holder = await hold('qemu-io', ['-r', 'late.qcow2'], 'late.qcow2');
      p.stdin!.end('reopen -w\nread 0 512\n');
      const code = await exited;
      await release(holder);
      return { code, out: normalize(out.replace(/qemu-io> /g, '')) };
    };
    const theirs = await session('qemu-io', ['-r', 'late.qcow2']);
    const ours = await session(process.execPath, [CLI, 'io', '-r', 'late.qcow2']);
    expect(theirs.out).toContain('Failed to get "write" lock');
    expect(ours.out).toBe(theirs.out);
    expect(ours.code).toBe(theirs.code);
  });
});
