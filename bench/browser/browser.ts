/**
 * Browser benchmarks (Chromium via Playwright, one run, ratios against
 * baselines measured in the same run):
 *
 * - qcow2 over OPFS in the worker vs raw FileSystemSyncAccessHandle on the
 *   same bytes: sequential 1 MiB reads (target 0.85×), random 4 KiB reads
 *   (0.7×), allocating sequential 1 MiB writes (0.6×);
 * - page-side sequential 1 MiB reads vs the same reads inside the worker:
 *   through Disk.bulkReader, the API for bulk reads (0.8×), and for reference
 *   through readInto (in this isolated page: the disk's own ring, copied into
 *   the page's buffers; shared buffers through the read port); and vs a
 *   raw OPFS worker (raw SyncAccessHandle reads), as issue #18 sets its goals:
 *   bulkReader 0.9×, readInto with 4 in flight 0.7×;
 * - idb vs opfs (raw images through the block layer): sequential read and
 *   write (aim 0.5×);
 * - http: a cold sequential read of 256 MiB over loopback vs one plain
 *   fetch() of the same bytes (0.5×).
 *
 * Builds bench/browser/page with Vite, serves it with scripts/serve-e2e.mjs
 * (COOP/COEP) and drives /usr/bin/chromium with a persistent profile (OPFS and
 * IndexedDB on disk, as users have them). `npm run bench -- browser`, or
 * `npx tsx bench/browser/browser.ts` alone. Environment:
 *   BENCH_ONLY=opfs,idb,http   sections to run (default all)
 *   BENCH_OPFS_MIB=256         OPFS image size;  BENCH_IDB_MIB=32  idb image size
 *   BENCH_IDB_CHUNKS=32768,... idb chunk sizes compared with the default
 *   BENCH_HTTP_SWEEP=1         also try other http cache settings
 *   BENCH_SLOTS=2,4            bulk-reader ring depths measured
 *   BENCH_PORT=4175            server port
 * Each comparison alternates value and baseline and keeps the best of each
 * (the machine is shared and noisy).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from '@playwright/test';
import type { BenchResult } from '../types.js';
import { startBenchWorker, withBenchPage, type Call } from './session.js';

const MiB = 1 << 20;
const OPFS_SIZE = Number(process.env.BENCH_OPFS_MIB ?? 256) * MiB;
const IDB_SIZE = Number(process.env.BENCH_IDB_MIB ?? 32) * MiB;
const HTTP_MIB = 256;
const RANDOM_READS = 50_000;

function result(name: string, unit: string, value: number, baseline: string, baselineValue: number, target?: number): BenchResult {
  return { name, unit, value, baseline, baselineValue, ratio: value / baselineValue, ...(target !== undefined ? { target } : {}) };
}

/**
 * Measures a value and its baseline alternately, `rounds` times each, and
 * keeps the best of each: on a shared, noisy machine, interleaving keeps both
 * under the same conditions.
 */
async function pair(rounds: number, baseline: () => Promise<number>, value: () => Promise<number>): Promise<[number, number]> {
  let b = 0;
  let v = 0;
  for (let i = 0; i < rounds; i++) {
    b = Math.max(b, await baseline());
    v = Math.max(v, await value());
  }
  return [v, b];
}

async function best(rounds: number, f: () => Promise<number>): Promise<number> {
  let b = 0;
  for (let i = 0; i < rounds; i++) b = Math.max(b, await f());
  return b;
}


