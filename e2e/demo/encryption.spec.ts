/**
 * Encrypted images in the demo (issue #19): a luks image qemu-img made is
 * imported as it is and asks for its password when it opens; a wrong
 * password shows QEMU's "Invalid password, cannot unlock any keyslot" in the
 * dialog and the user tries again; the unlocked disk's guest view downloads
 * and equals qemu-img's reading byte for byte (sha256). An encrypted qcow2
 * converted to qcow2 on import asks for its password too. The download dialog
 * and Convert… make luks images with a new password, which qemu-img opens
 * with it.
 */
import { test, expect, type Page } from '@playwright/test';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { command, openDemo, shot, submitDialog } from './helpers.js';

const PASSWORD = 'correct horse ünïcode';
const NEW_PASSWORD = 'another one';
const SECRET = `secret,id=sec0,data=${PASSWORD}`;
const SIZE = 4 << 20;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** qemu-img's LUKS creation, repeated when its PBKDF2 timing fails on a busy machine. */
function luksCreate(args: string[]): void {
  for (let attempt = 1; ; attempt++) {
    const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
    if (r.status === 0) return;
    if (attempt >= 12 || !r.stderr.includes('Unable to get accurate CPU usage')) throw new Error(`qemu-img ${args.join(' ')}: ${r.stderr}`);
  }
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Fills and submits the open import dialog, after which the password dialog opens (so not submitDialog, which waits for no dialog). */
async function submitImport(page: Page, fields: Record<string, string>): Promise<void> {
  const dlg = page.locator('dialog[open]', { hasText: 'Import a disk image' });
  await dlg.locator('[name=name]').fill(fields.name!);
  if (fields.how) await dlg.locator('[name=how]').selectOption(fields.how);
  await dlg.locator('button[type=submit]').click();
  await expect(page.getByTestId('password-dialog')).toBeVisible();
}

/** Types a password into the open password dialog and submits it. */
async function typePassword(page: Page, password: string): Promise<void> {
  const dlg = page.getByTestId('password-dialog');
  await expect(dlg).toBeVisible();
  await dlg.getByTestId('password-input').fill(password);
  await dlg.locator('button[type=submit]').click();
}

test('an encrypted image asks for its password in the demo; a wrong one is said and can be retried; downloads match qemu-img', async ({ page }, info) => {
  const dir = info.outputPath('images');
  fs.mkdirSync(dir, { recursive: true });
  const luks = `${dir}/secret.luks`;
  const qcow2 = `${dir}/secret-qcow2.qcow2`;
  luksCreate(['create', '-q', '--object', SECRET, '-f', 'luks', '-o', 'key-secret=sec0,iter-time=10', luks, String(SIZE)]);
  luksCreate(['create', '-q', '--object', SECRET, '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', qcow2, String(SIZE)]);
  const writes = ['-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 1M 200k', '-c', 'write -P 0x33 4128768 65536'];
  run('qemu-io', ['--object', SECRET, '--image-opts', ...writes, `driver=luks,key-secret=sec0,file.filename=${luks}`]);
  run('qemu-io', ['--object', SECRET, '--image-opts', ...writes, `driver=qcow2,encrypt.key-secret=sec0,file.filename=${qcow2}`]);
  run('qemu-img', ['convert', '--object', SECRET, '--image-opts', `driver=luks,key-secret=sec0,file.filename=${luks}`, '-O', 'raw', `${dir}/expected.raw`]);
  // Unwritten space of a luks image reads as its decrypted bytes, of an encrypted qcow2 as zeros: each its own view.
  run('qemu-img', ['convert', '--object', SECRET, '--image-opts', `driver=qcow2,encrypt.key-secret=sec0,file.filename=${qcow2}`, '-O', 'raw', `${dir}/expected-qcow2.raw`]);
  const expected = sha256(`${dir}/expected.raw`);
  const logs: string[] = [];
  page.on('console', (m) => logs.push(m.text()));

  await openDemo(page);
  // Kept as it is: its first open asks for the password.
  await page.getByRole('button', { name: 'Import file…' }).click();
  await page.locator('dialog[open] input[type=file]').setInputFiles(luks);
  await submitImport(page, { name: 'secret.luks' });
  await typePassword(page, 'not the password');
  const error = page.getByTestId('password-error');
  await expect(error).toBeVisible();
  await expect(error).toContainText('Invalid password, cannot unlock any keyslot');
  await expect(page.getByTestId('password-dialog')).toBeVisible();
  await expect(page.getByTestId('password-input')).toHaveValue('');
  await shot(page, info, '10-wrong-password');
  await typePassword(page, PASSWORD);
  await expect(page.getByTestId('password-dialog')).toHaveCount(0);
  await expect(page.locator('#disk-title')).toHaveText('secret.luks');
  await expect(page.locator('#disk-sub')).toContainText('luks');
  await command(page, 'read -P 0x22 1M 200k', /read 204800\/204800 bytes at offset 1048576/);
  expect(await page.getByTestId('console-output').textContent()).not.toContain('Pattern verification failed');

  // The guest view downloads as qemu-img reads it.
  await page.getByRole('button', { name: 'Download…' }).click();
  const rawDownload = page.waitForEvent('download');
  await submitDialog(page, { format: 'raw' });
  await (await rawDownload).saveAs(`${dir}/got.raw`);
  expect(sha256(`${dir}/got.raw`)).toBe(expected);

  // Converted to qcow2 on the way out: the conversion opens the source again with the key given above.
  await page.getByRole('button', { name: 'Download…' }).click();
  const qcow2Download = page.waitForEvent('download');
  await submitDialog(page, { format: 'qcow2' });
  await (await qcow2Download).saveAs(`${dir}/from-luks.qcow2`);
  expect(run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', `${dir}/from-luks.qcow2`, `${dir}/expected.raw`])).toBe('Images are identical.\n');
  // The disk was reopened after the conversion without asking again.
  await expect(page.locator('#disk-sub')).toContainText('luks');
  await expect(page.getByTestId('password-dialog')).toHaveCount(0);

  // An encrypted qcow2 converted to a plain qcow2 on import: the conversion asks for the password.
  await page.getByRole('button', { name: 'Import file…' }).click();
  await page.locator('dialog[open] input[type=file]').setInputFiles(qcow2);
  await submitImport(page, { name: 'plain.qcow2', how: 'qcow2' });
  await typePassword(page, 'wrong again');
  await expect(page.getByTestId('password-error')).toContainText('Invalid password, cannot unlock any keyslot');
  await typePassword(page, PASSWORD);
  await expect(page.locator('#disk-title')).toHaveText('plain.qcow2');
  await page.getByRole('button', { name: 'Download…' }).click();
  const fileDownload = page.waitForEvent('download');
  await submitDialog(page, { format: 'file' });
  await (await fileDownload).saveAs(`${dir}/plain.qcow2`);
  const plainInfo = JSON.parse(run('qemu-img', ['info', '--output=json', `${dir}/plain.qcow2`])) as { format: string; encrypted?: boolean };
  expect([plainInfo.format, plainInfo.encrypted ?? false]).toEqual(['qcow2', false]);
  expect(run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', `${dir}/plain.qcow2`, `${dir}/expected-qcow2.raw`])).toBe('Images are identical.\n');

  // Selected again, the luks disk opens with the key given before; no second prompt.
  await page.locator('.disk-item', { hasText: 'secret.luks' }).click();
  await expect(page.locator('#disk-title')).toHaveText('secret.luks');
  await command(page, 'read -P 0x33 4128768 65536', /read 65536\/65536 bytes at offset 4128768/);
  await expect(page.getByTestId('password-dialog')).toHaveCount(0);
  await shot(page, info, '11-unlocked', true);

  // Another copy whose password dialog is cancelled: the disk stays closed and the details say why.
  await page.getByRole('button', { name: 'Import file…' }).click();
  await page.locator('dialog[open] input[type=file]').setInputFiles(luks);
  await submitImport(page, { name: 'locked.luks' });
  await page.getByTestId('password-dialog').getByRole('button', { name: 'Cancel' }).click();
  await expect(page.locator('#details')).toContainText('The image is encrypted and was not unlocked');
  // No password reached the page's console.
  for (const p of [PASSWORD, NEW_PASSWORD, 'not the password', 'wrong again']) expect(logs.join('\n')).not.toContain(p);
});

test('the download dialog and Convert… make luks images with a new password; qemu-img opens them with it, the converted one opens here without asking', async ({ page }, info) => {
  const dir = info.outputPath('images');
  fs.mkdirSync(dir, { recursive: true });
  await openDemo(page);
  await page.getByRole('button', { name: 'New disk' }).click();
  await submitDialog(page, { name: 'plain-src.qcow2', size: '4M' });
  await expect(page.locator('#disk-title')).toHaveText('plain-src.qcow2');
  await command(page, 'write -P 0x5a 4096 300k', /wrote 307200\/307200 bytes at offset 4096/);
  await page.getByRole('button', { name: 'Download…' }).click();
  const src = page.waitForEvent('download');
  await submitDialog(page, { format: 'raw' });
  await (await src).saveAs(`${dir}/src.raw`);

  // Downloaded as luks with a new password (a conversion on the way out).
  await page.getByRole('button', { name: 'Download…' }).click();
  const exportDlg = page.locator('dialog[open]');
  await exportDlg.locator('select[name=format]').selectOption('luks');
  await exportDlg.getByTestId('new-password').fill(NEW_PASSWORD);
  await exportDlg.getByTestId('new-password-again').fill(NEW_PASSWORD);
  const luksDownload = page.waitForEvent('download');
  await exportDlg.locator('button[type=submit]').click();
  await (await luksDownload).saveAs(`${dir}/out.luks`);
  const outInfo = JSON.parse(run('qemu-img', ['info', '--output=json', `${dir}/out.luks`])) as { format: string; encrypted: boolean };
  expect([outInfo.format, outInfo.encrypted]).toEqual(['luks', true]);
  expect(run('qemu-img', ['compare', '--object', `secret,id=sec1,data=${NEW_PASSWORD}`, '--image-opts', `driver=luks,key-secret=sec1,file.filename=${dir}/out.luks`, `driver=raw,file.filename=${dir}/src.raw`])).toBe('Images are identical.\n');

  // Converted in the browser into a luks image.
  await page.getByRole('button', { name: 'Convert…' }).click();
  const dlg = page.locator('dialog[open]');
  await dlg.locator('[name=name]').fill('made.luks');
  await dlg.locator('select[name=format]').selectOption('luks');
  // Two different passwords are refused by the form.
  await dlg.getByTestId('new-password').fill(NEW_PASSWORD);
  await dlg.getByTestId('new-password-again').fill('something else');
  await dlg.locator('button[type=submit]').click();
  await expect(dlg).toBeVisible();
  await dlg.getByTestId('new-password-again').fill(NEW_PASSWORD);
  await dlg.locator('button[type=submit]').click();
  await expect(page.locator('.disk-item', { hasText: 'made.luks' })).toHaveCount(1);
  await page.locator('.disk-item', { hasText: 'made.luks' }).click();
  await expect(page.locator('#disk-title')).toHaveText('made.luks');
  await expect(page.locator('#disk-sub')).toContainText('luks');
  await expect(page.getByTestId('password-dialog')).toHaveCount(0);
  await command(page, 'read -P 0x5a 4096 300k', /read 307200\/307200 bytes at offset 4096/);
  await page.getByRole('button', { name: 'Download…' }).click();
  const made = page.waitForEvent('download');
  await submitDialog(page, { format: 'file' });
  await (await made).saveAs(`${dir}/made.luks`);
  expect(run('qemu-img', ['compare', '--object', `secret,id=sec1,data=${NEW_PASSWORD}`, '--image-opts', `driver=luks,key-secret=sec1,file.filename=${dir}/made.luks`, `driver=raw,file.filename=${dir}/src.raw`])).toBe('Images are identical.\n');
});
