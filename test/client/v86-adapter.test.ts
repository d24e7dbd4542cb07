/**
 * The v86 adapter over a memory-backed disk in Node: v86 (libv86) boots the
 * e2e boot program (assembled here with nasm) from hda; the guest's reads and
 * writes go through toV86Buffer.
 */
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { BlockGraph } from '../../src/core/graph.js';
import { BlockBackend } from '../../src/core/backend.js';
import { createMemoryDriver, MemoryStorage } from '../../src/protocols/memory.js';
import { rawDriver } from '../../src/formats/raw/raw.js';
import { toV86Buffer, type V86Disk } from '../../src/client/v86.js';

const require = createRequire(import.meta.url);

async function memoryDisk(size: number): Promise<{ bb: BlockBackend; storage: MemoryStorage }> {
  const storage = new MemoryStorage();
  const graph = new BlockGraph([createMemoryDriver(storage), rawDriver], 'memory');
  storage.create('hda', size);
  const bb = await BlockBackend.open(graph, 'memory:hda', { format: 'raw' });
  return { bb, storage };
}

describe('toV86Buffer', () => {
  it('orders reads after earlier writes, copies written data, honours aborted reads', async () => {
    const { bb } = await memoryDisk(3 * 1024 ** 3);
    const hda = toV86Buffer(bb as V86Disk);
    expect(hda.byteLength).toBe(3 * 1024 ** 3);
    const data = new Uint8Array(512).fill(0x42);
    const far = 3 * 1024 ** 3 - 1024; // past 2 GiB
    let setDone = false;
    hda.set(far, data, () => (setDone = true));
    data.fill(0); // v86 may reuse its buffer at once
    expect(setDone).toBe(true);
    const got = await new Promise<Uint8Array>((r) => hda.get(far, 512, r));
    expect(got.every((b) => b === 0x42)).toBe(true);
    const ac = new AbortController();
    let called = false;
    hda.get(0, 256, () => (called = true), { signal: ac.signal });
    ac.abort();
    await hda.flush();
    await new Promise((r) => setTimeout(r, 10));
    expect(called).toBe(false);
    expect(hda.get_from_cache(0, 256)).toBeUndefined();
    expect(() => hda.get(far, 4096, () => undefined)).toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining(`at ${far} is outside`) }));
    let loaded = false;
    hda.onload = () => (loaded = true);
    hda.load();
    await Promise.resolve();
    expect(loaded).toBe(true);
    await bb.close();
  });

  it('a failed guest write is reported to onError, and flush rejects instead of claiming the data is stored', async () => {
    const { bb, storage } = await memoryDisk(1 << 20);
    const errors: unknown[] = [];
    const hda = toV86Buffer(bb as V86Disk, { onError: (e) => errors.push(e) });
    hda.set(0, new Uint8Array(512).fill(1));
    await hda.flush();
    storage.get('hda')!.faults = { failAfterWrites: 0, failCode: 'ENOSPC' };
    let acknowledged = false;
    hda.set(4096, new Uint8Array(512).fill(2), () => (acknowledged = true));
    expect(acknowledged).toBe(true);
    await expect(hda.flush()).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(errors).toHaveLength(1);
    expect((hda.writeError as { code?: string }).code).toBe('ENOSPC');
    expect(hda.pendingWrites).toBe(0);
    storage.get('hda')!.faults = {};
    await expect(hda.flush()).rejects.toMatchObject({ code: 'ENOSPC' });
    await bb.close();
  });

  it('v86 boots a program from a memory disk and its writes land in the image', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-v86-'));
    const bin = path.join(dir, 'boot.bin');
    execFileSync('nasm', ['-f', 'bin', '-o', bin, path.resolve('e2e/fixtures/boot.asm')]);
    const { bb, storage } = await memoryDisk(8 << 20);
    await bb.write(0, new Uint8Array(fs.readFileSync(bin)));
    const sector1 = new Uint8Array(512).map((_, i) => (i * 7) & 0xff);
    sector1.set(new TextEncoder().encode('SECTOR ONE DATA!'));
    await bb.write(512, sector1.slice());
    const hda = toV86Buffer(bb as V86Disk);
    const { V86 } = await import('v86');
    const v86Dir = path.dirname(require.resolve('v86/build/libv86.mjs'));
    const toAb = (p: string) => {
      const b = fs.readFileSync(p);
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
    };
    let serial = '';
    const emulator = new V86({
      wasm_path: path.join(v86Dir, 'v86.wasm'),
      bios: { buffer: toAb('/usr/share/seabios/bios-256k.bin') },
      vga_bios: { buffer: toAb('/usr/share/seabios/vgabios-stdvga.bin') },
      hda: hda as never,
      memory_size: 32 << 20,
      autostart: true,
      disable_keyboard: true,
      disable_mouse: true,
      disable_speaker: true,
    } as never);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no DONE; serial: ${JSON.stringify(serial)}`)), 60_000);
      emulator.add_listener('serial0-output-byte', (b: number) => {
        serial += String.fromCharCode(b);
        if (/DONE\n|FAIL\n/.test(serial)) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    emulator.stop();
    await hda.flush();
    await emulator.destroy();
    expect(serial).toContain('BOOT OK');
    expect(serial).toContain('SECTOR1: SECTOR ONE DATA!');
    expect(serial).toContain('DONE');
    const s2 = storage.get('hda')!.toBytes().subarray(1024, 1536);
    expect(new TextDecoder().decode(s2.subarray(0, 16))).toBe('GUEST WROTE THIS');
    for (let i = 16; i < 512; i++) expect(s2[i]).toBe((sector1[i]! + 1) & 0xff);
    await bb.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
