#!/usr/bin/env node
/**
 * Bundles the compiled CLI (dist/src/cli/main.js and the ~130 modules it reaches) into one
 * file, dist/cli/diskworker.js, the package's `bin`. Node resolves, reads and links each ES
 * module separately, about 1 ms apiece on this machine, which doubled the start-up of every
 * `diskworker img` / `io` call; one file removes that. The WASM modules go next to the
 * bundle in dist/cli/bin/, where the loader looks for them (`./bin/<name>.wasm` relative to
 * the module that holds it). Runs after tsc and copy-wasm.
 */
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { rolldown } from 'rolldown';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'cli');
const bundle = await rolldown({
  input: path.join(root, 'dist', 'src', 'cli', 'main.js'),
  platform: 'node',
  external: [/^node:/],
  logLevel: 'warn',
});
await bundle.write({ dir: out, format: 'esm', entryFileNames: 'diskworker.js', codeSplitting: false });
await bundle.close();

const wasmFrom = path.join(root, 'dist', 'src', 'wasm', 'bin');
const wasmTo = path.join(out, 'bin');
await mkdir(wasmTo, { recursive: true });
const names = (await readdir(wasmFrom)).filter((n) => n.endsWith('.wasm'));
for (const n of names) await copyFile(path.join(wasmFrom, n), path.join(wasmTo, n));
console.log(`bundle-cli: dist/cli/diskworker.js (+ ${names.length} .wasm in dist/cli/bin)`);
