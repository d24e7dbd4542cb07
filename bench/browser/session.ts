/**
 * One benchmark session in Debian's Chromium: builds bench/browser/page with
 * Vite, serves it with scripts/serve-e2e.mjs (COOP/COEP headers), opens a
 * persistent profile (OPFS and IndexedDB on disk, as users have them) and
 * hands the loaded page to `measure`.
 *
 * BENCH_CHROMIUM_ARGS: extra Chromium flags, space-separated (for profiling,
 * e.g. `--js-flags=--perf-basic-prof` so that `perf` names the JIT's code).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import os from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from '@playwright/test';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PORT = Number(process.env.BENCH_PORT ?? 4175);
let built = false;

async function waitForServer(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`bench server exited with ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`bench server did not answer at ${url}`);
}

/**
 * Opens `/bench/<pagePath>` once its document title is `readyTitle` and runs
 * `measure` on it; everything is torn down afterwards.
 */
export async function withBenchPage<T>(pagePath: string, readyTitle: string, measure: (page: Page) => Promise<T>): Promise<T> {
  if (!built) {
    execFileSync('npx', ['vite', 'build', '-c', 'bench/browser/page/vite.config.ts'], { cwd: root, stdio: 'inherit' });
    built = true;
  }
  const server = spawn('node', ['scripts/serve-e2e.mjs', '--port', String(PORT), '--no-build-fixtures'], { cwd: root, stdio: 'ignore' });
  try {
    await waitForServer(`http://127.0.0.1:${PORT}/health`, server);
    const profile = mkdtempSync(path.join(os.tmpdir(), 'dw-bench-profile-'));
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', ...(process.env.BENCH_CHROMIUM_ARGS ?? '').split(' ').filter(Boolean)],
    });
    try {
      const page = browser.pages()[0] ?? (await browser.newPage());
      page.setDefaultTimeout(600_000);
      page.on('pageerror', (e) => process.stderr.write(`[bench page] ${e.message}\n`));
      await page.goto(`http://127.0.0.1:${PORT}/bench/${pagePath}`);
      await page.waitForFunction((t) => document.title === t, readyTitle);
      return await measure(page);
    } finally {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    }
  } finally {
    server.kill();
  }
}

/** A call of a method of the bench page's worker API (`window.dwb.remote`, set by {@link startBenchWorker}). */
export type Call = <T>(method: string, ...args: unknown[]) => Promise<T>;

/** Starts the bench page's DiskWorker, keeps it as `window.dwb`, and returns the way to call its worker API. */
export async function startBenchWorker(page: Page): Promise<Call> {
  await page.evaluate(async () => {
    const { dw } = await window.benchApi.start();
    (window as unknown as { dwb: unknown }).dwb = dw;
  });
  return <T>(method: string, ...args: unknown[]): Promise<T> =>
    page.evaluate(
      async ({ method, args }) => {
        const dw = (window as unknown as { dwb: { remote: Record<string, (...a: unknown[]) => Promise<unknown>> } }).dwb;
        return dw.remote[method]!(...args);
      },
      { method, args },
    ) as Promise<T>;
}
