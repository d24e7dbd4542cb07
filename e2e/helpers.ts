/**
 * Shared helpers of the Playwright specs.
 */
import { expect, type Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const fixturesDir = path.join(repoRoot, 'dist/e2e-fixtures');

/** Opens the harness page and waits until it is ready. */
export async function openHarness(page: Page): Promise<void> {
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.log(`[page ${m.type()}] ${m.text()}`);
  });
  await page.goto('/');
  await expect(page).toHaveTitle('harness ready');
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
}

/** The image format the specs use: qcow2 once the driver exists, raw before. */
export async function imageFormat(page: Page): Promise<'qcow2' | 'raw'> {
  const drivers = await page.evaluate(async () => (await window.harness.start()).drivers());
  return drivers.includes('qcow2') ? 'qcow2' : 'raw';
}

/** Runs a command and returns its stdout (throws with stderr on failure). */
export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * {@link sh} for a qemu-img that creates LUKS key slots: its PBKDF2 timing
 * now and then fails with "Unable to get accurate CPU usage" before anything
 * is written (short iter-time on a busy machine); such runs are repeated.
 */
export function shLuksCreate(cmd: string, args: string[]): string {
  for (let attempt = 1; ; attempt++) {
    try {
      return sh(cmd, args);
    } catch (e) {
      const stderr = String((e as { stderr?: unknown }).stderr ?? '');
      if (attempt >= 12 || !stderr.includes('Unable to get accurate CPU usage')) throw e;
    }
  }
}

/**
 * Adds a file input (#picker) to the harness page and "picks" `files` in it,
 * as a user would; the page reads them from `#picker`'s files.
 */
export async function pickFiles(page: Page, files: string[]): Promise<void> {
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'file';
    input.multiple = true;
    input.id = 'picker';
    document.body.append(input);
  });
  await page.setInputFiles('#picker', files);
}
