/**
 * qemu-img subcommands on QED images against qemu-img 7.2: create (options,
 * errors, bytes), info, map, check (and its repairs, with the image bytes
 * after), compare, convert to and from qed, resize; and malformed images
 * made by patching one qemu-img made: refused with QEMU's message and exit
 * code, or read and checked as QEMU does.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, golden, hasQemu, ours, theirs, words } from '../../cli/harness.js';
import { prng } from '../../prng.js';

const MiB = 1 << 20;
type Edit = (b: Buffer) => Buffer | void;

/** Offset of the first L2 table of `b` (its L1 entry 0). */
const l2Of = (b: Buffer): number => Number(b.readBigUInt64LE(Number(b.readBigUInt64LE(40))));

/** Header and table patches of base.qed (10 MiB, 1 MiB of data at 0). */
const MALFORMED: Record<string, Edit> = {
  magic: (b) => void b.writeUInt32LE(0x12345678, 0),
  'unknown-feature': (b) => void b.writeBigUInt64LE(0x10n, 16),
  'cluster-0': (b) => void b.writeUInt32LE(0, 4),
  'cluster-3000': (b) => void b.writeUInt32LE(3000, 4),
  'cluster-128M': (b) => void b.writeUInt32LE(1 << 27, 4),
  'table-0': (b) => void b.writeUInt32LE(0, 8),
  'table-3': (b) => void b.writeUInt32LE(3, 8),
  'table-32': (b) => void b.writeUInt32LE(32, 8),
  'table-1': (b) => void b.writeUInt32LE(1, 8),
  'size-511': (b) => void b.writeBigUInt64LE(511n, 48),
  'size-2^62': (b) => void b.writeBigUInt64LE(1n << 62n, 48),
  'l1-unaligned': (b) => void b.writeBigUInt64LE(12345n, 40),
  'l1-at-0': (b) => void b.writeBigUInt64LE(0n, 40),
  'l1-2^60': (b) => void b.writeBigUInt64LE(1n << 60n, 40),
  'header-size-max': (b) => void b.writeUInt32LE(0xffffffff, 12),
  'header-size-0': (b) => void b.writeUInt32LE(0, 12),
  'backing-name': (b) => {
    b.writeBigUInt64LE(1n, 16);
    b.writeUInt32LE(64, 56);
    b.writeUInt32LE(5, 60);
    b.write('nofil', 64, 'latin1');
  },
  'backing-name-outside': (b) => {
    b.writeBigUInt64LE(1n, 16);
    b.writeUInt32LE(65530, 56);
    b.writeUInt32LE(100, 60);
  },
  'autoclear-bits': (b) => void b.writeBigUInt64LE(1n << 40n, 32),
  'compat-bits': (b) => void b.writeBigUInt64LE(5n, 24),
  'l1-entry-invalid': (b) => void b.writeBigUInt64LE(0x777n, Number(b.readBigUInt64LE(40))),
  'l2-entry-2^62': (b) => void b.writeBigUInt64LE(1n << 62n, l2Of(b)),
  'l2-entry-past-eof': (b) => void b.writeBigUInt64LE(BigInt(64 * MiB), l2Of(b) + 8),
  'cut-40': (b) => b.subarray(0, 40),
  'cut-after-l1': (b) => b.subarray(0, 5 * 65536),
  /** The need-check flag, an invalid L2 entry, a cluster used twice and a leaked one. */
  dirty: (b) => {
    b.writeBigUInt64LE(b.readBigUInt64LE(16) | 2n, 16);
    const l2 = l2Of(b);
    b.writeBigUInt64LE(0x123n, l2 + 3 * 8);
    b.writeBigUInt64LE(b.readBigUInt64LE(l2 + 4 * 8), l2 + 5 * 8);
    return Buffer.concat([b, Buffer.alloc(65536)]);
  },
  'dirty-clean': (b) => void b.writeBigUInt64LE(b.readBigUInt64LE(16) | 2n, 16),
};

function build(dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f qed base.qed 10M');
  sh("qemu-io -f qed -c 'write -P 1 0 1M' -c 'write -z 2M 128k' base.qed >/dev/null");
  for (const [name, edit] of Object.entries(MALFORMED)) {
    const b = readFileSync(join(dir, 'base.qed'));
    writeFileSync(join(dir, `${name}.qed`), edit(b) ?? b);
  }
  // A raw source for convert: seeded data runs and zero runs.
  const rnd = prng(7);
  const src = Buffer.alloc(12 * MiB);
  for (let i = 0; i < 40; i++) {
    const n = 1 + Math.floor(rnd() * 300_000);
    const o = Math.floor(rnd() * (src.length - n));
    for (let k = 0; k < n; k++) src[o + k] = Math.floor(rnd() * 256);
  }
  writeFileSync(join(dir, 'src.raw'), src);
  sh('qemu-img create -q -f raw back.raw 6M');
  sh("qemu-io -f raw -c 'write -P 0x61 0 6M' back.raw >/dev/null");
  sh('qemu-img create -q -f qed -b back.raw -F raw over.qed 8M');
  sh("qemu-io -f qed -c 'write -P 0x62 1M 100k' -c 'write -P 0x63 5M 2M' over.qed >/dev/null");
}

