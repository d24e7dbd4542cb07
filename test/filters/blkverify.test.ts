/**
 * The blkverify filter against qemu-io / qemu-img 7.2: the real processes
 * (`node dist/cli/diskworker.js` and QEMU's tools) run the same command lines
 * in copies of one directory; every stdout and stderr line (timings masked),
 * the exit code and the files afterwards must match. A mismatch ends both
 * processes at once with QEMU's line and status 1, so the CLI is spawned, not
 * run in-process.
 *
 *   blkverify ─raw→ file r.raw (the reference copy)
 *             ─test→ qcow2 ─file→ t.qcow2 (the image under test)
 *
 * r.raw is fully allocated so that QEMU's block status (which looks into the
 * raw copy) sees no holes, which node-file cannot see either.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, Fixture, ensureBuiltBin, hasQemu, normalize, type RunResult } from '../cli/harness.js';
import { BlockBackend, BlockError, BlockGraph, MemoryStorage, createMemoryDriver, rawDriver } from '../../src/node.js';
import { blkverifyDriver } from '../../src/filters/blkverify.js';

type Tool = 'img' | 'io';
interface Run {
  tool: Tool;
  args: string[];
}

const FILENAME = 'blkverify:r.raw:t.qcow2';
const OPTS = 'driver=blkverify,raw.filename=r.raw,test.file.filename=t.qcow2';
const io = (cmds: string[], ...image: string[]): Run => ({ tool: 'io', args: [...cmds.flatMap((c) => ['-c', c]), ...(image.length ? image : [FILENAME])] });
const ioOpts = (cmds: string[], opts = OPTS): Run => io(cmds, '--image-opts', opts);
/** qemu-io without an image: the commands open one (`open -o ...`). */
const ioOpen = (cmds: string[]): Run => ({ tool: 'io', args: cmds.flatMap((c) => ['-c', c]) });
/** A raw copy's blkdebug that fails every read or write (the raw format above it announces read_aio / write_aio). */
const failingRaw = (event: string, extra = '') => `raw.driver=raw,raw.file.driver=blkdebug,raw.file.image.filename=r.raw,raw.file.inject-error.0.event=${event}${extra}`;

function runProcess(dir: string, side: 'theirs' | 'ours', r: Run): RunResult {
  const [cmd, args] = side === 'theirs' ? [r.tool === 'img' ? 'qemu-img' : 'qemu-io', r.args] : ['node', [BIN, r.tool, ...r.args]];
  const p = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', timeout: 50_000 });
  return { code: p.status ?? -1, stdout: normalize(p.stdout), stderr: normalize(p.stderr) };
}

/** Runs `setup` (shell commands with QEMU's tools) and `runs` in a fresh copy per side. */
function both(fx: Fixture, runs: Run[], setup: string[] = []) {
  const side = (who: 'theirs' | 'ours') => {
    const dir = fx.copy();
    for (const cmd of setup) {
      const p = spawnSync('sh', ['-c', cmd], { cwd: dir, encoding: 'utf8' });
      if (p.status !== 0) throw new Error(`setup failed: ${cmd}\n${p.stderr}`);
    }
    return { dir, runs: runs.map((r) => runProcess(dir, who, r)) };
  };
  return { theirs: side('theirs'), ours: side('ours') };
}

/** The guest bytes of an image, read by qemu-img (so both sides are read the same way). */
function guestBytes(dir: string, image: string, fmt: string): Buffer {
  const out = join(dir, `${image}.dump`);
  const p = spawnSync('qemu-img', ['convert', '-f', fmt, '-O', 'raw', image, out], { cwd: dir, encoding: 'utf8' });
  if (p.status !== 0) throw new Error(p.stderr);
  return readFileSync(out);
}

function qemuCheck(dir: string, image: string): RunResult {
  const p = spawnSync('qemu-img', ['check', image], { cwd: dir, encoding: 'utf8' });
  return { code: p.status ?? -1, stdout: p.stdout, stderr: p.stderr };
}

