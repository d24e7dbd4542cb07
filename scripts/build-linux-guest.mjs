#!/usr/bin/env node
/**
 * Builds a small Linux guest for v86 from Debian i386 packages only (nothing
 * else is downloaded), into build/linux-guest/ (git-ignored):
 *
 *   vmlinuz          Debian's linux-image-*-686 kernel (bzImage, non-PAE: v86 has no PAE)
 *   initramfs.gz     gzip'd newc cpio: busybox-static, the modules that reach an
 *                    IDE disk and ext4, and an /init that mounts /dev/sda on /mnt
 *                    and runs a shell on the serial console (ttyS0)
 *   root.raw         ext4 (mke2fs -t ext4 -d) with busybox inside
 *   root.qcow2       the same, converted by DiskWorker's own `img convert`
 *   manifest.json    kernel version, package versions, cmdline, sizes
 *
 * The packages are fetched with `apt-get download` into build/linux-guest/debs
 * and unpacked with `dpkg-deb -x`: nothing is installed on the host. The i386
 * architecture is added to dpkg when it is missing (needs root).
 *
 * Usage: node scripts/build-linux-guest.mjs [--force]
 * Skips all work when every output exists (unless --force).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { LINUX_CMDLINE } from '../e2e/harness/linux-cmdline.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const guestDir = path.join(root, 'build/linux-guest');
const debDir = path.join(guestDir, 'debs');
const OUTPUTS = ['vmlinuz', 'initramfs.gz', 'root.raw', 'root.qcow2', 'manifest.json'];
/** The kernel command line the guest is booted with (see e2e/linux-guest.spec.ts). */
export const CMDLINE = LINUX_CMDLINE;
/** Root image size: room for a 64 MiB dd in the guest on top of what the tests write. */
const ROOT_MIB = 128;

/**
 * The modules the guest needs, loaded in this order after their dependencies:
 * the PIIX IDE controller v86 emulates (ata_piix, ata_generic as fallback),
 * the SCSI disk layer libata sits on, ext4 and its checksum; the ATAPI
 * CD-ROM (sr_mod, cdrom) and ISO 9660 for e2e/cdrom-linux.spec.ts.
 */
const WANTED = ['crc32c_generic', 'crc16', 'mbcache', 'jbd2', 'ext4', 'scsi_mod', 'scsi_common', 'libata', 'ata_piix', 'ata_generic', 'sd_mod', 'cdrom', 'sr_mod', 'isofs'];

function log(msg) {
  process.stdout.write(`[linux-guest] ${msg}\n`);
}

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...opts });
}

const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
// Wait for another apt / dpkg run instead of failing at once (as ensure-deps does).
const aptLock = ['-o', 'DPkg::Lock::Timeout=600'];

/** Adds dpkg's i386 architecture and refreshes the lists when it is missing. */
function ensureI386() {
  const foreign = run('dpkg', ['--print-foreign-architectures']).split('\n');
  if (foreign.includes('i386') || run('dpkg', ['--print-architecture']).trim() === 'i386') return;
  log('adding the i386 architecture (dpkg --add-architecture i386; apt-get update)');
  run('dpkg', ['--add-architecture', 'i386']);
  run('apt-get', [...aptLock, 'update'], { env: aptEnv, stdio: ['ignore', 'inherit', 'inherit'] });
}

/** The versioned kernel package the linux-image-686 meta-package points at. */
function kernelPackage() {
  const deps = run('apt-cache', ['depends', 'linux-image-686:i386']);
  const m = /Depends: (linux-image-[0-9][^\s:]*-686)(?::i386)?/.exec(deps);
  if (!m) throw new Error(`linux-image-686:i386 names no versioned kernel package:\n${deps}`);
  return m[1];
}

