/**
 * Dropping image files on the demo (issue #19): a real `drop` event whose
 * DataTransfer holds Files made in the page from qemu-img's bytes. A vdi and
 * a vhdx dropped together give one import dialog each (the vdi kept as it is,
 * the vhdx converted to qcow2); their guest views download and equal
 * `qemu-img convert -O raw` byte for byte (sha256), and so does a qcow2
 * overlay made in the demo over the stored vdi, against qemu-img's own chain. A split vmdk dropped with
 * its extents is one image (one dialog naming them), stored with its extents,
 * and its qcow2 download is what qemu-img compare finds equal to the source;
 * dropped without one extent, the import fails naming the missing file; the
 * download dialog's split vmdk saves a descriptor and its extents that qemu-img
 * finds equal to the source.
 */
import { test, expect, type Page } from '@playwright/test';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { command, createDisk, openDemo, shot, submitDialog } from './helpers.js';

const MiB = 1 << 20;
const GiB = 1 << 30;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/**
 * Drops `files` on the page: their bytes reach the page through a file input
 * of its own (fast, by path), become new File objects made in the page, and
 * go in a DataTransfer with dragenter, dragover and drop events.
 */
async function dropFiles(page: Page, files: string[]): Promise<void> {
  await page.evaluate(() => {
    document.getElementById('drop-source')?.remove();
    const input = Object.assign(document.createElement('input'), { type: 'file', multiple: true, id: 'drop-source', hidden: true });
    document.body.append(input);
  });
  await page.setInputFiles('#drop-source', files);
  await page.evaluate(async () => {
    const dt = new DataTransfer();
    for (const f of (document.getElementById('drop-source') as HTMLInputElement).files!) dt.items.add(new File([new Uint8Array(await f.arrayBuffer())], f.name));
    document.getElementById('drop-source')!.remove();
    const target = document.querySelector('main') ?? document.body;
    for (const type of ['dragenter', 'dragover', 'drop']) target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
}

/** Downloads the selected disk's guest view (raw) into `file`. */
async function downloadRaw(page: Page, file: string): Promise<void> {
  await page.getByRole('button', { name: 'Download…' }).click();
  const download = page.waitForEvent('download');
  await submitDialog(page, { format: 'raw' });
  await (await download).saveAs(file);
}

test('a vdi and a vhdx dropped on the page import (as they are, as qcow2) and read as qemu-img reads them', async ({ page }, info) => {
  const dir = info.outputPath('images');
  fs.mkdirSync(dir, { recursive: true });
  const writes = ['-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 1M 300k', '-c', 'write -P 0x33 2100000 5000', '-c', `write -P 0x44 ${4 * MiB - 65536} 64k`];
  for (const [name, fmt] of [['drop.vdi', 'vdi'], ['drop.vhdx', 'vhdx']]) {
    run('qemu-img', ['create', '-q', '-f', fmt!, `${dir}/${name}`, String(4 * MiB)]);
    run('qemu-io', ['-f', fmt!, ...writes, `${dir}/${name}`]);
    run('qemu-img', ['convert', '-f', fmt!, '-O', 'raw', `${dir}/${name}`, `${dir}/${name}.raw`]);
  }
  await openDemo(page);
  await dropFiles(page, [`${dir}/drop.vdi`, `${dir}/drop.vhdx`]);
  await expect(page.locator('#drop-overlay')).toBeHidden();
  // One dialog per image, the first one first.
  await expect(page.locator('dialog[open]')).toContainText('File: drop.vdi');
  await expect(page.locator('dialog[open] [name=name]')).toHaveValue('drop.vdi');
  await submitDialog(page, { how: 'copy' });
  await expect(page.locator('#disk-title')).toHaveText('drop.vdi');
  await expect(page.locator('dialog[open]')).toContainText('File: drop.vhdx');
  await submitDialog(page, { name: 'drop-vhdx.qcow2', how: 'qcow2' });
  await expect(page.locator('#disk-title')).toHaveText('drop-vhdx.qcow2');
  await expect(page.locator('#disk-sub')).toContainText('qcow2');
  await downloadRaw(page, `${dir}/got-vhdx.raw`);
  expect(sha256(`${dir}/got-vhdx.raw`)).toBe(sha256(`${dir}/drop.vhdx.raw`));

  await page.locator('.disk-item', { hasText: 'drop.vdi' }).click();
  await expect(page.locator('#disk-sub')).toContainText('vdi');
  await downloadRaw(page, `${dir}/got-vdi.raw`);
  expect(sha256(`${dir}/got-vdi.raw`)).toBe(sha256(`${dir}/drop.vdi.raw`));
  // The stored vdi is qemu-img's file, byte for byte.
  await page.getByRole('button', { name: 'Download…' }).click();
  const stored = page.waitForEvent('download');
  await submitDialog(page, { format: 'file' });
  await (await stored).saveAs(`${dir}/stored.vdi`);
  expect(sha256(`${dir}/stored.vdi`)).toBe(sha256(`${dir}/drop.vdi`));
  await shot(page, info, '20-dropped', true);

  // The stored vdi, as it is, backs a qcow2 overlay made in the demo; the overlay's guest view is what
  // qemu-img reads through the same chain (qemu-img create -b drop.vdi -F vdi, the same write).
  await createDisk(page, 'over-vdi.qcow2', '', { backing: 'drop.vdi', backingFormat: 'vdi' });
  await command(page, 'write -P 0x5a 1000000 100000', /wrote 100000\/100000 bytes at offset 1000000/);
  await downloadRaw(page, `${dir}/got-over.raw`);
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'drop.vdi', '-F', 'vdi', `${dir}/over.qcow2`]);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 1000000 100000', `${dir}/over.qcow2`]);
  run('qemu-img', ['convert', '-O', 'raw', `${dir}/over.qcow2`, `${dir}/over.raw`]);
  expect(sha256(`${dir}/got-over.raw`)).toBe(sha256(`${dir}/over.raw`));
});