/** Runs through both tools that must agree, and what the first run of QEMU's must say. */
const AGREE: Array<{ name: string; runs: Run[]; setup?: string[]; stdout?: string; stderr?: string; code?: number }> = [
  { name: 'matching reads through blkverify:RAW:TEST', runs: [io(['read -P 7 64k 64k', 'read -P 0 0 64k', 'read -v 65530 12', 'readv -P 0 128k 4k 4k'])], stdout: 'read 65536/65536 bytes at offset 65536' },
  { name: 'matching reads through --image-opts', runs: [ioOpts(['read -P 7 64k 64k', 'read 3 1000', 'aio_read -P 7 70000 100', 'aio_flush'])], stdout: 'read 1000/1000 bytes at offset 3' },
  {
    name: "iotest 071's open: raw over blkverify, the test image from the file name",
    runs: [ioOpen(['open -o driver=raw,file.driver=blkverify,file.raw.filename=r.raw t.qcow2', 'read 0 512', 'write -P 42 0x38000 512', 'read -P 42 0x38000 512'])],
    stdout: 'wrote 512/512 bytes at offset 229376',
  },
  { name: 'a contents mismatch ends the process at once', setup: ["qemu-io -f raw -c 'write -P 5 70000 3' r.raw"], runs: [io(['read 0 64k', 'read 65536 64k', 'read 0 4k'])], stderr: 'blkverify: read offset=65536 bytes=65536 contents mismatch at offset 70000\n', code: 1 },
  { name: 'a mismatch inside an unaligned read', setup: ["qemu-io -f raw -c 'write -P 5 70000 3' r.raw"], runs: [ioOpts(['read 69999 7'])], stderr: 'blkverify: read offset=69999 bytes=7 contents mismatch at offset 70000\n', code: 1 },
  { name: 'a mismatch in the probed header (raw over blkverify)', setup: ["qemu-io -f raw -c 'write -P 5 100 1' r.raw"], runs: [io(['read 0 512'])], stderr: 'blkverify: read offset=0 bytes=512 contents mismatch at offset 100\n', code: 1 },
  { name: "iotest 071's broken read after writing the test image alone", setup: ["qemu-io -c 'write -P 42 0 512' t.qcow2"], runs: [ioOpen(['open -o driver=raw,file.driver=blkverify,file.raw.filename=r.raw t.qcow2', 'read -P 42 0 512'])], stderr: 'blkverify: read offset=0 bytes=512 contents mismatch at offset 0\n', code: 1 },
  { name: 'a read failing on the raw copy only', runs: [ioOpts(['read 0 512'], `driver=blkverify,${failingRaw('read_aio')},test.file.filename=t.qcow2`)], stderr: 'blkverify: read offset=0 bytes=512 return value mismatch 0 != -5\n', code: 1 },
  { name: 'a write failing on the raw copy only', runs: [ioOpts(['write -P 3 0 512', 'read 0 512'], `driver=blkverify,${failingRaw('write_aio')},test.file.filename=t.qcow2`)], stderr: 'blkverify: write offset=0 bytes=512 return value mismatch 0 != -5\n', code: 1 },
  {
    name: 'a write failing differently on each child',
    runs: [ioOpts(['write -P 3 0 512'], `driver=blkverify,${failingRaw('write_aio', ',raw.file.inject-error.0.errno=28')},test.driver=raw,test.file.driver=blkdebug,test.file.image.filename=t.raw,test.file.inject-error.0.event=write_aio`)],
    stderr: 'blkverify: write offset=0 bytes=512 return value mismatch -5 != -28\n',
    code: 1,
  },
  {
    name: 'reads failing alike on both children: the buffers still compared',
    runs: [ioOpts(['read 0 512'], `driver=blkverify,${failingRaw('read_aio')},test.driver=raw,test.file.driver=blkdebug,test.file.image.filename=t.raw,test.file.inject-error.0.event=read_aio`)],
    stderr: 'blkverify: read offset=0 bytes=512 contents mismatch at offset 0\n',
    code: 1,
  },
  { name: 'info, map, alloc, discard, flush, length, truncate (the raw copy alone grows)', runs: [ioOpts(['info', 'map', 'alloc 0 64k', 'discard 0 64k', 'read -P 0 0 64k', 'flush', 'length', 'truncate 2M', 'length']), io(['info', 'length'], '-f', 'raw', 'r.raw')], stdout: 'format name: blkverify\nformat name: blkverify\n' },
  { name: 'a raw test image: probe warnings for the child and the top', runs: [io(['write -P 6 0 4k', 'read -P 6 0 4k'], 'blkverify:r.raw:t.raw')], stderr: "WARNING: Image format was not specified for 't.raw' and probing guessed raw." },
  { name: 'blkverify nested as the test image', runs: [io(['read -P 7 64k 64k'], 'blkverify:r.raw:blkverify:r.raw:t.qcow2')], stdout: 'read 65536/65536 bytes at offset 65536' },
  { name: 'qemu-img info of blkverify:RAW:TEST', runs: [{ tool: 'img', args: ['info', FILENAME] }, { tool: 'img', args: ['info', '--output=json', FILENAME] }], stdout: 'image: blkverify:r.raw:t.qcow2\nfile format: raw\n' },
  {
    name: 'qemu-img info of a blkverify node: its rebuilt name',
    runs: [
      { tool: 'img', args: ['info', '--image-opts', OPTS] },
      { tool: 'img', args: ['info', '--output=json', '--image-opts', `${OPTS},test.driver=qcow2`] },
      { tool: 'img', args: ['info', '--image-opts', 'driver=raw,file.driver=blkverify,file.raw.filename=r.raw,file.test.file.filename=t.qcow2'] },
      { tool: 'img', args: ['info', '--image-opts', 'driver=blkverify,raw.driver=raw,raw.file.filename=r.raw,test.file.filename=t.qcow2'] },
    ],
    stdout: 'image: blkverify:r.raw:t.qcow2\nfile format: blkverify\n',
  },
  {
    name: "iotest 099's json: name when the test child has no plain name",
    runs: [{ tool: 'img', args: ['info', '--image-opts', 'driver=raw,file.driver=blkverify,file.raw.filename=r.raw,file.test.file.driver=blkdebug,file.test.file.image.filename=t.qcow2,file.test.file.inject-error.0.event=l1_update'] }],
    stdout: 'image: json:{"driver": "raw", "file": {"test": {"driver": "qcow2", "file": {"image": {"driver": "file", "filename": "t.qcow2"}, "driver": "blkdebug", "inject-error.0.event": "l1_update"}}, "driver": "blkverify", "raw": {"driver": "file", "filename": "r.raw"}}}\n',
  },
  { name: 'qemu-img compare reads through blkverify', runs: [{ tool: 'img', args: ['compare', FILENAME, 't.qcow2'] }, { tool: 'img', args: ['convert', '-O', 'raw', FILENAME, 'out.raw'] }], stdout: 'Images are identical.\n' },
  { name: 'qemu-img convert stops at a mismatch', setup: ["qemu-io -f raw -c 'write -P 5 900k 1' r.raw"], runs: [{ tool: 'img', args: ['convert', '-O', 'raw', FILENAME, 'out.raw'] }], stderr: 'blkverify: read offset=0 bytes=1048576 contents mismatch at offset 921600\n', code: 1 },
];

