#!/usr/bin/env node
// Runs QEMU's shell iotests (tests/qemu-iotests of the QEMU source tree) with
// qcow2 (or luks: --fmt luks) over the file protocol, once with the real qemu-img / qemu-io and once
// with `diskworker img` / `diskworker io` standing in for them, and compares each
// run's output with the test's reference output the way QEMU's `check` does.
//
// QEMU's test files are not part of this project: get them yourself, e.g. from a
// QEMU 7.2.0 source tarball (the directory tests/qemu-iotests). This script never
// downloads anything.
//
//   node scripts/iotests.mjs --iotests /path/to/qemu/tests/qemu-iotests [options] 019 020 ...
//
// Options:
//   --iotests DIR      QEMU's tests/qemu-iotests directory (required)
//   --tool T           qemu | diskworker | both (default both)
//   --fmt F            qcow2 | luks: the image format, as check's -qcow2 / -luks (default qcow2)
//   --diskworker PATH  the built CLI, dist/cli/diskworker.js (default: this repo's)
//   --qemu-bin DIR     where qemu-img / qemu-io 7.2 live (default /usr/bin)
//   --scratch DIR      scratch space, emptied per test (default $TMPDIR/dw-iotests)
//   --timeout S        seconds before a test is killed (default 900)
//   --diff-lines N     diff lines shown per failing test (default 12)
//   --json FILE        also write the results as JSON
//
// A test's diskworker result only means something where the qemu run passes.
// Tests run one after another (a 2-core machine); a tmpfs scratch such as
// /dev/shm/dw-iotests keeps other processes filling the disk from causing ENOSPC.
// No qemu-system is used: tests that start a VM fail in both runs.
// Error lines of ours start with `diskworker img:` / `diskworker io:`; the wrappers
// print `qemu-img:` / `qemu-io:` there instead (a prefix at a line start only), so
// only real differences show up.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function usage(msg) {
  process.stderr.write(`iotests: ${msg}\nusage: node scripts/iotests.mjs --iotests DIR [--tool qemu|diskworker|both] ` +
    '[--fmt qcow2|luks] [--diskworker PATH] [--qemu-bin DIR] [--scratch DIR] [--timeout S] [--diff-lines N] [--json FILE] TEST...\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    iotests: undefined, tool: 'both', fmt: 'qcow2', diskworker: join(root, 'dist/cli/diskworker.js'), qemuBin: '/usr/bin',
    scratch: join(tmpdir(), 'dw-iotests'), timeout: 900, diffLines: 12, json: undefined, tests: [],
  };
  const valued = { '--iotests': 'iotests', '--tool': 'tool', '--fmt': 'fmt', '--diskworker': 'diskworker', '--qemu-bin': 'qemuBin',
    '--scratch': 'scratch', '--timeout': 'timeout', '--diff-lines': 'diffLines', '--json': 'json' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a in valued) {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      o[valued[a]] = v;
    } else if (a.startsWith('--')) usage(`unknown option '${a}'`);
    else o.tests.push(a);
  }
  if (!o.iotests) usage('--iotests is required');
  if (!['qemu', 'diskworker', 'both'].includes(o.tool)) usage(`--tool must be qemu, diskworker or both, not '${o.tool}'`);
  if (!['qcow2', 'luks'].includes(o.fmt)) usage(`--fmt must be qcow2 or luks, not '${o.fmt}'`);
  for (const k of ['timeout', 'diffLines']) {
    if (!/^[0-9]+$/.test(String(o[k]))) usage(`--${k} needs a non-negative integer, got '${o[k]}'`);
    o[k] = Number(o[k]);
  }
  if (o.tests.length === 0) usage('no tests given');
  o.iotests = resolve(o.iotests);
  o.diskworker = resolve(o.diskworker);
  o.scratch = resolve(o.scratch);
  if (!existsSync(join(o.iotests, 'common.rc'))) usage(`${o.iotests} has no common.rc: not QEMU's tests/qemu-iotests`);
  if (o.tool !== 'qemu' && !existsSync(o.diskworker)) usage(`${o.diskworker} not found (build it: npx tsc -p tsconfig.build.json)`);
  return o;
}

