/**
 * The blklogwrites filter against qemu-io 7.2: the same interactive qemu-io
 * sessions (writes, zero writes, discards, flushes, unaligned requests, FUA)
 * through both tools, with the log file's digest taken after the open, after
 * each command and after exit; outputs, those digests (the order of entries,
 * superblock updates) and the final bytes of the data file and of the log
 * (dm-log-writes format, deterministic) must agree. Bad options and bad logs
 * to append to must fail with QEMU's messages.
 *
 *   blklogwrites ─file→ file (d.raw)
 *                └log─→ file (l.log)
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize } from '../cli/harness.js';
import { oursSession, theirsSession, type Session } from './interactive.js';

const opts = (extra = '', data = 'd.raw', log = 'l.log') =>
  `driver=blklogwrites${extra ? ',' + extra : ''},file.filename=${data},log.filename=${log}`;

interface Case {
  name: string;
  args: string[];
  io: string[];
  data?: string;
}

const MIXED = ['write -P 1 0 64k', 'write -z 64k 4k', 'discard 128k 8k', 'flush', 'write -P 2 1000 3000', 'write -z 5000 100', 'read -P 2 1000 3000'];

const CASES: Case[] = [
  { name: 'writes, zero writes, discards and flushes are logged in order', args: ['--image-opts', opts()], io: MIXED },
  { name: 'writes without write-through (-t writeback): flushes only when asked', args: ['-t', 'writeback', '--image-opts', opts()], io: [...MIXED, 'write -P 3 8k 8k', 'write -f -P 4 16k 4k'] },
  {
    name: 'log-sector-size=4096 aligns every request to 4 KiB',
    args: ['--image-opts', opts('log-sector-size=4096')],
    io: ['write -P 5 0 4k', 'write -P 6 512 512', 'write -z 12k 8k', 'discard 32k 8k', 'flush', 'write -P 7 40k 100'],
  },
  {
    name: 'log-super-update-interval=2 rewrites the superblock every second entry',
    args: ['-t', 'writeback', '--image-opts', opts('log-super-update-interval=2')],
    io: ['write 0 4k', 'write 4k 4k', 'write 8k 4k', 'discard 0 4k', 'write -z 16k 4k', 'read 0 4k'],
  },
  {
    name: 'log-append=on continues a log made by an earlier session',
    args: ['--image-opts', opts('log-append=on', 'd.raw', 'old.log')],
    io: ['write -P 8 64k 8k', 'discard 0 4k', 'flush', 'write -z 4k 4k'],
  },
  {
    name: 'log-append=on with an empty log starts one of 512-byte sectors',
    args: ['--image-opts', opts('log-append=on')],
    io: ['write -P 9 0 4k', 'flush'],
  },
  {
    name: 'read-only: reads pass through, nothing is logged',
    args: ['-r', '--image-opts', opts('', 'd.raw', 'old.log')],
    io: ['read -P 3 0 8k', 'read -P 0 8k 4k', 'read 0 64k'],
  },
  {
    // No discards: our qcow2 passes freed clusters' discards down after its
    // metadata, QEMU before (src/formats/qcow2 frees at cache flush). No write
    // across clusters either: QEMU runs the pieces in parallel, so the order
    // they reach the log in is QEMU's scheduling.
    name: 'a qcow2 image over the filter: its data and metadata writes and flushes are logged as QEMU does',
    args: ['--image-opts', 'driver=qcow2,file.driver=blklogwrites,file.file.filename=t.qcow2,file.log.filename=l.log'],
    io: ['write -P 1 0 64k', 'write -P 2 1M 4k', 'write -z 2M 64k', 'write -P 3 3M 1k', 'flush', 'write -P 4 72k 8k', 'write -P 5 4k 4k'],
    data: 't.qcow2',
  },
];

const BAD_OPTIONS: Array<[string, string, Record<string, Buffer>?]> = [
  ['a log sector size that is not a power of two', 'log-sector-size=100'],
  ['a log sector size smaller than an entry', 'log-sector-size=16'],
  ['a log sector size of 16 MiB', 'log-sector-size=16M'],
  ['a log sector size that is not a size', 'log-sector-size=1x'],
  ['a superblock update interval of 0', 'log-super-update-interval=0'],
  ['log-append together with log-sector-size', 'log-append=on,log-sector-size=512'],
  ['log-append that is not a boolean', 'log-append=x'],
  ['an unknown option', 'bogus=1'],
  ['log-append on a log without the magic', 'log-append=on', { 'l.log': Buffer.alloc(1024, 0x55) }],
  ['log-append on a log of another version', 'log-append=on', { 'l.log': superblock(7n, 0n, 512) }],
  ['log-append on a log with an entry of unknown flags', 'log-append=on', { 'l.log': Buffer.concat([superblock(1n, 1n, 512), entry(0x30n)]) }],
];

function superblock(version: bigint, entries: bigint, sectorSize: number): Buffer {
  const b = Buffer.alloc(512);
  b.writeBigUInt64LE(0x6a736677736872n, 0);
  b.writeBigUInt64LE(version, 8);
  b.writeBigUInt64LE(entries, 16);
  b.writeUInt32LE(sectorSize, 24);
  return b;
}

function entry(flags: bigint): Buffer {
  const b = Buffer.alloc(512);
  b.writeBigUInt64LE(flags, 16);
  return b;
}

const digestOf = (dir: string, file: string) => () => createHash('sha256').update(readFileSync(join(dir, file))).digest('hex').slice(0, 16);

function clean<T>(s: Session<T>) {
  return { code: s.run.code, stdout: normalize(s.run.stdout), stderr: normalize(s.run.stderr), probes: s.probes };
}

describe.skipIf(!hasQemu())('blklogwrites filter vs qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f raw d.raw 1M');
      sh('qemu-img create -q -f qcow2 t.qcow2 4M');
      sh(': > l.log');
      // A log an earlier QEMU session left behind, for log-append.
      sh(': > old.log');
      sh(`qemu-io -c 'write -P 3 0 8k' -c 'write -z 8k 4k' -c 'discard 16k 4k' --image-opts '${opts('', 'd.raw', 'old.log')}' >/dev/null`);
    });
  });
  afterAll(() => fx.dispose());

  for (const c of CASES) {
    it(c.name, async () => {
      const log = c.args.join(' ').includes('old.log') ? 'old.log' : 'l.log';
      const data = c.data ?? 'd.raw';
      const dq = fx.copy();
      const dd = fx.copy();
      const t = clean(await theirsSession(c.args, dq, c.io, digestOf(dq, log)));
      const o = clean(await oursSession(c.args, dd, c.io, digestOf(dd, log)));
      expect(o).toEqual(t);
      expect(t.code).toBe(0);
      expect(Buffer.compare(readFileSync(join(dd, log)), readFileSync(join(dq, log)))).toBe(0);
      expect(Buffer.compare(readFileSync(join(dd, data)), readFileSync(join(dq, data)))).toBe(0);
    }, 50_000);
  }

  for (const [name, extra, files] of BAD_OPTIONS) {
    it(`refuses ${name} as QEMU`, async () => {
      const args = ['--image-opts', opts(extra)];
      const dq = fx.copy();
      const dd = fx.copy();
      for (const [f, bytes] of Object.entries(files ?? {})) {
        writeFileSync(join(dq, f), bytes);
        writeFileSync(join(dd, f), bytes);
      }
      const t = clean(await theirsSession(args, dq, ['write 0 4k'], digestOf(dq, 'l.log')));
      const o = clean(await oursSession(args, dd, ['write 0 4k'], digestOf(dd, 'l.log')));
      expect(o).toEqual(t);
      expect(t.code).toBe(1);
    }, 30_000);
  }

  it('needs a log child, as QEMU', async () => {
    const args = ['--image-opts', 'driver=blklogwrites,file.filename=d.raw'];
    const dq = fx.copy();
    const dd = fx.copy();
    const t = clean(await theirsSession(args, dq, ['read 0 4k'], () => 0));
    const o = clean(await oursSession(args, dd, ['read 0 4k'], () => 0));
    expect(o).toEqual(t);
    expect(t.stderr).toContain('A block device must be specified for "log"');
  }, 30_000);
});
