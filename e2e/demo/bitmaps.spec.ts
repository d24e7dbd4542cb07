/**
 * The demo's bitmap bar: "Track changes" adds a dirty bitmap to the open
 * disk, console writes show up as its dirty bytes and as outlined cells on
 * the allocation map, "Clear" empties it and "Remove" drops it.
 */
import { test, expect } from '@playwright/test';
import { command, createDisk, mapPixels, openDemo, shot } from './helpers.js';

const OVERLAY = '#dc2626';

test('a bitmap tracks console writes and is drawn over the allocation map', async ({ page }, info) => {
  await openDemo(page);
  await createDisk(page, 'bitmaps.qcow2', '64M');
  const bar = page.getByTestId('bitmap-bar');
  await expect(bar).toContainText('none');
  await bar.getByRole('button', { name: 'Track changes' }).click();
  const chip = bar.locator('[data-bitmap="changes"]');
  await expect(chip).toHaveText('changes · 0 B dirty');
  await expect(chip).toHaveAttribute('aria-pressed', 'true');
  expect(await mapPixels(page, OVERLAY)).toBe(0);

  await command(page, 'write -P 0x11 1M 64k', /wrote 65536\/65536 bytes at offset 1048576/);
  await expect(chip).toHaveText('changes · 64 KiB dirty');
  await expect.poll(() => mapPixels(page, OVERLAY)).toBeGreaterThan(0);
  const one = await mapPixels(page, OVERLAY);
  await command(page, 'write -z 40M 4M', /wrote 4194304\/4194304 bytes at offset 41943040/);
  await expect(chip).toHaveText('changes · 4.06 MiB dirty');
  await expect.poll(() => mapPixels(page, OVERLAY)).toBeGreaterThan(one);
  await expect(page.locator('.legend [data-category=overlay]')).toContainText('Dirty in “changes”');
  await shot(page, info, 'bitmap-overlay');

  await bar.getByRole('button', { name: 'Clear' }).click();
  await expect(chip).toHaveText('changes · 0 B dirty');
  await expect.poll(() => mapPixels(page, OVERLAY)).toBe(0);
  await command(page, 'write -P 0x22 8M 4k', /wrote 4096\/4096 bytes at offset 8388608/);
  await expect(chip).toHaveText('changes · 64 KiB dirty');
  await expect.poll(() => mapPixels(page, OVERLAY)).toBeGreaterThan(0);

  await bar.getByRole('button', { name: 'Remove' }).click();
  await expect(bar).toContainText('none');
  await expect.poll(() => mapPixels(page, OVERLAY)).toBe(0);
  await expect(page.locator('.legend [data-category=overlay]')).toHaveCount(0);
});