/** Bad file names and options: QEMU's message (a part of it) and exit code 1. */
const BAD: Array<{ name: string; run: Run; message: string }> = [
  { name: 'no second colon', run: io(['read 0 512'], 'blkverify:r.raw'), message: 'blkverify requires raw copy and original image path' },
  { name: 'nothing after the prefix', run: io(['read 0 512'], 'blkverify:'), message: 'blkverify requires raw copy and original image path' },
  { name: 'no second colon (qemu-img)', run: { tool: 'img', args: ['info', 'blkverify:r.raw'] }, message: "Could not open 'blkverify:r.raw': blkverify requires raw copy and original image path" },
  { name: 'empty test path', run: io(['read 0 512'], 'blkverify:r.raw:'), message: "The 'file' block driver requires a file name" },
  { name: 'empty raw path', run: io(['read 0 512'], 'blkverify::t.qcow2'), message: "The 'file' block driver requires a file name" },
  { name: 'missing test image', run: io(['read 0 512'], 'blkverify:r.raw:nosuch'), message: "Could not open 'nosuch': No such file or directory" },
  { name: 'missing raw copy', run: io(['read 0 512'], 'blkverify:nosuch:t.qcow2'), message: "Could not open 'nosuch': No such file or directory" },
  { name: 'no raw child', run: ioOpts(['read 0 512'], 'driver=blkverify,test.file.filename=t.qcow2'), message: 'A block device must be specified for "raw"' },
  { name: 'no test child', run: ioOpts(['read 0 512'], 'driver=blkverify,raw.filename=r.raw'), message: 'A block device must be specified for "test"' },
  { name: 'neither child', run: ioOpts(['read 0 512'], 'driver=blkverify'), message: 'A block device must be specified for "raw"' },
  { name: 'no raw child under raw', run: ioOpts(['read 0 512'], 'driver=raw,file.driver=blkverify,file.filename=t.qcow2'), message: 'A block device must be specified for "raw"' },
  { name: 'the raw copy is not probed (raw.file.filename)', run: ioOpts(['read 0 512'], 'driver=blkverify,raw.file.filename=r.raw,test.file.filename=t.qcow2'), message: 'Must specify either driver or file' },
  { name: 'a test image named by test.filename alone', run: ioOpts(['read 0 512'], 'driver=blkverify,raw.filename=r.raw,test.filename=t.qcow2'), message: 'Must specify either driver or file' },
  { name: 'unknown node for test', run: ioOpts(['read 0 512'], 'driver=blkverify,raw.filename=r.raw,test=nosuch'), message: "Cannot find device='nosuch' nor node-name='nosuch'" },
  { name: 'unknown option', run: ioOpts(['read 0 512'], `${OPTS},bogus=1`), message: "Block protocol 'blkverify' doesn't support the option 'bogus'" },
  { name: 'unknown option of the test image', run: ioOpts(['read 0 512'], `${OPTS},test.bogus=1`), message: "Block format 'qcow2' does not support the option 'bogus'" },
  { name: 'unknown option of the raw copy', run: ioOpts(['read 0 512'], `${OPTS},raw.bogus=1`), message: "Block protocol 'file' doesn't support the option 'bogus'" },
  { name: 'x-raw beside raw.filename', run: ioOpts(['read 0 512'], `${OPTS},x-raw=r.raw`), message: "Can't specify 'file' and 'filename' options at the same time" },
  { name: 'read-only node, writable user', run: ioOpts(['read 0 512'], `${OPTS},read-only=on`), message: 'Block node is read-only' },
];

