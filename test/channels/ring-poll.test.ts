/**
 * The page end of the bulk-read ring polls for answers before it sleeps
 * (src/channels/ring-client.ts, RingPort's `poll`), and the worker end
 * publishes how long its last request took (ring-server.ts, SERVE_US).
 *
 * The server here is a stand-in on a worker thread that answers like
 * RingServer but wakes a sleeping page only after a delay (5 ms), so a page
 * that takes answers by polling is told apart from one that sleeps on them.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { Worker } from 'node:worker_threads';
import { RingPort } from '../../src/channels/ring-client.js';
import { RingServer } from '../../src/channels/ring-server.js';
import { RingSlot, DESC_WORDS, D_OFFSET_LO, D_LENGTH, D_RESULT, CLOSED, MASK, POLL_FAIRNESS_MS, POLL_MAX_MS, POLL_WINDOW, POLL_PAUSE_WINDOWS, headerBytes } from '../../src/channels/ring-layout.js';
import { patternedDisk, pretendCrossOriginIsolated } from './memory-disk.js';
import type { BlockBackend } from '../../src/node.js';

beforeAll(pretendCrossOriginIsolated);

const SLOTS = 2;
const SLOT_BYTES = 4096;

/** Same layout numbers as ring-layout.ts, handed to the stand-in server. */
const layout = { ...RingSlot, DESC_WORDS, D_OFFSET_LO, D_LENGTH, D_RESULT, CLOSED, MASK, head: headerBytes(SLOTS), slots: SLOTS, slotBytes: SLOT_BYTES };

/**
 * Each request's bytes: byte i of a read at `offset` is (offset + i) & 0xff; each answer takes
 * `serveUs`. A page waiting for DONE to reach WANT is woken `lateWakeMs` after that, while
 * the server goes on serving.
 */
const serverSource = `
const { workerData } = require('node:worker_threads');
const { buffer, L, serveUs, lateWakeMs } = workerData;
const c = new Int32Array(buffer, 0, L.head / 4);
const pause = new Int32Array(new SharedArrayBuffer(4));
let done = 0;
let wakeAt = 0;
for (;;) {
  if (wakeAt !== 0 && performance.now() >= wakeAt) { wakeAt = 0; Atomics.notify(c, L.DONE); }
  if (Atomics.load(c, L.STATE) === L.CLOSED) break;
  const submitted = Atomics.load(c, L.SUBMIT);
  if (submitted === done) { Atomics.wait(c, L.SUBMIT, submitted, wakeAt !== 0 ? Math.max(0, wakeAt - performance.now()) : 20); continue; }
  const slot = done % L.slots;
  const d = L.DESC + slot * L.DESC_WORDS;
  const offset = c[d + L.D_OFFSET_LO] >>> 0;
  const data = new Uint8Array(buffer, L.head + slot * L.slotBytes, c[d + L.D_LENGTH]);
  // Asleep, not busy: the page's thread keeps its core and looks before the answer is in.
  const t = performance.now();
  while (performance.now() - t < serveUs / 1000) Atomics.wait(pause, 0, 0, serveUs / 1000 - (performance.now() - t));
  for (let i = 0; i < data.length; i++) data[i] = (offset + i) & 0xff;
  c[d + L.D_RESULT] = 0;
  Atomics.store(c, L.SERVE_US, serveUs);
  done = (done + 1) & L.MASK;
  Atomics.store(c, L.DONE, done);
  if (Atomics.load(c, L.WANT) === done && wakeAt === 0) wakeAt = performance.now() + lateWakeMs;
}
`;

function standIn(serveUs: number, lateWakeMs = 5): { buffer: SharedArrayBuffer; stop: () => Promise<number> } {
  const buffer = new SharedArrayBuffer(layout.head + SLOTS * SLOT_BYTES);
  const c = new Int32Array(buffer, 0, layout.head / 4);
  c[RingSlot.SLOTS] = SLOTS;
  c[RingSlot.SLOT_BYTES] = SLOT_BYTES;
  const worker = new Worker(serverSource, { eval: true, workerData: { buffer, L: layout, serveUs, lateWakeMs } });
  return {
    buffer,
    stop: () => {
      Atomics.store(c, RingSlot.STATE, CLOSED);
      Atomics.notify(c, RingSlot.SUBMIT);
      return new Promise((resolve) => worker.once('exit', resolve));
    },
  };
}

/** Reads `n` requests one after the other (each submitted when the last is answered); checks every byte. */
async function readSequentially(port: RingPort, n: number): Promise<void> {
  for (let k = 0; k < n; k++) {
    const offset = k * 1000;
    const seq = port.submit(offset, SLOT_BYTES);
    const view = await port.result(seq, offset, SLOT_BYTES);
    for (let i = 0; i < view.length; i += 97) expect(view[i]).toBe((offset + i) & 0xff);
  }
}

