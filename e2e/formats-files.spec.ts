/**
 * Images of several files in the browser (issue #19): qemu-img's vmdk
 * descriptors with their extents (twoGbMaxExtentSparse and twoGbMaxExtentFlat
 * past 2 GiB, monolithicFlat) picked together, sorted by groupImageFiles and
 * imported with their extents (`companions`), converted to qcow2 and stored
 * as they are; each result downloads and `qemu-img compare` finds it equal
 * to the source. A missing extent fails with ENOENT naming it. Foreign images
 * stored in OPFS as they are (a vdi, the split vmdk with its extents) are the
 * backing files of qcow2 overlays the page writes; the overlays download and
 * qemu-img reads them over the same sources as the chain it builds itself
 * (`qemu-img create -b ... -F vdi`) with the same writes. An OPFS image
 * exports to the vmdk subformats of several files (`dw.exportFiles`): every
 * file downloads, and qemu-img finds the descriptor with its extents equal to
 * the source. Each test stays
 * under a minute on a loaded machine: the 2 GiB flat image has its own.
 */
import { test, expect, type Page } from '@playwright/test';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openHarness, pickFiles, sh } from './helpers.js';

const MiB = 1 << 20;
const GiB = 1 << 30;

/** qemu-io writes: one on each side of the 2 GiB extent boundary and one across it (those that fit). */
function sourceWrites(size: number): string[] {
  const w: Array<[number, number, number]> = [
    [0, 65536, 0x11],
    [MiB + 1000, 70_000, 0x22],
    [2 * GiB - 40_000, 80_000, 0x33],
    [size - 4096, 4096, 0x44],
  ];
  return w.filter(([off, len]) => off + len <= size).flatMap(([off, len, b]) => ['-c', `write -P 0x${b.toString(16)} ${off} ${len}`]);
}

/** Makes `name` (a vmdk of `subformat`) in `dir` with qemu-img and qemu-io; returns its files, the descriptor first. */
function makeVmdk(dir: string, name: string, subformat: string, size: number): string[] {
  const file = path.join(dir, name);
  sh('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', `subformat=${subformat}`, file, String(size)]);
  sh('qemu-io', ['-f', 'vmdk', ...sourceWrites(size), file]);
  const stem = name.replace(/\.vmdk$/, '-');
  return [file, ...fs.readdirSync(dir).filter((f) => f.startsWith(stem)).sort().map((f) => path.join(dir, f))];
}

