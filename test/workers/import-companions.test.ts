/**
 * Images of several files imported through the block worker (run in Node on
 * memory images): qemu-img's vmdk descriptors with their extents
 * (twoGbMaxExtentSparse and twoGbMaxExtentFlat past 2 GiB, monolithicFlat)
 * given as Files with the descriptor, found by their names; converted to
 * qcow2 and stored as they are, then compared with the source by
 * `qemu-img compare`. A missing extent fails with ENOENT naming it, before
 * anything is stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlockWorkerService } from '../../workers/service.js';
import { BlockError } from '../../src/core/errors.js';
import { registerBlobSet } from '../../src/protocols/blob.js';
import { siblingPath } from '../../workers/image-copy.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
let dir: string;

/** qemu-io writes of every source: one on each side of the 2 GiB extent boundary, one across it. */
function writes(size: number): string[] {
  const w: Array<[number, number, number]> = [
    [0, 65536, 0x11],
    [MiB + 1000, 70_000, 0x22],
    [Math.min(2 * GiB, size) - 40_000, 80_000, 0x33],
    [size - 4096, 4096, 0x44],
  ];
  return w.filter(([off, len]) => off + len <= size).flatMap(([off, len, b]) => ['-c', `write -P 0x${b.toString(16)} ${off} ${len}`]);
}

/** Makes `name`.vmdk with qemu-img and qemu-io; returns its files, the descriptor first. */
function makeVmdk(name: string, subformat: string, size: number): string[] {
  const file = path.join(dir, `${name}.vmdk`);
  execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', `subformat=${subformat}`, file, String(size)]);
  execFileSync('qemu-io', ['-f', 'vmdk', ...writes(size), file], { stdio: 'ignore' });
  const extents = fs.readdirSync(dir).filter((f) => f.startsWith(`${name}-`)).sort();
  return [file, ...extents.map((e) => path.join(dir, e))];
}

/** A File of a file on disk (read lazily, as a picked File). */
async function fileOf(p: string): Promise<File> {
  return new File([await fs.openAsBlob(p)], path.basename(p));
}

/** Stores an image's stored file (exportStream as `file`) in `dir` and returns its path. */
async function download(svc: BlockWorkerService, image: string, name: string): Promise<string> {
  const out = path.join(dir, name);
  const chunks: Uint8Array[] = [];
  const reader = (await svc.exportStream(image)).getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    chunks.push(r.value);
  }
  fs.writeFileSync(out, Buffer.concat(chunks));
  return out;
}

