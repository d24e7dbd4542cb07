/**
 * The browser bench page: starts the bench worker and measures what must be
 * measured from the page (1 MiB reads: through Disk.bulkReader, the API for
 * bulk reads, and for reference through readInto).
 */
import { wrap, type Remote } from 'comlink';
import { DiskWorker } from '../../../src/client/index.js';
import type { BenchService } from './bench-worker.js';

const MiB = 1 << 20;

async function start() {
  const worker = new Worker(new URL('./bench-worker.ts', import.meta.url), { type: 'module', name: 'diskworker-bench' });
  const dw = await DiskWorker.start({ worker });
  const bench = dw.remote as unknown as Remote<BenchService>;
  return { dw, bench };
}

/**
 * Page-side sequential 1 MiB reads through Disk.readInto with `depth` reads
 * in flight, each with its own buffer (this page is cross-origin isolated:
 * plain buffers go through the disk's ring and are copied into, shared ones
 * are filled in place through the read port). MiB/s.
 */
async function pageSeqRead(dw: DiskWorker, path: string, format: string, depth = 1, shared = false): Promise<number> {
  const disk = await dw.open({ path, format, readOnly: true });
  const size = disk.length;
  let next = 0;
  const lane = async () => {
    let buf: Uint8Array = shared ? new Uint8Array(new SharedArrayBuffer(MiB)) : new Uint8Array(MiB);
    while (next < size) {
      const pos = next;
      next += MiB;
      buf = await disk.readInto(pos, buf);
    }
  };
  const t = performance.now();
  await Promise.all(Array.from({ length: depth }, lane));
  const ms = performance.now() - t;
  await disk.close();
  return size / MiB / (ms / 1000);
}

/**
 * Page-side sequential reads through the bulk reader (the shared ring
 * Disk.bulkReader, the API recommended for bulk reads), data consumed in
 * place, in pieces of one slot. `slots` / `slotBytes` undefined: the reader's
 * defaults. MiB/s.
 */
async function pageBulkRead(dw: DiskWorker, path: string, format: string, slots?: number, slotBytes?: number, poll?: boolean): Promise<number> {
  const disk = await dw.open({ path, format, readOnly: true });
  const reader = await disk.bulkReader({ slots, slotBytes, poll });
  const size = disk.length;
  let sum = 0;
  const t = performance.now();
  for await (const piece of reader.stream(0, size)) sum += piece[0]!;
  const ms = performance.now() - t;
  await disk.close();
  return sum >= 0 ? size / MiB / (ms / 1000) : 0;
}

/** Like pageBulkRead, each piece copied into one of two page buffers. MiB/s. */
async function pageBulkCopy(dw: DiskWorker, path: string, format: string, slots?: number, slotBytes?: number): Promise<number> {
  const disk = await dw.open({ path, format, readOnly: true });
  const reader = await disk.bulkReader({ slots, slotBytes });
  const size = disk.length;
  const bufs = [new Uint8Array(reader.slotBytes), new Uint8Array(reader.slotBytes)];
  let k = 0;
  let sum = 0;
  const t = performance.now();
  for await (const piece of reader.stream(0, size)) {
    const b = bufs[k++ & 1]!;
    b.set(piece);
    sum += b[0]!;
  }
  const ms = performance.now() - t;
  await disk.close();
  return sum >= 0 ? size / MiB / (ms / 1000) : 0;
}

const api = { start, pageSeqRead, pageBulkRead, pageBulkCopy };
declare global {
  interface Window {
    benchApi: typeof api;
  }
}
window.benchApi = api;
document.title = 'bench ready';
