/**
 * The demo app (demo/), served by `vite` (npm start / npm run demo) with the
 * cross-origin isolation headers DiskWorker needs for SharedArrayBuffer.
 */
import { defineConfig, type Connect, type Plugin } from 'vite';

export const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** The guests' files in demo/public (build-demo-assets.mjs): disk images, kernel, initramfs, BIOS. */
const BINARY_ASSETS = /^\/(linux|seabios|guest)\//;

/**
 * Serves the guests' files byte for byte. Their extensions (.qcow2, none for
 * vmlinuz) have no MIME type, and `vite preview` gzips a response without
 * one, byte ranges included: DiskWorker's HTTP driver then refuses the root
 * image (a range of a compressed stream is not a range of the file). Typed
 * application/octet-stream here, before Vite's own middlewares, they are
 * sent as they are by both the dev and the preview server.
 */
function binaryAssets(): Plugin {
  const typed: Connect.NextHandleFunction = (req, res, next) => {
    if (BINARY_ASSETS.test(req.url ?? '')) res.setHeader('Content-Type', 'application/octet-stream');
    next();
  };
  return {
    name: 'diskworker-binary-assets',
    configureServer: (server) => void server.middlewares.use(typed),
    configurePreviewServer: (server) => void server.middlewares.use(typed),
  };
}

export default defineConfig({
  root: 'demo',
  plugins: [binaryAssets()],
  server: { host: '127.0.0.1', port: 5173, headers: isolationHeaders },
  preview: { host: '127.0.0.1', port: 4174, headers: isolationHeaders },
  worker: { format: 'es' },
  // Pre-bundle v86 up front so the first VM boot under the dev server does not reload the page.
  optimizeDeps: { include: ['v86'] },
  build: { outDir: '../dist/demo', emptyOutDir: true, target: 'es2022' },
});
