/**
 * Playwright: Debian's Chromium (never a downloaded browser), headless, with
 * a local server that builds and serves the harness with COOP/COEP headers.
 *
 *   npx playwright test           (builds the harness itself via webServer)
 */
import { defineConfig } from '@playwright/test';

const PORT = Number(process.env.E2E_PORT ?? 4173);
/** The built demo app (demo/), served by `vite preview` with COOP/COEP (e2e/demo specs). */
const DEMO_PORT = Number(process.env.DEMO_PORT ?? 4175);

export default defineConfig({
  testDir: 'e2e',
  testMatch: '**/*.spec.ts',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: process.env.E2E_WORKERS ? Number(process.env.E2E_WORKERS) : 2,
  retries: 0,
  reporter: process.env.CI ? [['list'], ['html', { open: 'never' }]] : 'list',
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    headless: true,
    acceptDownloads: true,
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    },
  },
  projects: [
    { name: 'runtime', testIgnore: 'demo/**' },
    {
      name: 'demo',
      testMatch: 'demo/**/*.spec.ts',
      use: { baseURL: `http://127.0.0.1:${DEMO_PORT}`, viewport: { width: 1280, height: 800 } },
    },
  ],
  webServer: [
    {
      command: `npx vite build -c e2e/vite.config.ts && node scripts/serve-e2e.mjs --port ${PORT}`,
      url: `http://127.0.0.1:${PORT}/health`,
      reuseExistingServer: !process.env.CI,
      timeout: 180_000,
      stdout: 'pipe',
      stderr: 'pipe',
    },
    {
      command: `node scripts/build-demo-assets.mjs && npx vite build --config vite.config.ts --logLevel error && npx vite preview --config vite.config.ts --port ${DEMO_PORT} --strictPort`,
      url: `http://127.0.0.1:${DEMO_PORT}/`,
      reuseExistingServer: !process.env.CI,
      timeout: 180_000,
      stdout: 'pipe',
      stderr: 'pipe',
    },
  ],
});
