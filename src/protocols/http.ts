/**
 * http: read-only images over HTTP(S) Range requests.
 *
 * The size comes from HEAD (Content-Length) or, when HEAD gives none, from
 * the Content-Range of a `bytes=0-0` GET. Reads go through a block cache
 * (LRU, `cache-size` bytes in blocks of `block-size`) filled by range fetches
 * of up to `max-fetch` bytes, at most `parallel` in flight; sequential reads
 * grow a readahead window up to `readahead` bytes.
 *
 * A server that ignores Range (200 with the whole body) or applies a
 * Content-Encoding gets a clear EIO instead of wrong bytes. Usable as the
 * backing file of a qcow2 overlay on opfs / idb (allow `http` in the graph's
 * backingPolicy.allowedProtocols).
 */
import type { BlockDriver, DriverInstance } from '../core/driver.js';
import { BlockError, einval, toBlockError } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface HttpOptions {
  blockSize: number;
  cacheSize: number;
  readahead: number;
  maxFetch: number;
  parallel: number;
  /** Extra request headers (e.g. Authorization). */
  headers: Record<string, string>;
}

export const HTTP_DEFAULTS: Readonly<HttpOptions> = {
  blockSize: 256 * KiB,
  cacheSize: 96 * MiB,
  readahead: 48 * MiB,
  maxFetch: 16 * MiB,
  parallel: 4,
  headers: {},
};

function httpError(url: string, what: string, offset?: number): BlockError {
  return new BlockError('EIO', `HTTP image '${url}': ${what}`, offset !== undefined ? { offset } : {});
}

function checkEncoding(url: string, res: Response): void {
  const enc = res.headers.get('content-encoding');
  if (enc && enc.toLowerCase() !== 'identity') {
    throw httpError(
      url,
      `the server applies Content-Encoding '${enc}', so byte ranges do not match the image; serve it without compression`,
    );
  }
}

/** Finds the size of a remote image (HEAD, then a bytes=0-0 GET). */
async function probeSize(url: string, headers: Record<string, string>): Promise<number> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'HEAD', headers, cache: 'no-store' });
  } catch (e) {
    throw new BlockError('EIO', `Could not open '${url}': ${toBlockError(e).message}`, {}, { cause: e });
  }
  if (res.status === 404 || res.status === 410) throw new BlockError('ENOENT', `Could not open '${url}': HTTP ${res.status}`);
  if (res.status === 401 || res.status === 403) throw new BlockError('EACCES', `Could not open '${url}': HTTP ${res.status}`);
  if (res.ok) {
    checkEncoding(url, res);
    const len = res.headers.get('content-length');
    if (len !== null && /^\d+$/.test(len)) return Number(len);
  }
  // No usable HEAD: ask for one byte and read the total from Content-Range.
  try {
    res = await fetch(url, { headers: { ...headers, Range: 'bytes=0-0' }, cache: 'no-store' });
  } catch (e) {
    throw new BlockError('EIO', `Could not open '${url}': ${toBlockError(e).message}`, {}, { cause: e });
  }
  if (res.status === 404 || res.status === 410) throw new BlockError('ENOENT', `Could not open '${url}': HTTP ${res.status}`);
  if (res.status !== 206) {
    await res.body?.cancel();
    throw httpError(url, `the server does not support Range requests (answered ${res.status} to bytes=0-0)`);
  }
  checkEncoding(url, res);
  await res.arrayBuffer();
  const cr = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
  if (!cr) throw httpError(url, 'the server gave no total size (no Content-Length on HEAD, no Content-Range total)');
  return Number(cr[1]);
}

class Semaphore {
  private queue: Array<() => void> = [];
  constructor(private free: number) {}
  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.queue.push(r));
  }
  release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.free++;
  }
}

/** The remote file with its block cache (exported for unit tests). */
export class HttpFile {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly inflight = new Map<number, Promise<void>>();
  private readonly free: Uint8Array[] = [];
  private readonly sem: Semaphore;
  private readonly maxBlocks: number;
  private readonly blocks: number;
  private lastEnd = -1;
  private window = 0;
  /** Range requests made and bytes fetched (for stats and tests). */
  fetches = 0;
  fetchedBytes = 0;

  constructor(
    readonly url: string,
    readonly size: number,
    readonly opts: HttpOptions,
    private readonly fetchImpl: typeof fetch = (...a) => fetch(...a),
  ) {
    this.sem = new Semaphore(opts.parallel);
    this.maxBlocks = Math.max(1, Math.floor(opts.cacheSize / opts.blockSize));
    this.blocks = Math.ceil(size / opts.blockSize);
  }

