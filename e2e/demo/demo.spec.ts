/**
 * The demo app (demo/, served by `vite preview` with COOP/COEP) driven like a
 * person would: create an image, write through the console and see the
 * allocation map change, import a qemu-img made qcow2, export it and check the
 * download with qemu-img, boot the VM panel. Screenshots are test artifacts.
 */
import { test, expect } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { COLORS, command, createDisk, mapPixels, openDemo, shot, submitDialog } from './helpers.js';

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

test('create an image, write through the console, and the allocation map changes', async ({ page }, info) => {
  await openDemo(page);
  await shot(page, info, '01-welcome');
  await createDisk(page, 'console.qcow2', '64M');
  await expect(page.locator('.disk-item.selected')).toContainText('console.qcow2');
  await expect.poll(() => mapPixels(page, COLORS.unallocated)).toBeGreaterThan(1000);
  expect(await mapPixels(page, COLORS.data)).toBe(0);

  const out = await command(page, 'write -P 0xab 0 64k', /wrote 65536\/65536 bytes at offset 0\n64 KiB, 1 ops; \d\d\.\d\d sec \([0-9.]+ [KMG]?i?B(ytes)?\/sec and [0-9.]+ ops\/sec\)/);
  expect(out).not.toContain('failed');
  await expect.poll(() => mapPixels(page, COLORS.data), { timeout: 5000 }).toBeGreaterThan(0);
  const dataAfterOne = await mapPixels(page, COLORS.data);

  await command(page, 'write -P 0xcd 32M 1M', /wrote 1048576\/1048576 bytes at offset 33554432/);
  await expect.poll(() => mapPixels(page, COLORS.data)).toBeGreaterThan(dataAfterOne);
  await command(page, 'write -z 48M 256k', /wrote 262144\/262144 bytes at offset 50331648/);
  await expect.poll(() => mapPixels(page, COLORS.zero)).toBeGreaterThan(0);

  await command(page, 'read -P 0xab 0 64k', /read 65536\/65536 bytes at offset 0/);
  await command(page, 'read -v 0 16', /00000000:  ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab  \.{16}/);
  const map = await command(page, 'map', /64 KiB \(0x10000\) bytes {5}allocated at offset 0 bytes \(0x0\)/);
  expect(map).toContain('1 MiB (0x100000) bytes     allocated at offset 32 MiB (0x2000000)');
  await command(page, 'alloc 0 128k', /65536\/131072 bytes allocated at offset 0 bytes/);
  await command(page, 'read 0 1G', /read failed: Input\/output error/);
  expect(await page.getByTestId('console-output').textContent()).not.toContain('Pattern verification failed');
  await shot(page, info, '02-console-and-map');

  // Zoom into the first cell twice (8x each): the 64 KiB at 0 then fills many cells.
  const zoomedBefore = await mapPixels(page, COLORS.data);
  const range = page.locator('.map-range');
  await page.getByTestId('allocation-map').click({ position: { x: 6, y: 6 } });
  await expect(range).toContainText('showing 8 MiB of 64 MiB');
  await page.getByTestId('allocation-map').click({ position: { x: 6, y: 6 } });
  await expect(range).toContainText('showing 1 MiB of 64 MiB');
  await expect.poll(() => mapPixels(page, COLORS.data)).toBeGreaterThan(zoomedBefore);
  await shot(page, info, '02b-map-zoomed');
  await page.getByRole('button', { name: 'Whole disk' }).click();

  await page.locator('[role=tab][data-tab=check]').click();
  await page.getByTestId('check-run').click();
  await expect(page.locator('[data-verdict]')).toHaveAttribute('data-verdict', 'ok');
  await expect(page.getByTestId('check-result')).toContainText('No errors were found on the image.');
  await page.locator('[role=tab][data-tab=details]').click();
  await expect(page.locator('#details')).toContainText('Refcount bits');
  await shot(page, info, '03-details', true);
});

