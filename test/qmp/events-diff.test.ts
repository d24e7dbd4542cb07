/**
 * BLOCK_IMAGE_CORRUPTED against qemu-storage-daemon 7.2: qcow2 images with a
 * broken L2 table offset, or a data cluster on top of the L1 table, read and
 * written through an NBD export; the event (fatal on a writable node, not on
 * a read-only one; offset and size for an overlapping write), said once, the
 * stderr line, and no BLOCK_IO_ERROR: an export's BlockBackend is no device.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { both, hasQsd, run, stopAll, type Side, type SideResult, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };

/** Replaces the 8-byte big-endian entry at `at` with `f(old)`. */
function patch(file: string, at: number, f: (old: bigint) => bigint): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(8);
  readSync(fd, b, 0, 8, at);
  const next = Buffer.alloc(8);
  next.writeBigUInt64BE(f(b.readBigUInt64BE()));
  writeSync(fd, next, 0, 8, at);
  closeSync(fd);
}

/** One image with 64 KiB written at 0: L1 at 0x30000, its L2 table at 0x40000, the data at 0x50000. */
function image(dir: string, broken: 'l2-offset' | 'overlap'): void {
  run('qemu-img', ['create', '-f', 'qcow2', 'c.qcow2', '1M'], dir);
  run('qemu-io', ['-c', 'write -P 1 0 64k', 'c.qcow2'], dir);
  const file = join(dir, 'c.qcow2');
  if (broken === 'l2-offset') patch(file, 0x30000, (e) => e | 0x200n);
  else patch(file, 0x40000, () => 0x8000000000030000n);
}

/** Runs qemu-io on the export; its output goes into `out` of the side whose directory it is. */
const io = (out: Record<Side, string[]>, cmds: string[]): Step => ({
  call: (dir) => {
    const r = spawnSync('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), `nbd+unix:///q?socket=${dir}/nbd.sock`], { encoding: 'utf8' });
    // Timings masked: they depend on the machine.
    out[dir.endsWith('ours') ? 'ours' : 'qemu'].push((r.stdout + r.stderr).replace(/; [\d:.]+ sec \(.*\)/g, '; (time)'));
  },
});

async function scenario(name: string, broken: 'l2-offset' | 'overlap', readOnly: boolean, cmds: string[]): Promise<{ r: Record<Side, SideResult>; out: Record<Side, string[]> }> {
  const out = { qemu: [] as string[], ours: [] as string[] };
  const r = await both(
    name,
    (dir) => image(dir, broken),
    ['--blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': 'q', 'read-only': readOnly, file: { driver: 'file', filename: '$DIR/c.qcow2' } })],
    [
      cap,
      { execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } } },
      { execute: 'block-export-add', arguments: { type: 'nbd', id: 'e', 'node-name': 'q', writable: !readOnly } },
      io(out, cmds),
      { execute: 'query-block-exports' },
      { execute: 'block-export-del', arguments: { id: 'e' } },
    ],
  );
  return { r, out };
}

const corruptLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('qcow2:'));

describe.skipIf(!hasQsd())('BLOCK_IMAGE_CORRUPTED against qemu-storage-daemon 7.2', () => {
  it('an unaligned L2 table offset on a writable node: fatal, said once', async () => {
    const { r, out } = await scenario('corrupt-l2', 'l2-offset', false, ['read 0 4k', 'read 0 4k']);
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    expect(r.qemu.events.map((e) => (e as { event: string }).event)).toContain('BLOCK_IMAGE_CORRUPTED');
    expect(corruptLines(r.ours.stderr)).toEqual(corruptLines(r.qemu.stderr));
    // The first read fails with EIO; after it QEMU's node has no driver (EINVAL), ours stays refused.
    expect(out.ours[0]!.split('\n')[0]).toBe(out.qemu[0]!.split('\n')[0]);
  }, 60_000);

  it('the same on a read-only node: not fatal', async () => {
    const { r } = await scenario('corrupt-l2-ro', 'l2-offset', true, ['read 0 4k']);
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    expect(corruptLines(r.ours.stderr)).toEqual(corruptLines(r.qemu.stderr));
  }, 60_000);

  it('a data write onto the L1 table: refused, the event with the offset and size of the write', async () => {
    const { r, out } = await scenario('corrupt-overlap', 'overlap', false, ['read 0 4k', 'write -P 3 0 4k']);
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(r.ours.events).toEqual(r.qemu.events);
    expect(JSON.stringify(r.qemu.events)).toContain('"offset":196608');
    expect(corruptLines(r.ours.stderr)).toEqual(corruptLines(r.qemu.stderr));
    expect(out.ours).toEqual(out.qemu);
  }, 60_000);
});
