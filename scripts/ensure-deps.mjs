#!/usr/bin/env node
// Installs what is missing (npm packages, Debian packages), builds, and then
// serves the demo (--serve), runs every test (--test), the long fuzz runs (--fuzz)
// or the benchmarks (--bench).
// Node built-ins only: this runs before `npm ci`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const mode = process.argv[2] ?? '';
const extraArgs = process.argv.slice(3);

/** Debian packages the tests and the demo need, with a file that proves each is there. */
const DEBIAN = [
  { pkg: 'chromium', probe: '/usr/bin/chromium' },
  { pkg: 'qemu-utils', probe: '/usr/bin/qemu-img' },
  { pkg: 'nasm', probe: '/usr/bin/nasm' },
  { pkg: 'seabios', probe: '/usr/share/seabios/bios-256k.bin' },
  { pkg: 'zstd', probe: '/usr/bin/zstd' },
  // qemu-storage-daemon 7.2: the reference for the QMP control plane and NBD exports.
  { pkg: 'qemu-system-common', probe: '/usr/bin/qemu-storage-daemon' },
  // Linux's NBD client: its handshake against our NBD exports (the attach needs the kernel's nbd module).
  { pkg: 'nbd-client', probe: '/usr/sbin/nbd-client' },
  // mke2fs builds the Linux guest's ext4 root; e2fsck / debugfs check what the guest wrote.
  { pkg: 'e2fsprogs', probe: '/usr/sbin/mke2fs' },
  // strace counts the flushes of each cache mode against qemu-io's (test/cli/cache-flushes.test.ts).
  { pkg: 'strace', probe: '/usr/bin/strace' },
];

function log(msg) {
  process.stdout.write(`[diskworker] ${msg}\n`);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env, ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function mustRun(cmd, args, opts) {
  const status = run(cmd, args, opts);
  if (status !== 0) {
    log(`'${cmd} ${args.join(' ')}' failed with exit code ${status}`);
    process.exit(status);
  }
}

/**
 * Installs the npm packages unless node_modules was installed from this very
 * package-lock.json: the lock's hash is kept in node_modules after an install
 * (a checkout's file times say nothing; a fresh git worktree whose node_modules
 * links to another checkout's would otherwise reinstall over it).
 */
function ensureNpm() {
  const lock = join(root, 'package-lock.json');
  const hashFile = join(root, 'node_modules', '.diskworker-lock-sha256');
  const want = createHash('sha256').update(readFileSync(lock)).digest('hex');
  if (existsSync(hashFile) && readFileSync(hashFile, 'utf8').trim() === want) return;
  const stamp = join(root, 'node_modules', '.package-lock.json');
  if (!(existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(lock).mtimeMs)) {
    log('installing npm packages (npm ci)');
    mustRun('npm', ['ci', '--no-audit', '--no-fund']);
  }
  writeFileSync(hashFile, `${want}\n`);
}

function ensureDebian(needed) {
  const missing = DEBIAN.filter((d) => needed.includes(d.pkg) && !existsSync(d.probe)).map((d) => d.pkg);
  if (missing.length === 0) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    log(`missing Debian packages: ${missing.join(' ')}. Install them with:`);
    log(`  sudo apt-get update && sudo apt-get install -y ${missing.join(' ')}`);
    process.exit(1);
  }
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // Wait for another apt / dpkg run (unattended upgrades on a new machine) instead of failing at once.
  const lock = ['-o', 'DPkg::Lock::Timeout=600'];
  mustRun('apt-get', [...lock, 'update'], { env });
  mustRun('apt-get', [...lock, 'install', '-y', '--no-install-recommends', ...missing], { env });
}

function build() {
  log('building (AssemblyScript → .wasm, TypeScript → dist/)');
  mustRun('npm', ['run', '--silent', 'build']);
  // The v86 Linux guest (build/linux-guest) from Debian i386 packages: made once,
  // skipped while its outputs exist. Adds dpkg's i386 architecture when missing.
  mustRun('node', ['scripts/build-linux-guest.mjs']);
}

/**
 * One line per failed Vitest test (file, name, first line of its error) from a JSON
 * report; a file that failed to load counts as one failure.
 */
function vitestFailures(report) {
  if (!existsSync(report)) return ['vitest wrote no report (it did not finish)'];
  const lines = [];
  const data = JSON.parse(readFileSync(report, 'utf8'));
  for (const file of data.testResults ?? []) {
    const name = file.name.startsWith(root) ? file.name.slice(root.length + 1) : file.name;
    const failed = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
    for (const t of failed) {
      const first = String(t.failureMessages?.[0] ?? '').split('\n')[0].slice(0, 300);
      lines.push(`FAILED ${name} > ${t.fullName}: ${first}`);
    }
    if (failed.length === 0 && file.status === 'failed') {
      lines.push(`FAILED ${name}: ${String(file.message ?? '').split('\n')[0].slice(0, 300)}`);
    }
  }
  return lines.length > 0 ? lines : ['vitest failed, but its report names no failed test'];
}

ensureNpm();
switch (mode) {
  case '--test': {
    ensureDebian(DEBIAN.map((d) => d.pkg));
    build();
    log('unit and integration tests (Vitest)');
    // A JSON report beside the console one: its failures are repeated at the very end,
    // where a CI log that keeps only its tail still shows them.
    const reportDir = mkdtempSync(join(tmpdir(), 'dw-vitest-'));
    const report = join(reportDir, 'report.json');
    const unit = run('npx', [
      'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...extraArgs,
    ]);
    log('browser tests (Playwright, Debian Chromium)');
    const e2e = run('npx', ['playwright', 'test']);
    if (unit !== 0) for (const line of vitestFailures(report)) log(line);
    rmSync(reportDir, { recursive: true, force: true });
    log(`vitest ${unit === 0 ? 'passed' : 'FAILED'}, playwright ${e2e === 0 ? 'passed' : 'FAILED'}`);
    process.exit(unit !== 0 ? unit : e2e);
    break;
  }
  case '--fuzz': {
    ensureDebian(DEBIAN.map((d) => d.pkg));
    build();
    process.exit(run('node', ['scripts/fuzz.mjs', ...extraArgs]));
    break;
  }
  case '--bench': {
    ensureDebian(DEBIAN.map((d) => d.pkg));
    build();
    process.exit(run('npx', ['tsx', 'bench/run.ts', ...extraArgs]));
    break;
  }
  case '--serve': {
    ensureDebian(['nasm', 'seabios', 'e2fsprogs']);
    build();
    mustRun('node', ['scripts/build-demo-assets.mjs']);
    log('serving the demo on http://127.0.0.1:5173/');
    process.exit(run('npx', ['vite', '--config', 'vite.config.ts', '--host', '127.0.0.1', '--port', '5173', '--strictPort']));
    break;
  }
  default:
    ensureDebian(DEBIAN.map((d) => d.pkg));
    build();
}
