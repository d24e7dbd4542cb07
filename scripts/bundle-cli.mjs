#!/usr/bin/env node
/**
 * Bundles the compiled CLI (dist/src/cli/main.js and the ~130 modules it reaches) into one
 * script, dist/cli/diskworker.<hash>.cjs, and writes its launcher, dist/cli/diskworker.js
 * (the package's `bin`). Runs after tsc and copy-wasm.
 *
 * Why one file: Node resolves, reads and links each ES module separately, about 1 ms apiece
 * on this machine, which doubled the start-up of every `diskworker img` / `io` call.
 *
 * Why a launcher: Node 20 has no compile cache for modules, and compiling the 1.1 MB bundle is
 * most of what a CLI call costs above Node's own start-up. The launcher compiles the bundle as
 * a classic script with V8's code cache (vm.Script cachedData): the first run of a command
 * (`img info`, `img snapshot`, `io`, ...) writes that command's cache next to the bundle (when it
 * can), later runs of it skip parsing and compiling what it uses. One cache per command, because
 * a cache holds the functions its first run compiled: with one shared cache, the first command
 * decided what every other command had to compile again on each run (a snapshot create spent
 * 23 ms of CPU doing so; its own cache takes that to 0). The cache's name carries a hash of the
 * bundle's bytes and the Node version, because V8 checks only the length of the source before
 * trusting a cache.
 *
 * The bundle is CommonJS so that it can run as a script: the few dynamic imports of Node
 * built-ins become require calls; anything else that needs an ES module fails the build.
 * The WASM modules go next to it in dist/cli/bin/, where the loader looks for them
 * (`./bin/<name>.wasm` relative to the bundle).
 */
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { rolldown } from 'rolldown';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'cli');
/** Rolldown's output, before the launcher's rewrites; the final bundle is named by its hash. */
const rawName = 'diskworker.cjs';
const bundle = await rolldown({
  input: path.join(root, 'dist', 'src', 'cli', 'main.js'),
  platform: 'node',
  external: [/^node:/],
  logLevel: 'warn',
});
// Written aside and renamed into place: CLI processes started meanwhile (a test run) see the old
// bundle or the new one, never a half-made one.
const staging = path.join(out, '.staging');
await rm(staging, { recursive: true, force: true });
// No comments: smaller, and an all-ASCII source is a one-byte string for V8, which scans it faster.
await bundle.write({ dir: staging, format: 'cjs', entryFileNames: rawName, codeSplitting: false, comments: false });
await bundle.close();

const replace = async (file, text, mode) => {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  if (mode) await chmod(tmp, mode);
  await rename(tmp, file);
};
let source = await readFile(path.join(staging, rawName), 'utf8');
await rm(staging, { recursive: true, force: true });
// main.ts's shebang line cannot start a function body.
source = source.replace(/^#!.*\n/, '');
source = source.replace(/\bimport\((["'`])(node:[\w/]+)\1\)/g, (_m, q, name) => `Promise.resolve(require(${q}${name}${q}))`);
const left = source.match(/\bimport\s*\(|\bimport\.meta\b/);
if (left) throw new Error(`bundle-cli: the bundle still needs ES modules near offset ${left.index}: ${source.slice(left.index, left.index + 60)}`);
if (/[^\x00-\x7f]/.test(source)) throw new Error('bundle-cli: the bundle is not all ASCII (a two-byte source compiles slower)');
const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
// Named by its hash: a launcher always loads the bundle it was written for, even while a
// rebuild replaces both.
const bundleName = `diskworker.${hash}.cjs`;
await replace(path.join(out, bundleName), source);

const launcher = `#!/usr/bin/env node
// The diskworker command: runs ./${bundleName} through V8's code cache (see scripts/bundle-cli.mjs, which wrote this file).
import { readFileSync, realpathSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import vm from 'node:vm';
import v8 from 'node:v8';

const dir = dirname(fileURLToPath(import.meta.url));
const file = join(dir, ${JSON.stringify(bundleName)});
let isEntry = false;
try {
  isEntry = !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
} catch {
  // not started from a file
}
const word = (w) => (w !== undefined && /^[a-z][a-z_-]{0,15}$/.test(w) ? w : undefined);
const command = isEntry ? word(process.argv[2]) : 'module';
// A CLI command is short: with V8's default budget, TurboFan optimised code of every command
// that then ran too briefly to repay it (4 MB of node's own code paged in, and the compiler's
// CPU time; its first compile alone adds 4-5 MB to the peak). Sixteen times the budget leaves
// per-cluster functions of a 1 GiB copy unoptimised (62 vs 66 MB for raw to qcow2) and still
// optimises loops that run for long (a cipher: a 32 MiB Twofish read took as long).
// The servers (daemon, nbd) are the exception: they run for long, and their per-request code
// left to the baseline compiler cost an NBD export a fifth more CPU per byte served.
// The young generation keeps its first size: letting it double added 5 MB to a convert's peak
// memory. Only when run as the command (an importing process keeps its own settings); set
// before the bundle compiles, and always the same for a command, as V8 checks a code cache's flags.
if (isEntry) {
  if (command !== 'daemon' && command !== 'nbd') v8.setFlagsFromString('--interrupt-budget=1081344');
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}
// One cache per command (\`img snapshot\`, \`io\`, ...): each holds what its command compiled.
const sub = command === 'img' ? word(process.argv[3]) : undefined;
// img snapshot's four actions (-c, -d, -a, -l) run different code: a cache each.
const action = sub === 'snapshot' ? process.argv.slice(4).find((a) => /^-[cdal]$/.test(a))?.slice(1) : undefined;
const key = [command ?? 'other', ...(sub !== undefined ? [sub] : []), ...(action !== undefined ? [action] : [])].join('-');
const cacheFile = join(dir, \`diskworker.${hash}.\${key}.\${process.version}.\${process.arch}.v8cache\`);
let cachedData;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // first run, or not readable: compile from source
}
const source = readFileSync(file, 'latin1');
const script = new vm.Script('(function (exports, require, module, __filename, __dirname) {"use strict";' + source + '\\n})', { filename: file, cachedData });
if (cachedData === undefined || script.cachedDataRejected) {
  // At exit the cache also holds the functions this run compiled lazily.
  process.once('exit', () => {
    const tmp = \`\${cacheFile}.\${process.pid}.tmp\`;
    try {
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cacheFile);
    } catch {
      try {
        unlinkSync(tmp);
      } catch {
        // nothing was written
      }
    }
  });
}
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(file), module, file, dir);
/** The CLI in-process (see src/cli/main.ts): what the iotests shim imports. */
export const { main, processIo, runAsProcess } = module.exports;
if (isEntry) runAsProcess();
`;
await replace(path.join(out, 'diskworker.js'), launcher, 0o755);
// Bundles and caches of earlier builds are never loaded again.
for (const n of await readdir(out)) {
  if ((n.endsWith('.v8cache') || n.endsWith('.cjs')) && !n.startsWith(`diskworker.${hash}.`)) await rm(path.join(out, n), { force: true });
}

const wasmFrom = path.join(root, 'dist', 'src', 'wasm', 'bin');
const wasmTo = path.join(out, 'bin');
await mkdir(wasmTo, { recursive: true });
const names = (await readdir(wasmFrom)).filter((n) => n.endsWith('.wasm'));
for (const n of names) await copyFile(path.join(wasmFrom, n), path.join(wasmTo, n));
console.log(`bundle-cli: dist/cli/diskworker.js + ${bundleName} (+ ${names.length} .wasm in dist/cli/bin)`);