function run(cmd: string, args: string[]): { status: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Saves every download of the page in `dir` under its suggested name; the promises of the saves. */
function saveDownloads(page: Page, dir: string): Array<Promise<void>> {
  const saves: Array<Promise<void>> = [];
  page.on('download', (d) => void saves.push(d.saveAs(path.join(dir, d.suggestedFilename()))));
  return saves;
}

/** In the page: downloads what `stream` gives as `name`. */
declare global {
  interface Window {
    saveAs?: (stream: ReadableStream<Uint8Array>, name: string) => Promise<void>;
  }
}
async function installSaveAs(page: Page): Promise<void> {
  await page.evaluate(() => {
    window.saveAs = async (stream, name) => {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(await new Response(stream).blob());
      a.download = name;
      document.body.append(a);
      a.click();
    };
  });
}

test('a vmdk of several files picked together imports with its extents, converted and as it is; qemu-img compare finds each equal; a missing extent is named', async ({ page }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-vmdk-files-'));
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  try {
    const sources = [makeVmdk(dir, 'split.vmdk', 'twoGbMaxExtentSparse', 3 * GiB), makeVmdk(dir, 'mono.vmdk', 'monolithicFlat', 4 * MiB)];
    expect(sources.map((s) => s.map((f) => path.basename(f)))).toEqual([
      ['split.vmdk', 'split-s001.vmdk', 'split-s002.vmdk'],
      ['mono.vmdk', 'mono-flat.vmdk'],
    ]);
    await openHarness(page);
    await installSaveAs(page);
    const saves = saveDownloads(page, out);
    // Picked in another order than the descriptors name them.
    await pickFiles(page, sources.flat().reverse());
    const r = await page.evaluate(async () => {
      const h = window.harness;
      const dw = await h.start();
      const picked = [...(document.getElementById('picker') as HTMLInputElement).files!];
      const groups = await h.groupImageFiles(picked);
      const res = [];
      for (const g of groups) {
        const conv = `opfs:/vmdk-files/${g.image.name}.qcow2`;
        const progress: number[] = [];
        await dw.importFile(g.image, { to: conv, format: 'qcow2', companions: g.companions }, { onProgress: (p) => void progress.push(p.done / p.total) });
        await window.saveAs!(await dw.exportStream(conv), `${g.image.name}.qcow2`);
        res.push({ image: g.image.name, companions: g.companions.map((c) => c.name), missing: g.missing, progressEnd: progress[progress.length - 1] });
      }
      // Stored as they are: the extents beside the descriptor, which then opens from OPFS.
      const kept = [];
      for (const g of groups) {
        const to = `opfs:/vmdk-files/kept/${g.image.name}`;
        await dw.importFile(g.image, { to, companions: g.companions });
        const listed = (await dw.list('opfs')).map((e) => e.path).filter((p) => p.startsWith('opfs:/vmdk-files/kept/')).sort();
        const info = await dw.info(to);
        await dw.convert({ from: to, to: `${to}.qcow2`, format: 'qcow2' });
        await window.saveAs!(await dw.exportStream(`${to}.qcow2`), `kept-${g.image.name}.qcow2`);
        kept.push({ image: g.image.name, format: info.format, size: info.virtualSize, listed });
      }
      // The split descriptor without its second extent.
      const split = groups.find((g) => g.image.name === 'split.vmdk')!;
      const first = split.companions.filter((c) => c.name === 'split-s001.vmdk');
      const missingGroup = (await h.groupImageFiles([split.image, ...first])).map((g) => g.missing);
      const before = (await dw.list()).length;
      const missingCopy = await h.failureOf(() => dw.importFile(split.image, { to: 'opfs:/vmdk-files/missing/split.vmdk', companions: first }));
      const missingConv = await h.failureOf(() => dw.importFile(split.image, { to: 'opfs:/vmdk-files/missing.qcow2', format: 'qcow2', companions: first }));
      await dw.remove('opfs:/vmdk-files/missing.qcow2').catch(() => undefined);
      const leftBehind = (await dw.list()).length - before;
      return { res, kept, missingGroup, missingCopy, missingConv, leftBehind };
    });
    expect(r.res).toEqual([
      { image: 'mono.vmdk', companions: ['mono-flat.vmdk'], missing: [], progressEnd: 1 },
      { image: 'split.vmdk', companions: ['split-s001.vmdk', 'split-s002.vmdk'], missing: [], progressEnd: 1 },
    ]);
    expect(r.kept).toEqual([
      { image: 'mono.vmdk', format: 'vmdk', size: 4 * MiB, listed: ['opfs:/vmdk-files/kept/mono-flat.vmdk', 'opfs:/vmdk-files/kept/mono.vmdk'] },
      {
        image: 'split.vmdk',
        format: 'vmdk',
        size: 3 * GiB,
        listed: ['opfs:/vmdk-files/kept/mono-flat.vmdk', 'opfs:/vmdk-files/kept/mono.vmdk', 'opfs:/vmdk-files/kept/mono.vmdk.qcow2', 'opfs:/vmdk-files/kept/split-s001.vmdk', 'opfs:/vmdk-files/kept/split-s002.vmdk', 'opfs:/vmdk-files/kept/split.vmdk'],
      },
    ]);
    expect(r.missingGroup).toEqual([['split-s002.vmdk']]);
    for (const m of [r.missingCopy, r.missingConv]) {
      expect(m).toMatchObject({ code: 'ENOENT', isBlockError: true });
      expect(m!.message).toContain("Could not open 'split-s002.vmdk': No such file or directory");
      expect(m!.message).toContain("'split.vmdk' names it");
    }
    expect(r.leftBehind).toBe(0);
    await expect.poll(() => saves.length).toBe(4);
    await Promise.all(saves);
    for (const [name, src] of [['mono.vmdk.qcow2', 'mono.vmdk'], ['split.vmdk.qcow2', 'split.vmdk'], ['kept-mono.vmdk.qcow2', 'mono.vmdk'], ['kept-split.vmdk.qcow2', 'split.vmdk']]) {
      const file = path.join(out, name!);
      expect(run('qemu-img', ['check', '-f', 'qcow2', file]).out, name).toContain('No errors were found on the image.');
      expect(run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'vmdk', file, path.join(dir, src!)]), name).toEqual({ status: 0, out: 'Images are identical.\n' });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a twoGbMaxExtentFlat vmdk past 2 GiB picked with its two flat extents converts to qcow2; qemu-img compare finds it equal', async ({ page }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-vmdk-flat-'));
  try {
    const files = makeVmdk(dir, 'flat.vmdk', 'twoGbMaxExtentFlat', 2 * GiB + MiB);
    expect(files.map((f) => path.basename(f))).toEqual(['flat.vmdk', 'flat-f001.vmdk', 'flat-f002.vmdk']);
    await openHarness(page);
    await installSaveAs(page);
    const saves = saveDownloads(page, dir);
    await pickFiles(page, files);
    const r = await page.evaluate(async () => {
      const h = window.harness;
      const dw = await h.start();
      const [g, ...others] = await h.groupImageFiles([...(document.getElementById('picker') as HTMLInputElement).files!]);
      await dw.importFile(g!.image, { to: 'opfs:/vmdk-flat/flat.qcow2', format: 'qcow2', companions: g!.companions });
      await window.saveAs!(await dw.exportStream('opfs:/vmdk-flat/flat.qcow2'), 'got.qcow2');
      return { groups: others.length + 1, companions: g!.companions.map((c) => c.name) };
    });
    expect(r).toEqual({ groups: 1, companions: ['flat-f001.vmdk', 'flat-f002.vmdk'] });
    await expect.poll(() => saves.length).toBe(1);
    await Promise.all(saves);
    expect(run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'vmdk', path.join(dir, 'got.qcow2'), files[0]!])).toEqual({ status: 0, out: 'Images are identical.\n' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a vdi and a split vmdk stored in OPFS as they are back qcow2 overlays; qemu-img reads the downloads as the chains it builds with -b ... -F', async ({ page }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-foreign-chain-'));
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  try {
    const vdiSize = 8 * MiB;
    const vdi = path.join(dir, 'base.vdi');
    sh('qemu-img', ['create', '-q', '-f', 'vdi', vdi, String(vdiSize)]);
    sh('qemu-io', ['-f', 'vdi', ...sourceWrites(vdiSize), vdi]);
    const split = makeVmdk(dir, 'split.vmdk', 'twoGbMaxExtentSparse', 3 * GiB);
    // The overlay's writes: into the base's data across a cluster boundary, into unwritten space, across 2 GiB.
    const writes: Array<[number, number, number]> = [
      [MiB + 60_000, 20_000, 0x5a],
      [3 * MiB + 512, 4096, 0xa5],
      [2 * GiB - 1000, 3000, 0x77],
    ];
    const chains = [
      { base: vdi, format: 'vdi', size: vdiSize, files: [vdi] },
      { base: split[0]!, format: 'vmdk', size: 3 * GiB, files: split },
    ];
    // qemu-img's chains: the overlay next to its base, the same writes through qemu-io.
    for (const c of chains) {
      const name = `ref-${path.basename(c.base)}.qcow2`;
      sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', path.basename(c.base), '-F', c.format, path.join(dir, name)]);
      const w = writes.filter(([off, len]) => off + len <= c.size).flatMap(([off, len, b]) => ['-c', `write -P 0x${b.toString(16)} ${off} ${len}`]);
      sh('qemu-io', ['-f', 'qcow2', ...w, path.join(dir, name)]);
    }
    sh('qemu-img', ['convert', '-O', 'raw', path.join(dir, 'ref-base.vdi.qcow2'), path.join(dir, 'ref-base.vdi.raw')]);

    await openHarness(page);
    await installSaveAs(page);
    const saves = saveDownloads(page, out);
    await pickFiles(page, [vdi, ...split]);
    const infos = await page.evaluate(
      async ({ chains, writes }) => {
        const h = window.harness;
        const dw = await h.start();
        const picked = [...(document.getElementById('picker') as HTMLInputElement).files!];
        const res = [];
        for (const g of await h.groupImageFiles(picked)) {
          const c = chains.find((x) => x.base.endsWith(`/${g.image.name}`))!;
          const base = `opfs:/foreign-chain/${g.image.name}`;
          const over = `opfs:/foreign-chain/over-${g.image.name}.qcow2`;
          await dw.importFile(g.image, { to: base, companions: g.companions });
          // As qemu-img create -b NAME -F FORMAT: the name relative to the overlay.
          await dw.create({ path: over, format: 'qcow2', backingFile: g.image.name, backingFormat: c.format });
          const disk = await dw.open({ path: over });
          for (const [off, len, b] of writes) if (off + len <= disk.length) await disk.write(off, new Uint8Array(len).fill(b));
          await disk.close();
          await window.saveAs!(await dw.exportStream(over), `over-${g.image.name}.qcow2`);
          // The guest view of the chain, for the small one.
          if (c.format === 'vdi') await window.saveAs!(await dw.exportStream(over, { format: 'raw' }), 'over-base.vdi.raw');
          const info = await dw.info(over);
          res.push({ image: g.image.name, backingFile: info.backingFile, backingFormat: info.backingFormat, size: info.virtualSize });
        }
        return res;
      },
      { chains, writes },
    );
    expect(infos).toEqual([
      { image: 'base.vdi', backingFile: 'base.vdi', backingFormat: 'vdi', size: vdiSize },
      { image: 'split.vmdk', backingFile: 'split.vmdk', backingFormat: 'vmdk', size: 3 * GiB },
    ]);
    await expect.poll(() => saves.length).toBe(3);
    await Promise.all(saves);
    // The guest view, byte for byte, against qemu-img's reading of its own chain.
    expect(sha256(path.join(out, 'over-base.vdi.raw'))).toBe(sha256(path.join(dir, 'ref-base.vdi.raw')));
    for (const c of chains) {
      const name = `over-${path.basename(c.base)}.qcow2`;
      // Put next to qemu-img's copy of the base (and its extents), as it names it.
      fs.copyFileSync(path.join(out, name), path.join(dir, name));
      const info = JSON.parse(sh('qemu-img', ['info', '--output=json', path.join(dir, name)])) as { 'backing-filename': string; 'backing-filename-format': string };
      expect([info['backing-filename'], info['backing-filename-format']]).toEqual([path.basename(c.base), c.format]);
      expect(run('qemu-img', ['check', path.join(dir, name)]).out, name).toContain('No errors were found on the image.');
      expect(run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', path.join(dir, name), path.join(dir, `ref-${path.basename(c.base)}.qcow2`)]), name).toEqual({ status: 0, out: 'Images are identical.\n' });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an OPFS image exports to vmdk subformats of several files, every file a download; qemu-img compares the descriptor with its extents to the source', async ({ page }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-export-files-'));
  try {
    await openHarness(page);
    await installSaveAs(page);
    const saves = saveDownloads(page, dir);
    const targets = [
      { dir: 'split', size: 3 * GiB, subformat: 'twoGbMaxExtentSparse' },
      { dir: 'mono', size: 4 * MiB, subformat: 'monolithicFlat' },
      { dir: 'flat', size: 4 * MiB, subformat: 'twoGbMaxExtentFlat' },
    ];
    const r = await page.evaluate(async (targets) => {
      const h = window.harness;
      const dw = await h.start();
      const res = [];
      for (const t of targets) {
        const src = `opfs:/export-files/${t.dir}.qcow2`;
        await dw.create({ path: src, format: 'qcow2', size: t.size });
        const disk = await dw.open({ path: src });
        await disk.write(0, h.pattern(1, 1 << 20));
        await disk.write(Math.min(2 ** 31, t.size) - 70_000, h.pattern(2, 70_000));
        await disk.write(t.size - 4096, h.pattern(3, 4096));
        await disk.close();
        await window.saveAs!(await dw.exportStream(src), `${t.dir}.qcow2`);
        const files = await dw.exportFiles(src, { format: 'vmdk', options: { subformat: t.subformat } });
        for (const f of files) await window.saveAs!(f.stream, f.name);
        res.push(files.map((f) => f.name));
      }
      // Once every stream is read, the temporary conversions are gone.
      await new Promise((r) => setTimeout(r, 200));
      const tmp = (await dw.list()).filter((e) => e.path.includes('.diskworker-tmp')).map((e) => e.path);
      const refused = await h.failureOf(() => dw.exportStream('opfs:/export-files/mono.qcow2', { format: 'vmdk', options: { subformat: 'monolithicFlat' } }));
      return { res, tmp, refused };
    }, targets);
    expect(r.res).toEqual([
      ['split.vmdk', 'split-s001.vmdk', 'split-s002.vmdk'],
      ['mono.vmdk', 'mono-flat.vmdk'],
      ['flat.vmdk', 'flat-f001.vmdk'],
    ]);
    expect(r.tmp).toEqual([]);
    expect(r.refused).toMatchObject({ code: 'ENOTSUP' });
    await expect.poll(() => saves.length).toBe(10);
    await Promise.all(saves);
    for (const t of targets) {
      const vmdk = path.join(dir, `${t.dir}.vmdk`);
      const info = JSON.parse(sh('qemu-img', ['info', '--output=json', vmdk])) as { 'virtual-size': number; 'format-specific': { data: { 'create-type': string } } };
      expect([info['virtual-size'], info['format-specific'].data['create-type']], t.subformat).toEqual([t.size, t.subformat]);
      expect(run('qemu-img', ['check', vmdk]).out, t.subformat).toContain('No errors were found on the image.');
      expect(run('qemu-img', ['compare', '-f', 'vmdk', '-F', 'qcow2', vmdk, path.join(dir, `${t.dir}.qcow2`)]), t.subformat).toEqual({ status: 0, out: 'Images are identical.\n' });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