describe('bulk ring: the page polls before it sleeps', () => {
  it('a polling port takes answers that come without a wake-up; a sleeping one waits for every wake-up', async () => {
    // Answers take 0.3 ms: long enough that the page has to wait for them (waking the server
    // costs the page tens of µs on a VM), well within the poll's budget (1 ms).
    const polling = standIn(300);
    const port = new RingPort(polling.buffer, true);
    await readSequentially(port, 40);
    await polling.stop();
    // At least some answers came while it polled, with no wake-up from the server.
    expect(port.stats.polled, JSON.stringify(port.stats)).toBeGreaterThan(0);
    expect(port.stats.polled + port.stats.slept).toBeGreaterThanOrEqual(1);

    const sleeping = standIn(300);
    const plain = new RingPort(sleeping.buffer);
    await readSequentially(plain, 5);
    await sleeping.stop();
    expect(plain.stats.polled).toBe(0);
  });

  it(`a polling port still sleeps at least every ${POLL_FAIRNESS_MS} ms or so, so its thread runs its other tasks`, async () => {
    // 300 answers of at least 0.4 ms each: the reads last at least 120 ms, and nearly every
    // answer can be had by polling (the poll budget is about 1 ms).
    const server = standIn(400);
    // Not adaptive: a window of late answers (a loaded machine) must not turn the polling off here.
    const port = new RingPort(server.buffer, true, false);
    const t0 = performance.now();
    let lastSleep = t0;
    let longest = 0;
    let slept = port.stats.slept;
    for (let k = 0; k < 300; k++) {
      const seq = port.submit(k * 4096, SLOT_BYTES);
      await port.result(seq, k * 4096, SLOT_BYTES);
      const now = performance.now();
      if (port.stats.slept !== slept) {
        slept = port.stats.slept;
        lastSleep = now;
      }
      longest = Math.max(longest, now - lastSleep);
    }
    const ms = performance.now() - t0;
    await server.stop();
    expect(ms).toBeGreaterThanOrEqual(120);
    // Without the rule the page would poll through the whole run; with it, stretches of
    // polling end after 8 ms plus one request (bound kept loose for loaded machines).
    expect(longest).toBeLessThan(60);
    expect(port.stats.polled).toBeGreaterThan(0);
  });

  it('polling that does not pay (answers outlast the poll) stops for a while, then is tried again', async () => {
    // Every answer takes 5 ms, far longer than the longest poll: the waits end asleep.
    const server = standIn(5000, 0.2);
    const port = new RingPort(server.buffer, true);
    expect(5).toBeGreaterThan(POLL_MAX_MS);
    // One window polling, POLL_PAUSE_WINDOWS without, then polling again (a few answers may be in
    // before the page looks, if its thread was preempted: those are not waits, hence the margin).
    const requests = POLL_WINDOW * (POLL_PAUSE_WINDOWS + 3);
    await readSequentially(port, requests);
    await server.stop();
    expect(port.stats.pauses).toBeGreaterThanOrEqual(1);
    expect(port.stats.resumes).toBeGreaterThanOrEqual(1);
    expect(port.stats.slept).toBeGreaterThan(requests * 0.8);
    expect(port.stats.polled).toBeLessThan(requests * 0.1);
  });

  it('a closed ring ends a polling wait with ENOMEDIUM', async () => {
    const server = standIn(0);
    const port = new RingPort(server.buffer, true);
    await server.stop();
    // STATE is CLOSED now and nobody serves: the request fails instead of polling or sleeping forever.
    const seq = port.submit(0, SLOT_BYTES);
    await expect(port.result(seq, 0, SLOT_BYTES)).rejects.toMatchObject({ code: 'ENOMEDIUM' });
  });

  it('the worker end publishes how long its last request took', async () => {
    const { bb } = await patternedDisk(1 << 20, (i) => i);
    // A backend whose reads take at least 5 ms.
    const slow = new Proxy(bb, {
      get(target, prop, receiver) {
        if (prop === 'pread') return async (offset: number, buf: Uint8Array) => { await new Promise((r) => setTimeout(r, 6)); return target.pread(offset, buf); };
        return Reflect.get(target, prop, receiver) as unknown;
      },
    }) as BlockBackend;
    const server = new RingServer(slow, 2, 65536);
    server.start();
    const port = new RingPort(server.buffer, true);
    const seq = port.submit(4096, 65536);
    const view = await port.result(seq, 4096, 65536);
    expect(view[0]).toBe(4096 & 0xff);
    expect(Atomics.load(port.ctl, RingSlot.SERVE_US)).toBeGreaterThanOrEqual(4000);
    server.stop();
    await bb.close();
  });
});
