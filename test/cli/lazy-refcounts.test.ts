/**
 * Lazy refcounts against qemu-io / qemu-img 7.2 (iotest 039's cases): a
 * process killed after an allocating write leaves the dirty bit set and the
 * refcounts stale on disk (a guest flush does not write them), a clean exit
 * leaves a clean image, `check -r all` and a read-write open repair the image
 * as QEMU does (qemu-img amend prints the repair of its open), and
 * `reopen -o lazy-refcounts=on|off` switches the behaviour
 * at run time. Each session runs as a real process (it is killed), ours from
 * dist/; what is compared is the header's incompatible bits, qemu-img
 * check's report of the survivor, our repair's messages and the result.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ensureBuiltBin, hasQemu, normalize } from './harness.js';

type Who = 'theirs' | 'ours';

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
}

function run(who: Who, tool: 'img' | 'io', args: string[], cwd: string): Run {
  const r =
    who === 'theirs'
      ? spawnSync(tool === 'img' ? 'qemu-img' : 'qemu-io', args, { cwd, encoding: 'utf8', timeout: 60_000 })
      : spawnSync(process.execPath, [BIN, tool, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, signal: r.signal, out: normalize(r.stdout + r.stderr) };
}

/** The header's incompatible feature bits. */
function incompatible(path: string): bigint {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(8);
    readSync(fd, b, 0, 8, 72);
    return b.readBigUInt64BE(0);
  } finally {
    closeSync(fd);
  }
}

/** Runs `steps` in a fresh directory per tool; each step gives the tool that runs it. */
function both(root: string, name: string, create: string, steps: Array<(who: Who, dir: string) => Run | string>): Record<Who, string[]> {
  const res = {} as Record<Who, string[]>;
  for (const who of ['theirs', 'ours'] as const) {
    const dir = join(root, `${name}-${who}`);
    mkdirSync(dir);
    const c = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', create, 't.qcow2', '128M'], { cwd: dir, encoding: 'utf8' });
    expect(c.status).toBe(0);
    res[who] = steps.map((s) => {
      const r = s(who, dir);
      return typeof r === 'string' ? r : `${r.code ?? r.signal}\n${r.out}`;
    });
  }
  return res;
}

const killedWrite = (extra: string[] = []) => (who: Who, dir: string) =>
  run(who, 'io', ['-t', 'writethrough', ...extra.flatMap((c) => ['-c', c]), '-c', 'write -P 0x5a 0 512', '-c', 'sigraise 9', 't.qcow2'], dir);
const dirtyBit = () => (_who: Who, dir: string) => `incompatible ${incompatible(join(dir, 't.qcow2'))}`;
/** qemu-img check of the image (the reference judges both survivors). */
const refCheck = () => (_who: Who, dir: string) => run('theirs', 'img', ['check', 't.qcow2'], dir);

describe.runIf(hasQemu())('lazy refcounts vs qemu-io 7.2 (killed processes)', () => {
  let root: string;
  beforeAll(() => {
    ensureBuiltBin();
    root = mkdtempSync(join(tmpdir(), 'dw-lazy-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('a clean exit leaves a clean image', () => {
    const r = both(root, 'clean', 'compat=1.1,lazy_refcounts=on', [
      (who, dir) => run(who, 'io', ['-t', 'writethrough', '-c', 'write -P 0x5a 0 512', 't.qcow2'], dir),
      dirtyBit(),
      refCheck(),
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[1]).toBe('incompatible 0');
  });

  it('killed after a write: dirty, stale refcounts; check -r all repairs as qemu-img does', () => {
    const r = both(root, 'killed', 'compat=1.1,lazy_refcounts=on', [
      killedWrite(),
      dirtyBit(),
      refCheck(),
      (who, dir) => run(who, 'io', ['-r', '-c', 'read -P 0x5a 0 512', 't.qcow2'], dir),
      dirtyBit(),
      (who, dir) => run(who, 'img', ['check', '-r', 'all', 't.qcow2'], dir),
      dirtyBit(),
      refCheck(),
      (who, dir) => run(who, 'io', ['-c', 'read -P 0x5a 0 512', 't.qcow2'], dir),
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[0]).toMatch(/^SIGKILL/);
    expect(r.ours[1]).toBe('incompatible 1');
    expect(r.ours[2]).toContain('ERROR cluster 5 refcount=0 reference=1');
    expect(r.ours[6]).toBe('incompatible 0');
  });

  it('a read-write open of the dirty image repairs it', () => {
    const r = both(root, 'rwopen', 'compat=1.1,lazy_refcounts=on', [
      killedWrite(),
      dirtyBit(),
      (who, dir) => run(who, 'io', ['-c', 'write 0 512', 't.qcow2'], dir),
      dirtyBit(),
      refCheck(),
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[2]).toContain('Rebuilding refcount structure');
  });

  it.each(['compat=0.10', 'lazy_refcounts=off'])('img amend -o %s of the dirty image prints the repair as qemu-img does', (opt) => {
    const r = both(root, `amend-${opt.replace(/[=.]/g, '')}`, 'compat=1.1,lazy_refcounts=on', [
      (who, dir) => run(who, 'io', ['-c', 'write -P 0x2a 0 128k', '-c', 'flush', '-c', 'sigraise 9', 't.qcow2'], dir),
      dirtyBit(),
      (who, dir) => run(who, 'img', ['amend', '-o', opt, 't.qcow2'], dir),
      dirtyBit(),
      refCheck(),
      (who, dir) => run(who, 'io', ['-c', 'read -P 0x2a 0 128k', 't.qcow2'], dir),
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[2]).toContain('Rebuilding refcount structure');
  });

  it('lazy_refcounts=off: killed after a write, the image is clean', () => {
    const r = both(root, 'off', 'compat=1.1,lazy_refcounts=off', [killedWrite(), dirtyBit(), refCheck()]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[1]).toBe('incompatible 0');
  });

  it('reopen -o lazy-refcounts=on, then killed: dirty as QEMU leaves it', () => {
    const r = both(root, 'reon', 'compat=1.1,lazy_refcounts=off', [killedWrite(['reopen -o lazy-refcounts=on']), dirtyBit(), refCheck()]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[1]).toBe('incompatible 1');
  });

  it('reopen -o lazy-refcounts=off, then killed: clean', () => {
    const r = both(root, 'reoff', 'compat=1.1,lazy_refcounts=on', [killedWrite(['reopen -o lazy-refcounts=off']), dirtyBit(), refCheck()]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[1]).toBe('incompatible 0');
  });

  it('lazy writes, then reopen -o lazy-refcounts=off, then killed: marked clean first', () => {
    const steps = ['write -P 1 0 64k', 'write -P 2 1M 64k', 'discard 0 64k', 'reopen -o lazy-refcounts=off', 'write -P 3 2M 512'];
    const r = both(root, 'switch', 'compat=1.1,lazy_refcounts=on', [killedWrite(steps), dirtyBit(), refCheck()]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[1]).toBe('incompatible 0');
  });

  it('lazy writes, then reopen -r, then killed: marked clean', () => {
    const r = both(root, 'ro', 'compat=1.1,lazy_refcounts=on', [
      (who, dir) => run(who, 'io', ['-c', 'write -P 1 0 64k', '-c', 'write -P 2 1M 64k', '-c', 'reopen -r', '-c', 'sigraise 9', 't.qcow2'], dir),
      dirtyBit(),
      refCheck(),
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.ours[1]).toBe('incompatible 0');
  });
});
