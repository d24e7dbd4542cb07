/**
 * The block worker's service: one BlockGraph over the browser back ends, the
 * operations the page calls through Comlink, and one {@link DiskService} per
 * open disk (a BlockBackend behind a Comlink proxy).
 */
import { proxy, transfer, type ProxyMarked } from 'comlink';
import { BlockBackend } from '../src/core/backend.js';
import { BlockError, toBlockError } from '../src/core/errors.js';
import { ReqFlag, Status, type BlockStatusResult } from '../src/core/driver.js';
import { createImage } from '../src/core/create.js';
import { isZeroBuffer, setZeroDetector, zeroDetectorKind } from '../src/core/zero-detect.js';
import { getClusterCodec, initZstd } from '../src/wasm/codec.js';
import { initL2Mapper, l2MapperState } from '../src/formats/qcow2/lookup.js';
import { initRefcountWasm, refcountWasmState } from '../src/formats/qcow2/refcount.js';
import { loadZero, ZeroBufferPool } from '../src/wasm/zero.js';
import type { BlockGraph } from '../src/core/graph.js';
import { Perm, PERM_ALL } from '../src/core/permissions.js';
import { createBrowserGraph } from '../src/browser.js';
import { listOpfs, removeOpfs, opfsTestHooks } from '../src/protocols/opfs.js';
import { listIdb, removeIdb } from '../src/protocols/idb.js';
import { defaultMemoryStorage } from '../src/protocols/memory.js';
import { registerBlob, unregisterBlob } from '../src/protocols/blob.js';
import { SyncServer } from '../src/client/sync-server.js';
import { RingServer } from '../src/client/ring.js';
import type {
  CheckReport,
  ConvertOptions,
  CreateOptions,
  DiskStats,
  ImageEntry,
  Implementations,
  ImageInfo,
  ImportOptions,
  MapExtent,
  OpenOptions,
  Progress,
  StorageReport,
} from '../src/client/protocol.js';
import { serializeBlockError } from '../src/client/transfer.js';

const COPY_CHUNK = 1 << 20;
/** Largest copy chunk: COPY_CHUNK, or one 2 MiB cluster when compressing. */
const MAX_COPY_CHUNK = 2 << 20;

/**
 * The WASM zero module, loaded once at start-up. It serves detect-zeroes (its detector
 * copies a request buffer in and checks it with SIMD: 4.1x / 4.7x the plain JS loop on
 * 64 KiB / 1 MiB in Chromium, bench/results/browser.json) and copyData, whose copy buffers
 * live in its memory (two: a convert and an export at the same time) so the zero check
 * reads them in place (10x / 12x the JS loop). The detector's scratch is allocated before
 * the pool, so nothing allocates in that memory afterwards (a growth would detach the
 * buffers' views). Undefined without SIMD or when the module does not load: detect-zeroes
 * and copies then use the JS check and ordinary buffers.
 */
const zeroPool: Promise<ZeroBufferPool | undefined> = loadZero().then(
  (z) => {
    if (!z) return undefined;
    setZeroDetector(z.detector(), 'wasm');
    return new ZeroBufferPool(z, 2, MAX_COPY_CHUNK);
  },
  () => undefined,
);

/** A progress callback proxied from the page. */
type ProgressFn = (p: Progress) => void | Promise<void>;

/** One open disk, as the page sees it through Comlink. */
export class DiskService {
  private closed = false;
  private readonly syncServers: SyncServer[] = [];
  constructor(
    readonly backend: BlockBackend,
    readonly path: string,
    private readonly onClose: () => void,
  ) {}

  /** Virtual size in bytes. */
  length(): number {
    return this.backend.length;
  }

  readOnly(): boolean {
    return this.backend.readOnly;
  }

  format(): string {
    return this.backend.node.driver.name;
  }

  /** Reads into a new buffer, transferred to the caller. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    await this.backend.pread(offset, buf);
    return transfer(buf, [buf.buffer]);
  }

  /** Reads into the caller's (transferred) buffer and transfers it back. */
  async readInto(offset: number, buf: Uint8Array): Promise<Uint8Array> {
    await this.backend.pread(offset, buf);
    return transfer(buf, [buf.buffer]);
  }

