/**
 * Helpers of the demo specs (e2e/demo): open the demo app, drive its dialogs
 * and console, and read the allocation map's pixels.
 */
import { expect, type Page, type TestInfo } from '@playwright/test';

export async function openDemo(page: Page): Promise<void> {
  page.on('pageerror', (e) => console.log(`[demo page error] ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`[demo console] ${m.text()}`);
  });
  await page.goto('/');
  await expect(page.locator('html')).toHaveAttribute('data-ready', 'true');
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
}

/** Saves a screenshot as a test artifact (attached to the report too). */
export async function shot(page: Page, info: TestInfo, name: string, fullPage = false): Promise<void> {
  const path = info.outputPath(`${name}.png`);
  await page.screenshot({ path, fullPage });
  await info.attach(name, { path, contentType: 'image/png' });
}

/** Fills and submits the open dialog: { name: value } by field name. */
export async function submitDialog(page: Page, fields: Record<string, string> = {}): Promise<void> {
  const dlg = page.locator('dialog[open]');
  await expect(dlg).toBeVisible();
  for (const [name, value] of Object.entries(fields)) {
    const el = dlg.locator(`[name="${name}"]`);
    if ((await el.evaluate((e) => e.tagName)) === 'SELECT') await el.selectOption(value);
    else await el.fill(value);
  }
  await dlg.locator('button[type=submit]').click();
  await expect(dlg).toHaveCount(0);
}

export async function createDisk(page: Page, name: string, size = '64M', extra: Record<string, string> = {}): Promise<void> {
  await page.getByRole('button', { name: 'New disk' }).click();
  await submitDialog(page, { name, size, ...extra });
  await expect(page.locator('#disk-title')).toHaveText(name);
  await expect(page.getByTestId('console-input')).toHaveAttribute('placeholder', /command for/);
}

/** Runs a console command and waits until its echo and some output after it appear. */
export async function command(page: Page, line: string, expectOut: RegExp): Promise<string> {
  await page.locator('[role=tab][data-tab=console]').click();
  const input = page.getByTestId('console-input');
  await input.fill(line);
  await input.press('Enter');
  const out = page.getByTestId('console-output');
  await expect(out).toContainText(`qemu-io> ${line}`);
  await expect(out).toHaveText(expectOut);
  return (await out.textContent()) ?? '';
}

/** Pixels of the allocation map canvas with a category's color. */
export function mapPixels(page: Page, color: string): Promise<number> {
  return page.getByTestId('allocation-map').evaluate((c, color) => {
    const canvas = c as HTMLCanvasElement;
    const ctx = canvas.getContext('2d')!;
    const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const want = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] === want[0] && d[i + 1] === want[1] && d[i + 2] === want[2] && d[i + 3] === 255) n++;
    return n;
  }, color);
}

export const COLORS = { data: '#2563eb', compressed: '#9333ea', zero: '#14b8a6', backing: '#f59e0b', unallocated: '#e2e8f0' };
