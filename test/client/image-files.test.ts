/**
 * groupImageFiles: picked files sorted into images, with qemu-img's vmdk
 * descriptors (twoGbMaxExtentSparse / Flat, monolithicFlat) taking the
 * extent files they name, checked against what qemu-img wrote.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { descriptorExtentNames, groupImageFiles } from '../../src/client/image-files.js';

let dir: string;

async function fileOf(p: string): Promise<File> {
  return new File([await fs.openAsBlob(p)], path.basename(p));
}

function create(name: string, format: string, size: string, opts: string[] = []): string {
  const file = path.join(dir, name);
  execFileSync('qemu-img', ['create', '-q', '-f', format, ...(opts.length ? ['-o', opts.join(',')] : []), file, size]);
  return file;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-image-files-'));
  create('split.vmdk', 'vmdk', '5G', ['subformat=twoGbMaxExtentSparse']);
  create('flat.vmdk', 'vmdk', '3G', ['subformat=twoGbMaxExtentFlat']);
  create('mono.vmdk', 'vmdk', '4M', ['subformat=monolithicFlat']);
  create('sparse.vmdk', 'vmdk', '4M');
  create('disk.vdi', 'vdi', '4M');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('groupImageFiles', () => {
  it('names the extents of a descriptor as qemu-img wrote them; a sparse vmdk and other formats are no descriptor files', () => {
    const read = (n: string) => new Uint8Array(fs.readFileSync(path.join(dir, n)).subarray(0, 4096));
    expect(descriptorExtentNames(read('split.vmdk'))).toEqual(['split-s001.vmdk', 'split-s002.vmdk', 'split-s003.vmdk']);
    expect(descriptorExtentNames(read('flat.vmdk'))).toEqual(['flat-f001.vmdk', 'flat-f002.vmdk']);
    expect(descriptorExtentNames(read('mono.vmdk'))).toEqual(['mono-flat.vmdk']);
    expect(descriptorExtentNames(read('sparse.vmdk'))).toBeNull();
    expect(descriptorExtentNames(read('split-s001.vmdk'))).toBeNull();
    expect(descriptorExtentNames(read('disk.vdi'))).toBeNull();
  });

  it('sorts files into images in the order given, each descriptor with its extents, the rest alone', async () => {
    const names = ['disk.vdi', 'split-s002.vmdk', 'split.vmdk', 'mono-flat.vmdk', 'split-s001.vmdk', 'sparse.vmdk', 'split-s003.vmdk', 'mono.vmdk'];
    const files = await Promise.all(names.map((n) => fileOf(path.join(dir, n))));
    const groups = await groupImageFiles(files);
    expect(groups.map((g) => [g.image.name, g.companions.map((c) => c.name), g.missing])).toEqual([
      ['disk.vdi', [], []],
      ['split.vmdk', ['split-s001.vmdk', 'split-s002.vmdk', 'split-s003.vmdk'], []],
      ['sparse.vmdk', [], []],
      ['mono.vmdk', ['mono-flat.vmdk'], []],
    ]);
  });

  it('lists the extents not given as missing', async () => {
    const files = await Promise.all(['split.vmdk', 'split-s002.vmdk', 'flat.vmdk'].map((n) => fileOf(path.join(dir, n))));
    const groups = await groupImageFiles(files);
    expect(groups.map((g) => [g.image.name, g.companions.map((c) => c.name), g.missing])).toEqual([
      ['split.vmdk', ['split-s002.vmdk'], ['split-s001.vmdk', 'split-s003.vmdk']],
      ['flat.vmdk', [], ['flat-f001.vmdk', 'flat-f002.vmdk']],
    ]);
  });
});
