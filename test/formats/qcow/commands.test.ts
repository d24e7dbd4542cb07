/**
 * qemu-img subcommands on qcow (v1) images against qemu-img 7.2: create
 * (options, encryption, errors, bytes), info, map, check (which qcow does
 * not have), compare, convert to and from qcow (compressed too), commit,
 * encrypted images; and malformed images made by patching one qemu-img
 * made: refused with QEMU's message and exit code, or read as QEMU reads
 * them.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, ours, theirs, words } from '../../cli/harness.js';
import { prng } from '../../prng.js';

const MiB = 1 << 20;
type Edit = (b: Buffer) => Buffer | void;

/** Offset of the first L2 table of `b` (its L1 entry 0). */
const l2Of = (b: Buffer): number => Number(b.readBigUInt64BE(Number(b.readBigUInt64BE(40))));

/** Patches of base.qcow (10 MiB, 4 KiB clusters, data at 0 and a compressed cluster at 1 MiB). */
const MALFORMED: Record<string, Edit> = {
  magic: (b) => void b.writeUInt32BE(0x12345678, 0),
  'version-2': (b) => void b.writeUInt32BE(2, 4),
  'version-7': (b) => void b.writeUInt32BE(7, 4),
  'size-1': (b) => void b.writeBigUInt64BE(1n, 24),
  'size-2^63': (b) => void b.writeBigUInt64BE(1n << 63n, 24),
  'size-max': (b) => void b.writeBigUInt64BE(0xffffffffffffffffn, 24),
  'size-odd': (b) => void b.writeBigUInt64BE(BigInt(10 * MiB - 300), 24),
  'cluster-bits-8': (b) => void (b[32] = 8),
  'cluster-bits-17': (b) => void (b[32] = 17),
  'l2-bits-5': (b) => void (b[33] = 5),
  'l2-bits-14': (b) => void (b[33] = 14),
  'crypt-2': (b) => void b.writeUInt32BE(2, 36),
  'crypt-aes': (b) => void b.writeUInt32BE(1, 36),
  'backing-long': (b) => {
    b.writeBigUInt64BE(48n, 8);
    b.writeUInt32BE(1024, 16);
  },
  'backing-name': (b) => {
    b.writeBigUInt64BE(4000n, 8);
    b.writeUInt32BE(5, 16);
    b.write('nofil', 4000, 'latin1');
  },
  'l1-past-eof': (b) => void b.writeBigUInt64BE(1n << 40n, 40),
  'l1-entry-2^60': (b) => void b.writeBigUInt64BE(1n << 60n, Number(b.readBigUInt64BE(40))),
  'l2-entry-unaligned': (b) => void b.writeBigUInt64BE(0x1001n, l2Of(b)),
  'l2-entry-past-eof': (b) => void b.writeBigUInt64BE(BigInt(64 * MiB), l2Of(b) + 8),
  'compressed-garbage': (b) => void b.writeBigUInt64BE((1n << 63n) | (100n << 51n) | 48n, l2Of(b) + 16),
  'cut-40': (b) => b.subarray(0, 40),
  'cut-after-l1': (b) => b.subarray(0, 4096),
};