  /**
   * A MessagePort for bulk reads without Comlink's per-call work: messages
   * `{ id, offset, buf }` (buf transferred, or a SharedArrayBuffer view),
   * answered `{ id, buf }` or `{ id, error }`.
   */
  readPort(): MessagePort {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = (ev: MessageEvent<{ id: number; offset: number; buf: Uint8Array }>) => {
      const { id, offset, buf } = ev.data;
      const shared = typeof SharedArrayBuffer !== 'undefined' && buf.buffer instanceof SharedArrayBuffer;
      this.backend.pread(offset, buf).then(
        () => (shared ? port1.postMessage({ id }) : port1.postMessage({ id, buf }, [buf.buffer as ArrayBuffer])),
        (e: unknown) => {
          port1.postMessage({ id, error: serializeBlockError(toBlockError(e)) });
        },
      );
    };
    this.ports.push(port1);
    return transfer(port2, [port2]);
  }
  private readonly ports: MessagePort[] = [];

  /** Reads into a view of a SharedArrayBuffer the caller shares (nothing moves). */
  async readShared(offset: number, buf: Uint8Array): Promise<void> {
    await this.backend.pread(offset, buf);
  }

  /** Writes `data` (transferred by the caller). */
  async write(offset: number, data: Uint8Array, flags = 0): Promise<void> {
    await this.backend.write(offset, data, flags);
  }

  async writeZeroes(offset: number, bytes: number, unmap = false): Promise<void> {
    await this.backend.writeZeroes(offset, bytes, unmap ? 0x02 : 0);
  }

  async discard(offset: number, bytes: number): Promise<void> {
    await this.backend.discard(offset, bytes);
  }

  async flush(): Promise<void> {
    await this.backend.flush();
  }

  /** Continues after a `stop` / `enospc` error policy paused the disk. */
  resume(): void {
    this.backend.resume();
  }

  /** Whether the error policy has paused the disk. */
  isStopped(): boolean {
    return this.backend.isStopped;
  }

  /** The error that paused the disk (null while it runs), as plain fields (see onStop). */
  stoppedBy(): { code: string; message: string } | null {
    const e = this.backend.stoppedBy;
    return e ? { code: e.code, message: e.message } : null;
  }

  /**
   * Calls `listener` (a Comlink proxy from the page) each time the error
   * policy pauses the disk. The error goes as plain fields: an Error nested in
   * an argument would lose its code in the structured clone.
   */
  onStop(listener: (e: { operation: 'read' | 'write'; code: string; message: string }) => void): void {
    this.backend.onStop.push((e) => {
      void Promise.resolve(listener({ operation: e.operation, code: e.error.code, message: e.error.message })).catch(() => undefined);
    });
  }

  async truncate(size: number): Promise<number> {
    await this.backend.truncate(size);
    return this.backend.length;
  }

  async blockStatus(offset: number, bytes: number): Promise<{ status: number; pnum: number; map?: number }> {
    const r: BlockStatusResult = await this.backend.blockStatus(offset, bytes);
    return { status: r.status, pnum: r.pnum, ...(r.map !== undefined ? { map: r.map } : {}) };
  }

  /** Extents of the whole disk (or a range), merged where the answer is the same. */
  async map(offset = 0, bytes = this.backend.length - offset): Promise<MapExtent[]> {
    const out: MapExtent[] = [];
    let pos = offset;
    const end = offset + bytes;
    while (pos < end) {
      const r = await this.backend.blockStatus(pos, end - pos);
      if (r.pnum <= 0) break;
      const e: MapExtent = {
        offset: pos,
        length: r.pnum,
        data: !!(r.status & Status.DATA),
        zero: !!(r.status & Status.ZERO),
        allocated: !!(r.status & Status.ALLOCATED),
        compressed: !!(r.status & Status.COMPRESSED),
      };
      const last = out[out.length - 1];
      if (last && last.data === e.data && last.zero === e.zero && last.allocated === e.allocated && last.compressed === e.compressed) {
        last.length += e.length;
      } else out.push(e);
      pos += r.pnum;
    }
    return out;
  }

  stats(): DiskStats {
    return structuredClone(this.backend.stats);
  }

  /**
   * Starts the synchronous channel: a SharedArrayBuffer another worker uses
   * with {@link SyncDiskClient} (Atomics.wait) to read and write this disk
   * synchronously. Needs cross-origin isolation.
   */
  syncChannel(dataBytes = 1 << 20): SharedArrayBuffer {
    if (!Number.isSafeInteger(dataBytes) || dataBytes < 4096 || dataBytes > 64 << 20) {
      throw new BlockError('EINVAL', `Sync channel data area must be 4 KiB..64 MiB, got ${dataBytes}`);
    }
    const server = new SyncServer(this.backend, dataBytes);
    server.start();
    this.syncServers.push(server);
    return server.buffer;
  }

