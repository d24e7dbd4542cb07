/** Builds the browser bench pages into dist/bench (served at /bench/ by scripts/serve-e2e.mjs). */
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/bench/',
  logLevel: 'error',
  worker: { format: 'es' },
  build: {
    outDir: fileURLToPath(new URL('../../../dist/bench', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: {
      input: {
        main: fileURLToPath(new URL('./index.html', import.meta.url)),
        wasm: fileURLToPath(new URL('./wasm.html', import.meta.url)),
        linux: fileURLToPath(new URL('./linux.html', import.meta.url)),
      },
    },
  },
});
