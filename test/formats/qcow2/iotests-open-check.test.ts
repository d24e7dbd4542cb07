/**
 * Our versions of QEMU iotests about opening and checking broken images,
 * each compared with qemu-img / qemu-io 7.2 on images the test builds:
 * 305 (an unaligned refcount block offset: the write fails and the image is
 * marked corrupt), 272 (a compressed write past 4 GiB, then check), 036
 * (unknown incompatible features named from the feature table), 114 (a
 * repeated header extension opens) and 080 (bad header values: messages and
 * exit codes of info and of a read-write open).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { openSync, closeSync, readSync, writeSync, readFileSync, writeFileSync, truncateSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fixture, golden, hasQemu, normalize, ours, theirs } from '../../cli/harness.js';

/** Writes `bytes` at `offset` of `file`. */
function poke(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

function peek64(file: string, offset: number): number {
  const b = Buffer.alloc(8);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, b, 0, 8, offset);
  } finally {
    closeSync(fd);
  }
  return Number(b.readBigUInt64BE(0));
}

const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
const be64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};

/** Header fields iotest 080 breaks: [name, offset, value]. */
const BAD_HEADERS: Array<[string, number, Buffer]> = [
  ['cluster_bits 8', 20, be32(8)],
  ['cluster_bits 22', 20, be32(22)],
  ['header_length 96', 100, be32(96)],
  ['header_length past the cluster', 100, be32(0x10008)],
  ['backing_file_offset past the cluster', 8, be64(0x10008n)],
  ['refcount_table_clusters 0', 56, be32(0)],
  ['refcount_table_clusters huge', 56, be32(0x1000000)],
  ['refcount_table_offset unaligned', 48, be64(0x10001n)],
  ['nb_snapshots huge', 60, be32(0x10001)],
  ['snapshots_offset unaligned', 64, be64(0x10001n)],
  ['l1_size huge', 36, be32(0x10000000)],
  ['l1_table_offset unaligned', 40, be64(0x30001n)],
  ['l1_size too small for the size', 36, be32(0)],
  ['refcount_order 7', 96, be32(7)],
  ['size 2^62', 24, be64(1n << 62n)],
  ['crypt_method 3', 32, be32(3)],
  ['version 4', 4, be32(4)],
  ['tables past the end of the file', 48, be64(0x100000n)],
];

/** A fresh directory with what `build` makes in it. */
function tempBuild(build: (dir: string, sh: (cmd: string) => void) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'dw-iotest-'));
  build(dir, (cmd) => {
    const r = spawnSync('sh', ['-c', cmd], { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`setup failed: ${cmd}\n${r.stderr}`);
  });
  return dir;
}

/** 272: 2 MiB clusters, 2-bit refcounts, the first 4 GiB (a sparse file) marked in use. */
function build272(dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f qcow2 -o cluster_size=2M,refcount_bits=2 t272.qcow2 64M');
  const f272 = join(dir, 't272.qcow2');
  const refb = peek64(f272, peek64(f272, 48));
  truncateSync(f272, 4 * 1024 ** 3);
  poke(f272, refb, Buffer.alloc(512, 0x55));
}

function build(dir: string, sh: (cmd: string) => void): void {
  // 305: the second refcount table entry made unaligned.
  sh('qemu-img create -q -f qcow2 -o refcount_bits=64,cluster_size=1k t305.qcow2 1M');
  sh(`qemu-io -c 'write 0 124k' -c 'discard 121k 1k' -c 'discard 123k 1k' t305.qcow2 >/dev/null`);
  poke(join(dir, 't305.qcow2'), peek64(join(dir, 't305.qcow2'), 48) + 14, Buffer.from([0x06]));
  // 036: unknown incompatible bits 5 and 63; in f036n the feature table names bit 63.
  sh('qemu-img create -q -f qcow2 f036.qcow2 1M');
  const f036 = join(dir, 'f036.qcow2');
  poke(f036, 72, be64((1n << 63n) | (1n << 5n)));
  const b = readFileSync(f036);
  const table = b.indexOf(be32(0x6803f857));
  b[table + 8 + 1] = 63;
  b.write('test-feature-63\0', table + 8 + 2, 'latin1');
  writeFileSync(join(dir, 'f036n.qcow2'), b);
  // 114: the backing format extension twice (the second says raw).
  sh('qemu-img create -q -f raw base.raw 1M');
  sh('qemu-img create -q -f qcow2 -u -b base.raw -F qcow2 t114.qcow2 1M');
  repeatBackingFormat(join(dir, 't114.qcow2'));
  // 080: one bad header field each.
  BAD_HEADERS.forEach(([, offset, value], i) => {
    sh(`qemu-img create -q -f qcow2 h${i}.qcow2 1M && qemu-io -c 'write -P 7 0 64k' h${i}.qcow2 >/dev/null`);
    poke(join(dir, `h${i}.qcow2`), offset, value);
  });
}

