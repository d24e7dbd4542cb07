/**
 * File lengths of new qcow2 images (iotest 243): for a table of option sets
 * (preallocation modes, cluster sizes, image sizes, an external data file),
 * `img create` must leave the image file, and the data file, exactly as long
 * as qemu-img 7.2 does, mapped the same, and qemu-img check must find it clean.
 * `img resize` of an image with a data file sizes the data file as QEMU does.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasQemu, ours, theirs } from './harness.js';

const cases: Array<[opts: string, size: string]> = [
  ['preallocation=off', '64M'],
  ['preallocation=metadata', '64M'],
  ['preallocation=falloc', '64M'],
  ['preallocation=full', '8M'],
  ['cluster_size=512', '1M'],
  ['cluster_size=4k', '100M'],
  ['cluster_size=2M', '64M'],
  ['cluster_size=4k,preallocation=metadata', '3M'],
  ['extended_l2=on', '64M'],
  ['compat=0.10', '1G'],
  ['preallocation=off', '0'],
  ['preallocation=off', '17G'],
  ['refcount_bits=64,cluster_size=4k', '1G'],
  ['data_file=X.data,preallocation=off', '64M'],
  ['data_file=X.data,preallocation=metadata', '64M'],
  ['data_file=X.data,preallocation=falloc', '4M'],
  ['data_file=X.data,preallocation=full', '4M'],
  ['data_file=X.data,data_file_raw=on', '5M'],
];

const sizeOf = (p: string) => (existsSync(p) ? statSync(p).size : -1);

describe.runIf(hasQemu())('img create file sizes vs qemu-img 7.2', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'dw-create-sizes-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it.each(cases.map((c, i) => [i, ...c] as const))('case %i: -o %s, %s', async (i, opts, size) => {
    const dirs = { theirs: join(root, `t${i}`), ours: join(root, `o${i}`) };
    const lens: Record<string, number[]> = {};
    for (const [who, dir] of Object.entries(dirs)) {
      mkdirSync(dir);
      const args = ['create', '-q', '-f', 'qcow2', '-o', opts.replace('X.data', 'img.data'), 'img.qcow2', size];
      const r = who === 'theirs' ? theirs('img', args, dir) : await ours('img', args, dir);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      lens[who] = [sizeOf(join(dir, 'img.qcow2')), sizeOf(join(dir, 'img.data'))];
    }
    expect(lens['ours']).toEqual(lens['theirs']);
    // The same mapping (data_file_raw maps the data file 1:1 from the start).
    const map = (dir: string) => theirs('img', ['map', '--output=json', 'img.qcow2'], dir).stdout;
    expect(map(dirs.ours)).toBe(map(dirs.theirs));
    // Our image is valid for QEMU.
    const c = theirs('img', ['check', 'img.qcow2'], dirs.ours);
    expect(c.stdout + c.stderr).toContain('No errors were found on the image.');
    expect(c.code).toBe(0);
  });

  const resizes: Array<[opts: string, steps: string[]]> = [
    ['data_file=img.data', ['100M']],
    ['data_file=img.data', ['100M', '--shrink 10M']],
    ['data_file=img.data,data_file_raw=on', ['90M', '--shrink 3M']],
    ['data_file=img.data,preallocation=metadata', ['--preallocation=metadata 80M']],
    ['data_file=img.data,preallocation=falloc', ['--preallocation=falloc 70M']],
  ];
  it.each(resizes.map((c, i) => [i, ...c] as const))('resize %i: -o %s, then %j', async (i, opts, steps) => {
    const lens: Record<string, number[]> = {};
    for (const who of ['theirs', 'ours'] as const) {
      const dir = join(root, `r${i}${who}`);
      mkdirSync(dir);
      expect(theirs('img', ['create', '-q', '-f', 'qcow2', '-o', opts, 'img.qcow2', '64M'], dir).code).toBe(0);
      for (const step of steps) {
        const args = ['resize', '-q', ...step.split(' ').slice(0, -1), 'img.qcow2', step.split(' ').pop()!];
        const r = who === 'theirs' ? theirs('img', args, dir) : await ours('img', args, dir);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
      }
      lens[who] = [sizeOf(join(dir, 'img.qcow2')), sizeOf(join(dir, 'img.data'))];
    }
    expect(lens['ours']).toEqual(lens['theirs']);
  });
});
