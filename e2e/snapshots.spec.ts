/**
 * Internal snapshots from the page (`disk.snapshots`) in real Chromium on
 * OPFS and IndexedDB qcow2 images: a snapshot created with a VM state survives a page
 * reload; `readVmState` returns the exact bytes without applying it, and
 * applying it brings back the disk content of that moment (the writes after
 * it are gone). Errors
 * cross the worker boundary as BlockErrors with codes. The image then leaves
 * the browser as a download: `qemu-img info` lists the snapshot with its VM
 * state size and `qemu-img check` finds it clean.
 */
import { test, expect, type Page } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openHarness, sh } from './helpers.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
/** Writes before the snapshot (pattern seed 1) and after it (seed 2): [offset, length]. */
const BEFORE: Array<[number, number]> = [
  [0, 65536],
  [5 * MiB + 3, 100000],
];
const AFTER: Array<[number, number]> = [
  [4096, 8192],
  [5 * MiB + 50000, 70000],
  [12 * MiB, 4096],
];
const VM_BYTES = 300_017;

async function downloadImage(page: Page, p: string): Promise<{ file: string; dir: string }> {
  const download = page.waitForEvent('download');
  await page.evaluate(async (p) => {
    const dw = await window.harness.start();
    const blob = await new Response(await dw.exportStream(p)).blob();
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'disk.qcow2';
    document.body.append(a);
    a.click();
  }, p);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-snapvm-'));
  const file = path.join(dir, 'disk.qcow2');
  await (await download).saveAs(file);
  return { file, dir };
}

for (const P of ['opfs:/snapvm/disk.qcow2', 'idb:snapvm-disk.qcow2']) {
  test(`a snapshot with a VM state on ${P.split(':')[0]} survives a reload; apply brings back its disk and readVmState its bytes; qemu-img agrees`, async ({ page }) => {
    await openHarness(page);
    const first = await page.evaluate(
      async ({ p, size, before, after, vmBytes }) => {
        const h = window.harness;
        const dw = await h.start();
        await dw.remove(p).catch(() => undefined);
        await dw.create({ path: p, format: 'qcow2', size });
        const disk = await dw.open({ path: p });
        for (const [o, n] of before) await disk.write(o, h.pattern(1, n, o));
        const vmState = h.pattern(9, vmBytes);
        const entry = await disk.snapshots.create('s1', { vmState });
        // The caller keeps its buffer (the API copies it).
        const kept = vmState.length;
        for (const [o, n] of after) await disk.write(o, h.pattern(2, n, o));
        const errors = [];
        for (const f of [
          () => disk.snapshots.create('s1'),
          () => disk.snapshots.create(''),
          () => disk.snapshots.apply('nope'),
          () => disk.snapshots.delete('nope'),
        ]) {
          errors.push(await f().then(() => null, (e: unknown) => h.describeError(e)));
        }
        const list = await disk.snapshots.list();
        await disk.close();
        return { entry, kept, errors, list };
      },
      { p: P, size: SIZE, before: BEFORE, after: AFTER, vmBytes: VM_BYTES },
    );
    expect(first.kept).toBe(VM_BYTES);
    expect(first.entry).toMatchObject({ id: '1', name: 's1', vmStateSize: VM_BYTES, diskSize: SIZE, vmClockNsec: 0 });
    expect(Math.abs(first.entry.date - Date.now())).toBeLessThan(10 * 60_000);
    expect(first.list).toEqual([first.entry]);
    expect(first.errors.map((e) => e && [e.code, e.isBlockError])).toEqual([
      ['EEXIST', true],
      ['EINVAL', true],
      ['ENOENT', true],
      ['ENOENT', true],
    ]);

    await page.reload();
    await openHarness(page);
    const second = await page.evaluate(
      async ({ p, before, after, vmBytes }) => {
        const h = window.harness;
        const dw = await h.start();
        const disk = await dw.open({ path: p });
        const list = await disk.snapshots.list();
        // First index in each range where the disk differs from the pattern of `seed`.
        const check = async (ranges: Array<[number, number]>, seed: number) => {
          const out: number[] = [];
          for (const [o, n] of ranges) out.push(h.diff(await disk.read(o, n), h.pattern(seed, n, o)));
          return out;
        };
        const afterWritesBefore = await check(after, 2);
        const vm = await disk.snapshots.readVmState('s1');
        const vmDiff = h.diff(vm, h.pattern(9, vmBytes));
        // Reading the VM state did not apply the snapshot.
        const stillAfter = await check(after, 2);
        await disk.snapshots.apply('s1');
        // After the apply: the snapshot's disk (the later writes' ranges hold what was there then).
        const beforeAfterApply = await check(before, 1);
        const zeroAt12 = (await disk.read(12 << 20, 4096)).every((b) => b === 0);
        // A second snapshot without VM state, by id, deleted again.
        const s2 = await disk.snapshots.create('s2');
        await disk.snapshots.apply(s2.id);
        await disk.snapshots.delete(s2.id);
        const final = await disk.snapshots.list();
        await disk.close();
        return { list, afterWritesBefore, stillAfter, vmLength: vm.length, vmDiff, beforeAfterApply, zeroAt12, s2, final };
      },
      { p: P, before: BEFORE, after: AFTER, vmBytes: VM_BYTES },
    );
    expect(second.list).toEqual(first.list);
    expect(second.afterWritesBefore).toEqual([-1, -1, -1]);
    expect(second.stillAfter).toEqual([-1, -1, -1]);
    expect(second.vmLength).toBe(VM_BYTES);
    expect(second.vmDiff).toBe(-1);
    expect(second.beforeAfterApply).toEqual([-1, -1]);
    expect(second.zeroAt12).toBe(true);
    expect(second.s2).toMatchObject({ id: '2', name: 's2', vmStateSize: 0 });
    expect(second.final).toEqual(first.list);

    const { file, dir } = await downloadImage(page, P);
    try {
      const info = JSON.parse(sh('qemu-img', ['info', '--output=json', file])) as { snapshots?: Array<{ id: string; name: string; 'vm-state-size': number }> };
      expect(info.snapshots?.map((s) => [s.id, s.name, s['vm-state-size']])).toEqual([['1', 's1', VM_BYTES]]);
      const check = JSON.parse(sh('qemu-img', ['check', '--output=json', file])) as { corruptions?: number; leaks?: number; 'check-errors'?: number };
      expect({ corruptions: check.corruptions ?? 0, leaks: check.leaks ?? 0, errors: check['check-errors'] ?? 0 }).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
      // QEMU applies it too, and the image stays clean.
      sh('qemu-img', ['snapshot', '-a', 's1', file]);
      const again = JSON.parse(sh('qemu-img', ['check', '--output=json', file])) as { corruptions?: number; leaks?: number };
      expect({ corruptions: again.corruptions ?? 0, leaks: again.leaks ?? 0 }).toEqual({ corruptions: 0, leaks: 0 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
