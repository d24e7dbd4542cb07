/**
 * Encrypted images in the browser (issue #19): the page gives the worker a
 * password with `dw.secrets.add` (QEMU's secret object) and names it in the
 * options, as qemu-img's `--object secret,id=sec0,data=...` does. A luks
 * image (AES, and one with Serpent) and a qcow2 with `encrypt.format=luks` that qemu-img makes (and
 * qemu-io writes) are picked, imported as they are and converted to an
 * unencrypted qcow2, opened and read (info without the key), and compared byte by byte with
 * `qemu-img convert -O raw`; a wrong password fails with QEMU's message. An
 * OPFS image exported to luks, and a luks image the worker creates, open in
 * qemu-img with the same password and compare equal.
 */
import { test, expect } from '@playwright/test';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openHarness, pickFiles, sh, shLuksCreate } from './helpers.js';

const MiB = 1 << 20;
const SIZE = 4 * MiB;
const PASSWORD = 'Tr0ub4dor & 3 ünïcode';
const SECRET = `secret,id=sec0,data=${PASSWORD}`;

/** qemu-io writes of the sources: [offset, length, byte] (one unaligned, one at the end). */
const SOURCE_WRITES: Array<[number, number, number]> = [
  [0, 65536, 0x11],
  [MiB, 3 * 65536, 0x22],
  [2_100_000, 5000, 0x33],
  [SIZE - 65536, 65536, 0x44],
];