  private touch(idx: number): Uint8Array | undefined {
    const b = this.cache.get(idx);
    if (b) {
      this.cache.delete(idx);
      this.cache.set(idx, b);
    }
    return b;
  }

  private store(idx: number, b: Uint8Array): void {
    this.cache.set(idx, b);
    while (this.cache.size > this.maxBlocks) {
      const oldest = this.cache.keys().next().value as number;
      const old = this.cache.get(oldest)!;
      this.cache.delete(oldest);
      // Readers copy out of blocks synchronously, so an evicted block is free to reuse.
      if (old.length === this.opts.blockSize && this.free.length < 64) this.free.push(old);
    }
  }

  /** A block buffer: a recycled one when possible (fresh memory is slow to touch). */
  private blockBuffer(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.opts.blockSize);
  }

  /**
   * Fetches blocks [first, first + count) in one range request, streaming the
   * body into block buffers: each block is usable as soon as its bytes arrived.
   */
  private fetchRun(first: number, count: number): Promise<void> {
    const bs = this.opts.blockSize;
    const start = first * bs;
    const end = Math.min(this.size, (first + count) * bs);
    const waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
    for (let i = 0; i < count; i++) {
      const p = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
      p.catch(() => undefined);
      this.inflight.set(first + i, p);
    }
    let delivered = 0;
    const whole = (async () => {
      await this.sem.acquire();
      try {
        let res: Response;
        try {
          res = await this.fetchImpl(this.url, {
            headers: { ...this.opts.headers, Range: `bytes=${start}-${end - 1}` },
            cache: 'no-store',
          });
        } catch (e) {
          throw new BlockError('EIO', `HTTP image '${this.url}': fetch of bytes ${start}-${end - 1} failed: ${toBlockError(e).message}`, { offset: start }, { cause: e });
        }
        if (res.status === 200) {
          await res.body?.cancel();
          throw httpError(this.url, `the server ignores Range requests (answered 200 with the whole file to bytes=${start}-${end - 1})`, start);
        }
        if (res.status !== 206) {
          await res.body?.cancel();
          throw httpError(this.url, `HTTP ${res.status} for bytes=${start}-${end - 1}`, start);
        }
        checkEncoding(this.url, res);
        const cr = /^bytes\s+(\d+)-(\d+)\//.exec(res.headers.get('content-range') ?? '');
        if (cr && Number(cr[1]) !== start) {
          await res.body?.cancel();
          throw httpError(this.url, `asked for bytes from ${start}, the server sent from ${cr[1]}`, start);
        }
        if (!res.body) throw httpError(this.url, `empty body for bytes=${start}-${end - 1}`, start);
        const reader = res.body.getReader();
        let block = this.blockBuffer();
        let fill = 0;
        let pos = start;
        const blockLen = (k: number) => Math.min(bs, end - (first + k) * bs);
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          let off = 0;
          while (off < value.length) {
            if (delivered >= count) throw httpError(this.url, `the server sent more than the ${end - start} bytes asked at ${start}`, start);
            const want = blockLen(delivered);
            const n = Math.min(want - fill, value.length - off);
            block.set(value.subarray(off, off + n), fill);
            fill += n;
            off += n;
            pos += n;
            if (fill === want) {
              this.store(first + delivered, want === bs ? block : block.subarray(0, want));
              this.inflight.delete(first + delivered);
              waiters[delivered]!.resolve();
              delivered++;
              fill = 0;
              if (delivered < count) block = this.blockBuffer();
            }
          }
        }
        if (delivered < count) {
          throw httpError(this.url, `asked for ${end - start} bytes at ${start}, got ${pos - start}`, start);
        }
        this.fetches++;
        this.fetchedBytes += end - start;
      } finally {
        this.sem.release();
      }
    })();
    return whole.catch((e: unknown) => {
      for (let k = delivered; k < count; k++) {
        this.inflight.delete(first + k);
        waiters[k]!.reject(e);
      }
      throw e;
    });
  }

  private missing(i: number): boolean {
    return !this.cache.has(i) && !this.inflight.has(i);
  }

  /**
   * Starts fetches: every missing block of [first, last] (the request itself,
   * each run extended into the readahead area up to `max-fetch`), and the
   * readahead area up to `raLast` once enough of it is missing to make one
   * large request (many small range requests are slow in browsers).
   */
  private request(first: number, last: number, raLast: number): void {
    const maxRun = Math.max(1, Math.floor(this.opts.maxFetch / this.opts.blockSize));
    let i = first;
    while (i <= last) {
      if (!this.missing(i)) {
        i++;
        continue;
      }
      let n = 1;
      while (i + n <= raLast && n < maxRun && this.missing(i + n)) n++;
      // Errors surface through the awaiting reader; readahead failures are dropped.
      this.fetchRun(i, n).catch(() => undefined);
      i += n;
    }
    if (raLast <= last) return;
    let next = last + 1;
    while (next <= raLast && !this.missing(next)) next++;
    const want = Math.min(maxRun, Math.max(1, Math.ceil((raLast - last) / 2)));
    while (next <= raLast && raLast - next + 1 >= want) {
      let n = 1;
      while (next + n <= raLast && n < maxRun && this.missing(next + n)) n++;
      this.fetchRun(next, n).catch(() => undefined);
      next += n;
      while (next <= raLast && !this.missing(next)) next++;
    }
  }

  async read(offset: number, buf: Uint8Array, bytes = buf.length): Promise<void> {
    const bs = this.opts.blockSize;
    const end = Math.min(offset + bytes, this.size);
    if (end <= offset) {
      buf.fill(0, 0, bytes);
      return;
    }
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    // Sequential access grows the readahead window; a jump resets it.
    if (offset === this.lastEnd) this.window = Math.min(this.opts.readahead, Math.max(this.window * 2, bytes, bs));
    else this.window = 0;
    this.lastEnd = end;
    const raLast = Math.min(this.blocks - 1, last + Math.ceil(this.window / bs));
    this.request(first, last, raLast);
    let pos = offset;
    for (let idx = first; idx <= last; idx++) {
      let b = this.touch(idx);
      for (let tries = 0; !b && tries < 3; tries++) {
        const p = this.inflight.get(idx);
        if (p) await p;
        else await this.fetchRun(idx, 1);
        b = this.touch(idx);
      }
      if (!b) throw httpError(this.url, `block at ${idx * bs} could not be kept in the cache`, idx * bs);
      const within = pos - idx * bs;
      const n = Math.min(b.length - within, end - pos);
      buf.set(b.subarray(within, within + n), pos - offset);
      pos += n;
    }
    if (end - offset < bytes) buf.fill(0, end - offset, bytes);
  }
}

