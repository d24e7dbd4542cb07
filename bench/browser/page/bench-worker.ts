/**
 * The block worker for the browser benchmarks: the normal service plus
 * measurements that must run inside the worker (raw sync-access-handle
 * baselines, reads through the block layer without the page in between).
 */
import { expose } from 'comlink';
import { BlockWorkerService } from '../../../workers/service.js';
import { BlockBackend } from '../../../src/core/backend.js';
import { createImage } from '../../../src/core/create.js';
import '../../../src/client/transfer.js';

const MiB = 1 << 20;

interface SyncHandle {
  read(b: Uint8Array, o: { at: number }): number;
  write(b: Uint8Array, o: { at: number }): number;
  flush(): void;
  close(): void;
  truncate(n: number): void;
}

async function handleFor(name: string, create: boolean, mode?: 'read-only'): Promise<SyncHandle> {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle('bench', { create: true });
  const fh = await dir.getFileHandle(name, { create });
  return (fh as unknown as { createSyncAccessHandle(o?: object): Promise<SyncHandle> }).createSyncAccessHandle(mode ? { mode } : undefined);
}

function fill(buf: Uint8Array, i: number): void {
  buf[0] = i & 0xff;
  buf[1] = (i >> 8) & 0xff;
}

function patternBuffer(): Uint8Array {
  const b = new Uint8Array(MiB);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + (i >>> 9)) & 0xff;
  return b;
}

/** Deterministic random offsets (4 KiB aligned) inside `size`. */
function offsets(n: number, size: number): Float64Array {
  const out = new Float64Array(n);
  let x = 12345;
  const blocks = size / 4096;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = (x % blocks) * 4096;
  }
  return out;
}

class BenchService extends BlockWorkerService {
  private readonly buf = new Uint8Array(MiB);
  private readonly small = new Uint8Array(4096);

  /** Raw sync handle: sequential extending 1 MiB writes + flush. MiB/s. */
  async rawSeqWrite(name: string, size: number): Promise<number> {
    const h = await handleFor(name, true);
    h.truncate(0);
    const data = patternBuffer();
    const t = performance.now();
    for (let i = 0; i < size / MiB; i++) {
      fill(data, i);
      h.write(data, { at: i * MiB });
    }
    h.flush();
    const ms = performance.now() - t;
    h.close();
    return size / MiB / (ms / 1000);
  }

  /** Raw sync handle: sequential reads of `chunk` (1 MiB). MiB/s. */
  async rawSeqRead(name: string, size: number, chunk = MiB): Promise<number> {
    const h = await handleFor(name, false, 'read-only');
    const buf = chunk === MiB ? this.buf : new Uint8Array(chunk);
    const t = performance.now();
    for (let pos = 0; pos < size; pos += chunk) h.read(buf, { at: pos });
    const ms = performance.now() - t;
    h.close();
    return size / MiB / (ms / 1000);
  }

  /** Raw sync handle: sequential 1 MiB reads into a SharedArrayBuffer view. MiB/s (diagnostic). */
  async rawSeqReadShared(name: string, size: number): Promise<number> {
    const h = await handleFor(name, false, 'read-only');
    const buf = new Uint8Array(new SharedArrayBuffer(MiB));
    // Touch it first: a fresh buffer's page faults are not the reads' cost.
    for (let i = 0; i < buf.length; i += 4096) buf[i] = 1;
    const t = performance.now();
    for (let pos = 0; pos < size; pos += MiB) h.read(buf, { at: pos });
    const ms = performance.now() - t;
    h.close();
    return size / MiB / (ms / 1000);
  }

  /** Raw sync handle: random 4 KiB reads. ops/s. */
  async rawRandRead(name: string, size: number, n: number): Promise<number> {
    const h = await handleFor(name, false, 'read-only');
    const offs = offsets(n, size);
    const t = performance.now();
    for (let i = 0; i < n; i++) h.read(this.small, { at: offs[i]! });
    const ms = performance.now() - t;
    h.close();
    return n / (ms / 1000);
  }