/** Runs one command line through both tools and compares lines and exit codes (and `images`' bytes after). */
async function same(fx: Fixture, tool: 'img' | 'io', line: string, images: string[] = []): Promise<void> {
  const dq = fx.copy();
  const dd = fx.copy();
  const args = words(line);
  const t = theirs(tool, args, dq);
  const o = await ours(tool, args, dd);
  const n = (s: string) => s.replace(/^(qemu-img|qemu-io|diskworker (img|io)): /gm, 'PROG: ').replace(/(?:\d+:)*\d+\.\d+(?: sec)? \([^)]*\)/g, 'T');
  expect({ code: o.code, stdout: n(o.stdout), stderr: n(o.stderr) }, line).toEqual({ code: t.code, stdout: n(t.stdout), stderr: n(t.stderr) });
  for (const f of images) expect(readFileSync(join(dd, f)).equals(readFileSync(join(dq, f))), `${f} bytes after ${line}`).toBe(true);
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('qed images vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const name of Object.keys(MALFORMED)) {
    it(`${name}: info, check, convert and a write as qemu-img / qemu-io`, async () => {
      const f = `${name}.qed`;
      for (const line of [`info -f qed ${f}`, `info --output=json ${f}`, `check -f qed ${f}`, `check --output=json -f qed ${f}`, `convert -f qed -O raw ${f} out.raw`, `map -f qed ${f}`]) {
        await same(fx, 'img', line);
      }
      await same(fx, 'io', `-f qed -c 'write -P 9 64k 4k' -c 'read -P 9 64k 4k' ${f}`, [f]);
    }, 60_000);
  }

  for (const mode of ['leaks', 'all']) {
    it(`check -r ${mode} repairs as QEMU, bytes included`, async () => {
      await same(fx, 'img', `check -r ${mode} dirty.qed`, ['dirty.qed']);
      await same(fx, 'img', `check -r ${mode} dirty-clean.qed`, ['dirty-clean.qed']);
    }, 60_000);
  }

  it('create: options, messages and the bytes of the image', async () => {
    for (const line of [
      'create -f qed new.qed 100M',
      'create -f qed new.qed 1000',
      'create -f qed new.qed 0',
      'create -f qed -o cluster_size=4096,table_size=2 new.qed 300M',
      'create -f qed -o cluster_size=1M,table_size=16 new.qed 3G',
      'create -f qed -o cluster_size=1000 new.qed 1G',
      'create -f qed -o cluster_size=2048 new.qed 1G',
      'create -f qed -o table_size=3 new.qed 1G',
      'create -f qed -o table_size=32 new.qed 1G',
      'create -f qed -o cluster_size=4096,table_size=1 new.qed 1T',
      'create -f qed new.qed 100T',
      'create -f qed -b back.raw -F raw new.qed',
      'create -f qed -b over.qed -F qed new.qed 20M',
      'create -f qed -b back.raw new.qed',
      'create -f qed -o help',
    ]) {
      await same(fx, 'img', line, line.includes('help') || /1000 new|2048|=3 |=32|100T|1T|-b back.raw new/.test(line) ? [] : ['new.qed']);
    }
  }, 60_000);

  it('convert to qed writes the bytes qemu-img writes; info, map, compare, check agree', async () => {
    for (const line of ['convert -O qed src.raw c.qed', 'convert -O qed -o cluster_size=4096,table_size=2 src.raw c.qed', 'convert -O qed -B back.raw -F raw src.raw c.qed']) {
      await same(fx, 'img', line, ['c.qed']);
    }
    for (const line of ['info over.qed', 'info --output=json --backing-chain over.qed', 'map over.qed', 'map --output=json over.qed', 'check over.qed', 'compare over.qed back.raw', 'compare -f qed -F raw base.qed src.raw', 'convert -O raw over.qed o.raw']) {
      await same(fx, 'img', line, line.startsWith('convert') ? ['o.raw'] : []);
    }
  }, 60_000);

  it('resize: grows, refuses shrinking and bad sizes with QEMU messages', async () => {
    for (const line of ['resize base.qed 20M', 'resize base.qed +1000', 'resize base.qed 5M', 'resize --shrink base.qed 5M', 'resize base.qed 100T', 'resize --preallocation=full base.qed 20M']) {
      await same(fx, 'img', line, ['base.qed']);
    }
  }, 60_000);

  it('rebase and commit through the qed backing file', async () => {
    await same(fx, 'img', 'rebase -u -b base.qed -F qed over.qed', ['over.qed']);
    await same(fx, 'img', 'rebase -u -b back.raw -F raw over.qed', ['over.qed']);
    await same(fx, 'img', 'commit over.qed', ['over.qed', 'back.raw']);
  }, 60_000);
});