function build(dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f qcow base.qcow 10M');
  sh("qemu-io -f qcow -c 'write -P 1 0 64k' -c 'write -c -P 2 1M 4k' base.qcow >/dev/null");
  for (const [name, edit] of Object.entries(MALFORMED)) {
    const b = readFileSync(join(dir, 'base.qcow'));
    writeFileSync(join(dir, `${name}.qcow`), edit(b) ?? b);
  }
  const rnd = prng(9);
  const src = Buffer.alloc(12 * MiB);
  for (let i = 0; i < 40; i++) {
    const n = 1 + Math.floor(rnd() * 300_000);
    const o = Math.floor(rnd() * (src.length - n));
    const text = rnd() < 0.5;
    for (let k = 0; k < n; k++) src[o + k] = text ? 97 + Math.floor(rnd() * 4) : Math.floor(rnd() * 256);
  }
  writeFileSync(join(dir, 'src.raw'), src);
  sh('qemu-img create -q -f raw back.raw 6M');
  sh("qemu-io -f raw -c 'write -P 0x61 0 6M' back.raw >/dev/null");
  sh('qemu-img create -q -f qcow -b back.raw -F raw over.qcow 8M');
  sh("qemu-io -f qcow -c 'write -P 0x62 1M 20k' -c 'write -P 0x63 5M 30k' over.qcow >/dev/null");
  sh('qemu-img convert -c -O qcow src.raw packed.qcow || test -s packed.qcow');
  sh('qemu-img create -q -f qcow --object secret,id=s0,data=pw -o encrypt.format=aes,encrypt.key-secret=s0 enc.qcow 4M');
  sh("qemu-io --object secret,id=s0,data=pw --image-opts -c 'write -P 7 1000k 100k' driver=qcow,file.filename=enc.qcow,encrypt.key-secret=s0 >/dev/null");
}

