/**
 * The demo app (demo/), served by `vite` (npm start / npm run demo) with the
 * cross-origin isolation headers DiskWorker needs for SharedArrayBuffer.
 */
import { defineConfig } from 'vite';

export const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

export default defineConfig({
  root: 'demo',
  server: { host: '127.0.0.1', port: 5173, headers: isolationHeaders },
  preview: { host: '127.0.0.1', port: 4174, headers: isolationHeaders },
  worker: { format: 'es' },
  // Pre-bundle v86 up front so the first VM boot under the dev server does not reload the page.
  optimizeDeps: { include: ['v86'] },
  build: { outDir: '../dist/demo', emptyOutDir: true, target: 'es2022' },
});