/** The sources: file name, format, the open option that names the key secret, qemu-img -o. */
const SOURCES = [
  { name: 'src.luks', format: 'luks', key: 'key-secret', create: 'key-secret=sec0,iter-time=10' },
  { name: 'src.qcow2', format: 'qcow2', key: 'encrypt.key-secret', create: 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10' },
  // Serpent runs in the WASM module (SIMD) in the browser.
  { name: 'serpent.luks', format: 'luks', key: 'key-secret', create: 'key-secret=sec0,iter-time=10,cipher-alg=serpent-256,cipher-mode=cbc,ivgen-alg=essiv' },
] as const;

/** qemu-img / qemu-io output and exit status (no throw). */
function run(cmd: string, args: string[]): { status: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** `--image-opts` of an encrypted image with the key secret sec0 (commas in the path doubled). */
function imageOpts(format: string, key: string, file: string): string {
  return `driver=${format},${key}=sec0,file.filename=${file.replaceAll(',', ',,')}`;
}

/** Makes the sources in `dir` with qemu-img and qemu-io, and their qemu-img raw view (`<name>.raw`). */
function makeSources(dir: string): void {
  const writes = SOURCE_WRITES.flatMap(([off, len, byte]) => ['-c', `write -P 0x${byte.toString(16)} ${off} ${len}`]);
  for (const s of SOURCES) {
    const file = path.join(dir, s.name);
    shLuksCreate('qemu-img', ['create', '-q', '--object', SECRET, '-f', s.format, '-o', s.create, file, String(SIZE)]);
    sh('qemu-io', ['--object', SECRET, '--image-opts', ...writes, imageOpts(s.format, s.key, file)]);
    sh('qemu-img', ['convert', '--object', SECRET, '--image-opts', imageOpts(s.format, s.key, file), '-O', 'raw', `${file}.raw`]);
  }
}

test('luks and encrypted qcow2 images from qemu-img import with a secret, as they are and as qcow2, reading as qemu-img reads them', async ({ page }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-luks-'));
  try {
    makeSources(dir);
    await openHarness(page);
    await pickFiles(page, SOURCES.flatMap((s) => [path.join(dir, s.name), path.join(dir, `${s.name}.raw`)]));
    const r = await page.evaluate(
      async ({ sources, password }) => {
        const h = window.harness;
        const dw = await h.start();
        const files = new Map([...(document.getElementById('picker') as HTMLInputElement).files!].map((f) => [f.name, f]));
        const failure = h.failureOf;
        const readAll = async (p: string, options?: Record<string, unknown>) => {
          const d = await dw.open({ path: p, readOnly: true, ...(options ? { options } : {}) });
          try {
            return { bytes: await d.read(0, d.length), format: d.format };
          } finally {
            await d.close();
          }
        };
        await dw.secrets.add('sec0', password);
        // The same password as bytes, and a wrong one.
        const given = new TextEncoder().encode(password);
        await dw.secrets.add('bytes', given);
        await dw.secrets.add('wrong', 'not the password');
        const secrets = {
          givenKept: given.length > 0 && given.every((b, i) => b === new TextEncoder().encode(password)[i]),
          duplicate: await failure(() => dw.secrets.add('sec0', 'x')),
          badId: await failure(() => dw.secrets.add('1sec', 'x')),
        };
        const out = [];
        for (const s of sources) {
          const expected = new Uint8Array(await files.get(`${s.name}.raw`)!.arrayBuffer());
          const key = { [s.key]: 'sec0' };
          // As it is: the bytes are stored; the format is probed, the key secret named at open.
          const kept = `opfs:/luks/${s.name}`;
          await dw.importFile(files.get(s.name)!, { to: kept });
          const keptRead = await readAll(kept, key);
          const bytesRead = await readAll(kept, { [s.key]: 'bytes' });
          // Converted to an unencrypted qcow2: the picked file opens with fromOptions.
          const conv = `opfs:/luks/${s.name}.plain.qcow2`;
          await dw.importFile(files.get(s.name)!, { to: conv, format: 'qcow2', fromOptions: key });
          const convRead = await readAll(conv);
          // dw.convert from the kept copy into luks, and back through its key secret.
          const back = `opfs:/luks/${s.name}.again.luks`;
          await dw.convert({ from: kept, fromOptions: key, to: back, format: 'luks', options: { 'key-secret': 'sec0', 'iter-time': 10 } });
          const backRead = await readAll(back, { 'key-secret': 'sec0' });
          out.push({
            name: s.name,
            keptFormat: keptRead.format,
            // info needs no key secret (a no-I/O open, as qemu-img info).
            keptInfo: await dw.info(kept).then((i) => ({ format: i.format, size: i.virtualSize, encrypted: i.specific?.type === 'luks' || 'encrypt' in (i.specific?.data ?? {}) })),
            keptDiff: h.diff(keptRead.bytes, expected),
            bytesDiff: h.diff(bytesRead.bytes, expected),
            convFormat: (await dw.info(conv)).format,
            convDiff: h.diff(convRead.bytes, expected),
            backDiff: h.diff(backRead.bytes, expected),
            wrong: await failure(() => dw.open({ path: kept, readOnly: true, options: { [s.key]: 'wrong' } })),
            missing: await failure(() => dw.open({ path: kept, readOnly: true })),
            convertNoKey: await failure(() => dw.importFile(files.get(s.name)!, { to: `opfs:/luks/${s.name}.x.qcow2`, format: 'qcow2' })),
          });
        }
        await dw.secrets.remove('wrong');
        const removedTwice = await failure(() => dw.secrets.remove('wrong'));
        const afterRemove = await failure(() => dw.open({ path: `opfs:/luks/${sources[0]!.name}`, readOnly: true, options: { [sources[0]!.key]: 'wrong' } }));
        return { secrets, out, removedTwice, afterRemove };
      },
      { sources: SOURCES, password: PASSWORD },
    );
    expect(r.secrets).toEqual({
      givenKept: true,
      duplicate: { code: 'EEXIST', message: "attempt to add duplicate property 'sec0' to object (type 'container')", isBlockError: true },
      badId: { code: 'EINVAL', message: "Parameter 'id' expects an identifier", isBlockError: true },
    });
    for (const [i, o] of r.out.entries()) {
      const s = SOURCES[i]!;
      expect(o, s.name).toEqual({
        name: s.name,
        keptFormat: s.format,
        keptInfo: { format: s.format, size: SIZE, encrypted: true },
        keptDiff: -1,
        bytesDiff: -1,
        convFormat: 'qcow2',
        convDiff: -1,
        backDiff: -1,
        wrong: { code: 'EPERM', message: 'Invalid password, cannot unlock any keyslot', isBlockError: true },
        missing: { code: 'EINVAL', message: `Parameter '${s.key}' is required for cipher`, isBlockError: true },
        convertNoKey: { code: 'EINVAL', message: `Parameter '${s.key}' is required for cipher`, isBlockError: true },
      });
      // QEMU's own messages for the same mistakes.
      const file = path.join(dir, s.name);
      const wrong = run('qemu-img', ['convert', '--object', 'secret,id=sec0,data=not the password', '--image-opts', imageOpts(s.format, s.key, file), '-O', 'raw', path.join(dir, 'x.raw')]);
      expect(wrong.status).toBe(1);
      expect(wrong.out).toContain(o.wrong!.message);
      const missing = run('qemu-img', ['convert', '-f', s.format, file, '-O', 'raw', path.join(dir, 'x.raw')]);
      expect(missing.status).toBe(1);
      expect(missing.out).toContain(o.missing!.message);
    }
    expect(r.removedTwice).toEqual({ code: 'ENOENT', message: "object 'wrong' not found", isBlockError: true });
    expect(r.afterRemove).toEqual({ code: 'EINVAL', message: "No secret with id 'wrong'", isBlockError: true });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an OPFS image exports to luks with a secret, and a luks image the worker creates exports as raw; qemu-img opens both with the password', async ({ page }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-luks-export-'));
  try {
    await openHarness(page);
    const downloads: Array<Promise<void>> = [];
    page.on('download', (d) => void downloads.push(d.saveAs(path.join(dir, d.suggestedFilename()))));
    const r = await page.evaluate(
      async ({ size, password }) => {
        const h = window.harness;
        const dw = await h.start();
        const save = async (stream: ReadableStream<Uint8Array>, name: string) => {
          const a = document.createElement('a');
          a.href = URL.createObjectURL(await new Response(stream).blob());
          a.download = name;
          document.body.append(a);
          a.click();
        };
        const failure = h.failureOf;
        await dw.secrets.add('sec0', password);
        const src = 'opfs:/luks-export/src.qcow2';
        await dw.create({ path: src, format: 'qcow2', size });
        let disk = await dw.open({ path: src });
        await disk.write(0, h.pattern(1, 1 << 20));
        await disk.write(2_100_000, h.pattern(2, 70_000));
        await disk.write(size - 4096, h.pattern(3, 4096));
        await disk.close();
        const before = (await dw.list()).length;
        const noKey = await failure(() => dw.exportStream(src, { format: 'luks' }));
        const leftBehind = (await dw.list()).length - before;
        await save(await dw.exportStream(src), 'src.qcow2');
        await save(await dw.exportStream(src, { format: 'luks', options: { 'key-secret': 'sec0', 'iter-time': 10 } }), 'out.luks');
        // A luks image made in the worker, written through its key secret.
        const made = 'opfs:/luks-export/made.luks';
        await dw.create({ path: made, format: 'luks', size, options: { 'key-secret': 'sec0', 'iter-time': 10, 'cipher-alg': 'aes-128' } });
        disk = await dw.open({ path: made, options: { 'key-secret': 'sec0' } });
        await disk.write(4096, h.pattern(4, 200_000));
        await disk.close();
        await save(await dw.exportStream(made), 'made.luks');
        await save(await dw.exportStream(made, { format: 'raw', fromOptions: { 'key-secret': 'sec0' } }), 'made.raw');
        return { noKey, leftBehind };
      },
      { size: SIZE, password: PASSWORD },
    );
    expect(r.noKey).toMatchObject({ code: 'ENOTSUP', isBlockError: true });
    expect(r.noKey!.message).toContain("'luks'");
    expect(r.noKey!.message).toContain("'key-secret'");
    expect(r.leftBehind).toBe(0);
    await expect.poll(() => downloads.length).toBe(4);
    await Promise.all(downloads);
    const out = path.join(dir, 'out.luks');
    const info = JSON.parse(sh('qemu-img', ['info', '--output=json', out])) as { format: string; encrypted: boolean; 'virtual-size': number };
    expect([info.format, info.encrypted, info['virtual-size']]).toEqual(['luks', true, SIZE]);
    const cmp = run('qemu-img', ['compare', '--object', SECRET, '--image-opts', imageOpts('luks', 'key-secret', out), `driver=qcow2,file.filename=${path.join(dir, 'src.qcow2')}`]);
    expect(cmp).toEqual({ status: 0, out: 'Images are identical.\n' });
    const wrong = run('qemu-img', ['compare', '--object', 'secret,id=sec0,data=nope', '--image-opts', imageOpts('luks', 'key-secret', out), `driver=qcow2,file.filename=${path.join(dir, 'src.qcow2')}`]);
    expect(wrong.status).toBe(2);
    expect(wrong.out).toContain('Invalid password, cannot unlock any keyslot');
    const made = path.join(dir, 'made.luks');
    const madeInfo = JSON.parse(sh('qemu-img', ['info', '--output=json', made])) as { format: string; 'format-specific': { data: { 'cipher-alg': string } } };
    expect([madeInfo.format, madeInfo['format-specific'].data['cipher-alg']]).toEqual(['luks', 'aes-128']);
    const madeCmp = run('qemu-img', ['compare', '--object', SECRET, '--image-opts', imageOpts('luks', 'key-secret', made), `driver=raw,file.filename=${path.join(dir, 'made.raw')}`]);
    expect(madeCmp).toEqual({ status: 0, out: 'Images are identical.\n' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
