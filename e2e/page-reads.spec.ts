/**
 * Page-side bulk reads in Chromium (issue #18): readInto with several reads
 * in flight (the harness page is cross-origin isolated, so they go through
 * the disk's own ring and are copied into the caller's buffers, which stay
 * attached), reads longer than a ring slot, and Disk.bulkReader's stream over
 * a qcow2 image in OPFS. Data only; speed is bench/browser/page-reads.ts's.
 */
import { test, expect } from '@playwright/test';
import { openHarness, imageFormat } from './helpers.js';

test('readInto with four reads in flight and bulkReader.stream read every byte right', async ({ page }) => {
  await openHarness(page);
  const format = await imageFormat(page);
  const r = await page.evaluate(async (format) => {
    const h = window.harness;
    const dw = await h.start();
    const size = 6 << 20;
    await dw.create({ path: 'opfs:/page-reads/disk.img', format, size });
    const disk = await dw.open({ path: 'opfs:/page-reads/disk.img' });
    await disk.write(0, h.pattern(7, size));
    const expected = h.pattern(7, size);
    // Four lanes of 256 KiB reads, each resubmitting as soon as its answer is in.
    let next = 0;
    let bad = -1;
    let notSame = 0;
    // Lanes of 256 KiB reads and one of 2.5 MiB (three ring slots).
    const lane = async (bytes: number) => {
      let buf: Uint8Array<ArrayBuffer> = new Uint8Array(bytes);
      while (next < size) {
        const pos = next;
        const n = Math.min(bytes, size - pos);
        next += n;
        // The tail of the disk in a buffer of its own length.
        const sent = n === buf.length ? buf : new Uint8Array(n);
        sent.fill(0xee);
        const got = await disk.readInto(pos, sent);
        if (got !== sent || sent.byteLength !== n) notSame++;
        if (h.diff(got, expected.subarray(pos, pos + n)) !== -1) bad = pos;
        if (n === bytes) buf = got;
      }
    };
    await Promise.all([lane(256 << 10), lane(256 << 10), lane(256 << 10), lane(256 << 10), lane(5 << 19)]);
    // A detached buffer (transferred away) is refused, as it was before the ring.
    const gone = new Uint8Array(4096);
    structuredClone(gone.buffer, { transfer: [gone.buffer] });
    const detached = await disk.readInto(0, gone).then(
      () => 'resolved',
      (e: { code?: string }) => e.code,
    );
    // A read past the end fails alone, as the other paths fail it.
    const past = await disk.readInto(size - 10, new Uint8Array(100)).then(
      () => 'resolved',
      (e: { code?: string }) => e.code,
    );
    // A shared buffer is filled in place, in the same group as a transferred one.
    const shared = new Uint8Array(new SharedArrayBuffer(100_000));
    const [s, t] = await Promise.all([disk.readInto(12_345, shared), disk.readInto(5 << 20, new Uint8Array(4096))]);
    const sharedOk = s === shared && h.diff(shared, expected.subarray(12_345, 112_345)) === -1 && h.diff(t, expected.subarray(5 << 20, (5 << 20) + 4096)) === -1;
    // The ring: 4 slots of 512 KiB, 384 KiB pieces (not slot-sized) and slot-sized ones.
    const reader = await disk.bulkReader({ slots: 4, slotBytes: 512 << 10 });
    let streamBad = -1;
    let pos = 0;
    for await (const piece of reader.stream(1000, size - 1000, 384 << 10)) {
      if (h.diff(piece, expected.subarray(1000 + pos, 1000 + pos + piece.length)) !== -1) streamBad = pos;
      pos += piece.length;
    }
    const streamed = pos;
    pos = 0;
    for await (const piece of reader.stream(0, size)) {
      if (h.diff(piece, expected.subarray(pos, pos + piece.length)) !== -1) streamBad = pos;
      pos += piece.length;
    }
    // The default ring (2 slots of 2 MiB), with an unaligned start, sleeping on answers and polling.
    const def = await disk.bulkReader();
    const geometry = [def.slots, def.slotBytes];
    let defPos = 0;
    for await (const piece of def.stream(4097, size - 4097)) {
      if (h.diff(piece, expected.subarray(4097 + defPos, 4097 + defPos + piece.length)) !== -1) streamBad = 4097 + defPos;
      defPos += piece.length;
    }
    const polling = await disk.bulkReader({ poll: true });
    let pollPos = 0;
    for await (const piece of polling.stream(0, size, 1 << 20)) {
      if (h.diff(piece, expected.subarray(pollPos, pollPos + piece.length)) !== -1) streamBad = pollPos;
      pollPos += piece.length;
    }
    await disk.close();
    // After close, every call fails with ENOMEDIUM naming the disk (not Comlink's released proxy).
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
      );
    const afterClose = [
      await codeOf(disk.read(0, 512)),
      await codeOf(disk.readInto(0, new Uint8Array(512))),
      await codeOf(disk.flush()),
      await codeOf(disk.bitmaps.list()),
    ];
    await dw.remove('opfs:/page-reads/disk.img');
    return { bad, notSame, past, detached, afterClose, sharedOk, streamBad, streamed, streamedAll: pos, size, geometry, defStreamed: defPos, pollStreamed: pollPos };
  }, format);
  expect(r.bad).toBe(-1);
  expect(r.notSame).toBe(0);
  expect(r.past).toBe('EIO');
  expect(r.detached).toBe('EINVAL');
  expect(r.afterClose).toEqual(Array(4).fill("ENOMEDIUM: Disk 'opfs:/page-reads/disk.img' was closed"));
  expect(r.sharedOk).toBe(true);
  expect(r.streamBad).toBe(-1);
  expect(r.streamed).toBe(r.size - 1000);
  expect(r.streamedAll).toBe(r.size);
  expect(r.geometry).toEqual([2, 2 << 20]);
  expect(r.defStreamed).toBe(r.size - 4097);
  expect(r.pollStreamed).toBe(r.size);
});
