/**
 * The demo's Snapshots tab and the VM tab's saved machines, in Chromium on
 * OPFS: a snapshot taken from the panel brings its data back when applied,
 * deletes go away, the list survives a page reload, and the panel's
 * `qemu-img snapshot -l` text is what qemu-img prints for the downloaded
 * image. Errors show the page API's BlockError (code and message). The VM
 * tab saves the running v86 machine with its disk and restores both, in the
 * same emulator and after a reload in a new one.
 */
import { test, expect, type Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { command, createDisk, openDemo, shot, submitDialog } from './helpers.js';

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function panel(page: Page) {
  return page.locator('#snapshots-slot');
}

async function snapshotsTab(page: Page): Promise<void> {
  await page.locator('[role=tab][data-tab=snapshots]').click();
}

/** Types `name` and presses one of the panel's top buttons ('create' | 'apply' | 'delete'). */
async function byName(page: Page, action: 'create' | 'apply' | 'delete', name: string): Promise<void> {
  await snapshotsTab(page);
  await panel(page).getByTestId('snapshot-name').fill(name);
  await panel(page).getByTestId(`snapshot-${action}`).click();
  if (action !== 'create') await submitDialog(page); // "Apply" / "Delete" confirmation
}

/** Selects an image in the sidebar and waits until it is open. */
async function selectImage(page: Page, name: string): Promise<void> {
  await page.locator('.disk-item', { hasText: name }).click();
  await expect(page.locator('#disk-title')).toHaveText(name);
  await expect(page.getByTestId('console-input')).toHaveAttribute('placeholder', /command for/);
}

test('create, apply and delete snapshots from the panel; the list persists across a reload and matches qemu-img', async ({ page }, info) => {
  await openDemo(page);
  await createDisk(page, 'snap.qcow2', '16M');
  await command(page, 'write -P 0x11 0 64k', /wrote 65536\/65536 bytes at offset 0/);

  await byName(page, 'create', 'first');
  const first = panel(page).locator('tr[data-snapshot="first"]');
  await expect(first.locator('[data-col=id]')).toHaveText('1');
  await expect(first.locator('[data-col=vm-size]')).toHaveText('0 B');
  await expect(first.locator('[data-col=disk-size]')).toHaveText('16 MiB');
  await expect(first.locator('[data-col=date]')).toHaveText(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  await expect(first.locator('[data-col=vm-clock]')).toHaveText('00:00:00.000');
  await expect(panel(page).getByTestId('snapshot-status')).toHaveText("Created snapshot 'first' (id 1).");
  await expect(panel(page).getByTestId('snapshot-error')).toBeHidden();
  // The Details tab lists it too.
  await page.locator('[role=tab][data-tab=details]').click();
  await expect(page.locator('#details tr[data-snapshot="first"]')).toBeVisible();

  await command(page, 'write -P 0x22 0 64k', /wrote 65536\/65536 bytes at offset 0/);
  await command(page, 'read -v 0 16', /qemu-io> read -v 0 16\n00000000: {2}(22 ){15}22 {2}\.{16}/);

  await snapshotsTab(page);
  await first.getByRole('button', { name: 'Apply' }).click();
  await submitDialog(page);
  await expect(panel(page).getByTestId('snapshot-status')).toHaveText("Applied snapshot 'first' (id 1): the disk is as it was then.");
  await expect(panel(page).getByTestId('snapshot-error')).toBeHidden();
  // The first pattern is back (the line after the command is the data, not a verification failure).
  await command(page, 'read -v 0 16', /qemu-io> read -v 0 16\n00000000: {2}(11 ){15}11 {2}\.{16}/);
  await command(page, 'read -P 0x11 0 64k', /qemu-io> read -P 0x11 0 64k\nread 65536\/65536 bytes at offset 0\n/);

  await byName(page, 'create', 'second');
  await expect(panel(page).locator('tr[data-snapshot="second"] [data-col=id]')).toHaveText('2');
  await snapshotsTab(page);
  await first.getByRole('button', { name: 'Delete' }).click();
  await submitDialog(page);
  await expect(panel(page).getByTestId('snapshot-status')).toHaveText("Deleted snapshot 'first' (id 1).");
  await expect(first).toHaveCount(0);
  await expect(panel(page).locator('tbody tr')).toHaveCount(1);
  await shot(page, info, 'snapshots-panel', true);

  // The panel's qemu-img snapshot -l text is qemu-img's for the downloaded image.
  const dir = info.outputPath('images');
  fs.mkdirSync(dir, { recursive: true });
  await page.getByRole('button', { name: 'Download…' }).click();
  const download = page.waitForEvent('download');
  await submitDialog(page, { format: 'file' });
  const file = `${dir}/snap.qcow2`;
  await (await download).saveAs(file);
  const dump = (await panel(page).getByTestId('snapshot-dump').textContent()) ?? '';
  expect(dump).toContain('second');
  expect(dump).toBe(run('qemu-img', ['snapshot', '-l', file]));
  expect(run('qemu-img', ['check', file])).toContain('No errors were found on the image.');
  run('qemu-img', ['snapshot', '-a', 'second', file]);
  run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x11 0 64k', file]);

  await page.reload();
  await expect(page.locator('html')).toHaveAttribute('data-ready', 'true');
  await selectImage(page, 'snap.qcow2');
  await snapshotsTab(page);
  await expect(panel(page).locator('tr[data-snapshot="second"] [data-col=id]')).toHaveText('2');
  await expect(panel(page).locator('tr[data-snapshot="first"]')).toHaveCount(0);
  await expect(panel(page).getByTestId('snapshot-dump')).toHaveText(dump);
});

test('errors show the page API’s code and message: unknown snapshot, empty and taken names, apply during a mirror', async ({ page }, info) => {
  test.setTimeout(90_000);
  await openDemo(page);
  await createDisk(page, 'snap-errors.qcow2', '16M');
  const error = panel(page).getByTestId('snapshot-error');

  await byName(page, 'apply', 'nope');
  await expect(error).toHaveText("ENOENT: No snapshot with id or name 'nope'");
  await expect(page.locator('#toasts')).toContainText("ENOENT: No snapshot with id or name 'nope'");
  await byName(page, 'delete', 'nope');
  await expect(error).toHaveText("ENOENT: No snapshot with id or name 'nope'");

  await byName(page, 'create', '');
  await expect(error).toHaveText('EINVAL: Snapshot name must be a non-empty string, got ""');
  await byName(page, 'create', 'a');
  await expect(error).toBeHidden();
  await expect(panel(page).locator('tr[data-snapshot="a"]')).toBeVisible();
  await byName(page, 'create', 'a');
  await expect(error).toHaveText("EEXIST: A snapshot named 'a' already exists");
  await expect(panel(page).locator('tbody tr')).toHaveCount(1);

  // A mirror job tracks the disk's writes in a dirty bitmap: the API refuses to apply meanwhile.
  await command(page, 'write -P 0x33 0 6M', /wrote 6291456\/6291456 bytes at offset 0/);
  await page.locator('[role=tab][data-tab=jobs]').click();
  await page.getByTestId('job-speed').fill('1');
  await page.getByTestId('job-mirror').click();
  const job = page.locator('.block-jobs .job').first();
  await expect(job).toHaveAttribute('data-status', /^(running|ready)$/);
  await byName(page, 'apply', 'a');
  await expect(error).toHaveText('EBUSY: Device has active dirty bitmaps');
  await shot(page, info, 'snapshot-error-during-mirror', true);
  await command(page, 'read -P 0x33 0 6M', /qemu-io> read -P 0x33 0 6M\nread 6291456\/6291456 bytes at offset 0\n/);
  await page.locator('[role=tab][data-tab=jobs]').click();
  await job.getByRole('button', { name: 'Cancel' }).click();
  await expect(job).toHaveAttribute('data-status', 'null', { timeout: 30_000 });

  // Without the job the same apply goes through.
  await byName(page, 'apply', 'a');
  await expect(panel(page).getByTestId('snapshot-status')).toHaveText('Applied snapshot "a": the disk is as it was then.');
  await expect(error).toBeHidden();
  await command(page, 'read -v 0 16', /qemu-io> read -v 0 16\n00000000: {2}(00 ){15}00 {2}\.{16}/);
});

/** Guest memory at the demo guest's sector buffer (BUF in demo/guest/guest.asm). */
const BUF = 0x9000;

type DemoVm = { diskworkerDemo: { vm: { emulatorForTests: { read_memory(a: number, n: number): Uint8Array; write_memory(b: Uint8Array, a: number): void } | null } } };

function guestMemory(page: Page): Promise<number[] | null> {
  return page.evaluate((a) => {
    const e = (window as unknown as DemoVm).diskworkerDemo.vm.emulatorForTests;
    return e ? Array.from(e.read_memory(a, 32)) : null;
  }, BUF);
}

test('Save machine and Restore machine keep the v86 guest and its disk in one snapshot, also across a reload', async ({ page }, info) => {
  test.setTimeout(120_000);
  await openDemo(page);
  await createDisk(page, 'machine.qcow2', '64M');
  await page.locator('[role=tab][data-tab=vm]').click();
  await expect(page.getByTestId('vm-save')).toBeDisabled();
  await page.getByTestId('vm-boot').click();
  await submitDialog(page); // "Install and boot"
  const serial = page.getByTestId('vm-serial');
  await expect(serial).toContainText('GUEST DONE: 64 writes verified', { timeout: 60_000 });
  const saved = await guestMemory(page);
  expect(saved?.some((b) => b !== 0)).toBe(true);

  await page.getByTestId('vm-save-name').fill('machine');
  await page.getByTestId('vm-save').click();
  await expect(page.locator('#toasts')).toContainText("Machine saved as 'machine'");
  await expect(page.getByTestId('vm-save-name')).toHaveValue('machine-2');
  await expect(page.getByTestId('vm-restore-select').locator('option')).toHaveText([/^'machine' \(id 1, .+B\)$/]);
  await snapshotsTab(page);
  const row = panel(page).locator('tr[data-snapshot="machine"]');
  await expect(row.locator('[data-col=vm-size]')).not.toHaveText('0 B');

  // The guest's memory and its disk change after the save...
  await page.evaluate((a) => (window as unknown as DemoVm).diskworkerDemo.vm.emulatorForTests!.write_memory(new Uint8Array(32).fill(0xee), a), BUF);
  expect(await guestMemory(page)).toEqual(new Array(32).fill(0xee));
  await command(page, 'write -P 0x55 1M 512', /wrote 512\/512 bytes at offset 1048576/);
  await command(page, 'read -v 1M 16', /qemu-io> read -v 1M 16\n00100000: {2}(55 ){15}55 {2}U{16}/);

  // ... and Restore machine brings both back in the running emulator.
  await page.locator('[role=tab][data-tab=vm]').click();
  await page.getByTestId('vm-restore').click();
  await submitDialog(page);
  await expect(page.locator('#toasts')).toContainText("Machine 'machine' (id 1,");
  await expect(page.getByTestId('vm-status')).toHaveText('running');
  expect(await guestMemory(page)).toEqual(saved);
  await command(page, 'read -v 1M 16', /qemu-io> read -v 1M 16\n00100000: {2}44 49 53 4b 57 4f 52 4b 45 52 20 47 55 45 53 54 {2}DISKWORKER.GUEST/);
  await page.locator('[role=tab][data-tab=vm]').click();
  await shot(page, info, 'machine-restored', true);

  // After a reload: no emulator runs; Restore machine boots one and resumes the saved machine in it.
  await page.reload();
  await expect(page.locator('html')).toHaveAttribute('data-ready', 'true');
  await selectImage(page, 'machine.qcow2');
  await command(page, 'write -P 0x66 1M 512', /wrote 512\/512 bytes at offset 1048576/);
  await page.locator('[role=tab][data-tab=vm]').click();
  expect(await guestMemory(page)).toBeNull();
  await page.getByTestId('vm-restore').click();
  await submitDialog(page);
  await expect(page.locator('#toasts')).toContainText("Machine 'machine' (id 1,");
  await expect(page.getByTestId('vm-status')).toHaveText('running');
  expect(await guestMemory(page)).toEqual(saved);
  // The guest resumed where it was saved (its screen is back) instead of booting again.
  await expect(page.getByTestId('vm-screen')).toContainText('All 64 writes read back correctly');
  expect(await serial.textContent()).not.toContain('BOOTED');
  await command(page, 'read -v 1M 16', /qemu-io> read -v 1M 16\n00100000: {2}44 49 53 4b 57 4f 52 4b 45 52 20 47 55 45 53 54 {2}DISKWORKER.GUEST/);
  await page.locator('[role=tab][data-tab=vm]').click();
  await page.getByRole('button', { name: 'Stop' }).click();
  await expect(page.getByTestId('vm-status')).toHaveText('stopped');
});
