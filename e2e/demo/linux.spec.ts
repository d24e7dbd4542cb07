/**
 * The demo's Linux guest: one button makes a qcow2 overlay in OPFS over the
 * served ext4 root image and boots Debian's kernel on it in v86. The test
 * types a command into the serial console like a person (key presses on the
 * console element), reads the shell's output, and sees the guest's writes and
 * its sync's flushes in the I/O table, the allocation map and the disk figures.
 */
import { test, expect } from '@playwright/test';
import { COLORS, mapPixels, openDemo, shot } from './helpers.js';

test('Linux boots in the VM panel on a new overlay; a command typed into the serial console writes the ext4 disk', async ({ page }, info) => {
  // One boot: about a minute on an idle machine, more on a loaded one.
  test.setTimeout(420_000);
  await openDemo(page);
  await page.getByRole('button', { name: 'Boot Linux on a new overlay' }).click();
  await expect(page.locator('#disk-title')).toHaveText(/^linux-\d{6}\.qcow2$/);
  await expect(page.getByTestId('vm-guest')).toHaveValue('linux');
  const serial = page.getByTestId('vm-serial');
  await expect(page.getByTestId('vm-status')).toHaveText(/^running \(booted in \d+\.\d s\)$/, { timeout: 200_000 });
  await expect(serial).toContainText('init: /dev/sda mounted on /mnt');
  await expect(serial).toContainText(/guest:\/mnt# $/);
  await expect(page.getByTestId('vm-figures')).toContainText(/Linux booted in \d+\.\d s/);
  await expect(page.getByTestId('vm-figures')).toContainText(/qcow2 stores .* of 128 MiB; the rest comes from http:\/\/127\.0\.0\.1:\d+\/linux\/root\.qcow2/);
  const writesOps = page.locator('[data-testid=io-stats] tr[data-op=write] [data-field=ops]');
  const before = await mapPixels(page, COLORS.data);

  // Typed key by key on the focused console (boot focuses it); the echo is the shell's.
  await expect(serial).toBeFocused();
  await page.keyboard.type('yes diskworker | head -c 1048576 > big; echo "hi from $(uname -r)" > hi; sync; cat hi; ls -l big');
  await page.keyboard.press('Enter');
  // "$(uname -r)" expanded: the shell ran the line (its echo shows the unexpanded text).
  await expect(serial).toContainText('hi from 6.1.0', { timeout: 200_000 });
  await expect(serial).toContainText(/1048576 [A-Z][a-z]{2} /);
  await expect(serial).toContainText(/guest:\/mnt# $/);
  await expect.poll(async () => Number((await writesOps.textContent())?.replace(/,/g, '')), { timeout: 20_000 }).toBeGreaterThan(0);
  // The guest's sync reached the image: v86's FLUSH CACHE waits for the disk's flush (connectV86Flush).
  const flushOps = page.locator('[data-testid=io-stats] tr[data-op=flush] [data-field=ops]');
  await expect.poll(async () => Number((await flushOps.textContent())?.replace(/,/g, '')), { timeout: 20_000 }).toBeGreaterThan(0);
  // 1 MiB more in the overlay: more cells of the map are the top image's data.
  await expect.poll(() => mapPixels(page, COLORS.data), { timeout: 20_000 }).toBeGreaterThan(before);
  await shot(page, info, 'linux-booted');
});
