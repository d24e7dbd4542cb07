/**
 * Builds the Playwright harness page (e2e/harness) into dist/e2e; served by
 * scripts/serve-e2e.mjs with COOP/COEP headers.
 */
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

export default defineConfig({
  root: fileURLToPath(new URL('./harness', import.meta.url)),
  logLevel: 'error',
  worker: { format: 'es' },
  build: {
    outDir: fileURLToPath(new URL('../dist/e2e', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    minify: false,
    sourcemap: true,
    rollupOptions: {
      input: {
        index: fileURLToPath(new URL('./harness/index.html', import.meta.url)),
      },
    },
  },
});