  /**
   * Starts a bulk-read ring (src/client/ring.ts): a SharedArrayBuffer of
   * `slots` data areas of `slotBytes` the page streams reads through with
   * {@link BulkReader}. Needs cross-origin isolation.
   */
  bulkChannel(slots = 4, slotBytes = 1 << 20): SharedArrayBuffer {
    if (this.closed) throw new BlockError('ENOMEDIUM', `Disk '${this.path}' was closed`);
    const server = new RingServer(this.backend, slots, slotBytes);
    server.start();
    this.ringServers.push(server);
    return server.buffer;
  }
  private readonly ringServers: RingServer[] = [];

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.syncServers) s.stop();
    for (const s of this.ringServers) s.stop();
    for (const p of this.ports) p.close();
    try {
      await this.backend.close();
    } finally {
      this.onClose();
    }
  }

  /** Test hook: bytes of the protocol file under the image (no format). */
  async hostLength(): Promise<number> {
    return this.backend.node.graph.protocolNodeOf(this.backend.node).length;
  }
}

let jobCounter = 0;

/** The object the block worker exposes. */
export class BlockWorkerService {
  readonly graph: BlockGraph = createBrowserGraph();
  private readonly open_ = new Map<string, DiskService>();
  private readonly cancelled = new Set<number>();
  private lock: Promise<unknown> = Promise.resolve();

  /** Runs graph-changing work one at a time (the backing policy is per open). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  ping(): string {
    return 'pong';
  }

  /** Names of the drivers available in this worker. */
  drivers(): string[] {
    return this.graph.listDrivers().filter((d) => !d.isAvailable || d.isAvailable()).map((d) => d.name);
  }