// The stand-in for qemu-img / qemu-io: runs the CLI's main() in-process with
// stderr/stdout lines' program prefix renamed, so output order is kept as is.
const SHIM = `import { pathToFileURL } from 'node:url';
const [cliPath, tool, ...args] = process.argv.slice(2);
const { main, processIo } = await import(pathToFileURL(cliPath).href);
const from = new RegExp('(^|\\\\n)diskworker (img|io): ', 'g');
const rename = (s) => s.replace(from, (_m, nl, t) => nl + 'qemu-' + t + ': ');
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => { if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); throw e; });
}
// The CLI's own process streams (stdout block-buffered off a terminal, as qemu-io's), renamed.
const io = processIo(rename);
main([tool, ...args], io).then((code) => { io.flush(); process.exitCode = code; },
  (e) => { io.flush(); process.stderr.write('diskworker: ' + (e instanceof Error ? e.message : String(e)) + '\\n'); process.exitCode = 1; });
`;

/** Writes bin/qemu-img and bin/qemu-io calling our CLI; returns the bin directory. */
function makeWrappers(o) {
  const bin = join(o.scratch, 'diskworker-bin');
  mkdirSync(bin, { recursive: true });
  const shim = join(bin, 'shim.mjs');
  writeFileSync(shim, SHIM);
  for (const tool of ['img', 'io']) {
    const p = join(bin, `qemu-${tool}`);
    writeFileSync(p, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(shim)} ` +
      `${JSON.stringify(o.diskworker)} ${tool} "$@"\n`);
    chmodSync(p, 0o755);
  }
  return bin;
}

/**
 * No qemu-system is needed, but common.rc's _require_drivers asks it for
 * `-drive format=help`: this stub answers with the real qemu-img's format list
 * (whether a test applies does not depend on the tool under test) and fails on
 * anything else, so tests that start a VM fail in both runs.
 */
function makeSystemStub(o) {
  const bin = join(o.scratch, 'system-stub');
  mkdirSync(bin, { recursive: true });
  const p = join(bin, 'qemu-system-x86_64');
  writeFileSync(p, `#!/bin/sh\ncase " $* " in *" format=help "*)\n` +
    `  ${JSON.stringify(join(o.qemuBin, 'qemu-img'))} --help | grep '^Supported formats:'; exit 0;;\nesac\n` +
    `echo "qemu-system-x86_64: not available (iotests.mjs stub)" >&2; exit 1\n`);
  chmodSync(p, 0o755);
  return p;
}

/**
 * The environment QEMU's check (testenv.py) gives a test for -qcow2 -file or
 * -luks -file (luks: image options as --image-opts with a key secret, and
 * iter-time=10 so that key slots are quick to make).
 */
function testEnv(o, bin, testDir, sockDir) {
  const env = { ...process.env };
  for (const k of ['IMGOPTS', 'IMGKEYSECRET', 'QEMU_IMG_OPTIONS', 'QEMU_NBD_OPTIONS', 'GDB_OPTIONS', 'VALGRIND_QEMU', 'PRINT_QEMU']) delete env[k];
  const luks = o.fmt === 'luks';
  return Object.assign(env, {
    TEST_DIR: testDir, SOCK_DIR: sockDir, SAMPLE_IMG_DIR: join(o.iotests, 'sample_images'),
    PYTHON: 'python3', PYTHONPATH: join(o.iotests, '..', '..', 'python'),
    QEMU_PROG: o.systemStub,
    QEMU_IMG_PROG: join(bin, 'qemu-img'), QEMU_IO_PROG: join(bin, 'qemu-io'),
    QEMU_NBD_PROG: join(o.qemuBin, 'qemu-nbd'), QSD_PROG: join(o.qemuBin, 'qemu-storage-daemon'),
    QEMU_OPTIONS: '-nodefaults -display none -accel qtest',
    QEMU_IO_OPTIONS: `--cache writeback --aio threads${luks ? '' : ` -f ${o.fmt}`}`,
    QEMU_IO_OPTIONS_NO_FMT: '--cache writeback --aio threads',
    IMGFMT: o.fmt, IMGPROTO: 'file', AIOMODE: 'threads', CACHEMODE: 'writeback', CACHEMODE_IS_DEFAULT: 'true',
    IMGFMT_GENERIC: 'true', IMGOPTSSYNTAX: luks ? 'true' : 'false',
    ...(luks ? { IMGKEYSECRET: '123456', IMGOPTS: 'iter-time=10' } : {}), QEMU_DEFAULT_MACHINE: 'pc', MALLOC_PERTURB_: '0',
    LANG: 'C', LC_ALL: 'C',
  });
}

