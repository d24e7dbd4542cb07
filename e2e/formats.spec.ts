/**
 * Foreign image formats in the browser (issue #19): images qemu-img makes in
 * every format the worker reads (vmdk monolithicSparse and streamOptimized,
 * vpc, vhdx, vdi, qed, qcow) are picked in a file input and imported into
 * OPFS as they are and converted to qcow2 (with progress), read through the
 * page API and compared byte by byte with `qemu-img convert -O raw`; each is
 * the backing file of a qcow2 overlay; an OPFS image is exported to every
 * format the worker creates and the downloads are checked and compared by
 * qemu-img. luks needs a key secret (`dw.secrets`): e2e/luks.spec.ts; here,
 * without one, it is refused.
 */
import { test, expect } from '@playwright/test';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openHarness, pickFiles, sh } from './helpers.js';

const MiB = 1 << 20;
const SIZE = 4 * MiB;

/** qemu-io writes of the sources: [offset, length, byte] (one unaligned, one at the end). */
const SOURCE_WRITES: Array<[number, number, number]> = [
  [0, 65536, 0x11],
  [MiB, 3 * 65536, 0x22],
  [2_100_000, 5000, 0x33],
  [SIZE - 65536, 65536, 0x44],
];

/** The sources: file name, the format qemu-img and the worker name, creation options. */
interface Source {
  name: string;
  format: string;
  options: string[];
}
const SOURCES: Source[] = [
  { name: 'sparse.vmdk', format: 'vmdk', options: ['subformat=monolithicSparse'] },
  { name: 'stream.vmdk', format: 'vmdk', options: ['subformat=streamOptimized'] },
  { name: 'dynamic.vhd', format: 'vpc', options: ['subformat=dynamic'] },
  { name: 'dynamic.vhdx', format: 'vhdx', options: ['subformat=dynamic'] },
  { name: 'dynamic.vdi', format: 'vdi', options: ['static=off'] },
  { name: 'image.qed', format: 'qed', options: [] },
  { name: 'image.qcow', format: 'qcow', options: [] },
];

/** Export targets: download name, worker format and creation options, the qemu-img format. */
interface Target {
  name: string;
  format: string;
  options: Record<string, string>;
}
const TARGETS: Target[] = [
  { name: 'out.qcow2', format: 'qcow2', options: {} },
  { name: 'out.raw', format: 'raw', options: {} },
  { name: 'sparse.vmdk', format: 'vmdk', options: {} },
  { name: 'stream.vmdk', format: 'vmdk', options: { subformat: 'streamOptimized' } },
  { name: 'out.vhd', format: 'vpc', options: {} },
  { name: 'out.vhdx', format: 'vhdx', options: {} },
  { name: 'out.vdi', format: 'vdi', options: {} },
  { name: 'out.qed', format: 'qed', options: {} },
  { name: 'out.qcow', format: 'qcow', options: {} },
];

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dw-formats-'));
}