async function opfsSection(page: Page, call: Call, format: string, out: BenchResult[]): Promise<void> {
  const img = `opfs:/bench/image.${format}`;
  const fmtName = format === 'qcow2' ? 'qcow2' : 'raw (qcow2 driver missing)';
  // Allocating sequential writes (each round writes a fresh file / image).
  const [imgW, rawW] = await pair(
    3,
    () => call<number>('rawSeqWrite', 'raw.bin', OPFS_SIZE),
    () => call<number>('imgSeqWrite', img, format, OPFS_SIZE),
  );
  out.push(result(`${fmtName} over OPFS, allocating sequential 1 MiB writes (worker)`, 'MiB/s', imgW, 'raw SyncAccessHandle writes', rawW, 0.6));

  const [imgR, rawR] = await pair(
    4,
    () => call<number>('rawSeqRead', 'raw.bin', OPFS_SIZE),
    () => call<number>('imgSeqRead', img, format, OPFS_SIZE),
  );
  out.push(result(`${fmtName} over OPFS, sequential 1 MiB reads (worker)`, 'MiB/s', imgR, 'raw SyncAccessHandle reads', rawR, 0.85));

  const rawShared = await best(3, () => call<number>('rawSeqReadShared', 'raw.bin', OPFS_SIZE));
  out.push(result('diagnostic: raw SyncAccessHandle 1 MiB reads into SharedArrayBuffer', 'MiB/s', rawShared, 'into ArrayBuffer', rawR));
  const [imgRand, rawRand] = await pair(
    4,
    () => call<number>('rawRandRead', 'raw.bin', OPFS_SIZE, RANDOM_READS),
    () => call<number>('imgRandRead', img, format, OPFS_SIZE, RANDOM_READS),
  );
  out.push(result(`${fmtName} over OPFS, random 4 KiB reads (worker)`, 'ops/s', imgRand, 'raw SyncAccessHandle reads', rawRand, 0.7));

  const workerRead = () => call<number>('imgSeqRead', img, format, OPFS_SIZE);
  let workerR = 0;
  for (const [depth, shared] of [[1, false], [4, false], [1, true], [4, true]] as const) {
    const [pageR, w] = await pair(3, workerRead, () =>
      page.evaluate(
        async ({ img, format, depth, shared }) =>
          window.benchApi.pageSeqRead((window as unknown as { dwb: never }).dwb, img, format, depth, shared),
        { img, format, depth, shared },
      ),
    );
    workerR = w;
    out.push(
      result(
        `${fmtName} over OPFS, sequential 1 MiB reads from the page through the proxy, ` +
          `${shared ? 'SharedArrayBuffer buffers (read port)' : 'page buffers (ring, copied)'}, ${depth} in flight`,
        'MiB/s',
        pageR,
        'the same reads inside the worker (1 in flight)',
        workerR,
        undefined,
      ),
    );
  }
  // The API recommended for bulk reads (Disk.bulkReader: a shared-memory ring, no message
  // per read); the target applies to its default geometry (2 slots of 2 MiB; 4 of 1 MiB for comparison).
  for (const [slots, slotBytes] of [[undefined, undefined], [4, MiB]] as const) {
    const [bulkR, workerR2] = await pair(4, workerRead, () =>
      page.evaluate(
        async ({ img, format, slots, slotBytes }) => window.benchApi.pageBulkRead((window as unknown as { dwb: never }).dwb, img, format, slots, slotBytes),
        { img, format, slots, slotBytes },
      ),
    );
    out.push(
      result(
        `${fmtName} over OPFS, sequential reads from the page through Disk.bulkReader (shared ring), ${slots === undefined ? 'default 2 slots of 2 MiB' : `${slots} slots of 1 MiB`}`,
        'MiB/s',
        bulkR,
        'the same 1 MiB reads inside the worker (1 in flight)',
        workerR2,
        slots === undefined ? 0.8 : undefined,
      ),
    );
  }
  // Issue #18 names its goals against a raw OPFS worker (raw SyncAccessHandle 1 MiB reads in the
  // worker, no block layer), not against the worker's reads of the image: the same page-side
  // reads against that baseline, alternated with it (bench/browser/page-reads.ts runs these
  // many times and takes medians).
  const rawRead = () => call<number>('rawSeqRead', 'raw.bin', OPFS_SIZE);
  for (const poll of [false, true]) {
    const [bulkRaw, raw1] = await pair(4, rawRead, () =>
      page.evaluate(async ({ img, format, poll }) => window.benchApi.pageBulkRead((window as unknown as { dwb: never }).dwb, img, format, undefined, undefined, poll), { img, format, poll }),
    );
    out.push(result(`${fmtName} over OPFS, sequential reads from the page through Disk.bulkReader (default 2 slots of 2 MiB${poll ? ', poll' : ''})`, 'MiB/s', bulkRaw, 'raw SyncAccessHandle 1 MiB reads in the worker', raw1, 0.9));
  }
  const [intoRaw, raw2] = await pair(4, rawRead, () =>
    page.evaluate(async ({ img, format }) => window.benchApi.pageSeqRead((window as unknown as { dwb: never }).dwb, img, format, 4, false), { img, format }),
  );
  out.push(result(`${fmtName} over OPFS, sequential 1 MiB reads from the page through readInto (ring, copied), 4 in flight`, 'MiB/s', intoRaw, 'raw SyncAccessHandle 1 MiB reads in the worker', raw2, 0.7));
  // Why the page-side figures stay below the worker's: its baseline reads into one 1 MiB buffer
  // that stays in the CPU's cache, while reads in flight need one area each (4 MiB for a ring of
  // 4 slots or 4 readInto buffers). The same worker reads cycling over those areas, with no page
  // involved, show what that footprint alone costs.
  for (const areas of [2, 4]) {
    const [cyc, w1] = await pair(3, workerRead, () => call<number>('imgSeqReadCycling', img, format, OPFS_SIZE, areas));
    out.push(
      result(
        `diagnostic: ${fmtName} over OPFS, sequential 1 MiB reads in the worker cycling over ${areas} MiB of shared buffers`,
        'MiB/s',
        cyc,
        'the same reads into one 1 MiB buffer',
        w1,
      ),
    );
  }
  await call('remove', img).catch(() => undefined);
}

