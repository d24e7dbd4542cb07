#!/usr/bin/env node
/**
 * Compiles every AssemblyScript module assembly/<module>.ts to src/wasm/bin/<module>.wasm.
 *
 *   node scripts/build-wasm.mjs            release builds (-O3, no asserts, runtime stub)
 *   node scripts/build-wasm.mjs --debug    also debug builds (src/wasm/bin/<module>.debug.wasm,
 *                                          asserts on, names, abort imported as env.abort)
 *   node scripts/build-wasm.mjs zero l2    only the named modules
 *
 * Release builds have no imports at all: `abort` is compiled out (`--use abort=`), so a
 * failed internal assertion traps, which the loader turns into a BlockError. Modules
 * report bad input through integer status codes, never by trapping.
 *
 * Uses only Node built-ins and the assemblyscript package's compiler API.
 */
import { readdir, mkdir, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import asc from 'assemblyscript/asc';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = path.join(root, 'assembly');
const outDir = path.join(root, 'src', 'wasm', 'bin');

/** Per-module options. Modules not listed use the defaults. */
const MODULE_OPTIONS = {
  // The all-zero check uses 128-bit SIMD; engines without it get the TypeScript path.
  zero: { simd: true },
  // Serpent runs four blocks side by side in 128-bit vectors; without SIMD the TypeScript cipher serves.
  serpent: { simd: true },
  // Twofish moves and XORs blocks in 128-bit vectors (its rounds are scalar table lookups).
  twofish: { simd: true },
  // Dirty bitmaps are created and released at run time: a real allocator (TLSF).
  bitmap: { runtime: 'minimal' },
};

const args = process.argv.slice(2);
const debug = args.includes('--debug');
const only = args.filter((a) => !a.startsWith('--'));

async function listModules() {
  const entries = await readdir(srcDir, { withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => e.name.slice(0, -3))
    .filter((n) => only.length === 0 || only.includes(n))
    .sort();
}

async function compile(name, variant) {
  const opts = MODULE_OPTIONS[name] ?? {};
  const out = path.join(outDir, variant === 'debug' ? `${name}.debug.wasm` : `${name}.wasm`);
  const argv = [
    path.relative(root, path.join(srcDir, `${name}.ts`)),
    '--outFile', path.relative(root, out),
    '--runtime', opts.runtime ?? 'stub',
    '--noColors',
  ];
  if (variant === 'debug') argv.push('--debug', '--optimizeLevel', '0');
  else argv.push('--optimizeLevel', '3', '--shrinkLevel', '0', '--noAssert', '--use', 'abort=', '--converge');
  if (opts.simd) argv.push('--enable', 'simd');
  let stderrText = '';
  const { error, stderr } = await asc.main(argv, {
    stdout: process.stdout,
    stderr: { write: (s) => { stderrText += String(s); return true; } },
  });
  void stderr;
  if (error) {
    process.stderr.write(stderrText);
    throw new Error(`build-wasm: ${name} (${variant}) failed: ${error.message}`);
  }
  if (stderrText.trim()) process.stderr.write(stderrText);
  const { size } = await stat(out);
  console.log(`build-wasm: ${path.relative(root, out)} ${size} bytes`);
}

async function main() {
  process.chdir(root);
  await mkdir(outDir, { recursive: true });
  const modules = await listModules();
  if (modules.length === 0) throw new Error(`build-wasm: no modules found in ${srcDir}`);
  for (const name of modules) {
    await compile(name, 'release');
    if (debug) await compile(name, 'debug');
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
