/**
 * The v86 adapter's read-ahead (src/client/v86-readahead.ts): sequential
 * guest reads are answered from pieces read ahead, random ones read only
 * what they ask for, and no answer is older than a write the guest made.
 * A scripted disk holds each read until the test releases it, so the
 * interleavings with writes are exact.
 */
import { describe, it, expect } from 'vitest';
import { toV86Buffer, type V86Disk } from '../../src/client/v86.js';

const MIB = 1 << 20;

/**
 * A disk in memory whose reads wait until released (all at once or one by
 * one). With `readInto`, reads move their buffer away and back as the page's
 * Disk does (the one sent is detached), and count the buffers read into again.
 */
function scriptedDisk(size: number, withReadInto: boolean, seed = 7) {
  const bytes = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  const reads: { start: number; len: number; release: () => void }[] = [];
  const asked: [number, number][] = [];
  const returned = new WeakSet<Uint8Array>();
  let reused = 0;
  let auto = false;
  let failNext = 0;
  const serve = (start: number, len: number, into?: Uint8Array<ArrayBuffer>) => {
    asked.push([start, len]);
    if (into && returned.has(into)) reused++;
    // The buffer leaves the caller at once, as a transfer does.
    const moved = into ? structuredClone(into, { transfer: [into.buffer] }) : undefined;
    return new Promise<Uint8Array>((resolve, reject) => {
      const fail = failNext > 0 ? (failNext--, true) : false;
      // The bytes as they are when the read is served (not when it was asked for).
      const release = () => {
        if (fail) return reject(new Error('EIO'));
        if (!moved) return resolve(bytes.slice(start, start + len));
        moved.set(bytes.subarray(start, start + len));
        returned.add(moved);
        resolve(moved);
      };
      if (auto) queueMicrotask(release);
      else reads.push({ start, len, release });
    });
  };
  const disk: V86Disk = {
    length: size,
    read: (start, len) => serve(start, len),
    ...(withReadInto ? { readInto: (start: number, buf: Uint8Array<ArrayBuffer>) => serve(start, buf.length, buf) } : {}),
    async write(start, data) {
      bytes.set(data, start);
    },
    async flush() {},
  };
  return {
    disk,
    bytes,
    reads,
    asked,
    get reused() {
      return reused;
    },
    setAuto(on: boolean) {
      auto = on;
      for (const r of reads.splice(0)) r.release();
    },
    failReads(n: number) {
      failNext = n;
    },
    async releaseAll() {
      while (reads.length > 0) {
        for (const r of reads.splice(0)) r.release();
        await new Promise((r) => setTimeout(r, 0));
      }
    },
  };
}

function read(hda: ReturnType<typeof toV86Buffer>, start: number, len: number): { sync: boolean; data: Promise<Uint8Array> } {
  let sync = true;
  let got: Uint8Array | undefined;
  let resolve!: (d: Uint8Array) => void;
  const data = new Promise<Uint8Array>((r) => (resolve = r));
  hda.get(start, len, (d) => {
    // The bytes are the caller's only until the callback returns.
    got = d.slice();
    resolve(got);
  });
  sync = got !== undefined;
  return { sync, data };
}

