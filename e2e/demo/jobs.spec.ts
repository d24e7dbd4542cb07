/**
 * The demo's Jobs tab: a mirror of the open disk to IndexedDB shows as a row
 * with its status and a moving progress bar, pauses and resumes from its
 * buttons, and Complete moves the disk; "Back up and download" hands over a
 * qcow2 that qemu-img checks clean and finds equal to the disk, and
 * "Incremental backup" one with only the tracked changes.
 */
import { test, expect } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { command, createDisk, openDemo, shot } from './helpers.js';

test('the jobs panel runs a mirror with its controls, a backup download and an incremental one', async ({ page }, info) => {
  test.setTimeout(90_000);
  await openDemo(page);
  await createDisk(page, 'jobs-demo.qcow2', '16M');
  await command(page, 'write -P 0x11 0 6M', /wrote 6291456\/6291456 bytes at offset 0/);
  await page.locator('[role=tab][data-tab=jobs]').click();
  await page.getByTestId('job-speed').fill('2');
  await page.getByTestId('job-mirror').click();
  const row = page.locator('.block-jobs .job').first();
  await expect(row).toHaveAttribute('data-status', 'running');
  await expect(row).toContainText('idb:jobs-demo-mirror-');
  await expect.poll(() => row.locator('.job-bar-fill').evaluate((e) => parseFloat((e as HTMLElement).style.width) || 0), { timeout: 15_000 }).toBeGreaterThan(0);
  await shot(page, info, 'mirror-running');
  await row.getByRole('button', { name: 'Pause' }).click();
  // A mirror already in sync pauses into 'standby' (QEMU's paused-while-ready).
  await expect(row).toHaveAttribute('data-status', /^(paused|standby)$/);
  await expect(row.getByRole('button', { name: 'Resume' })).toBeEnabled();
  await row.getByRole('button', { name: 'Resume' }).click();
  await expect(row).toHaveAttribute('data-status', /^(running|ready)$/);
  await expect(row).toHaveAttribute('data-status', 'ready', { timeout: 20_000 });
  await row.getByRole('button', { name: 'Complete' }).click();
  await expect(row).toHaveAttribute('data-status', 'null');
  await expect(page.locator('#toasts')).toContainText('Mirror complete');
  const image = await page.evaluate(() => (window as unknown as { diskworkerDemo: { app: { selected: { disk: { image(): Promise<string> } } } } }).diskworkerDemo.app.selected.disk.image());
  expect(image).toMatch(/^idb:jobs-demo-mirror-\d+\.qcow2$/);

  await page.getByTestId('job-speed').fill('0');
  const dl = page.waitForEvent('download');
  await page.getByTestId('job-backup').click();
  const download = await dl;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-demo-jobs-'));
  try {
    const file = path.join(dir, 'backup.qcow2');
    await download.saveAs(file);
    const check = spawnSync('qemu-img', ['check', file], { encoding: 'utf8' });
    expect(check.stdout).toContain('No errors were found on the image.');
    const model = Buffer.alloc(16 << 20);
    model.fill(0x11, 0, 6 << 20);
    fs.writeFileSync(path.join(dir, 'model.raw'), model);
    const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', path.join(dir, 'model.raw'), file], { encoding: 'utf8' });
    expect(cmp.stdout + cmp.stderr).toBe('Images are identical.\n');

    // Incremental: track changes, write 64 KiB, back up only that.
    await page.getByTestId('bitmap-bar').getByRole('button', { name: 'Track changes' }).click();
    await command(page, 'write -P 0x22 1M 64k', /wrote 65536\/65536 bytes at offset 1048576/);
    await page.locator('[role=tab][data-tab=jobs]').click();
    const dl2 = page.waitForEvent('download');
    await page.getByTestId('job-incremental').click();
    const inc = path.join(dir, 'inc.qcow2');
    await (await dl2).saveAs(inc);
    const map = JSON.parse(spawnSync('qemu-img', ['map', '--output=json', inc], { encoding: 'utf8' }).stdout) as Array<{ length: number; data: boolean }>;
    expect(map.filter((e) => e.data).reduce((a, e) => a + e.length, 0)).toBe(65536);
    expect(spawnSync('qemu-img', ['rebase', '-u', '-b', 'backup.qcow2', '-F', 'qcow2', inc], { encoding: 'utf8' }).status).toBe(0);
    model.fill(0x22, 1 << 20, (1 << 20) + 65536);
    fs.writeFileSync(path.join(dir, 'model.raw'), model);
    const cmp2 = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', path.join(dir, 'model.raw'), inc], { encoding: 'utf8' });
    expect(cmp2.stdout + cmp2.stderr).toBe('Images are identical.\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