describe.skipIf(!hasQemu())('blkverify vs qemu-io / qemu-img 7.2 (real processes)', () => {
  let fx: Fixture;
  beforeAll(() => {
    ensureBuiltBin();
    fx = new Fixture((_dir, sh) => {
      // Fully allocated raw copies (no holes), and a qcow2 image with the same contents.
      sh('qemu-img create -q -f raw -o preallocation=full r.raw 1M');
      sh("qemu-io -f raw -c 'write -P 7 64k 64k' r.raw");
      sh('cp r.raw t.raw');
      sh('qemu-img create -q -f qcow2 t.qcow2 1M');
      sh("qemu-io -c 'write -P 7 64k 64k' t.qcow2");
    });
  }, 120_000);
  afterAll(() => fx?.dispose());

  for (const c of AGREE) {
    it(c.name, () => {
      const r = both(fx, c.runs, c.setup);
      expect(r.ours.runs).toEqual(r.theirs.runs);
      const first = r.theirs.runs[0]!;
      expect(first.code).toBe(c.code ?? 0);
      if (c.stdout !== undefined) expect(first.stdout).toContain(c.stdout);
      if (c.stderr !== undefined) expect(first.stderr).toContain(c.stderr);
      // Whatever the run did to the files, it did the same on both sides.
      for (const [image, fmt] of [['r.raw', 'raw'], ['t.raw', 'raw'], ['t.qcow2', 'qcow2']] as const) {
        expect(guestBytes(r.ours.dir, image, fmt).equals(guestBytes(r.theirs.dir, image, fmt)), image).toBe(true);
      }
      expect(qemuCheck(r.ours.dir, 't.qcow2').code).toBe(0);
    }, 60_000);
  }

  for (const c of BAD) {
    it(`refuses as QEMU: ${c.name}`, () => {
      const r = both(fx, [c.run]);
      expect(r.ours.runs).toEqual(r.theirs.runs);
      expect(r.theirs.runs[0]!.code).toBe(1);
      expect(r.theirs.runs[0]!.stderr).toContain(c.message);
    }, 30_000);
  }

  it('writes reach both files: the raw copy and the test image hold the same bytes afterwards', () => {
    const cmds = ['write -P 9 0 4k', 'writev -P 10 8k 512 3k', 'write -f -P 11 100k 64k', 'aio_write -P 12 300k 8k', 'aio_flush', 'write -P 13 1000 3', 'flush', 'read -P 11 100k 64k'];
    const r = both(fx, [ioOpts(cmds), ioOpts(cmds, `${OPTS},test.driver=qcow2`)]);
    expect(r.ours.runs).toEqual(r.theirs.runs);
    expect(r.theirs.runs.map((x) => x.code)).toEqual([0, 0]);
    for (const side of [r.ours, r.theirs]) {
      const raw = guestBytes(side.dir, 'r.raw', 'raw');
      expect(raw.equals(guestBytes(side.dir, 't.qcow2', 'qcow2'))).toBe(true);
      expect(raw.subarray(100 << 10, 164 << 10).every((b) => b === 11)).toBe(true);
      expect(raw.subarray(1000, 1003).every((b) => b === 13)).toBe(true);
    }
    expect(guestBytes(r.ours.dir, 'r.raw', 'raw').equals(guestBytes(r.theirs.dir, 'r.raw', 'raw'))).toBe(true);
    expect(qemuCheck(r.ours.dir, 't.qcow2')).toEqual(qemuCheck(r.theirs.dir, 't.qcow2'));
  }, 60_000);

  it('zero writes: QEMU 7.2 aborts on an assertion; ours write zero buffers to both children', () => {
    const r = both(fx, [ioOpts(['write -z 64k 4k', 'write -z -u 68k 4k', 'read -P 0 64k 8k', 'read -P 7 72k 56k'])]);
    const [t, o] = [r.theirs.runs[0]!, r.ours.runs[0]!];
    expect(t.code).toBe(-1); // killed by SIGABRT
    expect(t.stderr).toContain("Assertion `!bs->supported_zero_flags' failed.");
    expect(o.code).toBe(0);
    expect(o.stderr).toBe('');
    expect(o.stdout).toBe('wrote 4096/4096 bytes at offset 65536\n<timing>\nwrote 4096/4096 bytes at offset 69632\n<timing>\nread 8192/8192 bytes at offset 65536\n<timing>\nread 57344/57344 bytes at offset 73728\n<timing>\n');
    const raw = guestBytes(r.ours.dir, 'r.raw', 'raw');
    expect(raw.equals(guestBytes(r.ours.dir, 't.qcow2', 'qcow2'))).toBe(true);
    expect(raw.subarray(64 << 10, 72 << 10).every((b) => b === 0)).toBe(true);
  }, 60_000);

  it('an NBD server over a mismatching node prints the line and exits 1 (QEMU 7.2 prints it, then hangs)', async () => {
    const dir = fx.copy();
    spawnSync('qemu-io', ['-f', 'raw', '-c', 'write -P 5 70000 1', 'r.raw'], { cwd: dir });
    const sock = join(dir, 's.sock');
    const server = spawn('node', [BIN, 'nbd', '-k', sock, '-f', 'raw', FILENAME], { cwd: dir });
    let stderr = '';
    server.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
    for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    const client = spawnSync('qemu-io', ['-f', 'raw', '-c', 'read -P 0 0 64k', '-c', 'read 64k 64k', `nbd+unix:///?socket=${sock}`], { encoding: 'utf8', timeout: 30_000 });
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 30_000))]);
    if (code === 'still running') server.kill();
    expect(normalize(client.stdout)).toBe('read 65536/65536 bytes at offset 0\n<timing>\nread failed: Input/output error\n');
    expect(code).toBe(1);
    expect(stderr).toBe('blkverify: read offset=65536 bytes=65536 contents mismatch at offset 70000\n');
  }, 60_000);
});