  /** An image through the block layer: create, sequential 1 MiB writes, flush. MiB/s. */
  async imgSeqWrite(path: string, format: string, size: number, options: Record<string, string | number | boolean> = {}): Promise<number> {
    await createImage(this.graph, format, path, { size, ...options });
    const bb = await BlockBackend.open(this.graph, path, { format }, { name: 'bench' });
    const data = patternBuffer();
    const t = performance.now();
    for (let i = 0; i < size / MiB; i++) {
      fill(data, i);
      await bb.write(i * MiB, data);
    }
    await bb.flush();
    const ms = performance.now() - t;
    await bb.close();
    return size / MiB / (ms / 1000);
  }

  /** An image through the block layer: sequential reads of `chunk`. MiB/s. */
  async imgSeqRead(path: string, format: string, size: number, chunk = MiB): Promise<number> {
    const bb = await BlockBackend.open(this.graph, path, { format, readOnly: true }, { name: 'bench' });
    const buf = chunk === MiB ? this.buf : new Uint8Array(chunk);
    const t = performance.now();
    for (let pos = 0; pos < size; pos += chunk) await bb.pread(pos, buf);
    const ms = performance.now() - t;
    await bb.close();
    return size / MiB / (ms / 1000);
  }

  /**
   * Like imgSeqRead, but each read goes to the next of `slots` 1 MiB areas of
   * one SharedArrayBuffer, as the bulk reader's ring does: what the ring's
   * memory footprint alone costs, with no page involved. MiB/s (diagnostic).
   */
  async imgSeqReadCycling(path: string, format: string, size: number, slots: number): Promise<number> {
    const bb = await BlockBackend.open(this.graph, path, { format, readOnly: true }, { name: 'bench' });
    const all = new Uint8Array(new SharedArrayBuffer(slots * MiB));
    for (let i = 0; i < all.length; i += 4096) all[i] = 1;
    const bufs = Array.from({ length: slots }, (_, i) => all.subarray(i * MiB, (i + 1) * MiB));
    let k = 0;
    const t = performance.now();
    for (let pos = 0; pos < size; pos += MiB) await bb.pread(pos, bufs[k++ % slots]!);
    const ms = performance.now() - t;
    await bb.close();
    return size / MiB / (ms / 1000);
  }

  /** An image through the block layer: random 4 KiB reads. ops/s. */
  async imgRandRead(path: string, format: string, size: number, n: number, warm = true): Promise<number> {
    const bb = await BlockBackend.open(this.graph, path, { format, readOnly: true }, { name: 'bench' });
    const offs = offsets(n, size);
    // Warm the metadata caches as the raw baseline has a warm page cache.
    if (warm) for (let i = 0; i < Math.min(n, 2000); i++) await bb.pread(offs[i]!, this.small);
    const t = performance.now();
    for (let i = 0; i < n; i++) await bb.pread(offs[i]!, this.small);
    const ms = performance.now() - t;
    await bb.close();
    return n / (ms / 1000);
  }

  /** Random 4 KiB writes with a flush every 16. ops/s. */
  async imgRandWrite(path: string, format: string, size: number, n: number): Promise<number> {
    const bb = await BlockBackend.open(this.graph, path, { format }, { name: 'bench' });
    const offs = offsets(n, size);
    const data = patternBuffer().subarray(0, 4096);
    const t = performance.now();
    for (let i = 0; i < n; i++) {
      await bb.write(offs[i]!, data);
      if ((i & 15) === 15) await bb.flush();
    }
    await bb.flush();
    const ms = performance.now() - t;
    await bb.close();
    return n / (ms / 1000);
  }

  /** One plain fetch() of a whole URL. MiB/s. */
  async fetchOnce(url: string): Promise<number> {
    const t = performance.now();
    const ab = await (await fetch(url, { cache: 'no-store' })).arrayBuffer();
    const ms = performance.now() - t;
    return ab.byteLength / MiB / (ms / 1000);
  }

  /** A cold http image (fresh node, empty cache): sequential 1 MiB reads. MiB/s. */
  async httpColdRead(url: string, options: Record<string, string | number> = {}): Promise<number> {
    const spec = { driver: 'raw', file: { driver: 'http', filename: url, ...options } };
    const bb = await BlockBackend.open(this.graph, spec, { readOnly: true }, { name: 'bench-http' });
    const size = bb.length;
    const t = performance.now();
    for (let pos = 0; pos < size; pos += MiB) await bb.pread(pos, this.buf.subarray(0, Math.min(MiB, size - pos)));
    const ms = performance.now() - t;
    await bb.close();
    return size / MiB / (ms / 1000);
  }
}

expose(new BenchService());
export type { BenchService };