/** qemu-img / qemu-io output and exit status (no throw). */
function run(cmd: string, args: string[]): { status: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** Makes every source in `dir` with qemu-img and qemu-io, and its qemu-img raw view (`<name>.raw`). */
function makeSources(dir: string): void {
  const writes = SOURCE_WRITES.flatMap(([off, len, byte]) => ['-c', `write -P 0x${byte.toString(16)} ${off} ${len}`]);
  const plain = path.join(dir, 'plain.vmdk');
  sh('qemu-img', ['create', '-q', '-f', 'vmdk', plain, String(SIZE)]);
  sh('qemu-io', ['-f', 'vmdk', ...writes, plain]);
  for (const s of SOURCES) {
    const file = path.join(dir, s.name);
    if (s.name === 'stream.vmdk') {
      // A streamOptimized image is written whole by convert (its grains are appended).
      sh('qemu-img', ['convert', '-f', 'vmdk', '-O', 'vmdk', '-o', s.options.join(','), plain, file]);
    } else {
      sh('qemu-img', ['create', '-q', '-f', s.format, ...(s.options.length ? ['-o', s.options.join(',')] : []), file, String(SIZE)]);
      sh('qemu-io', ['-f', s.format, ...writes, file]);
    }
    sh('qemu-img', ['convert', '-f', s.format, '-O', 'raw', file, `${file}.raw`]);
  }
}

test('qemu-img images of every format import into OPFS as they are and as qcow2, reading as qemu-img reads them', async ({ page }) => {
  const dir = tmpDir();
  try {
    makeSources(dir);
    await openHarness(page);
    await pickFiles(page, SOURCES.flatMap((s) => [path.join(dir, s.name), path.join(dir, `${s.name}.raw`)]));
    const results = await page.evaluate(async (sources) => {
      const h = window.harness;
      const dw = await h.start();
      const files = new Map([...(document.getElementById('picker') as HTMLInputElement).files!].map((f) => [f.name, f]));
      const readAll = async (p: string) => {
        const d = await dw.open({ path: p, readOnly: true });
        try {
          return await d.read(0, d.length);
        } finally {
          await d.close();
        }
      };
      const out = [];
      for (const s of sources) {
        const expected = new Uint8Array(await files.get(`${s.name}.raw`)!.arrayBuffer());
        // As the demo's "Keep the file as it is": the bytes are stored, the format is probed on open.
        const kept = `opfs:/formats/${s.name}`;
        await dw.importFile(files.get(s.name)!, { to: kept });
        const info = await dw.info(kept);
        const keptDiff = h.diff(await readAll(kept), expected);
        // As "Convert to qcow2", with progress.
        const conv = `opfs:/formats/${s.name}.qcow2`;
        const progress: Array<{ done: number; total: number }> = [];
        await dw.importFile(files.get(s.name)!, { to: conv, format: 'qcow2' }, { onProgress: (p) => void progress.push(p) });
        const convInfo = await dw.info(conv);
        const convDiff = h.diff(await readAll(conv), expected);
        const check = await dw.check(conv);
        const last = progress[progress.length - 1];
        out.push({
          name: s.name,
          format: info.format,
          virtualSize: info.virtualSize,
          expectedSize: expected.length,
          keptDiff,
          convFormat: convInfo.format,
          convDiff,
          problems: check.corruptions + check.leaks + check.checkErrors,
          progressEnd: last ? last.done === last.total && last.total > 0 : false,
          progressMonotonic: progress.every((p, i) => i === 0 || p.done >= progress[i - 1]!.done),
        });
      }
      return out;
    }, SOURCES);
    for (const [i, r] of results.entries()) {
      const s = SOURCES[i]!;
      expect(r, s.name).toMatchObject({
        name: s.name,
        format: s.format,
        virtualSize: r.expectedSize,
        keptDiff: -1,
        convFormat: 'qcow2',
        convDiff: -1,
        problems: 0,
        progressEnd: true,
        progressMonotonic: true,
      });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('foreign images in OPFS are backing files of qcow2 overlays; an overlay downloads and qemu-img reads it over the source', async ({ page }) => {
  const dir = tmpDir();
  try {
    makeSources(dir);
    await openHarness(page);
    await pickFiles(page, SOURCES.flatMap((s) => [path.join(dir, s.name), path.join(dir, `${s.name}.raw`)]));
    // A write across a cluster boundary into data of the base, and one into its unwritten part.
    const overlayWrites: Array<[number, number, number]> = [
      [MiB + 60_000, 20_000, 0x5a],
      [3 * MiB + 512, 4096, 0xa5],
    ];
    const download = page.waitForEvent('download');
    const results = await page.evaluate(
      async ({ sources, overlayWrites }) => {
        const h = window.harness;
        const dw = await h.start();
        const files = new Map([...(document.getElementById('picker') as HTMLInputElement).files!].map((f) => [f.name, f]));
        const out = [];
        for (const s of sources) {
          const base = `opfs:/backing/${s.name}`;
          const over = `opfs:/backing/over-${s.name}.qcow2`;
          await dw.importFile(files.get(s.name)!, { to: base });
          // The backing file name is relative to the overlay, as qemu-img create -b stores it.
          await dw.create({ path: over, format: 'qcow2', backingFile: s.name, backingFormat: s.format });
          const expected = new Uint8Array(await files.get(`${s.name}.raw`)!.arrayBuffer());
          const disk = await dw.open({ path: over });
          for (const [off, len, byte] of overlayWrites) {
            await disk.write(off, new Uint8Array(len).fill(byte));
            expected.fill(byte, off, off + len);
          }
          const got = await disk.read(0, disk.length);
          await disk.close();
          const info = await dw.info(over);
          // The base is unchanged by the overlay's writes.
          const b = await dw.open({ path: base, readOnly: true });
          const baseBytes = await b.read(0, b.length);
          await b.close();
          const baseDiff = h.diff(baseBytes, new Uint8Array(await files.get(`${s.name}.raw`)!.arrayBuffer()));
          out.push({ name: s.name, diff: h.diff(got, expected), baseDiff, backingFile: info.backingFile, backingFormat: info.backingFormat });
        }
        // The first overlay as a download (its stored file).
        const blob = await new Response(await dw.exportStream(`opfs:/backing/over-${sources[0]!.name}.qcow2`)).blob();
        const a = document.createElement('a');
        a.href = URL.createObjectURL(blob);
        a.download = `over-${sources[0]!.name}.qcow2`;
        document.body.append(a);
        a.click();
        return out;
      },
      { sources: SOURCES, overlayWrites },
    );
    for (const [i, r] of results.entries()) {
      const s = SOURCES[i]!;
      expect(r, s.name).toEqual({ name: s.name, diff: -1, baseDiff: -1, backingFile: s.name, backingFormat: s.format });
    }
    // Saved next to the source it names: qemu-img reads base + overlay as the page did.
    const file = path.join(dir, `over-${SOURCES[0]!.name}.qcow2`);
    await (await download).saveAs(file);
    expect(sh('qemu-img', ['check', '-f', 'qcow2', file])).toContain('No errors were found on the image.');
    const expected = fs.readFileSync(path.join(dir, `${SOURCES[0]!.name}.raw`));
    for (const [off, len, byte] of overlayWrites) expected.fill(byte, off, off + len);
    fs.writeFileSync(path.join(dir, 'over-expected.raw'), expected);
    const cmp = run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', file, path.join(dir, 'over-expected.raw')]);
    expect(cmp.out).toContain('Images are identical.');
    expect(cmp.status).toBe(0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an OPFS image exports to every format the worker creates; qemu-img checks and compares each download', async ({ page }) => {
  const dir = tmpDir();
  try {
    await openHarness(page);
    const src = 'opfs:/export-formats/src.qcow2';
    // The stored source, for qemu-img compare.
    const srcDownload = page.waitForEvent('download');
    const refusals = await page.evaluate(
      async ({ src, size }) => {
        const h = window.harness;
        const dw = await h.start();
        await dw.create({ path: src, format: 'qcow2', size });
        const disk = await dw.open({ path: src });
        await disk.write(0, h.pattern(1, 1 << 20));
        await disk.write(2_100_000, h.pattern(2, 70_000));
        await disk.write(size - 4096, h.pattern(3, 4096));
        await disk.close();
        const blob = await new Response(await dw.exportStream(src)).blob();
        const a = document.createElement('a');
        a.href = URL.createObjectURL(blob);
        a.download = 'src.qcow2';
        document.body.append(a);
        a.click();
        // What the worker cannot create fails before anything is written, naming the format.
        const refused = h.failureOf;
        // Names outside the page API's types, as a page script could still pass them.
        const unknown = (f: string) => f as 'qcow2';
        const before = (await dw.list()).length;
        const r = {
          luks: await refused(() => dw.exportStream(src, { format: unknown('luks') })),
          parallels: await refused(() => dw.exportStream(src, { format: unknown('parallels') })),
          flat: await refused(() => dw.exportStream(src, { format: 'vmdk', options: { subformat: 'monolithicFlat' } })),
          convertLuks: await refused(() => dw.convert({ from: src, to: 'opfs:/export-formats/x.luks', format: unknown('luks') })),
          importBochs: await refused(() => dw.importFile(new Blob([new Uint8Array(512)]), { to: 'opfs:/export-formats/x.bochs', format: unknown('bochs') })),
          leftBehind: 0,
        };
        r.leftBehind = (await dw.list()).length - before;
        return r;
      },
      { src, size: SIZE },
    );
    const srcFile = path.join(dir, 'src.qcow2');
    await (await srcDownload).saveAs(srcFile);
    expect(refusals.luks).toMatchObject({ code: 'ENOTSUP', isBlockError: true });
    expect(refusals.luks!.message).toContain("'luks'");
    expect(refusals.luks!.message).toContain('key secret');
    expect(refusals.parallels).toMatchObject({ code: 'ENOTSUP', isBlockError: true });
    expect(refusals.parallels!.message).toContain("'parallels'");
    expect(refusals.flat).toMatchObject({ code: 'ENOTSUP', isBlockError: true });
    expect(refusals.flat!.message).toContain("'monolithicFlat'");
    expect(refusals.convertLuks).toMatchObject({ code: 'ENOTSUP' });
    expect(refusals.importBochs).toMatchObject({ code: 'ENOTSUP' });
    expect(refusals.importBochs!.message).toContain("'bochs'");
    expect(refusals.leftBehind).toBe(0);

    for (const t of TARGETS) {
      const download = page.waitForEvent('download');
      await page.evaluate(
        async ({ src, t }) => {
          const dw = await window.harness.start();
          const stream = await dw.exportStream(src, { format: t.format as 'qcow2', options: t.options });
          const blob = await new Response(stream).blob();
          const a = document.createElement('a');
          a.href = URL.createObjectURL(blob);
          a.download = t.name;
          document.body.append(a);
          a.click();
        },
        { src, t },
      );
      const file = path.join(dir, t.name);
      await (await download).saveAs(file);
      const info = JSON.parse(sh('qemu-img', ['info', '--output=json', file])) as { format: string; 'virtual-size': number; 'format-specific'?: { data?: { 'create-type'?: string } } };
      expect(info.format, t.name).toBe(t.format);
      if (t.format === 'vmdk') {
        expect(info['format-specific']?.data?.['create-type'], t.name).toBe(t.options.subformat ?? 'monolithicSparse');
        // The descriptor's extent line names the file as the source's base name (not a temporary name).
        expect(fs.readFileSync(file).subarray(512, 1536).toString('latin1'), t.name).toContain('SPARSE "src.vmdk"');
      }
      // The virtual size qemu-img gives the same creation (vpc rounds it to a disk geometry).
      const ref = path.join(dir, `ref-${t.name}`);
      const opts = Object.entries(t.options).map(([k, v]) => `${k}=${v}`);
      sh('qemu-img', ['create', '-q', '-f', t.format, ...(opts.length ? ['-o', opts.join(',')] : []), ref, String(SIZE)]);
      const refInfo = JSON.parse(sh('qemu-img', ['info', '--output=json', ref])) as { 'virtual-size': number };
      expect(info['virtual-size'], t.name).toBe(refInfo['virtual-size']);
      const check = run('qemu-img', ['check', '-f', t.format, file]);
      if (!check.out.includes('This image format does not support checks')) {
        expect(check.out, t.name).toContain('No errors were found on the image.');
        expect(check.status, t.name).toBe(0);
      }
      // The source's bytes (a larger vpc reads zeros past them); not -s: allocation differs by format.
      const cmp = run('qemu-img', ['compare', '-f', t.format, '-F', 'qcow2', file, srcFile]);
      expect(cmp.out, t.name).toContain('Images are identical.');
      expect(cmp.status, t.name).toBe(0);
    }
    // The temporary conversions are gone.
    const tmp = await page.evaluate(async () => (await (await window.harness.start()).list()).filter((e) => e.path.includes('.diskworker-tmp')).length);
    expect(tmp).toBe(0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
