#!/usr/bin/env node
/**
 * The e2e / bench test server: serves the built harness (dist/e2e) with the
 * cross-origin isolation headers, test fixtures with HTTP Range support, and
 * Debian's SeaBIOS images.
 *
 *   /                      dist/e2e (built by `vite build -c e2e/vite.config.ts`)
 *   /fixtures/<name>       files made at start-up in dist/e2e-fixtures (nasm, qemu-img)
 *   /norange/<name>        the same file, Range ignored (200 + whole body)
 *   /gzip/<name>           the same file with Content-Encoding: gzip
 *   /seabios/<name>        /usr/share/seabios/<name>
 *   /linux/<name>          build/linux-guest (vmlinuz, initramfs.gz, root.qcow2: scripts/build-linux-guest.mjs)
 *   /bench/                dist/bench (the browser bench page, bench/browser/page)
 *   /health                200 once fixtures exist
 *
 * Usage: node scripts/serve-e2e.mjs [--port 4173] [--no-build-fixtures]
 */
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const port = Number(args[args.indexOf('--port') + 1] || process.env.E2E_PORT || 4173);
const siteDir = path.join(root, 'dist/e2e');
const benchDir = path.join(root, 'dist/bench');
export const fixturesDir = path.join(root, 'dist/e2e-fixtures');
const seabiosDir = '/usr/share/seabios';
const linuxDir = path.join(root, 'build/linux-guest');

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.css': 'text/css',
};

function run(cmd, argv) {
  execFileSync(cmd, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Deterministic bytes (same formula as the harness's pattern()). */
function pattern(seed, length, offset = 0) {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const x = offset + i;
    out[i] = (x * 31 + seed * 17 + (x >>> 8) * 7 + (x >>> 16) * 13) & 0xff;
  }
  return out;
}

/** Makes the fixtures the specs need (fast: well under a second). */
function buildFixtures() {
  fs.mkdirSync(fixturesDir, { recursive: true });
  const f = (n) => path.join(fixturesDir, n);
  // The boot program for the v86 test, assembled by the repository.
  run('nasm', ['-f', 'bin', '-o', f('boot.bin'), path.join(root, 'e2e/fixtures/boot.asm')]);
  // A raw base image for the http backing test: 4 MiB of pattern 7.
  fs.writeFileSync(f('base.raw'), pattern(7, 4 << 20));
  // qemu-img made images for the import test: a qcow2 base, and an overlay
  // with compressed clusters and a relative backing file name.
  for (const n of ['qbase.qcow2', 'qover.qcow2', 'qover.expected.raw']) fs.rmSync(f(n), { force: true });
  run('qemu-img', ['create', '-q', '-f', 'qcow2', f('qbase.qcow2'), '8M']);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 3M 512k', '-c', 'write -z 5M 64k', f('qbase.qcow2')]);
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'qbase.qcow2', '-F', 'qcow2', f('qover.qcow2')]);
  run('qemu-io', [
    '-f', 'qcow2',
    '-c', 'write -c -P 0x33 512k 256k',
    '-c', 'write -P 0x44 2M 64k',
    '-c', 'write -c -P 0x55 6M 128k',
    '-c', 'write -z 3M 64k',
    f('qover.qcow2'),
  ]);
  run('qemu-img', ['convert', '-O', 'raw', f('qover.qcow2'), f('qover.expected.raw')]);
  // The Linux guest (kernel, initramfs, ext4 root) from Debian packages, built once.
  execFileSync(process.execPath, [path.join(root, 'scripts/build-linux-guest.mjs')], { stdio: ['ignore', 'inherit', 'inherit'] });
}

/** A large file for the http bench, made on first request. */
function benchFile(name) {
  const m = /^bench-(\d+)m\.raw$/.exec(name);
  if (!m) return null;
  const p = path.join(fixturesDir, name);
  const want = Number(m[1]) << 20;
  if (!fs.existsSync(p) || fs.statSync(p).size !== want) {
    // The bench starts the server without the e2e fixtures: the folder may not exist yet.
    fs.mkdirSync(fixturesDir, { recursive: true });
    const fd = fs.openSync(p, 'w');
    const chunk = pattern(3, 1 << 20);
    for (let i = 0; i < Number(m[1]); i++) {
      chunk[0] = i & 0xff;
      fs.writeSync(fd, chunk);
    }
    fs.closeSync(fd);
  }
  return p;
}