async function idbSection(call: Call, out: BenchResult[]): Promise<void> {
  // idb vs opfs, raw images through the block layer.
  const [idbW, opfsW] = await pair(
    2,
    () => call<number>('imgSeqWrite', 'opfs:/bench/cmp.raw', 'raw', IDB_SIZE),
    () => call<number>('imgSeqWrite', 'idb:bench-cmp', 'raw', IDB_SIZE),
  );
  out.push(result('idb back end, sequential 1 MiB writes + flush (raw)', 'MiB/s', idbW, 'opfs back end, same writes', opfsW, 0.5));
  const [idbR, opfsR] = await pair(
    3,
    () => call<number>('imgSeqRead', 'opfs:/bench/cmp.raw', 'raw', IDB_SIZE),
    () => call<number>('imgSeqRead', 'idb:bench-cmp', 'raw', IDB_SIZE),
  );
  out.push(result('idb back end, sequential 1 MiB reads (raw, cold cache per open)', 'MiB/s', idbR, 'opfs back end, same reads', opfsR, 0.5));
  const idbRand = await best(2, () => call<number>('imgRandRead', 'idb:bench-cmp', 'raw', IDB_SIZE, 1000, false));
  const idbRandW = await call<number>('imgRandWrite', 'idb:bench-cmp', 'raw', IDB_SIZE, 512);
  for (const cs of (process.env.BENCH_IDB_CHUNKS ?? '32768,131072').split(',').map(Number)) {
    const w = await call<number>('imgSeqWrite', `idb:bench-cs${cs}`, 'raw', IDB_SIZE, { 'chunk-size': cs });
    const r = await best(2, () => call<number>('imgSeqRead', `idb:bench-cs${cs}`, 'raw', IDB_SIZE));
    const rr = await best(2, () => call<number>('imgRandRead', `idb:bench-cs${cs}`, 'raw', IDB_SIZE, 1000, false));
    const rw = await call<number>('imgRandWrite', `idb:bench-cs${cs}`, 'raw', IDB_SIZE, 512);
    out.push(result(`idb chunk-size ${cs / 1024} KiB, sequential reads (informational)`, 'MiB/s', r, 'idb default chunk size reads', idbR));
    out.push(result(`idb chunk-size ${cs / 1024} KiB, sequential writes (informational)`, 'MiB/s', w, 'idb default chunk size writes', idbW));
    out.push(result(`idb chunk-size ${cs / 1024} KiB, cold random 4 KiB reads (informational)`, 'ops/s', rr, 'same, default chunk size', idbRand));
    out.push(result(`idb chunk-size ${cs / 1024} KiB, random 4 KiB writes, flush every 16 (informational)`, 'ops/s', rw, 'same, default chunk size', idbRandW));
    await call('remove', `idb:bench-cs${cs}`);
  }
  await call('remove', 'opfs:/bench/cmp.raw').catch(() => undefined);
  await call('remove', 'idb:bench-cmp').catch(() => undefined);
}

async function httpSection(page: Page, call: Call, out: BenchResult[]): Promise<void> {
  // http: cold sequential read vs one plain fetch.
  const url = new URL(`/fixtures/bench-${HTTP_MIB}m.raw`, page.url()).toString();
  await call<number>('fetchOnce', url); // makes the file and warms the server's page cache
  const [httpR, fetchR] = await pair(
    3,
    () => call<number>('fetchOnce', url),
    () => call<number>('httpColdRead', url),
  );
  if (process.env.BENCH_HTTP_SWEEP) {
    for (const o of [
      { 'max-fetch': '8M', parallel: 4, readahead: '32M' },
      { 'max-fetch': '32M', parallel: 2, readahead: '64M', 'cache-size': '128M' },
      { 'max-fetch': '4M', parallel: 6, readahead: '24M' },
    ]) {
      const v = await best(2, () => call<number>('httpColdRead', url, o));
      out.push(result(`http sweep ${JSON.stringify(o)}`, 'MiB/s', v, 'plain fetch', fetchR));
    }
  }
  out.push(result(`http back end, cold sequential read of ${HTTP_MIB} MiB over loopback`, 'MiB/s', httpR, 'one plain fetch() of the same bytes', fetchR, 0.5));
}

/** Sections to run (BENCH_ONLY=opfs,idb,http); all by default. */
const only = new Set((process.env.BENCH_ONLY ?? 'opfs,idb,http').split(','));

async function measure(page: Page): Promise<BenchResult[]> {
  const call = await startBenchWorker(page);
  const format: string = await page.evaluate(async () => {
    const dw = (window as unknown as { dwb: { drivers(): Promise<string[]> } }).dwb;
    const drivers = await dw.drivers();
    return drivers.includes('qcow2') ? 'qcow2' : 'raw';
  });
  const out: BenchResult[] = [];
  if (only.has('opfs')) await opfsSection(page, call, format, out);
  if (only.has('idb')) await idbSection(call, out);
  if (only.has('http')) await httpSection(page, call, out);
  return out;
}

export async function run(): Promise<BenchResult[]> {
  return withBenchPage('', 'bench ready', measure);
}

// Allow `npx tsx bench/browser/browser.ts` on its own.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const r of await run()) {
    console.log(`${r.name}: ${r.value.toFixed(1)} ${r.unit} vs ${r.baseline} ${r.baselineValue.toFixed(1)} → ${r.ratio.toFixed(2)}×${r.target ? ` (target ${r.target})` : ''}`);
  }
}