test('a split vmdk dropped with its extents is one image; without one extent the import names it', async ({ page }, info) => {
  const dir = info.outputPath('images');
  fs.mkdirSync(dir, { recursive: true });
  const vmdk = `${dir}/split.vmdk`;
  run('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', vmdk, String(3 * GiB)]);
  run('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x11 0 64k', '-c', `write -P 0x22 ${2 * GiB - 40_000} 80000`, '-c', `write -P 0x33 ${3 * GiB - 4096} 4096`, vmdk]);
  const extents = [`${dir}/split-s001.vmdk`, `${dir}/split-s002.vmdk`];
  await openDemo(page);

  // Without its second extent: the import fails with the missing file's name, and stores nothing.
  await dropFiles(page, [vmdk, extents[0]!]);
  await expect(page.locator('dialog[open]')).toContainText('with split-s001.vmdk');
  await submitDialog(page, { name: 'broken.vmdk' });
  const toast = page.locator('.toast-error', { hasText: 'split-s002.vmdk' });
  await expect(toast).toContainText("ENOENT: Could not open 'split-s002.vmdk': No such file or directory");
  await expect(page.locator('.disk-item', { hasText: 'broken.vmdk' })).toHaveCount(0);
  await shot(page, info, '21-missing-extent');
  await toast.locator('.toast-close').click();

  // With both (dropped in another order): one dialog, the extents stored beside the descriptor.
  await dropFiles(page, [extents[1]!, vmdk, extents[0]!]);
  await expect(page.locator('dialog[open]')).toContainText('with split-s001.vmdk, split-s002.vmdk');
  await submitDialog(page, { name: 'split.vmdk' });
  await expect(page.locator('#disk-title')).toHaveText('split.vmdk');
  await expect(page.locator('#disk-sub')).toContainText('vmdk · 3 GiB virtual');
  await expect(page.locator('dialog[open]')).toHaveCount(0);
  for (const e of ['split-s001.vmdk', 'split-s002.vmdk']) await expect(page.locator('.disk-item', { hasText: e })).toHaveCount(1);
  // Downloaded as qcow2: qemu-img finds it equal to the source.
  await page.getByRole('button', { name: 'Download…' }).click();
  const download = page.waitForEvent('download');
  await submitDialog(page, { format: 'qcow2' });
  const got = `${dir}/${(await download).suggestedFilename()}`;
  await (await download).saveAs(got);
  expect(got.endsWith('split.qcow2')).toBe(true);
  const r = spawnSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'vmdk', got, vmdk], { encoding: 'utf8' });
  expect([r.status, r.stdout]).toEqual([0, 'Images are identical.\n']);

  // Downloaded split again (a descriptor and two extents, one download each): qemu-img reads them as the source.
  const out = `${dir}/out`;
  fs.mkdirSync(out);
  const saves: Array<Promise<void>> = [];
  page.on('download', (d) => void saves.push(d.saveAs(`${out}/${d.suggestedFilename()}`)));
  await page.getByRole('button', { name: 'Download…' }).click();
  await submitDialog(page, { format: 'vmdk-split' });
  await expect.poll(() => saves.length).toBe(3);
  await Promise.all(saves);
  expect(fs.readdirSync(out).sort()).toEqual(['split-s001.vmdk', 'split-s002.vmdk', 'split.vmdk']);
  const again = spawnSync('qemu-img', ['compare', '-f', 'vmdk', '-F', 'vmdk', `${out}/split.vmdk`, vmdk], { encoding: 'utf8' });
  expect([again.status, again.stdout]).toEqual([0, 'Images are identical.\n']);
});
