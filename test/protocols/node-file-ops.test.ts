/**
 * lseek holes and fallocate through the file-ops helper (src/protocols/node-file-ops.ts),
 * differentially against QEMU 7.2: the same qemu-io sessions (discard, zero writes with and
 * without unmap) and the same creates (preallocation=falloc) leave files that qemu-img map
 * sees identically and whose bytes are identical; block status on files QEMU made answers
 * what qemu-img map answers (allocated zeros in a sparse file are data; falloc'd space is a
 * hole where the file system says so). Without the helper the old paths still give the right
 * bytes; a path renamed over after the open is never touched through the helper.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BlockBackend, createNodeGraph } from '../../src/node.js';
import { FileOps, SEEK_DATA } from '../../src/protocols/node-file-ops.js';
import { ReqFlag } from '../../src/core/driver.js';

const CLI = resolve(__dirname, '../../dist/cli/diskworker.js');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dw-fileops-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { encoding: 'utf8', cwd: dir });
function ours(args: string[], env: Record<string, string> = {}): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: dir, env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`diskworker ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
const map = (f: string, fmt = 'raw') => qemuImg('map', '--output=json', '-f', fmt, f);
/** qemu-io's output without its timing figures. */
const untimed = (s: string) => s.replace(/; [\d:.]+ sec \(.*\)$/gm, '');

describe.runIf(existsSync(CLI))('node-file holes and fallocate, as file-posix', () => {
  it('a seeded session of writes, discards and zero writes: the same file, the same map, the same lines', () => {
    let seed = 0x2545f491;
    const rnd = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const cmds: string[] = [];
    for (let i = 0; i < 40; i++) {
      const len = (1 + rnd(16)) * 16 * 1024;
      const off = Math.min(rnd(64) * 64 * 1024 + (rnd(4) === 0 ? rnd(8) * 512 : 0), 4 * 1024 * 1024 - len);
      const op = rnd(4);
      cmds.push(op === 0 ? `write -P ${1 + rnd(200)} ${off} ${len}` : op === 1 ? `discard ${off} ${len}` : op === 2 ? `write -z ${off} ${len}` : `write -z -u ${off} ${len}`);
    }
    const args = cmds.flatMap((c) => ['-c', c]);
    qemuImg('create', '-q', '-f', 'raw', 'q.raw', '4M');
    qemuImg('create', '-q', '-f', 'raw', 'o.raw', '4M');
    const q = spawnSync('qemu-io', ['-f', 'raw', ...args, 'q.raw'], { encoding: 'utf8', cwd: dir });
    expect(q.status).toBe(0);
    const theirs = q.stdout;
    const mine = ours(['io', '-f', 'raw', ...args, 'o.raw']);
    expect(untimed(mine)).toBe(untimed(theirs));
    expect(Buffer.compare(readFileSync(join(dir, 'o.raw')), readFileSync(join(dir, 'q.raw')))).toBe(0);
    expect(map('o.raw')).toBe(map('q.raw'));
    // Our own map of either file is qemu-img's.
    expect(ours(['img', 'map', '--output=json', '-f', 'raw', 'q.raw'])).toBe(map('q.raw'));
  });

  it('allocated zeros in a sparse file are data, as SEEK_DATA says', () => {
    qemuImg('create', '-q', '-f', 'raw', 'z.raw', '4M');
    execFileSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0 0 64k', '-c', 'write -P 1 1M 64k', '-c', 'write -P 0 2M 8k', 'z.raw'], { cwd: dir });
    const theirs = map('z.raw');
    expect(JSON.parse(theirs)[0]).toMatchObject({ start: 0, length: 65536, data: true });
    expect(ours(['img', 'map', '--output=json', '-f', 'raw', 'z.raw'])).toBe(theirs);
  });

  for (const fmt of ['raw', 'qcow2']) {
    it(`preallocation=falloc (${fmt}): created as qemu-img creates it`, () => {
      qemuImg('create', '-q', '-f', fmt, '-o', 'preallocation=falloc', `fq.${fmt}`, '6M');
      ours(['img', 'create', '-q', '-f', fmt, '-o', 'preallocation=falloc', `fo.${fmt}`, '6M']);
      expect(map(`fo.${fmt}`, fmt)).toBe(map(`fq.${fmt}`, fmt));
      expect(ours(['img', 'map', '--output=json', '-f', fmt, `fq.${fmt}`])).toBe(map(`fq.${fmt}`, fmt));
      expect(Buffer.compare(readFileSync(join(dir, `fo.${fmt}`)), readFileSync(join(dir, `fq.${fmt}`)))).toBe(0);
      // Growing by falloc afterwards too.
      qemuImg('resize', '-q', '-f', fmt, '--preallocation=falloc', `fq.${fmt}`, '+2M');
      ours(['img', 'resize', '-q', '-f', fmt, '--preallocation=falloc', `fo.${fmt}`, '+2M']);
      expect(map(`fo.${fmt}`, fmt)).toBe(map(`fq.${fmt}`, fmt));
    });
  }

  it('without the helper (DISKWORKER_FILE_OPS=off): discards and zero writes still read as zeros', () => {
    qemuImg('create', '-q', '-f', 'raw', 'n.raw', '1M');
    const cmds = ['write -P 7 0 512k', 'discard 0 64k', 'write -z 64k 64k', 'write -z -u 128k 64k', 'read -P 0 0 192k', 'read -P 7 192k 320k'];
    const out = ours(['io', '-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), 'n.raw'], { DISKWORKER_FILE_OPS: 'off' });
    expect(out).not.toMatch(/Pattern verification failed/);
    expect(readFileSync(join(dir, 'n.raw')).subarray(0, 196608).every((b) => b === 0)).toBe(true);
  });

  it('a path renamed over after the open is not touched through the helper', async () => {
    const img = join(dir, 'r.raw');
    const other = join(dir, 'other.raw');
    writeFileSync(img, Buffer.alloc(1 << 20, 0x33));
    writeFileSync(other, Buffer.alloc(1 << 20, 0x44));
    const graph = createNodeGraph();
    const bb = await BlockBackend.open(graph, img, { format: 'raw' });
    try {
      renameSync(other, img);
      await bb.writeZeroes(0, 512 * 1024, ReqFlag.MAY_UNMAP);
      await bb.writeZeroes(512 * 1024, 128 * 1024);
      // The new file at the path keeps its bytes; the open file reads zeros where it was zeroed.
      expect(readFileSync(img).every((b) => b === 0x44)).toBe(true);
      const got = await bb.read(0, 640 * 1024);
      expect(got.every((b) => b === 0)).toBe(true);
    } finally {
      await bb.close();
      await graph.closeAll();
    }
  });

  it('the helper answers lseek and refuses unknown descriptors with an errno', async () => {
    const ops = await FileOps.get();
    expect(ops).not.toBeNull();
    writeFileSync(join(dir, 's.raw'), Buffer.alloc(8192, 1));
    const f = (await ops!.open(join(dir, 's.raw')))!;
    expect(await f.seek(SEEK_DATA, 0)).toEqual({ ok: true, value: 0 });
    // Beyond the end: ENXIO, as lseek answers.
    expect(await f.seek(SEEK_DATA, 1 << 20)).toEqual({ ok: false, errno: 6 });
    await f.close();
    expect(await f.seek(SEEK_DATA, 0)).toEqual({ ok: false, errno: 9 });
    expect(await ops!.open(join(dir, 'missing', 'x.raw'))).toBeNull();
  });
});