class HttpInstance implements DriverInstance {
  constructor(readonly file: HttpFile) {}
  getLength(): number {
    return this.file.size;
  }
  preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    return this.file.read(offset, buf, bytes);
  }
  async getAllocatedFileSize(): Promise<number> {
    return this.file.size;
  }
}

export const httpDriver = {
  name: 'http',
  kind: 'protocol',
  protocolPrefixes: ['http://', 'https://'],
  parseFilename: (filename: string) => ({ filename }),
  isAvailable: () => typeof fetch === 'function',
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const filename = options.string('filename') ?? options.string('url');
    if (!filename) throw einval("The 'http' block driver requires a URL");
    let url: URL;
    try {
      url = new URL(filename, (globalThis as { location?: { href: string } }).location?.href);
    } catch {
      throw einval(`'${filename}' is not a valid URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw einval(`'${filename}' is not an http(s) URL`);
    if (!node.readOnly) {
      throw new BlockError('EROFS', `Could not open '${filename}' for writing: the http back end is read-only`);
    }
    const opts: HttpOptions = {
      blockSize: options.size('block-size', HTTP_DEFAULTS.blockSize),
      cacheSize: options.size('cache-size', HTTP_DEFAULTS.cacheSize),
      readahead: options.size('readahead', HTTP_DEFAULTS.readahead),
      maxFetch: options.size('max-fetch', HTTP_DEFAULTS.maxFetch),
      parallel: options.uint('parallel', HTTP_DEFAULTS.parallel),
      headers: {},
    };
    options.consume('timeout', 'sslverify', 'cookie');
    if (opts.blockSize < 512 || opts.blockSize > 64 * MiB || (opts.blockSize & (opts.blockSize - 1)) !== 0) {
      throw einval(`http block-size must be a power of two between 512 and 64M, got ${opts.blockSize}`);
    }
    if (opts.parallel < 1 || opts.parallel > 64) throw einval(`http parallel must be 1..64, got ${opts.parallel}`);
    node.filename = url.toString();
    const size = await probeSize(node.filename, opts.headers);
    return new HttpInstance(new HttpFile(node.filename, size, opts));
  },
} satisfies BlockDriver;