/** Appends a second backing-format extension naming "raw" after the first (iotest 114's case). */
function repeatBackingFormat(file: string): void {
  const b = readFileSync(file);
  const backingOff = Number(b.readBigUInt64BE(8));
  const backingLen = b.readUInt32BE(16);
  const name = Buffer.from(b.subarray(backingOff, backingOff + backingLen));
  let pos = b.readUInt32BE(100);
  const exts: Buffer[] = [];
  for (;;) {
    const type = b.readUInt32BE(pos);
    const len = b.readUInt32BE(pos + 4);
    if (type === 0) break;
    const whole = b.subarray(pos, pos + 8 + ((len + 7) & ~7));
    exts.push(whole);
    if (type === 0xe2792aca) exts.push(Buffer.concat([be32(0xe2792aca), be32(3), Buffer.from('raw\0\0\0\0\0', 'latin1')]));
    pos += whole.length;
  }
  const area = Buffer.concat([...exts, Buffer.alloc(8)]);
  const start = b.readUInt32BE(100);
  area.copy(b, start);
  name.copy(b, start + area.length);
  b.writeBigUInt64BE(BigInt(start + area.length), 8);
  writeFileSync(file, b);
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('iotests on broken images vs QEMU 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 120_000);
  afterAll(() => fx?.dispose());

  it('305: a write that needs an unaligned refcount block fails, and both images end up marked corrupt', async () => {
    const dq = fx.copy();
    const dd = fx.copy();
    const args = ['-c', 'write 121k 3k', 't305.qcow2'];
    const q = theirs('io', args, dq);
    const o = await ours('io', args, dd);
    // stderr holds QEMU's "qcow2: Marking image as corrupt: ..." notice, once.
    expect(normalize(o.stderr)).toContain('qcow2: Marking image as corrupt');
    expect({ code: o.code, stdout: normalize(o.stdout), stderr: normalize(o.stderr) }).toEqual({ code: q.code, stdout: normalize(q.stdout), stderr: normalize(q.stderr) });
    expect(q.code).toBe(1);
    for (const cmd of [['info', 't305.qcow2'], ['check', 't305.qcow2']]) {
      const qi = theirs('img', cmd, dq);
      const oi = theirs('img', cmd, dd);
      expect(oi).toEqual(qi);
    }
    const oc = await ours('img', ['check', 't305.qcow2'], dd);
    const qc = theirs('img', ['check', 't305.qcow2'], dq);
    expect({ code: oc.code, stdout: normalize(oc.stdout), stderr: normalize(oc.stderr) }).toEqual({
      code: qc.code,
      stdout: normalize(qc.stdout),
      stderr: normalize(qc.stderr),
    });
  });

  it('272: a compressed write past 4 GiB, then check: only the leaks of the first 4 GiB', async () => {
    // Built twice rather than copied: a copy would write the 4 GiB of the sparse file.
    const dq = tempBuild(build272);
    const dd = tempBuild(build272);
    try {
    const args = ['-c', 'write -c -P 42 0 2M', 't272.qcow2'];
    expect(normalize((await ours('io', args, dd)).stdout)).toBe(normalize(theirs('io', args, dq).stdout));
    const q = theirs('img', ['check', 't272.qcow2'], dq);
    const o = await ours('img', ['check', 't272.qcow2'], dd);
    expect({ code: o.code, stdout: normalize(o.stdout), stderr: normalize(o.stderr) }).toEqual({
      code: q.code,
      stdout: normalize(q.stdout),
      stderr: normalize(q.stderr),
    });
    expect(q.stderr).not.toContain('ERROR');
    } finally {
      rmSync(dq, { recursive: true, force: true });
      rmSync(dd, { recursive: true, force: true });
    }
  });

  for (const [name, file] of [['the image\'s own table', 'f036.qcow2'], ['a table naming bit 63', 'f036n.qcow2']]) {
    it(`036: unknown incompatible features, ${name}`, async () => {
      for (const c of [
        { tool: 'img' as const, args: ['info', file] },
        { tool: 'io' as const, args: ['-c', 'read 0 512', file] },
      ]) {
        const o = await golden(fx, c);
        expect(o.ours).toEqual(o.theirs);
        expect(o.theirs.code).toBe(1);
      }
    });
  }

  it('114: a repeated backing format extension opens, the later one wins', async () => {
    for (const args of [['info', 't114.qcow2'], ['info', '--output=json', 't114.qcow2'], ['check', 't114.qcow2']]) {
      const o = await golden(fx, { tool: 'img', args });
      expect(o.ours).toEqual(o.theirs);
      expect(o.theirs.code).toBe(0);
    }
  });

  BAD_HEADERS.forEach(([name], i) => {
    it(`080: ${name}: info, a read-only read and a read-write open answer as QEMU's`, async () => {
      for (const c of [
        { tool: 'img' as const, args: ['info', `h${i}.qcow2`] },
        { tool: 'io' as const, args: ['-r', '-c', 'read -P 7 0 64k', `h${i}.qcow2`] },
        { tool: 'io' as const, args: ['-c', 'write -P 8 0 512', `h${i}.qcow2`] },
      ]) {
        const o = await golden(fx, c);
        expect(o.ours.code).toBe(o.theirs.code);
        const strip = (s: string) => s.replace(/ \([^()]*\)$/gm, '').replace(/<timing>\n/g, '');
        expect(strip(o.ours.stdout + o.ours.stderr)).toBe(strip(o.theirs.stdout + o.theirs.stderr));
      }
    });
  });
});