function compare(a: string, aFmt: string, b: string, bFmt: string): { status: number; out: string } {
  const r = spawnSync('qemu-img', ['compare', '-f', aFmt, '-F', bFmt, a, b], { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

async function failure(p: Promise<unknown>): Promise<BlockError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BlockError);
  return e as BlockError;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-companions-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('vmdk of several files imported in the worker', () => {
  const cases: Array<[string, number]> = [
    ['twoGbMaxExtentSparse', 3 * GiB],
    ['twoGbMaxExtentFlat', 2 * GiB + MiB],
    ['monolithicFlat', 4 * MiB],
  ];
  it.each(cases)('%s: converted to qcow2 with its extents, qemu-img compare finds the same image', async (subformat, size) => {
    const files = makeVmdk(`conv-${subformat}`, subformat, size);
    expect(files.length).toBeGreaterThan(subformat === 'monolithicFlat' ? 1 : 2);
    const svc = new BlockWorkerService();
    const [desc, ...extents] = await Promise.all(files.map(fileOf));
    const progress: number[] = [];
    await svc.importBlob(desc!, { to: `memory:conv-${subformat}.qcow2`, format: 'qcow2', companions: extents }, (p) => void progress.push(p.done));
    expect(progress[progress.length - 1]).toBe(size);
    const got = await download(svc, `memory:conv-${subformat}.qcow2`, `conv-${subformat}.qcow2`);
    expect(compare(got, 'qcow2', files[0]!, 'vmdk')).toEqual({ status: 0, out: 'Images are identical.\n' });
  });

  it.each([
    ['twoGbMaxExtentSparse', 3 * GiB],
    ['monolithicFlat', 4 * MiB],
  ] as Array<[string, number]>)('%s: stored as it is, its extents beside it under their names, and it opens there', async (subformat, size) => {
    const files = makeVmdk(`copy-${subformat}`, subformat, size);
    const svc = new BlockWorkerService();
    const [desc, ...extents] = await Promise.all(files.map(fileOf));
    const progress: Array<{ done: number; total: number }> = [];
    // Stored under another name: the descriptor names its extents, not itself.
    await svc.importBlob(desc!, { to: 'memory:kept.vmdk', companions: extents }, (p) => void progress.push(p));
    const total = files.reduce((n, f) => n + fs.statSync(f).size, 0);
    expect(progress[progress.length - 1]).toEqual({ done: total, total });
    expect(progress.every((p, i) => i === 0 || p.done >= progress[i - 1]!.done)).toBe(true);
    // Every file stored byte for byte.
    for (const f of files) {
      const stored = await download(svc, f === files[0] ? 'memory:kept.vmdk' : `memory:${path.basename(f)}`, `stored-${path.basename(f)}`);
      expect(Buffer.compare(fs.readFileSync(stored), fs.readFileSync(f)), f).toBe(0);
    }
    const info = await svc.info('memory:kept.vmdk');
    expect([info.format, info.virtualSize]).toEqual(['vmdk', size]);
    // Read through its stored extents: converted in the worker, compared by qemu-img.
    await svc.convert({ from: 'memory:kept.vmdk', to: 'memory:kept.qcow2', format: 'qcow2' });
    const got = await download(svc, 'memory:kept.qcow2', `kept-${subformat}.qcow2`);
    expect(compare(got, 'qcow2', files[0]!, 'vmdk')).toEqual({ status: 0, out: 'Images are identical.\n' });
  });

  it('a missing extent fails with ENOENT naming it, as it is and converted, and nothing is stored', async () => {
    const files = makeVmdk('missing', 'twoGbMaxExtentSparse', 3 * GiB);
    const svc = new BlockWorkerService();
    const [desc, first] = await Promise.all(files.slice(0, 2).map(fileOf));
    const name = path.basename(files[2]!);
    for (const format of ['copy', 'qcow2'] as const) {
      const e = await failure(svc.importBlob(desc!, { to: `memory:missing-${format}.img`, format, companions: [first!] }));
      expect(e.code, format).toBe('ENOENT');
      expect(e.text, format).toContain(`Could not open '${name}': No such file or directory`);
      expect(e.message, format).toContain("'missing.vmdk' names it");
    }
    const stored = (await svc.list()).map((x) => x.path).filter((p) => p.includes('missing') || p.includes(path.basename(files[1]!)));
    expect(stored.filter((p) => !p.endsWith('.qcow2'))).toEqual([]);
  });

  it('the files of a set are named as in one directory: bad and repeated names are refused', () => {
    const blob = new Blob([new Uint8Array(1)]);
    expect(() => registerBlobSet({ name: 'a.vmdk', blob }, [{ name: 'a.vmdk', blob }])).toThrow("Two files named 'a.vmdk' were given with the image 'a.vmdk'");
    for (const bad of ['', '..', 'x/y.vmdk', 'c:d', 'a\\b']) {
      expect(() => registerBlobSet({ name: 'a.vmdk', blob }, [{ name: bad, blob }]), bad).toThrow(`Invalid file name '${bad}'`);
    }
    const set = registerBlobSet({ name: 'd.vmdk', blob }, [{ name: 'd-flat.vmdk', blob }]);
    expect(set.filename).toMatch(/^blob:s\d+\/d\.vmdk$/);
    set.unregister();
  });

  it('siblingPath puts a file in the directory of an image on each back end', () => {
    expect(siblingPath('opfs:/disks/a.vmdk', 'a-s001.vmdk')).toBe('opfs:/disks/a-s001.vmdk');
    expect(siblingPath('opfs:/a.vmdk', 'a-flat.vmdk')).toBe('opfs:/a-flat.vmdk');
    expect(siblingPath('idb:a.vmdk', 'a-flat.vmdk')).toBe('idb:a-flat.vmdk');
    expect(siblingPath('memory:a.vmdk', 'a-flat.vmdk')).toBe('memory:a-flat.vmdk');
  });
});