/** Runs one command line through both tools; lines, exit codes and `images`' bytes after must match. */
async function same(fx: Fixture, tool: 'img' | 'io', line: string, images: string[] = []): Promise<void> {
  const dq = fx.copy();
  const dd = fx.copy();
  const args = words(line);
  const t = theirs(tool, args, dq);
  const o = await ours(tool, args, dd);
  const n = (s: string) =>
    s
      .replace(/^(qemu-img|qemu-io|diskworker (img|io)): /gm, 'PROG: ')
      .replace(/\d+\.\d+ sec \([^)]*\)|\d+:\d+:\d+\.\d+ \([^)]*\)/g, 'T');
  expect({ code: o.code, stdout: n(o.stdout), stderr: n(o.stderr) }, line).toEqual({ code: t.code, stdout: n(t.stdout), stderr: n(t.stderr) });
  for (const f of images) {
    expect(existsSync(join(dd, f)), `${f} exists after ${line}`).toBe(existsSync(join(dq, f)));
    // What a failed command left behind is not compared (how far a copy got is timing).
    if (t.code === 0 && existsSync(join(dq, f))) expect(readFileSync(join(dd, f)).equals(readFileSync(join(dq, f))), `${f} bytes after ${line}`).toBe(true);
  }
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('qcow images vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const name of Object.keys(MALFORMED)) {
    it(`${name}: info, check, convert, map and a write as qemu-img / qemu-io`, async () => {
      const f = `${name}.qcow`;
      for (const line of [`info -f qcow ${f}`, `info --output=json ${f}`, `check -f qcow ${f}`, `convert -f qcow -O raw ${f} out.raw`, `map -f qcow ${f}`]) {
        await same(fx, 'img', line, line.startsWith('convert') ? ['out.raw'] : []);
      }
      // The L1 table past the end: the write makes a sparse 1 TiB file (compared by qemu-io's lines only).
      await same(fx, 'io', `-f qcow -c 'write -P 9 64k 4k' -c 'read -P 9 64k 4k' -c 'read -v 1M 32' ${f}`, name === 'l1-past-eof' ? [] : [f]);
    }, 60_000);
  }

  it('create: options, messages and the bytes of the image', async () => {
    const sec = '--object secret,id=s0,data=abc';
    for (const line of [
      'create -f qcow new.qcow 100M',
      'create -f qcow new.qcow 1000',
      'create -f qcow new.qcow 0',
      'create -f qcow new.qcow 3T',
      'create -f qcow -b back.raw -F raw new.qcow',
      'create -f qcow -b over.qcow -F qcow new.qcow 20M',
      'create -f qcow -o encryption=off new.qcow 1M',
      'create -f qcow -o encryption=on new.qcow 1M',
      `create -f qcow ${sec} -o encryption=on,encrypt.key-secret=s0 new.qcow 1M`,
      `create -f qcow ${sec} -o encrypt.format=aes,encrypt.key-secret=s0 new.qcow 1M`,
      'create -f qcow -o encrypt.format=aes new.qcow 1M',
      'create -f qcow -o encrypt.format=foo new.qcow 1M',
      `create -f qcow ${sec} -o encrypt.format=luks,encrypt.key-secret=s0 new.qcow 1M`,
      `create -f qcow ${sec} -o encryption=on,encrypt.format=aes,encrypt.key-secret=s0 new.qcow 1M`,
      `create -f qcow ${sec} -o encrypt.key-secret=s0 new.qcow 1M`,
      'create -f qcow -o encrypt.format=aes,encrypt.key-secret=nosuch new.qcow 1M',
      'create -f qcow -o help',
    ]) {
      const writes = !/help|=on new|aes new|foo|luks|encryption=on,encrypt.format|-o encrypt.key-secret|nosuch| 0$/.test(line);
      await same(fx, 'img', line, writes ? ['new.qcow'] : []);
    }
  }, 60_000);

  it('convert to qcow writes what qemu-img writes; compressed images read back the same', async () => {
    await same(fx, 'img', 'convert -O qcow src.raw c.qcow', ['c.qcow']);
    await same(fx, 'img', 'convert -O qcow -B back.raw -F raw src.raw c.qcow', ['c.qcow']);
    // Compressed: the same exit code (1, qemu-img 7.2's), the same map; deflate output may differ in bytes.
    await same(fx, 'img', 'convert -c -O qcow src.raw z.qcow');
    const dd = fx.copy();
    const o = await ours('img', ['convert', '-c', '-O', 'qcow', 'src.raw', 'z.qcow'], dd);
    expect(o.code).toBe(1);
    expect(theirs('img', ['compare', 'src.raw', 'z.qcow'], dd).stdout).toBe('Images are identical.\n');
    const mapOf = (d: string) => theirs('img', ['map', '--output=json', 'z.qcow'], d).stdout.replace(/, "offset": [0-9]+/g, '');
    const dq = fx.copy();
    theirs('img', ['convert', '-c', '-O', 'qcow', 'src.raw', 'z.qcow'], dq);
    expect(mapOf(dd)).toBe(mapOf(dq));
  }, 60_000);

  it('info, map, compare, convert and commit agree on images qemu-img wrote', async () => {
    for (const line of [
      'info over.qcow',
      'info --output=json --backing-chain over.qcow',
      'map over.qcow',
      'map --output=json over.qcow',
      'map --output=json packed.qcow',
      'info enc.qcow',
      'info --output=json enc.qcow',
      'compare over.qcow back.raw',
      'compare -f qcow -F raw packed.qcow src.raw',
      'compare --object secret,id=s0,data=pw --image-opts driver=qcow,file.filename=enc.qcow,encrypt.key-secret=s0 driver=raw,file.filename=back.raw',
    ]) {
      await same(fx, 'img', line);
    }
    await same(fx, 'img', 'convert -O raw packed.qcow o.raw', ['o.raw']);
    await same(fx, 'img', 'convert -O raw over.qcow o.raw', ['o.raw']);
    await same(fx, 'img', 'convert --object secret,id=s0,data=pw --image-opts driver=qcow,file.filename=enc.qcow,encrypt.key-secret=s0 -O raw o.raw', ['o.raw']);
    await same(fx, 'img', 'commit over.qcow', ['over.qcow', 'back.raw']);
  }, 60_000);

  it('qemu-io writes over compressed and encrypted clusters land where QEMU puts them', async () => {
    await same(fx, 'io', "-f qcow -c 'write -P 5 100k 1k' -c 'write -P 6 2M 4k' -c 'write -c -P 4 9M 4k' packed.qcow", ['packed.qcow']);
    await same(fx, 'io', "--object secret,id=s0,data=pw --image-opts -c 'write -P 3 5k 1k' -c 'read -P 7 1000k 100k' driver=qcow,file.filename=enc.qcow,encrypt.key-secret=s0", ['enc.qcow']);
  }, 60_000);
});