  /** Whether the worker runs cross-origin isolated (the sync channel needs it). */
  crossOriginIsolated(): boolean {
    return !!(globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
  }

  async create(o: CreateOptions): Promise<void> {
    const format = o.format ?? 'qcow2';
    const opts: Record<string, string | number | boolean> = { ...(o.options ?? {}) };
    if (o.size !== undefined) opts.size = o.size;
    if (o.backingFile !== undefined) opts.backing_file = o.backingFile;
    if (o.backingFormat !== undefined) opts.backing_fmt = o.backingFormat;
    if (this.open_.has(canonical(o.path))) {
      throw new BlockError('EBUSY', `Cannot create '${o.path}': the image is open in this worker`);
    }
    await this.serial(() => createImage(this.graph, format, o.path, opts));
  }

  private async openBackend(o: OpenOptions): Promise<BlockBackend> {
    return this.serial(async () => {
      const saved = this.graph.backingPolicy.allowedProtocols;
      this.graph.backingPolicy.allowedProtocols = o.allowBackingProtocols ?? [];
      try {
        const spec = o.options ? { ...o.options, filename: o.path } : o.path;
        const flags = { readOnly: o.readOnly ?? false, ...(o.format ? { format: o.format } : {}) };
        return await BlockBackend.open(this.graph, spec, flags, { name: o.path, werror: o.werror ?? 'report', rerror: o.rerror ?? 'report' });
      } finally {
        this.graph.backingPolicy.allowedProtocols = saved;
      }
    });
  }

  async open(o: OpenOptions): Promise<DiskService & ProxyMarked> {
    const key = canonical(o.path);
    if (this.open_.has(key) && !(o.readOnly ?? false)) {
      throw new BlockError('EBUSY', `Could not open '${o.path}': the image is in use (already open for writing in this worker)`);
    }
    const bb = await this.openBackend(o);
    const disk = new DiskService(bb, o.path, () => {
      if (this.open_.get(key) === disk) this.open_.delete(key);
    });
    if (!bb.readOnly) this.open_.set(key, disk);
    return proxy(disk);
  }

  async list(storage?: 'opfs' | 'idb' | 'memory'): Promise<ImageEntry[]> {
    const out: ImageEntry[] = [];
    if (!storage || storage === 'opfs') out.push(...(await listOpfs().catch(() => [])));
    if (!storage || storage === 'idb') out.push(...(await listIdb().catch(() => [])));
    if (!storage || storage === 'memory') {
      for (const [name, f] of defaultMemoryStorage.files) out.push({ path: `memory:${name}`, size: f.length });
    }
    return out;
  }

  async remove(path: string): Promise<void> {
    if (this.open_.has(canonical(path))) throw new BlockError('EBUSY', `Cannot remove '${path}': the image is open`);
    if (path.startsWith('idb:')) return removeIdb(path);
    if (path.startsWith('memory:')) {
      if (!defaultMemoryStorage.remove(path.slice(7))) throw new BlockError('ENOENT', `Cannot remove '${path}': No such file or directory`);
      return;
    }
    return removeOpfs(path);
  }

  /** Runs `fn` on the image, reusing this worker's open disk when there is one. */
  private async withImage<T>(
    path: string,
    o: { readOnly: boolean; noBacking?: boolean; format?: string },
    fn: (bb: BlockBackend) => Promise<T>,
  ): Promise<T> {
    const mine = this.open_.get(canonical(path));
    if (mine) return fn(mine.backend);
    const bb = await this.serial(() =>
      BlockBackend.open(
        this.graph,
        path,
        { readOnly: o.readOnly, ...(o.noBacking ? { noBacking: true } : {}), ...(o.format ? { format: o.format } : {}) },
        { name: path, werror: 'report' },
      ),
    );
    try {
      return await fn(bb);
    } finally {
      await bb.close();
    }
  }

  async info(path: string): Promise<ImageInfo> {
    return this.withImage(path, { readOnly: true, noBacking: true }, async (bb) => {
      const node = bb.node;
      const inst = node.instance;
      const gi = inst.getInfo?.();
      const backing = inst.backingFile?.();
      const spec = inst.getSpecificInfo?.();
      const proto = this.graph.protocolNodeOf(node);
      const actual = (await proto.instance.getAllocatedFileSize?.()) ?? proto.length;
      return {
        path,
        format: node.driver.name,
        virtualSize: node.length,
        actualSize: actual,
        ...(gi?.clusterSize !== undefined ? { clusterSize: gi.clusterSize } : {}),
        ...(gi?.dirty !== undefined ? { dirty: gi.dirty } : {}),
        ...(backing ? { backingFile: backing.filename } : {}),
        ...(backing?.format ? { backingFormat: backing.format } : {}),
        ...(spec ? { specific: JSON.parse(JSON.stringify(spec)) } : {}),
      };
    });
  }

  /**
   * Checks an image (qemu-img check), repairing leaks and errors when asked.
   * Progress is reported as fractions of 1000; a check that repairs nothing
   * can be cancelled.
   */
  async check(path: string, repair = false, onProgress?: ProgressFn, jobId?: number): Promise<CheckReport> {
    return this.withImage(path, { readOnly: !repair, noBacking: true }, async (bb) => {
      const inst = bb.node.instance;
      if (!inst.check) throw new BlockError('ENOTSUP', `Format '${bb.node.driver.name}' does not support checks`);
      let lastReport = 0;
      const progress = (done: number, total: number) => {
        if (!repair) this.checkCancel(jobId);
        const now = Date.now();
        if (onProgress && (now - lastReport > 100 || done >= total)) {
          lastReport = now;
          void onProgress({ done: Math.round((done / total) * 1000), total: 1000 });
        }
      };
      const r = await inst.check({ leaks: repair, errors: repair, progress });
      return {
        corruptions: r.corruptions,
        leaks: r.leaks,
        checkErrors: r.checkErrors,
        corruptionsFixed: r.corruptionsFixed,
        leaksFixed: r.leaksFixed,
        imageEndOffset: r.imageEndOffset,
        messages: [...r.messages],
      };
    });
  }

  /** Asks a running convert / import / export to stop (it fails with ECANCELED). */
  cancel(jobId: number): void {
    this.cancelled.add(jobId);
  }

  newJobId(): number {
    return ++jobCounter;
  }

  private checkCancel(jobId: number | undefined): void {
    if (jobId !== undefined && this.cancelled.has(jobId)) {
      this.cancelled.delete(jobId);
      throw new BlockError('ECANCELED', 'Operation canceled');
    }
  }

  /**
   * Copies what `src` shows into `dst` (same size), skipping zero chunks when
   * `dst` reads zeros already. `compress` writes compressed clusters (the
   * chunk is then a whole number of the target's clusters).
   */
  private async copyData(src: BlockBackend, dst: BlockBackend, dstZeroed: boolean, onProgress?: ProgressFn, jobId?: number, compress = false) {
    const total = src.length;
    const clusterSize = dst.node.instance.getInfo?.()?.clusterSize ?? 65536;
    const chunk = compress ? Math.max(1, Math.round(COPY_CHUNK / clusterSize)) * clusterSize : COPY_CHUNK;
    const pool = await zeroPool;
    const wasmBuf = pool?.take(chunk);
    const buf = wasmBuf ?? new Uint8Array(chunk);
    let lastReport = 0;
    try {
      for (let pos = 0; pos < total; pos += chunk) {
        this.checkCancel(jobId);
        const n = Math.min(chunk, total - pos);
        const view = n === chunk ? buf : buf.subarray(0, n);
        await src.pread(pos, view);
        // A view into WASM memory is detached if that memory grew meanwhile.
        if (view.byteLength !== n) throw new BlockError('EIO', `copy buffer for ${n} bytes at ${pos} was detached (WASM memory grew)`);
        // The detector installed with the pool checks `view` in place (it lives in module memory).
        if (!(dstZeroed && isZeroBuffer(view))) await dst.write(pos, view, compress ? ReqFlag.COMPRESSED : 0);
        const now = Date.now();
        if (onProgress && (now - lastReport > 100 || pos + n >= total)) {
          lastReport = now;
          await onProgress({ done: pos + n, total });
        }
      }
    } finally {
      // Every read and write on the buffer has finished here (each was awaited).
      if (wasmBuf) pool!.give(wasmBuf);
    }
    await dst.flush();
  }

  async convert(o: ConvertOptions, onProgress?: ProgressFn, jobId?: number): Promise<void> {
    const src = await this.openBackend({
      path: o.from,
      readOnly: true,
      ...(o.fromFormat ? { format: o.fromFormat } : {}),
      ...(o.allowBackingProtocols ? { allowBackingProtocols: o.allowBackingProtocols } : {}),
    });
    await closingAfter(src, () => this.convertFrom(src, o.to, o.format ?? 'qcow2', o.options ?? {}, onProgress, jobId, o.compress ?? false));
  }

  private async convertFrom(
    src: BlockBackend,
    to: string,
    format: 'qcow2' | 'raw',
    options: Record<string, string | number | boolean>,
    onProgress?: ProgressFn,
    jobId?: number,
    compress = false,
  ): Promise<void> {
    if (compress && format !== 'qcow2') {
      throw new BlockError('EINVAL', `Compressed output needs the qcow2 format, not '${format}'`);
    }
    await this.create({ path: to, format, size: src.length, options });
    const dst = await this.openBackend({ path: to, format });
    // The close flushes: a convert succeeds only once the copy is on storage.
    await closingAfter(dst, () => this.copyData(src, dst, dst.node.instance.hasZeroInit?.() ?? format === 'qcow2', onProgress, jobId, compress));
  }

  /**
   * Brings a Blob / File in: `copy` stores its bytes unchanged, `qcow2` / `raw`
   * convert what it holds (format probed). Streams in 1 MiB pieces.
   */
  async importBlob(blob: Blob, o: ImportOptions, onProgress?: ProgressFn, jobId?: number): Promise<void> {
    const name = registerBlob(blob);
    try {
      const src = await this.openBackend({ path: name, readOnly: true, ...(o.format === 'copy' || !o.format ? { format: 'raw' } : {}) });
      const format = !o.format || o.format === 'copy' ? 'raw' : o.format;
      await closingAfter(src, () => this.convertFrom(src, o.to, format, {}, onProgress, jobId));
    } finally {
      unregisterBlob(name);
    }
  }

  /**
   * A stream of an image's bytes for download. `format` absent: the stored
   * file as it is (a qcow2 stays qcow2); `raw`: what the guest sees; another
   * format: converted first into a temporary OPFS file.
   */
  async exportStream(path: string, format?: 'raw' | 'qcow2' | 'file', jobId?: number, compress = false): Promise<ReadableStream<Uint8Array>> {
    let src: BlockBackend;
    let cleanup: (() => Promise<void>) | null = null;
    const mine = this.open_.get(canonical(path));
    if (mine) await mine.flush();
    if (!format || format === 'file') {
      const proto = this.graph.protocolFor(path).name;
      if (mine) {
        const node = this.graph.protocolNodeOf(mine.backend.node);
        node.ref();
        try {
          src = await BlockBackend.attach(this.graph, node, { name: `export ${path}`, perm: Perm.CONSISTENT_READ, shared: PERM_ALL });
        } finally {
          await node.unref();
        }
      } else {
        src = await this.openBackend({ path, readOnly: true, options: { driver: proto } });
      }
    } else if (format === 'raw') {
      src = mine
        ? await BlockBackend.attach(this.graph, mine.backend.node, { name: `export ${path}`, perm: Perm.CONSISTENT_READ, shared: PERM_ALL })
        : await this.openBackend({ path, readOnly: true });
    } else {
      const tmp = `opfs:/.diskworker-tmp/export-${Date.now()}-${jobCounter++}.${format}`;
      try {
        await this.convert({ from: path, to: tmp, format, compress: compress && format === 'qcow2' });
      } catch (e) {
        // A failed convert (a full quota, say) must not leave its partial copy behind.
        await removeOpfs(tmp).catch(() => undefined);
        throw e;
      }
      src = await this.openBackend({ path: tmp, readOnly: true, options: { driver: 'opfs' } });
      cleanup = () => removeOpfs(tmp);
    }
    const total = src.length;
    let pos = 0;
    const finish = async () => {
      await src.close().catch(() => undefined);
      if (cleanup) await cleanup().catch(() => undefined);
      cleanup = null;
    };
    const stream = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          try {
            this.checkCancel(jobId);
            if (pos >= total) {
              await finish();
              controller.close();
              return;
            }
            const n = Math.min(COPY_CHUNK, total - pos);
            const buf = new Uint8Array(n);
            await src.pread(pos, buf);
            pos += n;
            controller.enqueue(buf);
          } catch (e) {
            await finish();
            controller.error(toBlockError(e));
          }
        },
        cancel: finish,
      },
      { highWaterMark: 2 },
    );
    return transfer(stream, [stream as unknown as Transferable]);
  }

  /** Which implementation each hot path uses here (loads the modules that are not yet). */
  async implementations(): Promise<Implementations> {
    const codec = await getClusterCodec().catch(() => undefined);
    const zstd = await initZstd().then(
      () => 'wasm' as const,
      () => 'unavailable' as const,
    );
    await initL2Mapper();
    await initRefcountWasm();
    const pool = await zeroPool;
    return {
      inflate: codec?.inflateImpl ?? 'unavailable',
      deflate: codec?.deflateImpl ?? 'unavailable',
      zstd,
      l2: l2MapperState(),
      refcount: refcountWasmState(),
      copyZeroCheck: pool ? 'wasm' : 'plain JS',
      detectZeroes: zeroDetectorKind(),
    };
  }

  async estimate(): Promise<StorageReport> {
    const s = (globalThis.navigator as Navigator | undefined)?.storage;
    if (!s?.estimate) return {};
    const e = await s.estimate();
    const out: StorageReport = {};
    if (e.usage !== undefined) out.usage = e.usage;
    if (e.quota !== undefined) out.quota = e.quota;
    if (s.persisted) out.persisted = await s.persisted().catch(() => false);
    return out;
  }

  /** Test hook: a quota for OPFS writes smaller than the browser's (undefined to lift it). */
  setTestQuota(bytes: number | undefined): void {
    if (bytes === undefined) delete opfsTestHooks.quotaBytes;
    else opfsTestHooks.quotaBytes = bytes;
  }

  /** Closes every open disk (flushing them). */
  async shutdown(): Promise<void> {
    for (const d of [...this.open_.values()]) await d.close().catch(() => undefined);
    await this.graph.closeAll();
  }
}

function canonical(path: string): string {
  if (path.startsWith('opfs:')) return 'opfs:/' + path.slice(5).split('/').filter(Boolean).join('/');
  if (!path.includes(':')) return 'opfs:/' + path.split('/').filter(Boolean).join('/');
  return path;
}

/**
 * Runs `work`, then closes `bb` (which flushes). The first failure wins: a
 * failed close after a failed copy must not hide why the copy failed, and a
 * failed close after a good copy fails the whole operation.
 */
async function closingAfter(bb: BlockBackend, work: () => Promise<void>): Promise<void> {
  let failure: unknown = null;
  try {
    await work();
  } catch (e) {
    failure = e;
  }
  try {
    await bb.close();
  } catch (e) {
    failure ??= e;
  }
  if (failure !== null) throw failure;
}
