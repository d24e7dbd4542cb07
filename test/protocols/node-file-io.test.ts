/**
 * node-file's choice between system calls on the calling thread and the
 * thread pool (src/protocols/node-file-io.ts): small reads and writes in
 * place, large requests through the pool,
 * and a slow synchronous call sending the next ones through the pool. The
 * bytes are the same either way.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ASYNC_AFTER_SLOW, FileIo, SYNC_IO_MAX, loadSyncFs } from '../../src/protocols/node-file-io.js';

describe('node-file I/O policy', () => {
  let dir: string;
  let fh: FileHandle;
  const file = () => join(dir, 'f.bin');
  beforeAll(async () => {
    await loadSyncFs();
    dir = mkdtempSync(join(tmpdir(), 'dw-fileio-'));
    fh = await open(file(), 'w+');
    await fh.write(new Uint8Array(1 << 20).fill(1), 0, 1 << 20, 0);
  });
  afterAll(async () => {
    await fh.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('small reads and writes are system calls here; large ones go through the pool', async () => {
    // A clock that never moves: on a loaded machine a slow call would send the next ones
    // through the pool (the slow-call rule has its own test), and the counts would depend on it.
    const io = new FileIo(() => fh, true, () => 0);
    const small = new Uint8Array(4096).fill(7);
    expect(await io.write(small, 0, 4096, 8192)).toBe(4096);
    const back = new Uint8Array(4096);
    expect(await io.read(back, 0, 4096, 8192)).toBe(4096);
    expect(back).toEqual(small);
    expect(io.counts).toEqual({ syncReads: 1, asyncReads: 0, syncWrites: 1, asyncWrites: 0 });

    const big = new Uint8Array(SYNC_IO_MAX + 512).fill(9);
    expect(await io.write(big, 0, big.length, 65536)).toBe(big.length);
    const bigBack = new Uint8Array(big.length);
    expect(await io.read(bigBack, 0, bigBack.length, 65536)).toBe(big.length);
    expect(bigBack).toEqual(big);
    expect(io.counts).toMatchObject({ asyncReads: 1, asyncWrites: 1 });

    // A small write past the end lengthens the file, in place too.
    expect(await io.write(small, 0, 4096, (1 << 20) + 4096)).toBe(4096);
    expect(io.counts).toMatchObject({ syncWrites: 2, asyncWrites: 1 });
    const onDisk = readFileSync(file());
    expect(onDisk.length).toBe((1 << 20) + 8192);
    expect(onDisk.subarray((1 << 20) + 4096)).toEqual(Buffer.from(small));
    // The part of the grown range not written reads as zeros.
    expect(onDisk.subarray(1 << 20, (1 << 20) + 4096).every((b) => b === 0)).toBe(true);
  });

  it('a short read at the end of the file reports the bytes it got, in either mode', async () => {
    for (const allowSync of [true, false]) {
      const io = new FileIo(() => fh, allowSync);
      const size = (await fh.stat()).size;
      const buf = new Uint8Array(4096);
      expect(await io.read(buf, 0, 4096, size - 100)).toBe(100);
      expect(await io.read(buf, 0, 4096, size)).toBe(0);
    }
  });

  it('DISKWORKER_FILE_IO=async (allowSync false) sends everything through the pool', async () => {
    const io = new FileIo(() => fh, false);
    const b = new Uint8Array(512);
    await io.write(b, 0, 512, 0);
    await io.read(b, 0, 512, 0);
    expect(io.counts).toEqual({ syncReads: 0, asyncReads: 1, syncWrites: 0, asyncWrites: 1 });
  });

  it('a slow synchronous call sends the next calls of its kind through the pool, then tries again', async () => {
    // Every synchronous call seems to take 5 ms: the device, not the page cache.
    let t = 0;
    const io = new FileIo(() => fh, true, () => (t += 5));
    const b = new Uint8Array(4096);
    await io.read(b, 0, 4096, 0);
    expect(io.counts).toMatchObject({ syncReads: 1, asyncReads: 0 });
    for (let i = 0; i < ASYNC_AFTER_SLOW; i++) await io.read(b, 0, 4096, 0);
    expect(io.counts).toMatchObject({ syncReads: 1, asyncReads: ASYNC_AFTER_SLOW });
    // Writes keep their own count: they were never slow.
    await io.write(b, 0, 4096, 0);
    expect(io.counts).toMatchObject({ syncWrites: 1, asyncWrites: 0 });
    // After the pause, the next read is tried synchronously again.
    await io.read(b, 0, 4096, 0);
    expect(io.counts).toMatchObject({ syncReads: 2, asyncReads: ASYNC_AFTER_SLOW });
  });

  it('a failing call rejects with the system error in either mode', async () => {
    const closed = await open(file(), 'r');
    await closed.close();
    for (const allowSync of [true, false]) {
      const io = new FileIo(() => closed, allowSync);
      await expect(io.read(new Uint8Array(16), 0, 16, 0)).rejects.toMatchObject({ code: expect.stringMatching(/EBADF|ERR_/) });
    }
  });
});
