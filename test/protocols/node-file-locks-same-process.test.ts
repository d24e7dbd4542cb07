/**
 * QEMU's image locks between two opens of one file in one process (issue
 * #16), differentially. QEMU's locks are OFD locks, one set per open file
 * description, so a qemu-img or qemu-io that opens an image twice (convert
 * onto its own source, an overlay backed by itself, a quorum of one file
 * twice, a rebase onto itself) is refused or let through as if a second
 * process held it. Each command line runs through QEMU's tool and ours
 * (`node dist/cli/diskworker.js img|io`) over fresh copies of the same
 * images; exit code, output and the image afterwards must match. The same
 * for qemu-storage-daemon's command line.
 *
 * Needs the CLI bundle (npm run build:ts), QEMU 7.2 and Linux.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { hasQemu, normalize } from '../cli/harness.js';

const CLI = resolve('dist/cli/diskworker.js');
const canRun = hasQemu() && existsSync(CLI) && process.platform === 'linux';

let root = '';

interface Out {
  code: number;
  out: string;
  /** Bytes of the images after the command (a refused command must leave them alone). */
  images: string[];
}

/** a.qcow2 (64 KiB of 0x01 written), r.raw, o.qcow2 backed by a.qcow2; `extra` runs after. */
function makeImages(dir: string, extra: string[][]): void {
  const sh = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8' });
    expect(r.status, `${cmd} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  };
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M']);
  sh('qemu-io', ['-c', 'write -q -P 1 0 64k', 'a.qcow2']);
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'r.raw', '1M']);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', 'o.qcow2']);
  for (const [cmd, ...args] of extra) sh(cmd!, args);
}

/**
 * What an image is after the command: its bytes, or (`info`) what qemu-img
 * info and check say of it, where a rewrite may place metadata elsewhere
 * (persistent bitmaps stored again on close).
 */
function imageState(dir: string, file: string, by: 'bytes' | 'info'): string {
  if (by === 'bytes') return readFileSync(join(dir, file)).toString('base64');
  const tool = (args: string[]) => spawnSync('qemu-img', args, { cwd: dir, encoding: 'utf8' }).stdout;
  return normalize(tool(['info', '-U', file]) + tool(['check', '-U', file]).replace(/Image end offset: \d+/, ''));
}

let runs = 0;
/** Runs `tool args` with QEMU's tool and ours, each in a fresh directory of images. */
function both(tool: 'img' | 'io', args: string[], extra: string[][], by: 'bytes' | 'info'): { theirs: Out; ours: Out } {
  const run = (cmd: string, argv: string[]): Out => {
    const dir = join(root, `run${runs++}`);
    mkdirSync(dir);
    makeImages(dir, extra);
    const r = spawnSync(cmd, argv, { cwd: dir, encoding: 'utf8', input: '', timeout: 60_000 });
    const images = ['a.qcow2', 'r.raw', 'o.qcow2'].map((f) => imageState(dir, f, by));
    return { code: r.status ?? -1, out: normalize(`${r.stdout}${r.stderr}`), images };
  };
  return {
    theirs: run(tool === 'img' ? 'qemu-img' : 'qemu-io', args),
    ours: run(process.execPath, [CLI, tool, ...args]),
  };
}

/** The same answer and the same images; returns QEMU's output. */
function expectSame(tool: 'img' | 'io', args: string[], extra: string[][] = [], by: 'bytes' | 'info' = 'bytes'): Out {
  const r = both(tool, args, extra, by);
  expect(r.ours.out).toBe(r.theirs.out);
  expect(r.ours.code).toBe(r.theirs.code);
  expect(r.ours.images.map((b, i) => (b === r.theirs.images[i] ? 'same' : `differs: image ${i}`))).toEqual(['same', 'same', 'same']);
  return r.theirs;
}

const json = (o: unknown): string => `json:${JSON.stringify(o)}`;
const qcow2On = (file: string, extra: Record<string, unknown> = {}, fileExtra: Record<string, unknown> = {}) => ({
  driver: 'qcow2',
  ...extra,
  file: { driver: 'file', filename: file, ...fileExtra },
});
const selfBacked = [['qemu-img', 'rebase', '-u', '-b', 'a.qcow2', '-F', 'qcow2', 'a.qcow2']];

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'dw-locks-same-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(!canRun)('qemu-img opens one image twice', () => {
  it('convert onto its own source: refused on the "write" lock (new or existing target), unless -U', { timeout: 120_000 }, () => {
    const lock = 'Failed to get "write" lock';
    expect(expectSame('img', ['convert', '-O', 'qcow2', 'a.qcow2', 'a.qcow2']).out).toContain(lock);
    expect(expectSame('img', ['convert', '-n', '-O', 'qcow2', 'a.qcow2', 'a.qcow2']).out).toContain(lock);
    expect(expectSame('img', ['convert', '-O', 'raw', 'r.raw', 'r.raw']).out).toContain(lock);
    expect(expectSame('img', ['convert', '-n', '-f', 'raw', '-O', 'raw', 'r.raw', 'r.raw']).out).toContain(lock);
    expect(expectSame('img', ['dd', 'if=a.qcow2', 'of=a.qcow2', '-O', 'qcow2']).out).toContain(lock);
    // -U makes the source share everything: the target opens.
    expect(expectSame('img', ['convert', '-U', '-n', '-O', 'qcow2', 'a.qcow2', 'a.qcow2']).code).toBe(0);
  });

  it('compare of an image with itself: two readers share', { timeout: 60_000 }, () => {
    expectSame('img', ['compare', 'a.qcow2', 'a.qcow2']);
    expectSame('img', ['compare', '-U', 'a.qcow2', 'a.qcow2']);
    expectSame('img', ['compare', '-f', 'raw', '-F', 'raw', 'r.raw', 'r.raw']);
    expectSame('img', ['compare', 'o.qcow2', 'a.qcow2']);
  });

  it('rebase onto itself or its own overlay: the new backing is refused; -U is for the new backing only', { timeout: 120_000 }, () => {
    expect(expectSame('img', ['rebase', '-b', 'a.qcow2', '-F', 'qcow2', 'a.qcow2']).out).toContain('Failed to get shared "write" lock');
    expectSame('img', ['rebase', '-b', 'o.qcow2', '-F', 'qcow2', 'o.qcow2']);
    // Rebased with force-share on the new backing: QEMU lets it read the image being written.
    expect(expectSame('img', ['rebase', '-U', '-b', 'o.qcow2', '-F', 'qcow2', 'o.qcow2']).code).toBe(0);
    // Onto the backing it has (reused, not opened again), and onto a new one.
    expectSame('img', ['rebase', '-b', 'a.qcow2', '-F', 'qcow2', 'o.qcow2']);
    expectSame('img', ['rebase', '-b', 'r.raw', '-F', 'raw', 'o.qcow2']);
    expectSame('img', ['rebase', '-U', '-b', 'r.raw', '-F', 'raw', 'o.qcow2']);
  });

  it('an image backed by itself, opened for writing: its backing file is refused', { timeout: 120_000 }, () => {
    expect(expectSame('io', ['-c', 'read 0 512', 'a.qcow2'], selfBacked).out).toContain('Could not open backing file: Failed to get shared "write" lock');
    expectSame('img', ['commit', 'a.qcow2'], selfBacked);
    expectSame('img', ['rebase', '-b', 'r.raw', '-F', 'raw', 'a.qcow2'], selfBacked);
    expectSame('io', ['-c', 'read 0 512', json({ ...qcow2On('o.qcow2'), backing: qcow2On('o.qcow2') })]);
  });

  it('bitmap --merge from the image being written', { timeout: 60_000 }, () => {
    const bitmaps = [
      ['qemu-img', 'bitmap', '--add', 'a.qcow2', 'b0'],
      ['qemu-img', 'bitmap', '--add', 'a.qcow2', 'b1'],
    ];
    // The target was open for writing: its bitmaps are stored again on close, where each of us puts them.
    expect(expectSame('img', ['bitmap', '--merge', 'b0', '-b', 'a.qcow2', '-F', 'qcow2', 'a.qcow2', 'b1'], bitmaps, 'info').out).toContain(
      'Failed to get shared "write" lock',
    );
  });

  it('create with itself as backing file: refused by name before any lock', { timeout: 60_000 }, () => {
    expectSame('img', ['create', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', 'a.qcow2', '1M']);
  });
});

describe.skipIf(!canRun)('one image twice in one graph (qemu-io)', () => {
  const quorum = (a: unknown, b: unknown) => json({ driver: 'quorum', 'vote-threshold': 2, children: [a, b] });

  it('a quorum of one file twice: writers refuse each other, readers and force-share pass', { timeout: 120_000 }, () => {
    const rawOn = (file: string, fileExtra: Record<string, unknown> = {}) => ({ driver: 'raw', file: { driver: 'file', filename: file, ...fileExtra } });
    expect(expectSame('io', ['-c', 'read 0 512', quorum(qcow2On('a.qcow2'), qcow2On('a.qcow2'))]).out).toContain('Failed to get "write" lock');
    expectSame('io', ['-r', '-c', 'read 0 512', quorum(qcow2On('a.qcow2'), qcow2On('a.qcow2'))]);
    expectSame('io', ['-c', 'read 0 512', quorum(rawOn('r.raw'), rawOn('r.raw'))]);
    expect(expectSame('io', ['-c', 'read 0 512', quorum(qcow2On('a.qcow2'), qcow2On('a.qcow2', { 'read-only': true }))]).out).toContain(
      'Failed to get shared "write" lock',
    );
    expectSame('io', ['-c', 'read 0 512', quorum(qcow2On('a.qcow2'), qcow2On('a.qcow2', { 'read-only': true, 'force-share': true }))]);
    expectSame('io', ['-r', '-c', 'read 0 512', quorum(qcow2On('a.qcow2', { 'force-share': true, 'read-only': true }), qcow2On('a.qcow2'))]);
    // locking=off: this open neither takes nor looks at locks.
    expectSame('io', ['-c', 'read 0 512', quorum(qcow2On('a.qcow2', {}, { locking: 'off' }), qcow2On('a.qcow2'))]);
    expectSame('io', ['-c', 'read 0 512', quorum(qcow2On('a.qcow2'), qcow2On('a.qcow2', {}, { locking: 'off' }))]);
  });

  it('a qcow2 whose data-file is its own file: a data child shares no resize', { timeout: 60_000 }, () => {
    const spec = json({ ...qcow2On('o.qcow2'), 'data-file': { driver: 'file', filename: 'o.qcow2' } });
    expect(expectSame('io', ['-c', 'read 0 512', spec]).out).toContain('Failed to get shared "resize" lock');
    expectSame('io', ['-r', '-c', 'read 0 512', spec]);
  });

  it('blkverify of a raw file against itself: both sides write and share writes', { timeout: 60_000 }, () => {
    const spec = json({ driver: 'blkverify', test: { driver: 'raw', file: { driver: 'file', filename: 'r.raw' } }, raw: { driver: 'file', filename: 'r.raw' } });
    expectSame('io', ['-c', 'read 0 512', '-c', 'write -P 7 0 512', '-c', 'read -P 7 0 512', spec]);
  });
});

describe.skipIf(!canRun)('qemu-storage-daemon command line', () => {
  it('a second node writing or reading an image the first writes ends the daemon with the lock error', { timeout: 60_000 }, () => {
    const node = (name: string, extra: Record<string, unknown> = {}) => ['--blockdev', JSON.stringify({ 'node-name': name, ...qcow2On('a.qcow2', extra) })];
    for (const second of [node('q2'), node('q2', { 'read-only': true })]) {
      const argv = [...node('q1'), ...second];
      const run = (cmd: string, args: string[]): Out => {
        const dir = join(root, `run${runs++}`);
        mkdirSync(dir);
        makeImages(dir, []);
        const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', input: '', timeout: 60_000 });
        return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`.replace(/^(qemu-storage-daemon|diskworker daemon): /gm, '<prog>: '), images: [] };
      };
      const theirs = run('qemu-storage-daemon', argv);
      const ours = run(process.execPath, [CLI, 'daemon', ...argv]);
      expect(theirs.out).toContain('lock');
      expect(ours).toEqual(theirs);
    }
  });
});
