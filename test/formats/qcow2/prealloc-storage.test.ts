/**
 * preallocation=falloc / full reserve storage for every data cluster they
 * allocate, also those that lie between metadata written further out in the
 * file (512-byte clusters: L2 tables every 32 KiB), so writing the guest range
 * afterwards does not grow the file's allocation (iotest 125). Compared with
 * qemu-img 7.2 on the same operations: the file length must not change on
 * the write, and our allocated storage may grow no more than QEMU's (which
 * fallocate may round to the file system's blocks).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { statSync } from 'node:fs';
import { ours } from '../../cli/harness.js';
import { qemuImg, qemuIo, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

/** Allocated bytes and length of a file. */
const usage = (f: string) => ({ allocated: statSync(f).blocks * 512, length: statSync(f).size });

/** The write after preallocation grew neither tool's file more than QEMU's. */
function expectNoMoreGrowth(q0: ReturnType<typeof usage>, q1: ReturnType<typeof usage>, d0: ReturnType<typeof usage>, d1: ReturnType<typeof usage>): void {
  expect(q1.length).toBe(q0.length);
  expect(d1.length).toBe(d0.length);
  expect(d1.allocated - d0.allocated).toBeLessThanOrEqual(Math.max(0, q1.allocated - q0.allocated));
}

const CREATE_SIZE = 2 * 1024 * 1024 - 48 * 1024;

async function writeWithOurs(file: string, off: number, len: number): Promise<void> {
  const r = await ours('io', ['-f', 'qcow2', '-c', `write ${off} ${len}`, file], t.dir);
  expect(r.code).toBe(0);
}

describe('falloc / full preallocation reserve the storage of the data clusters', () => {
  for (const mode of ['falloc', 'full']) {
    it(`img create -o preallocation=${mode},cluster_size=512, then a write of the whole disk`, async () => {
      const q = t.path(`create-${mode}-q.qcow2`);
      const d = t.path(`create-${mode}-d.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', '-o', `preallocation=${mode},cluster_size=512`, q, String(CREATE_SIZE));
      const r = await ours('img', ['create', '-q', '-f', 'qcow2', '-o', `preallocation=${mode},cluster_size=512`, d, String(CREATE_SIZE)], t.dir);
      expect(r.code).toBe(0);
      const q0 = usage(q);
      const d0 = usage(d);
      expect(d0.length).toBe(q0.length);
      qemuIo(q, [`write 0 ${CREATE_SIZE}`]);
      await writeWithOurs(d, 0, CREATE_SIZE);
      expectNoMoreGrowth(q0, usage(q), d0, usage(d));
    });

    for (const growKiB of [16, 48, 80]) {
      it(`img resize --preallocation=${mode} +${growKiB}K after metadata preallocation, then a write of the new part`, async () => {
        const base = t.path(`grow-${mode}-${growKiB}.qcow2`);
        qemuImg('create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata,cluster_size=512', base, String(CREATE_SIZE));
        const q = `${base}.q`;
        const d = `${base}.d`;
        qemuImg('convert', '-O', 'qcow2', '-o', 'preallocation=metadata,cluster_size=512', base, q);
        qemuImg('convert', '-O', 'qcow2', '-o', 'preallocation=metadata,cluster_size=512', base, d);
        qemuImg('resize', '-q', '-f', 'qcow2', `--preallocation=${mode}`, q, `+${growKiB}K`);
        const r = await ours('img', ['resize', '-q', '-f', 'qcow2', `--preallocation=${mode}`, d, `+${growKiB}K`], t.dir);
        expect(r.code).toBe(0);
        qemuIo(q, [`write 0 ${CREATE_SIZE}`]);
        await writeWithOurs(d, 0, CREATE_SIZE);
        const q1 = usage(q);
        const d1 = usage(d);
        qemuIo(q, [`write ${CREATE_SIZE} ${growKiB}K`]);
        await writeWithOurs(d, CREATE_SIZE, growKiB * 1024);
        expectNoMoreGrowth(q1, usage(q), d1, usage(d));
      });
    }
  }
});
