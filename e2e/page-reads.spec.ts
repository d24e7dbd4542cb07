/**
 * Page-side bulk reads in Chromium (issue #18): readInto with several reads
 * in flight (they travel to the worker and back in groups, each buffer
 * transferred away and back) and Disk.bulkReader's stream over a qcow2 image
 * in OPFS. Data only; speed is bench/browser/page-reads.ts's.
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
    let notDetached = 0;
    const lane = async () => {
      let buf: Uint8Array<ArrayBuffer> = new Uint8Array(256 << 10);
      while (next < size) {
        const pos = next;
        next += buf.length;
        const sent = buf;
        buf = await disk.readInto(pos, buf);
        if (sent.byteLength !== 0) notDetached++;
        if (h.diff(buf, expected.subarray(pos, pos + buf.length)) !== -1) bad = pos;
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
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
    await disk.close();
    await dw.remove('opfs:/page-reads/disk.img');
    return { bad, notDetached, sharedOk, streamBad, streamed, streamedAll: pos, size };
  }, format);
  expect(r.bad).toBe(-1);
  expect(r.notDetached).toBe(0);
  expect(r.sharedOk).toBe(true);
  expect(r.streamBad).toBe(-1);
  expect(r.streamed).toBe(r.size - 1000);
  expect(r.streamedAll).toBe(r.size);
});