describe('blkverify through the library', () => {
  const KiB = 1024;
  /** Memory images `raw` and `test` with `fill` at 0-4k each, under a blkverify node. */
  async function setup(rawFill: number, testFill: number) {
    const g = new BlockGraph([createMemoryDriver(new MemoryStorage()), rawDriver, blkverifyDriver], 'memory');
    for (const [name, fill] of [['raw', rawFill], ['test', testFill]] as const) {
      const bb = await BlockBackend.open(g, { driver: 'memory', filename: name, size: 64 * KiB });
      await bb.write(0, new Uint8Array(4 * KiB).fill(fill));
      await bb.close();
    }
    const bb = await BlockBackend.open(g, { driver: 'blkverify', 'node-name': 'v', raw: { driver: 'memory', filename: 'raw' }, test: { driver: 'raw', file: { driver: 'memory', filename: 'test' } } });
    return { g, bb };
  }

  it('a mismatch fails the read with EIO and QEMU’s line, and the host goes on', async () => {
    const { g, bb } = await setup(1, 2);
    const err = await bb.read(512, 1024).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).code).toBe('EIO');
    expect((err as BlockError).message).toBe('blkverify: read offset=512 bytes=1024 contents mismatch at offset 512');
    // The fatal hook hears the same line (the tools exit there).
    const heard: string[] = [];
    g.onFatal = (text) => heard.push(text);
    await expect(bb.read(4 * KiB - 1, 2)).rejects.toThrow('contents mismatch at offset 4095');
    expect(heard).toEqual(['blkverify: read offset=4095 bytes=2 contents mismatch at offset 4095']);
    // Past the difference both copies agree.
    expect((await bb.read(8 * KiB, 4 * KiB)).every((b) => b === 0)).toBe(true);
    await bb.close();
  });

  it('writes reach both children; the length is the test image’s; the name is blkverify:RAW:TEST', async () => {
    const { g, bb } = await setup(3, 3);
    await bb.write(1000, new Uint8Array(5000).fill(9));
    await bb.writeZeroes(20 * KiB, 4 * KiB);
    expect((await bb.read(0, 8 * KiB)).subarray(1000, 6000).every((b) => b === 9)).toBe(true);
    expect(bb.length).toBe(64 * KiB);
    expect(bb.node.filename).toBe('blkverify:memory:raw:memory:test');
    await bb.close();
    const raw = await BlockBackend.open(g, { driver: 'memory', filename: 'raw' });
    const test = await BlockBackend.open(g, { driver: 'memory', filename: 'test' });
    expect(Buffer.from(await raw.read(0, 64 * KiB)).equals(Buffer.from(await test.read(0, 64 * KiB)))).toBe(true);
    await raw.close();
    await test.close();
  });
});