/** Downloads (never installs) a package into debDir and unpacks it; returns its version. */
function fetchAndUnpack(pkg, into) {
  fs.mkdirSync(debDir, { recursive: true });
  // apt's _apt user must be able to write there, or apt warns and downloads as root.
  fs.chmodSync(debDir, 0o777);
  const version = run('apt-cache', ['policy', pkg]).match(/Candidate: (\S+)/)?.[1];
  if (!version || version === '(none)') throw new Error(`Debian package ${pkg} has no candidate version (apt-get update?)`);
  const name = pkg.replace(/:.*/, '');
  const fileVersion = version.replace(/^\d+:/, '');
  let deb = fs.readdirSync(debDir).find((f) => f.startsWith(`${name}_`) && f.includes(fileVersion.replace(/:/g, '%3a')));
  if (!deb) {
    log(`apt-get download ${pkg} (${version})`);
    run('apt-get', [...aptLock, 'download', `${pkg}=${version}`], { cwd: debDir, env: aptEnv, stdio: ['ignore', 'inherit', 'inherit'] });
    deb = fs.readdirSync(debDir).find((f) => f.startsWith(`${name}_`) && f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${debDir}`);
  }
  fs.rmSync(into, { recursive: true, force: true });
  fs.mkdirSync(into, { recursive: true });
  run('dpkg-deb', ['-x', path.join(debDir, deb), into]);
  return version;
}

/** A module's `depends=` field from its .modinfo strings (what `modinfo -F depends` prints). */
export function moduleDepends(ko) {
  const bytes = fs.readFileSync(ko);
  const at = bytes.indexOf('\0depends=');
  if (at < 0) return [];
  const end = bytes.indexOf(0, at + 1);
  const list = bytes.toString('latin1', at + 9, end);
  return list === '' ? [] : list.split(',');
}

const SIG_MAGIC = Buffer.from('~Module signature appended~\n');

/**
 * A module without its appended signature. Debian signs its modules but does
 * not enforce signatures; checking one costs a hash of the whole module and
 * an RSA verification, seconds in an emulator. (The kernel notes the unsigned
 * module as a taint and loads it.)
 */
export function stripSignature(ko) {
  if (ko.length < SIG_MAGIC.length + 12 || !ko.subarray(ko.length - SIG_MAGIC.length).equals(SIG_MAGIC)) return ko;
  // struct module_signature (12 bytes) ends with the signature's length, big-endian.
  const infoEnd = ko.length - SIG_MAGIC.length;
  const sigLen = ko.readUInt32BE(infoEnd - 4);
  return ko.subarray(0, infoEnd - 12 - sigLen);
}

/** Finds every module file under the kernel's module tree, by module name. */
function indexModules(modRoot) {
  const byName = new Map();
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ko')) byName.set(e.name.slice(0, -3).replace(/-/g, '_'), p);
    }
  };
  walk(modRoot);
  return byName;
}

/** The wanted modules and everything they depend on, each after its dependencies. */
function moduleClosure(byName) {
  const order = [];
  const seen = new Set();
  const visit = (name, from) => {
    const key = name.replace(/-/g, '_');
    if (seen.has(key)) return;
    seen.add(key);
    const ko = byName.get(key);
    if (!ko) throw new Error(`kernel module ${name} (needed by ${from}) is not in the kernel package`);
    for (const dep of moduleDepends(ko)) visit(dep, key);
    order.push(key);
  };
  for (const m of WANTED) visit(m, 'the guest');
  return order;
}

/** A newc ("070701") cpio archive of the given entries, with its trailer. */
export function cpioNewc(entries) {
  const parts = [];
  const pad4 = (n) => (4 - (n % 4)) % 4;
  let ino = 1;
  const push = (name, mode, data = Buffer.alloc(0), rdev = [0, 0]) => {
    const nameBuf = Buffer.from(`${name}\0`, 'utf8');
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0];
    const header = `070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`;
    parts.push(Buffer.from(header, 'ascii'), nameBuf, Buffer.alloc(pad4(110 + nameBuf.length)), data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) push(e.name, e.mode, e.data, e.rdev);
  push('TRAILER!!!', 0);
  return Buffer.concat(parts);
}

/** The initramfs's /init: modules, /dev/sda on /mnt, a shell on the serial console. */
function initScript(modules) {
  return `#!/bin/busybox sh
# DiskWorker's Linux guest (scripts/build-linux-guest.mjs).
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${modules.join(' ')}; do
  insmod /lib/modules/$m.ko || echo "init: insmod $m failed"
done
# The disk appears when the SCSI scan, asynchronous, is done.
i=0
while [ ! -b /dev/sda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
if mount -t ext4 /dev/sda /mnt; then echo "init: /dev/sda mounted on /mnt"; else echo "init: mounting /dev/sda failed"; fi
echo "LINUX-GUEST-READY $(uname -r)"
export PS1='guest:\\w# '
# cttyhack gives the shell the serial line as its controlling terminal (job control, ^C).
# The shell starts in /mnt from a subshell: init itself stays in /, so /mnt can be unmounted.
while true; do (cd /mnt && exec setsid cttyhack sh); done
`;
}

function buildInitramfs(bbDir, kDir, kver) {
  const modRoot = path.join(kDir, 'lib/modules', kver);
  const byName = indexModules(modRoot);
  const modules = moduleClosure(byName);
  log(`modules: ${modules.join(' ')}`);
  const dir = (name) => ({ name, mode: 0o040755 });
  const entries = [
    dir('bin'), dir('sbin'), dir('usr'), dir('usr/bin'), dir('usr/sbin'), dir('dev'), dir('proc'), dir('sys'),
    dir('mnt'), dir('tmp'), dir('root'), dir('etc'), dir('lib'), dir('lib/modules'),
    // The kernel opens /dev/console before /init runs (devtmpfs is not mounted yet).
    { name: 'dev/console', mode: 0o020600, rdev: [5, 1] },
    { name: 'bin/busybox', mode: 0o100755, data: fs.readFileSync(path.join(bbDir, 'bin/busybox')) },
    { name: 'bin/sh', mode: 0o120777, data: Buffer.from('busybox') },
    { name: 'init', mode: 0o100755, data: Buffer.from(initScript(modules)) },
  ];
  for (const m of modules) entries.push({ name: `lib/modules/${m}.ko`, mode: 0o100644, data: stripSignature(fs.readFileSync(byName.get(m))) });
  const cpio = cpioNewc(entries);
  return { gz: zlib.gzipSync(cpio, { level: 9 }), cpioBytes: cpio.length, modules };
}

/** The root file system: busybox and a few files, as ext4 in a raw image, then qcow2. */
function buildRoot(bbDir, kver) {
  const tree = path.join(guestDir, 'rootfs');
  fs.rmSync(tree, { recursive: true, force: true });
  for (const d of ['bin', 'etc', 'home', 'tmp', 'data']) fs.mkdirSync(path.join(tree, d), { recursive: true });
  fs.copyFileSync(path.join(bbDir, 'bin/busybox'), path.join(tree, 'bin/busybox'));
  fs.chmodSync(path.join(tree, 'bin/busybox'), 0o755);
  fs.writeFileSync(path.join(tree, 'etc/hostname'), 'diskworker\n');
  fs.writeFileSync(path.join(tree, 'etc/motd'), `DiskWorker Linux guest root (kernel ${kver}); files written here stay in the browser.\n`);
  const raw = path.join(guestDir, 'root.raw');
  fs.rmSync(raw, { force: true });
  // Fixed UUID and hash seed, and no lazy init: the same inputs give the same image.
  run('mke2fs', [
    '-q', '-F', '-t', 'ext4', '-L', 'dwroot', '-U', 'd15c0000-0000-4000-8000-000000000086',
    '-E', 'hash_seed=d15c0000-0000-4000-8000-000000000086,lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0',
    '-d', tree, raw, `${ROOT_MIB}M`,
  ], { env: { ...process.env, E2FSPROGS_FAKE_TIME: '1767225600' } });
  run('e2fsck', ['-fn', raw]);
  const qcow2 = path.join(guestDir, 'root.qcow2');
  fs.rmSync(qcow2, { force: true });
  const cli = path.join(root, 'dist/cli/diskworker.js');
  if (fs.existsSync(cli)) run(process.execPath, [cli, 'img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  else run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  fs.rmSync(tree, { recursive: true, force: true });
}

export function guestBuilt() {
  if (!OUTPUTS.every((f) => fs.existsSync(path.join(guestDir, f)))) return false;
  // A guest built before a module joined WANTED is rebuilt.
  try {
    const built = JSON.parse(fs.readFileSync(path.join(guestDir, 'manifest.json'), 'utf8')).modules ?? [];
    return WANTED.every((m) => built.includes(m));
  } catch {
    return false;
  }
}

function main() {
  if (!process.argv.includes('--force') && guestBuilt()) {
    log(`up to date in ${path.relative(root, guestDir)}/`);
    return;
  }
  const started = Date.now();
  for (const tool of ['apt-get', 'dpkg-deb', 'mke2fs', 'e2fsck']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is missing (Debian: apt-get, dpkg, e2fsprogs)`);
  }
  fs.mkdirSync(guestDir, { recursive: true });
  ensureI386();
  const kpkg = kernelPackage();
  const kDir = path.join(guestDir, 'kernel-pkg');
  const bbDir = path.join(guestDir, 'busybox-pkg');
  const kversion = fetchAndUnpack(`${kpkg}:i386`, kDir);
  const bbversion = fetchAndUnpack('busybox-static:i386', bbDir);
  const kver = fs.readdirSync(path.join(kDir, 'lib/modules'))[0];
  fs.copyFileSync(path.join(kDir, `boot/vmlinuz-${kver}`), path.join(guestDir, 'vmlinuz'));
  const initrd = buildInitramfs(bbDir, kDir, kver);
  fs.writeFileSync(path.join(guestDir, 'initramfs.gz'), initrd.gz);
  buildRoot(bbDir, kver);
  fs.rmSync(kDir, { recursive: true, force: true });
  fs.rmSync(bbDir, { recursive: true, force: true });
  const size = (f) => fs.statSync(path.join(guestDir, f)).size;
  const manifest = {
    kernel: kver,
    packages: { [kpkg]: kversion, 'busybox-static': bbversion },
    cmdline: CMDLINE,
    modules: initrd.modules,
    sizes: {
      vmlinuz: size('vmlinuz'),
      'initramfs.gz': size('initramfs.gz'),
      initramfsCpio: initrd.cpioBytes,
      'root.raw': size('root.raw'),
      'root.qcow2': size('root.qcow2'),
    },
  };
  fs.writeFileSync(path.join(guestDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  log(`built in ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(manifest.sizes)}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