describe.each([
  ['read', false],
  ['readInto', true],
])('toV86Buffer read-ahead over a disk with %s', (_, withReadInto) => {
  it('a sequential run is answered from pieces read ahead, byte-exact, within the bound', async () => {
    const d = scriptedDisk(32 * MIB, withReadInto);
    d.setAuto(true);
    const hda = toV86Buffer(d.disk, { readAhead: 4 * MIB });
    let syncAnswers = 0;
    let maxInFlight = 0;
    for (let pos = 0; pos < 24 * MIB; pos += MIB) {
      const r = read(hda, pos, MIB);
      if (r.sync) syncAnswers++;
      const data = await r.data;
      expect(Buffer.from(data).equals(Buffer.from(d.bytes.subarray(pos, pos + MIB)))).toBe(true);
      // Let the pieces asked for arrive, as the guest's own work would.
      await new Promise((res) => setTimeout(res, 0));
      maxInFlight = Math.max(maxInFlight, d.asked.length * MIB - pos - MIB);
    }
    const asked = d.asked.length;
    // The first two reads go to the disk; from the third on the answers were there already.
    expect(syncAnswers).toBeGreaterThanOrEqual(20);
    // Nothing read twice, nothing read far past the run: 24 MiB read, at most 4 MiB more.
    expect(asked * MIB).toBeLessThanOrEqual(28 * MIB);
    expect(maxInFlight).toBeLessThanOrEqual(4 * MIB);
    // The buffers go round: only the first few reads take new ones.
    if (withReadInto) expect(d.reused).toBeGreaterThanOrEqual(asked - 8);
  });

  it('random reads ask for what they read and nothing more', async () => {
    const d = scriptedDisk(8 * MIB, withReadInto);
    d.setAuto(true);
    const hda = toV86Buffer(d.disk);
    const offsets = [5 * MIB, 12288, 3 * MIB + 4096, 40960, 7 * MIB];
    for (const o of offsets) {
      const data = await read(hda, o, 4096).data;
      expect(Buffer.from(data).equals(Buffer.from(d.bytes.subarray(o, o + 4096)))).toBe(true);
    }
    expect(d.asked).toEqual(offsets.map((o) => [o, 4096]));
    if (withReadInto) expect(d.reused).toBe(offsets.length - 1);
  });

  it('a write drops what was read ahead of it, also a piece still in flight: the next read sees the write', async () => {
    const d = scriptedDisk(16 * MIB, withReadInto);
    const hda = toV86Buffer(d.disk, { readAhead: 4 * MIB });
    // Two sequential reads start the run; the pieces after them stay in flight.
    const a = read(hda, 0, 256 * 1024);
    await d.releaseAll();
    await a.data;
    const b = read(hda, 256 * 1024, 256 * 1024);
    expect(d.reads.length).toBeGreaterThan(1); // b's own read and read-ahead pieces
    const aheadStarts = d.reads.map((r) => r.start);
    expect(aheadStarts).toContain(512 * 1024);
    // The guest writes into the piece in flight before it arrives.
    const written = new Uint8Array(4096).fill(0xab);
    hda.set(600 * 1024, written);
    await d.releaseAll();
    await b.data;
    const c = read(hda, 512 * 1024, 256 * 1024);
    await d.releaseAll();
    const got = await c.data;
    const at = 600 * 1024 - 512 * 1024;
    expect(got.subarray(at, at + 4096).every((x) => x === 0xab)).toBe(true);
    expect(Buffer.from(got).equals(Buffer.from(d.bytes.subarray(512 * 1024, 768 * 1024)))).toBe(true);
    // A write into a piece that has arrived: dropped as well.
    d.setAuto(true);
    for (let pos = 768 * 1024; pos < 2 * MIB; pos += 256 * 1024) await read(hda, pos, 256 * 1024).data;
    await new Promise((r) => setTimeout(r, 0));
    hda.set(2 * MIB + 8192, written);
    const e = await read(hda, 2 * MIB, 256 * 1024).data;
    expect(e.subarray(8192, 8192 + 4096).every((x) => x === 0xab)).toBe(true);
    await hda.flush();
  });

  it('a failed read ahead is not the guest\'s error: its read asks the disk again', async () => {
    const d = scriptedDisk(8 * MIB, withReadInto);
    d.setAuto(true);
    const errors: unknown[] = [];
    const hda = toV86Buffer(d.disk, { readAhead: 2 * MIB, onError: (e) => errors.push(e) });
    await read(hda, 0, 512 * 1024).data;
    d.failReads(3); // the next read and the pieces read ahead of it fail
    await read(hda, 512 * 1024, 512 * 1024).data.catch(() => undefined);
    errors.length = 0;
    await new Promise((r) => setTimeout(r, 0));
    const got = await read(hda, MIB, 512 * 1024).data;
    expect(Buffer.from(got).equals(Buffer.from(d.bytes.subarray(MIB, MIB + 512 * 1024)))).toBe(true);
    expect(errors).toEqual([]);
  });

  it('readAhead: 0 reads only what the guest asks for; set_state drops what was read ahead', async () => {
    const d = scriptedDisk(8 * MIB, withReadInto);
    d.setAuto(true);
    const off = toV86Buffer(d.disk, { readAhead: 0 });
    for (let pos = 0; pos < 4 * MIB; pos += MIB) await read(off, pos, MIB).data;
    expect(d.asked.map(([s]) => s)).toEqual([0, MIB, 2 * MIB, 3 * MIB]);

    d.asked.length = 0;
    const on = toV86Buffer(d.disk, { readAhead: 2 * MIB });
    await read(on, 0, MIB).data;
    await read(on, MIB, MIB).data;
    await new Promise((r) => setTimeout(r, 0));
    expect(d.asked.length).toBeGreaterThan(2);
    // Another disk content under the buffer (a snapshot applied): nothing old is answered.
    d.bytes.fill(0x5a, 2 * MIB, 3 * MIB);
    on.set_state([]);
    const got = await read(on, 2 * MIB, MIB).data;
    expect(got.every((x) => x === 0x5a)).toBe(true);
  });
});