test('import a qemu-img qcow2, see its details, export it and qemu-img check the download', async ({ page }, info) => {
  const dir = info.outputPath('images');
  fs.mkdirSync(dir, { recursive: true });
  const src = `${dir}/made-by-qemu.qcow2`;
  run('qemu-img', ['create', '-q', '-f', 'qcow2', src, '32M']);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -c -P 0x22 8M 256k', '-c', 'write -z 16M 64k', '-c', 'write -P 0x33 31M 1M', src]);
  run('qemu-img', ['snapshot', '-c', 'before-test', src]);

  await openDemo(page);
  await page.getByRole('button', { name: 'Import file…' }).click();
  await page.locator('dialog[open] input[type=file]').setInputFiles(src);
  await submitDialog(page, { name: 'imported.qcow2' });
  await expect(page.locator('#disk-title')).toHaveText('imported.qcow2');
  await expect(page.locator('#details')).toContainText('before-test');
  await expect(page.locator('#details')).toContainText('32 MiB (33,554,432 bytes)');
  await expect.poll(() => mapPixels(page, COLORS.compressed)).toBeGreaterThan(0);
  expect(await mapPixels(page, COLORS.data)).toBeGreaterThan(0);
  await page.locator('.raw-info summary').first().click();
  await expect(page.getByTestId('qemu-img-info')).toContainText('Snapshot list:');
  await shot(page, info, '04-imported', true);

  // Write from the console, then download the image file and check it with qemu-img.
  await command(page, 'write -P 0x44 4M 64k', /wrote 65536\/65536 bytes at offset 4194304/);
  await page.getByRole('button', { name: 'Download…' }).click();
  const download = page.waitForEvent('download');
  await submitDialog(page, { format: 'file' });
  const file = `${dir}/${(await download).suggestedFilename()}`;
  await (await download).saveAs(file);
  expect(file.endsWith('imported.qcow2')).toBe(true);
  expect(run('qemu-img', ['check', file])).toContain('No errors were found on the image.');
  const infoJson = JSON.parse(run('qemu-img', ['info', '--output=json', file])) as { snapshots?: Array<{ name: string }> };
  expect(infoJson.snapshots?.map((s) => s.name)).toEqual(['before-test']);
  run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x44 4M 64k', '-c', 'read -P 0x22 8M 256k', '-c', 'read -P 0x33 31M 1M', file]);

  // The guest view as raw, gzip-compressed, equals qemu-img's view of the download.
  await page.getByRole('button', { name: 'Download…' }).click();
  const rawDownload = page.waitForEvent('download');
  const dlg = page.locator('dialog[open]');
  await dlg.locator('input[name=gzip]').check();
  await submitDialog(page, { format: 'raw' });
  const gz = `${dir}/${(await rawDownload).suggestedFilename()}`;
  await (await rawDownload).saveAs(gz);
  expect(gz.endsWith('imported.raw.gz')).toBe(true);
  run('gzip', ['-df', gz]);
  run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', gz.replace(/\.gz$/, ''), file]);

  // Converted to another format on the way out: a stream-optimized vmdk that qemu-img checks and reads alike.
  await page.getByRole('button', { name: 'Download…' }).click();
  const vmdkDownload = page.waitForEvent('download');
  await submitDialog(page, { format: 'vmdk-stream' });
  const vmdk = `${dir}/${(await vmdkDownload).suggestedFilename()}`;
  await (await vmdkDownload).saveAs(vmdk);
  expect(vmdk.endsWith('imported.vmdk')).toBe(true);
  expect(run('qemu-img', ['info', vmdk])).toContain('create type: streamOptimized');
  expect(run('qemu-img', ['check', vmdk])).toContain('No errors were found on the image.');
  run('qemu-img', ['compare', '-f', 'vmdk', '-F', 'qcow2', vmdk, file]);
});

test('a long import shows progress and can be cancelled', async ({ page }, info) => {
  const big = info.outputPath('big.raw');
  fs.mkdirSync(info.outputPath(''), { recursive: true });
  // 2 GiB of zeros (sparse on disk); the import reads it all, which takes a while.
  run('truncate', ['-s', '2G', big]);
  await openDemo(page);
  await page.getByRole('button', { name: 'Import file…' }).click();
  await page.locator('dialog[open] input[type=file]').setInputFiles(big);
  await submitDialog(page, { name: 'big.raw', how: 'qcow2' });
  const job = page.locator('.job');
  await expect(job).toBeVisible();
  await expect(job.getByRole('progressbar')).toBeVisible();
  await expect(job.locator('.job-text')).toContainText(/of 2 GiB/, { timeout: 15_000 });
  await shot(page, info, '05-import-progress');
  await job.getByRole('button', { name: 'Cancel' }).click();
  await expect(job).toHaveCount(0, { timeout: 15_000 });
  await expect(page.locator('.toast')).toContainText('cancelled');
  await expect(page.locator('.disk-item', { hasText: 'big.raw' })).toHaveCount(0);
});

test('the VM panel boots the demo guest from the disk and shows its output and I/O', async ({ page }, info) => {
  test.setTimeout(90_000);
  await openDemo(page);
  await page.getByRole('button', { name: 'Create a 256 MiB demo disk' }).click();
  await expect(page.locator('#disk-title')).toHaveText('demo.qcow2');
  await page.locator('[role=tab][data-tab=vm]').click();
  await page.getByTestId('vm-boot').click();
  await submitDialog(page); // "Install and boot"
  await expect(page.getByTestId('vm-serial')).toContainText('DISKWORKER GUEST BOOTED', { timeout: 30_000 });
  await expect(page.getByTestId('vm-serial')).toContainText('disk size 256 MiB');
  await expect(page.getByTestId('vm-serial')).toContainText('GUEST DONE: 64 writes verified', { timeout: 40_000 });
  await expect(page.getByTestId('vm-screen')).toContainText('All 64 writes read back correctly');
  await expect.poll(async () => Number((await page.locator('[data-op=write] [data-field=ops]').textContent())?.replace(/,/g, '')), { timeout: 5000 }).toBeGreaterThanOrEqual(64);
  // 64 writes spread over the disk: many data cells on the map.
  await expect.poll(() => mapPixels(page, COLORS.data), { timeout: 5000 }).toBeGreaterThan(40 * 100);
  await shot(page, info, '06-vm');
  await page.getByRole('button', { name: 'Stop' }).click();
  await expect(page.getByTestId('vm-status')).toHaveText('stopped');
  await command(page, 'read -v 1M 32', /00100000:  44 49 53 4b 57 4f 52 4b 45 52 20 47 55 45 53 54  DISKWORKER.GUEST/);
});

test('errors are messages a person understands, and the layout works on a narrow window', async ({ page }, info) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await openDemo(page);
  await page.getByRole('button', { name: 'New disk' }).click();
  await submitDialog(page, { name: 'bad.qcow2', size: 'lots' });
  await expect(page.locator('.toast-error')).toContainText('“lots” is not a size');
  await createDisk(page, 'narrow.qcow2', '16M');
  await page.getByRole('button', { name: 'New disk' }).click();
  await submitDialog(page, { name: 'narrow.qcow2', size: '16M' });
  await expect(page.locator('.toast-error').last()).toContainText(/failed/);
  await command(page, 'write -P 0x12 0 64k', /wrote 65536\/65536/);
  await command(page, 'frobnicate', /command "frobnicate" not found/);
  await shot(page, info, '07-narrow', true);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
});
