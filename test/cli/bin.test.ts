/**
 * The built `diskworker` bin as a real process: shebang, entry through a
 * symlink (as npm installs it), exit codes, stdin for the qemu-io prompt, and
 * the unit pieces (getopt, size parsing, number formats) the golden tests
 * rely on.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readFileSync, readdirSync, symlinkSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getopt } from '../../src/cli/getopt.js';
import { parseSizeQemu, sizeToStr, cvtstr, fmtG, qdictOrder, toQemuJson } from '../../src/cli/format.js';
import { BIN, ROOT, ensureBuiltBin, normalize } from './harness.js';



describe('diskworker bin (real process)', () => {
  let tmp: string;
  let link: string;
  beforeAll(() => {
    ensureBuiltBin();
    tmp = mkdtempSync(join(tmpdir(), 'dw-bin-'));
    link = join(tmp, 'diskworker');
    symlinkSync(BIN, link);
  }, 180_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const run = (args: string[], input = '') => spawnSync('node', [link, ...args], { cwd: tmp, encoding: 'utf8', input });

  it('starts with a shebang', () => {
    expect(readFileSync(BIN, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('runs through a symlink and reports a missing command', () => {
    const r = run([]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('diskworker: missing command');
    const h = run(['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('img');
  });

  it('img create / info / check / io as qemu does', () => {
    const steps: string[][] = [
      ['img', 'create', '-f', 'qcow2', '-q', 't.qcow2', '4M'],
      ['io', '-c', 'write -P 0x33 0 128k', '-c', 'read -P 0x33 0 128k', 't.qcow2'],
      ['img', 'info', '--output=json', 't.qcow2'],
      ['img', 'check', 't.qcow2'],
      ['img', 'map', '--output=json', 't.qcow2'],
      ['img', 'info', 'nonexist.qcow2'],
    ];
    for (const s of steps) {
      const ours = run(s);
      const q = spawnSync(s[0] === 'img' ? 'qemu-img' : 'qemu-io', s.slice(1), { cwd: tmp, encoding: 'utf8' });
      expect(normalize(ours.stdout), s.join(' ')).toBe(normalize(q.stdout));
      expect(normalize(ours.stderr), s.join(' ')).toBe(normalize(q.stderr));
      expect(ours.status, s.join(' ')).toBe(q.status);
    }
  });

  it('is one bundled file that finds its WASM modules (a zstd-compressed write needs them)', () => {
    expect(readFileSync(BIN, 'utf8')).not.toMatch(/^import .* from ['"]\.{1,2}\//m);
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', 'z.qcow2', '1M'], { cwd: tmp }).status).toBe(0);
    const w = run(['io', '-f', 'qcow2', '-c', 'write -c -P 7 0 64k', 'z.qcow2']);
    expect(w.stderr).toBe('');
    expect(w.status).toBe(0);
    const q = spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'read -P 7 0 64k', 'z.qcow2'], { cwd: tmp, encoding: 'utf8' });
    expect(q.stdout).toContain('read 65536/65536 bytes');
    expect(spawnSync('qemu-img', ['check', 'z.qcow2'], { cwd: tmp, encoding: 'utf8' }).stdout).toContain('0.00% fragmented, 100.00% compressed');
  });

  it('io reads commands from stdin at the prompt', () => {
    spawnSync('qemu-img', ['create', '-q', '-f', 'raw', 'p.raw', '1M'], { cwd: tmp });
    const input = 'write -P 7 0 4k\nread -P 7 0 4k\nfoo\n';
    const ours = run(['io', '-f', 'raw', 'p.raw'], input);
    const q = spawnSync('qemu-io', ['-f', 'raw', 'p.raw'], { cwd: tmp, encoding: 'utf8', input });
    expect(normalize(ours.stdout)).toBe(normalize(q.stdout));
    expect(ours.stderr).toBe(q.stderr);
    expect(ours.status).toBe(q.status);
  });

  it('npm pack builds first (prepack) and packs every entry point and WASM module, nothing else', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
      bin: Record<string, string>;
      exports: Record<string, { types: string; default: string }>;
    };
    // A fresh clone has no dist/: without prepack the package would hold only README and package.json.
    expect(pkg.scripts['prepack']).toBe('npm run build');
    expect(pkg.scripts['build']).toBe('npm run build:wasm && npm run build:ts');
    // dist/ is current (beforeAll); --ignore-scripts packs it without rebuilding.
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(0);
    const files = (JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
    const entries = [...Object.values(pkg.bin), ...Object.values(pkg.exports).flatMap((e) => [e.types, e.default])];
    const wasm = readdirSync(join(ROOT, 'assembly'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
      .map((f) => `dist/src/wasm/bin/${f.replace(/\.ts$/, '.wasm')}`);
    expect(wasm.length).toBeGreaterThan(0);
    // The bundled bin (scripts/bundle-cli.mjs) loads its own copy of the WASM modules.
    const binWasm = wasm.map((f) => f.replace('dist/src/wasm/bin/', 'dist/cli/bin/'));
    for (const f of [...entries.map((e) => e.replace(/^\.\//, '')), ...wasm, ...binWasm]) expect(files, f).toContain(f);
    // Test pages, fixtures and the demo build live in dist/ too; they stay out.
    expect(files.filter((f) => /^dist\/cli\/diskworker\.[0-9a-f]{16}\.cjs$/.test(f))).toHaveLength(1);
    // Nor does the launcher's code cache: it is made per machine and Node version, on first use.
    expect(files.filter((f) => !/^(dist\/(src|workers)\/|dist\/cli\/(diskworker(\.[0-9a-f]{16}\.cjs|\.js)$|bin\/)|README\.md$|package\.json$)/.test(f))).toEqual([]);
  });

  it('runs its bundle through a code cache per command, named by the bundle\'s hash, rewritten when V8 rejects it', () => {
    // A copy of the bin in its own directory, so the cache it writes is this test's alone.
    const dir = join(tmp, 'bincopy');
    mkdirSync(dir);
    const bundleName = readdirSync(join(ROOT, 'dist/cli')).find((f) => /^diskworker\.[0-9a-f]{16}\.cjs$/.test(f))!;
    expect(bundleName).toBeDefined();
    for (const f of ['diskworker.js', bundleName]) copyFileSync(join(ROOT, 'dist/cli', f), join(dir, f));
    cpSync(join(ROOT, 'dist/cli/bin'), join(dir, 'bin'), { recursive: true });
    const bundle = readFileSync(join(dir, bundleName));
    // A classic script: nothing in it needs the ES module loader.
    expect(bundle.toString('latin1')).not.toMatch(/\bimport\s*\(|\bimport\.meta\b|^import /m);
    // Named by the hash of its bytes, as the cache is.
    const hash = createHash('sha256').update(bundle).digest('hex').slice(0, 16);
    expect(bundleName).toBe(`diskworker.${hash}.cjs`);
    const caches = () => readdirSync(dir).filter((f) => f.endsWith('.v8cache'));
    const info = () => spawnSync('node', [join(dir, 'diskworker.js'), 'img', 'info', '--output=json', join(dir, bundleName)], { cwd: tmp, encoding: 'utf8' });
    expect(caches()).toEqual([]);
    const first = info();
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    expect(caches()).toEqual([`diskworker.${hash}.img-info.${process.version}.${process.arch}.v8cache`]);
    const cache = join(dir, caches()[0]!);
    const made = readFileSync(cache);
    expect(made.length).toBeGreaterThan(1000);
    // A run that uses the cache leaves it as it is.
    expect(info().stdout).toBe(first.stdout);
    expect(readFileSync(cache).equals(made)).toBe(true);
    // A damaged cache is rejected by V8, the run still works and the cache is made again.
    writeFileSync(cache, Buffer.alloc(made.length, 0x5a));
    const again = info();
    expect(again.stdout).toBe(first.stdout);
    expect(again.stderr).toBe('');
    expect(readFileSync(cache).equals(made)).toBe(false);
    expect(readFileSync(cache).readUInt32LE(0)).toBe(made.readUInt32LE(0));
    // Another command makes a cache of its own (what it compiled), and leaves img info's alone.
    const infoCache = readFileSync(cache);
    const bin = join(dir, 'diskworker.js');
    expect(spawnSync('node', [bin, 'img', 'create', '-q', '-f', 'qcow2', join(tmp, 'cc.qcow2'), '1M'], { cwd: tmp }).status).toBe(0);
    expect(spawnSync('node', [bin, 'io', '-c', 'write -P 1 0 4k', join(tmp, 'cc.qcow2')], { cwd: tmp }).status).toBe(0);
    // Not a command word: one shared "other" cache, never a file named by the argument.
    expect(spawnSync('node', [bin, '../x'], { cwd: tmp }).status).toBe(1);
    const tail = `${process.version}.${process.arch}.v8cache`;
    expect(caches().sort()).toEqual([`img-create`, `img-info`, `io`, `other`].map((c) => `diskworker.${hash}.${c}.${tail}`));
    expect(readFileSync(cache).equals(infoCache)).toBe(true);
  });

  it('imported as a module, runs nothing and gives main and processIo (the iotests shim uses them)', () => {
    const code = `const m = await import(${JSON.stringify(BIN)}); const out = []; const rc = await m.main(['img', '--version'], { stdout: (s) => out.push(s), stderr: (s) => out.push(s) }); console.log(typeof m.processIo, rc, out.join('').split('\\n')[0]);`;
    const r = spawnSync('node', ['--input-type=module', '-e', code], { cwd: tmp, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^function 0 diskworker img version \S+/);
  });

  it('never prints a stack trace on bad input', () => {
    for (const args of [['img', 'info', '-f', 'raw', tmp], ['img', 'convert', '-O', 'raw', '/nonexist', 'x'], ['io', '-c', 'read 0 1', '/nonexist']]) {
      const r = run(args);
      expect(r.status).toBe(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
    }
  });
});

describe('getopt', () => {
  it('handles clusters, attached arguments, long options, -- and permutation', () => {
    const r = getopt(['-rUf', 'raw', 'file', '--output=json', '--back', '-cfoo', '--', '-x'], 'rUf:c:', [
      { name: 'output', hasArg: 1, val: 'o' },
      { name: 'backing-chain', hasArg: 0, val: 'b' },
    ]);
    expect(r.opts.map((o) => (o.kind === 'opt' ? `${o.opt}=${o.arg ?? ''}` : o.kind))).toEqual(['r=', 'U=', 'f=raw', 'o=json', 'b=', 'c=foo']);
    expect(r.operands).toEqual(['file', '-x']);
  });
  it('reports unknown and missing options', () => {
    const r = getopt(['-Z', '--nope', '-f'], 'f:', []);
    expect(r.opts.map((o) => `${o.kind}:${o.written}`)).toEqual(['unknown:-Z', 'unknown:--nope', 'missing:-f']);
  });
  it('stops at the first operand with "+"', () => {
    expect(getopt(['info', '-f', 'x'], '+hV').operands).toEqual(['info', '-f', 'x']);
  });
});

describe('sizes and numbers like QEMU', () => {
  it('parses sizes like qemu_strtosz', () => {
    const ok = (s: string) => {
      const r = parseSizeQemu(s);
      return r.ok ? r.value : r.reason;
    };
    expect(ok('1M')).toBe(1048576);
    expect(ok('1.5k')).toBe(1536);
    expect(ok('0x10')).toBe(16);
    expect(ok('64')).toBe(64);
    expect(ok('2g')).toBe(2 ** 31);
    expect(ok('1.5')).toBe('invalid');
    expect(ok('-1')).toBe('invalid');
    expect(ok('1x')).toBe('invalid');
    expect(ok('0x10k')).toBe('invalid');
    expect(ok('16E')).toBe('range');
  });
  it('prints sizes like size_to_str and cvtstr', () => {
    expect([0, 512, 4096, 200704, 1048576, 1536, 1023 * 1024].map(sizeToStr)).toEqual(['0 B', '512 B', '4 KiB', '196 KiB', '1 MiB', '1.5 KiB', '0.999 MiB']);
    expect([512, 65536, 1536, 3 * 2 ** 30].map(cvtstr)).toEqual(['512 bytes', '64 KiB', '1.500 KiB', '3 GiB']);
    expect([fmtG(1e-5), fmtG(123456789), fmtG(0.5, 3), fmtG(1000, 3)]).toEqual(['1e-05', '1.23457e+08', '0.5', '1e+03']);
    // printf rounds exact ties to even (qemu-img info of a 10092544-byte image says 9.62 MiB).
    expect([sizeToStr(10092544), fmtG(0.125, 2), fmtG(2.5, 1), fmtG(3.5, 1), fmtG(-9.625, 3), fmtG(9.635, 3)]).toEqual(['9.62 MiB', '0.12', '2', '4', '-9.62', '9.63']);
  });
  it('orders JSON keys like a QDict', () => {
    expect(qdictOrder(['filename', 'format', 'dirty-flag', 'actual-size', 'virtual-size'])).toEqual(['virtual-size', 'filename', 'format', 'actual-size', 'dirty-flag']);
    expect(toQemuJson({ required: 1, 'fully-allocated': 2 })).toBe('{\n    "required": 1,\n    "fully-allocated": 2\n}');
  });
});

describe('printf-style rounding', () => {
  it('rounds exact ties to even like glibc', async () => {
    const { cFixed } = await import('../../src/cli/format.js');
    expect([cFixed(3.125, 2), cFixed(0.125, 2), cFixed(1.5625, 3), cFixed(2.5, 0), cFixed(3.5, 0), cFixed(1.005, 2), cFixed(12.5, 2)]).toEqual(['3.12', '0.12', '1.562', '2', '4', '1.00', '12.50']);
  });
});
