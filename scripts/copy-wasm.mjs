#!/usr/bin/env node
/**
 * Copies the compiled WASM modules src/wasm/bin/*.wasm to dist/src/wasm/bin/, next to the
 * compiled loader (which finds them with `new URL('./bin/<name>.wasm', import.meta.url)`).
 * Runs after `tsc -p tsconfig.build.json`. Uses Node built-ins only.
 */
import { readdir, mkdir, copyFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const from = path.join(root, 'src', 'wasm', 'bin');
const to = path.join(root, 'dist', 'src', 'wasm', 'bin');

let names;
try {
  names = (await readdir(from)).filter((n) => n.endsWith('.wasm'));
} catch {
  names = [];
}
if (names.length === 0) {
  console.error(`copy-wasm: no .wasm files in ${path.relative(root, from)}; run "npm run build:wasm" first`);
  process.exit(1);
}
await mkdir(to, { recursive: true });
for (const n of names) await copyFile(path.join(from, n), path.join(to, n));
console.log(`copy-wasm: ${names.length} file(s) -> ${path.relative(root, to)}`);
