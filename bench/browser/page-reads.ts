/**
 * Page-side sequential 1 MiB reads against a raw OPFS worker (issue #18),
 * measured many times, alternated, with medians (browser.ts keeps the best of
 * three, which on this shared 2-core machine swings by 2× between runs).
 *
 * Each round measures, back to back in a rotated order: raw
 * FileSystemSyncAccessHandle 1 MiB reads in the worker (the baseline), the
 * qcow2 image read in the worker through the block layer, the page reading the
 * image through Disk.bulkReader (its default 2 slots of 2 MiB, the same with
 * `poll: true`, and 4 slots of 1 MiB, the default before 2026-12-07), the same
 * with every piece copied into
 * a page buffer (what readInto through a ring can reach at best), and through
 * readInto (1 and 4 in flight; the page is cross-origin
 * isolated, so readInto goes through its own ring and copies). The figures are the medians of the
 * per-round ratios (each value over the raw reads of its own round).
 *
 *   BENCH_PORT=4273 npx tsx bench/browser/page-reads.ts
 * Environment: BENCH_ROUNDS (default 12), BENCH_OPFS_MIB (768: a measurement
 * of 256 MiB lasts 30 ms, too short on a shared machine), BENCH_PORT (4175).
 * The `raw` line's own ratios (one raw run over its round's mean) show the
 * noise. BENCH_BUSY=n runs n busy processes beside the rounds (other work
 * wanting the cores, under which polling loses).
 */
import os from 'node:os';
import { spawn } from 'node:child_process';
import type { Page } from '@playwright/test';
import { startBenchWorker, withBenchPage } from './session.js';

const MiB = 1 << 20;
const SIZE = Number(process.env.BENCH_OPFS_MIB ?? 768) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 12);
const IMG = 'opfs:/bench/page-reads.qcow2';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

type Kind = 'raw' | 'worker' | 'bulk' | 'bulkPoll' | 'bulk4x1' | 'bulkCopy' | 'readInto1' | 'readInto4';

async function measure(page: Page): Promise<void> {
  const call = await startBenchWorker(page);
  // a: readInto's reads in flight, or the bulk reader's slots (undefined: its defaults) with b its slot size.
  const onPage = (fn: 'pageBulkRead' | 'pageSeqRead' | 'pageBulkCopy', a?: number, b?: number, poll?: boolean) =>
    page.evaluate(
      async ({ fn, img, a, b, poll }) => {
        const dw = (window as unknown as { dwb: never }).dwb;
        return fn === 'pageBulkCopy' ? window.benchApi.pageBulkCopy(dw, img, 'qcow2', a, b) : fn === 'pageBulkRead' ? window.benchApi.pageBulkRead(dw, img, 'qcow2', a, b, poll) : window.benchApi.pageSeqRead(dw, img, 'qcow2', a, false);
      },
      { fn, img: IMG, a, b, poll },
    );
  await call('rawSeqWrite', 'raw.bin', SIZE);
  await call('imgSeqWrite', IMG, 'qcow2', SIZE);
  const runs: Record<Kind, () => Promise<number>> = {
    raw: () => call<number>('rawSeqRead', 'raw.bin', SIZE),
    worker: () => call<number>('imgSeqRead', IMG, 'qcow2', SIZE),
    bulk: () => onPage('pageBulkRead'),
    bulkPoll: () => onPage('pageBulkRead', undefined, undefined, true),
    bulk4x1: () => onPage('pageBulkRead', 4, MiB),
    bulkCopy: () => onPage('pageBulkCopy'),
    readInto1: () => onPage('pageSeqRead', 1),
    readInto4: () => onPage('pageSeqRead', 4),
  };
  const kinds = Object.keys(runs) as Kind[];
  // Warm-up: every path once (JIT, page cache).
  for (const k of kinds) await runs[k]();
  const values = Object.fromEntries(kinds.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
  const ratios = Object.fromEntries(kinds.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
  const busy = Array.from({ length: Number(process.env.BENCH_BUSY ?? 0) }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  const load0 = os.loadavg()[0]!;
  for (let r = 0; r < ROUNDS; r++) {
    const got: Partial<Record<Kind, number>> = {};
    for (let i = 0; i < kinds.length; i++) {
      const k = kinds[(i + r) % kinds.length]!;
      got[k] = await runs[k]();
    }
    // The raw reads once more at the end of the round: its baseline is the mean of both.
    const raw = (got.raw! + (await runs.raw())) / 2;
    for (const k of kinds) {
      values[k].push(got[k]!);
      ratios[k].push(got[k]! / raw);
    }
  }
  const load1 = os.loadavg()[0]!;
  for (const b of busy) b.kill();
  process.stdout.write(`load average ${load0.toFixed(2)} → ${load1.toFixed(2)}, ${ROUNDS} rounds, ${SIZE / MiB} MiB${busy.length ? `, ${busy.length} busy process(es) beside` : ''}\n`);
  for (const k of kinds) {
    const rs = ratios[k].map((x) => x.toFixed(2)).join(' ');
    process.stdout.write(`${k.padEnd(10)} median ${median(values[k]).toFixed(0).padStart(6)} MiB/s  vs raw: median ${median(ratios[k]).toFixed(2)}×  [${rs}]\n`);
  }
  await call('remove', IMG).catch(() => undefined);
}

await withBenchPage('', 'bench ready', measure);