/** check's find_reference() for the format with the default cache mode and machine 'pc'. */
function reference(o, test) {
  for (const name of [`${test}.out.${o.fmt}`, `${test}.pc.out`, `${test}.out`]) {
    const p = join(o.iotests, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function runBash(script, cwd, env, outFile, timeoutS) {
  return new Promise((res) => {
    const child = spawn('bash', [script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const chunks = [];
    child.stdout.on('data', (d) => chunks.push(d));
    child.stderr.on('data', (d) => chunks.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }, timeoutS * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      writeFileSync(outFile, Buffer.concat(chunks));
      res({ code, signal, timedOut });
    });
  });
}

/** Unified diff of two files with line ends' spaces ignored (check's file_diff). */
function diffFiles(expFile, gotFile, workDir) {
  const strip = (f) => readFileSync(f, 'utf8').split('\n').map((l) => l.trimEnd()).join('\n');
  const a = join(workDir, 'expected'), b = join(workDir, 'got');
  writeFileSync(a, strip(expFile));
  writeFileSync(b, strip(gotFile));
  return new Promise((res) => {
    const child = spawn('diff', ['-u', a, b], { stdio: ['ignore', 'pipe', 'inherit'] });
    const out = [];
    child.stdout.on('data', (d) => out.push(d));
    child.on('close', () => res(Buffer.concat(out).toString('utf8').split('\n').slice(2).filter((l) => l !== '')));
  });
}

async function runOne(o, test, tool, bin) {
  const ref = reference(o, test);
  const script = join(o.iotests, test);
  if (!existsSync(script)) return { status: 'missing', detail: `no test file ${script}` };
  if (!ref) return { status: 'not run', detail: 'no reference output' };
  const work = join(o.scratch, tool, test);
  rmSync(work, { recursive: true, force: true });
  const testDir = join(work, 'scratch'), sockDir = join(work, 'sock');
  mkdirSync(testDir, { recursive: true });
  mkdirSync(sockDir, { recursive: true });
  const outFile = join(work, `${test}.out.bad`);
  const t0 = Date.now();
  const r = await runBash(script, o.iotests, testEnv(o, bin, testDir, sockDir), outFile, o.timeout);
  const seconds = Math.round((Date.now() - t0) / 100) / 10;
  const notrun = join(testDir, `${test}.notrun`);
  if (r.timedOut) return { status: 'fail', detail: `timed out after ${o.timeout} s`, seconds, diff: await diffFiles(ref, outFile, work) };
  if (r.code !== 0) return { status: 'fail', detail: `exit status ${r.code ?? r.signal}`, seconds, diff: await diffFiles(ref, outFile, work) };
  if (existsSync(notrun)) return { status: 'not run', detail: readFileSync(notrun, 'utf8').trim(), seconds };
  const diff = await diffFiles(ref, outFile, work);
  return diff.length ? { status: 'fail', detail: `output mismatch (${outFile})`, seconds, diff } : { status: 'pass', seconds };
}

async function mainRun() {
  const o = parseArgs(process.argv.slice(2));
  mkdirSync(o.scratch, { recursive: true });
  o.systemStub = makeSystemStub(o);
  const tools = o.tool === 'both' ? ['qemu', 'diskworker'] : [o.tool];
  const bins = { qemu: o.qemuBin, diskworker: tools.includes('diskworker') ? makeWrappers(o) : undefined };
  const results = [];
  for (const test of o.tests) {
    const row = { test };
    for (const tool of tools) {
      row[tool] = await runOne(o, test, tool, bins[tool]);
      const r = row[tool];
      process.stdout.write(`${test} ${tool.padEnd(10)} ${r.status}${r.seconds !== undefined ? ` (${r.seconds} s)` : ''}` +
        `${r.status === 'pass' ? '' : `: ${r.detail}`}\n`);
      for (const l of (r.diff ?? []).slice(0, o.diffLines)) process.stdout.write(`    ${l}\n`);
    }
    results.push(row);
  }
  process.stdout.write(`\n| test | ${tools.join(' | ')} |\n|---|${tools.map(() => '---').join('|')}|\n`);
  for (const row of results) {
    // A test that QEMU runs but ours makes skip itself (e.g. _require_working_luks) is a difference too.
    const cell = (t) => (t === 'diskworker' && row.qemu?.status === 'pass' && row[t].status === 'not run'
      ? `not run only here (${row[t].detail})` : row[t].status);
    process.stdout.write(`| ${row.test} | ${tools.map(cell).join(' | ')} |\n`);
  }
  if (o.json) writeFileSync(o.json, JSON.stringify(results, null, 2) + '\n');
}

await mainRun();