function baseHeaders(extra = {}) {
  return {
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-store',
    ...extra,
  };
}

function sendFile(req, res, file, mode) {
  let st;
  try {
    st = fs.statSync(file);
    if (!st.isFile()) throw new Error('not a file');
  } catch {
    res.writeHead(404, baseHeaders({ 'Content-Type': 'text/plain' }));
    res.end('not found');
    return;
  }
  const type = MIME[path.extname(file)] ?? 'application/octet-stream';
  if (mode === 'gzip') {
    const body = zlib.gzipSync(fs.readFileSync(file));
    res.writeHead(200, baseHeaders({ 'Content-Type': type, 'Content-Encoding': 'gzip', 'Content-Length': body.length, 'Accept-Ranges': 'bytes' }));
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const range = mode === 'norange' ? undefined : req.headers.range;
  const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range) : null;
  if (range && !m) {
    res.writeHead(416, baseHeaders({ 'Content-Range': `bytes */${st.size}` }));
    res.end();
    return;
  }
  if (m) {
    let start = m[1] === '' ? st.size - Number(m[2]) : Number(m[1]);
    let end = m[1] === '' ? st.size - 1 : m[2] === '' ? st.size - 1 : Math.min(Number(m[2]), st.size - 1);
    if (start < 0) start = 0;
    if (start >= st.size || end < start) {
      res.writeHead(416, baseHeaders({ 'Content-Range': `bytes */${st.size}` }));
      res.end();
      return;
    }
    res.writeHead(206, baseHeaders({
      'Content-Type': type,
      'Content-Length': end - start + 1,
      'Content-Range': `bytes ${start}-${end}/${st.size}`,
      'Accept-Ranges': 'bytes',
    }));
    if (req.method === 'HEAD') return res.end();
    fs.createReadStream(file, { start, end, highWaterMark: 1 << 20 }).pipe(res);
    return;
  }
  res.writeHead(200, baseHeaders({ 'Content-Type': type, 'Content-Length': st.size, ...(mode === 'norange' ? {} : { 'Accept-Ranges': 'bytes' }) }));
  if (req.method === 'HEAD') return res.end();
  fs.createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
}

function safeJoin(dir, rel) {
  const p = path.normalize(path.join(dir, decodeURIComponent(rel)));
  return p.startsWith(dir) ? p : null;
}

export function startServer(listenPort = port) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const p = url.pathname;
    let m;
    if (p === '/health') {
      res.writeHead(200, baseHeaders({ 'Content-Type': 'text/plain' }));
      return res.end('ok');
    }
    if ((m = /^\/(fixtures|norange|gzip)\/(.+)$/.exec(p))) {
      const file = benchFile(m[2]) ?? safeJoin(fixturesDir, m[2]);
      return sendFile(req, res, file ?? '/nonexistent', m[1] === 'fixtures' ? 'range' : m[1]);
    }
    if ((m = /^\/linux\/(.+)$/.exec(p))) return sendFile(req, res, safeJoin(linuxDir, m[1]) ?? '/nonexistent', 'range');
    if ((m = /^\/seabios\/(.+)$/.exec(p))) return sendFile(req, res, safeJoin(seabiosDir, m[1]) ?? '/nonexistent', 'range');
    if ((m = /^\/bench\/(.*)$/.exec(p))) return sendFile(req, res, safeJoin(benchDir, m[1] === '' ? 'index.html' : m[1]) ?? '/nonexistent', 'range');
    let file = safeJoin(siteDir, p === '/' ? 'index.html' : p.slice(1));
    if (file && fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    return sendFile(req, res, file ?? '/nonexistent', 'range');
  });
  return new Promise((resolve) => server.listen(listenPort, '127.0.0.1', () => resolve(server)));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (!args.includes('--no-build-fixtures')) buildFixtures();
  await startServer(port);
  console.log(`serve-e2e: http://127.0.0.1:${port}/ (fixtures in ${fixturesDir})`);
}
