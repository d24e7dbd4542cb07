/**
 * The page side of DiskWorker: starts the block worker and gives a small,
 * typed API over Comlink.
 *
 * ```ts
 * const dw = await DiskWorker.start();
 * await dw.create({ path: 'opfs:/disks/a.qcow2', format: 'qcow2', size: 1 << 30 });
 * const disk = await dw.open({ path: 'opfs:/disks/a.qcow2' });
 * await disk.write(0, bytes);           // bytes.buffer is transferred (detached)
 * const data = await disk.read(0, 4096); // transferred from the worker, not copied
 * await disk.flush();
 * await disk.close();
 * ```
 *
 * Bulk reads (streaming a disk into the page): use {@link Disk.bulkReader}
 * (a shared-memory ring, several reads in flight, no message per read) when
 * the page is cross-origin isolated; otherwise {@link Disk.readInto} with a
 * few buffers in flight.
 *
 * Errors are BlockErrors with their `code` (EBUSY, ENOSPC, ...), also after
 * crossing the worker boundary (src/client/transfer.ts).
 */
import { proxy, releaseProxy, transfer, wrap, type Remote } from 'comlink';
import { get as kvGet, set as kvSet, createStore } from 'idb-keyval';
import type { BlockWorkerApi, DiskApi } from './api.js';
import type {
  CheckReport,
  ConvertOptions,
  CreateOptions,
  DiskStats,
  ExportFormat,
  ImageEntry,
  Implementations,
  ImageInfo,
  ImportOptions,
  MapExtent,
  OpenOptions,
  Progress,
  StorageReport,
} from './protocol.js';
import { installErrorTransfer } from './transfer.js';
import { BlockError, type ErrorCode } from '../core/errors.js';

export * from './protocol.js';
export type { BlockWorkerApi, DiskApi, ProgressFn, StopEvent } from './api.js';
export { DiskBitmaps, type DirtyExtentsOptions } from './bitmaps.js';
export { DiskSnapshots, type CreateSnapshotOptions } from './snapshots.js';
export { DiskJobs, Job, type JobEvent, type DiskRef } from './jobs.js';
export { DiskQmp, type QmpEvent, type QmpReply } from './qmp.js';
export { DiskSecrets } from './secrets.js';
export { groupImageFiles, descriptorExtentNames, type ImageFileGroup } from './image-files.js';
export type * from './jobs-protocol.js';
export { BlockError, isBlockError, type ErrorCode } from '../core/errors.js';
export { toV86Buffer, type V86DiskBuffer, type V86Disk } from './v86.js';
export { V86Cdrom, type V86CdromEmulator, type CdromOpener } from './cdrom.js';
export { RemovableMedia, type MediaEvents } from '../core/removable-media.js';
export { connectV86Flush, type V86WithIde } from './v86-flush.js';
export { saveMachine, restoreMachine, type MachineDisk, type V86Machine } from './v86-machine.js';
export { SyncDiskClient, SharedDiskReader } from '../channels/sync-client.js';
export { BulkReader } from '../channels/ring-client.js';
export { SyncSlot, SyncState, SyncOp, SYNC_HEADER_BYTES } from '../channels/sync-layout.js';
import { SharedDiskReader } from '../channels/sync-client.js';
import { BulkReader } from '../channels/ring-client.js';
import { PortReader } from '../channels/read-port-client.js';
import { RingCopyReader } from '../channels/ring-copy-reader.js';
import { DiskBitmaps } from './bitmaps.js';
import { DiskSnapshots } from './snapshots.js';
import { DiskJobs } from './jobs.js';
import { DiskQmp } from './qmp.js';
import { DiskSecrets } from './secrets.js';

installErrorTransfer();

/** Options of long operations. */
export interface JobOptions {
  onProgress?: (p: Progress) => void;
  /** Aborting fails the operation with ECANCELED. */
  signal?: AbortSignal;
}

/** Options of {@link Disk.write}. */
export interface WriteOptions {
  /**
   * Copy the data instead of transferring its buffer. Without it the buffer
   * of `data` is transferred to the worker and becomes detached (length 0) in
   * the caller, unless `data` is a view of only part of its buffer, which is
   * always copied.
   */
  copy?: boolean;
  /** Request flags (FUA = 1). */
  flags?: number;
}

/** An open disk (a BlockBackend in the worker). */
export class Disk {
  private len: number;
  private closed = false;
  /** The disk's dirty bitmaps (add, remove, clear, enable, disable, merge, list, dirtyExtents). */
  readonly bitmaps: DiskBitmaps;
  /** The disk's internal snapshots with their VM state (create, apply, delete, list, readVmState). */
  readonly snapshots: DiskSnapshots;
  /** The worker's disk; after {@link close}, every call fails with ENOMEDIUM (see {@link closedGuard}). */
  private readonly remote: Remote<DiskApi>;
  constructor(
    private readonly proxyToWorker: Remote<DiskApi>,
    readonly path: string,
    length: number,
    readonly readOnly: boolean,
    readonly format: string,
  ) {
    this.len = length;
    this.remote = closedGuard(proxyToWorker, () => this.closed, () => this.closedError());
    this.bitmaps = new DiskBitmaps(this.remote, () => this.len);
    this.snapshots = new DiskSnapshots(this.remote, (n) => {
      this.len = n;
    });
  }

  /** Virtual size in bytes. */
  get length(): number {
    return this.len;
  }

  /**
   * The filename of the image the disk runs on now: {@link path} until a
   * mirror or active commit job pivots it onto its target.
   */
  image(): Promise<string> {
    return this.remote.image();
  }

  /** Reads `length` bytes at `offset`; the buffer is transferred from the worker. */
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.remote.read(offset, length);
  }

  /**
   * Reads into `buf` without allocating, and resolves with the filled array:
   * reuse it for the next read. In a cross-origin isolated page the data
   * comes through a shared-memory ring of the disk's own (4 slots of 1 MiB)
   * and is copied into `buf`, which stays usable meanwhile; a view of a
   * SharedArrayBuffer is filled in place by the worker. Elsewhere `buf`'s
   * buffer is transferred to the worker (detached here at the end of the
   * current tick) and comes back filled as the returned array; the reads
   * submitted in one tick travel in one message and come back together.
   * Keep a few reads in flight for throughput. For streaming a disk,
   * {@link bulkReader} is faster still (no copy).
   *
   * The result has the type of `buf` (`Uint8Array<ArrayBuffer>` in gives
   * `Uint8Array<ArrayBuffer>` back), so `buf = await disk.readInto(0, buf)`
   * type-checks.
   */
  readInto<B extends ArrayBufferLike>(offset: number, buf: Uint8Array<B>): Promise<Uint8Array<B>> {
    const shared = buf.buffer instanceof SharedArrayBufferCtor;
    // Empty buffers take the read port, which tells a detached one (a mistake) from an empty one.
    if (!shared && buf.length > 0 && crossOriginIsolated() && RingCopyReader.carries(offset, buf.length)) {
      // Through a private ring, copied out (no transfer): the buffer stays usable here.
      this.ringReader ??= new RingCopyReader(this.remote.bulkChannel(RING_READ_SLOTS, RING_READ_SLOT_BYTES), RING_READ_SLOT_BYTES);
      return this.ringReader.read(offset, buf);
    }
    const whole = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength;
    if (!shared && !whole) {
      return this.remote.read(offset, buf.length).then((r) => {
        buf.set(r);
        return buf;
      });
    }
    // What comes back is the same buffer (shared) or the one we sent (transferred back).
    return this.bulkRead(offset, buf, shared) as Promise<Uint8Array<B>>;
  }

  private reader: PortReader | null = null;
  private ringReader: RingCopyReader | null = null;

  /** Bulk reads go over a dedicated read port (no Comlink bookkeeping per call). */
  private bulkRead(offset: number, buf: Uint8Array, shared: boolean): Promise<Uint8Array> {
    this.reader ??= new PortReader(this.remote.readPort());
    return this.reader.read(offset, buf, shared);
  }

  /** Writes `data` at `offset` (see {@link WriteOptions} about the buffer). */
  write(offset: number, data: Uint8Array, opts: WriteOptions = {}): Promise<void> {
    const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && !(data.buffer instanceof SharedArrayBufferCtor);
    const send = opts.copy || !whole ? data.slice() : data;
    return this.remote.write(offset, transfer(send, [send.buffer as ArrayBuffer]), opts.flags ?? 0);
  }

  /** Makes a range read as zeros (`unmap` lets the image deallocate it). */
  writeZeroes(offset: number, bytes: number, unmap = false): Promise<void> {
    return this.remote.writeZeroes(offset, bytes, unmap);
  }

  discard(offset: number, bytes: number): Promise<void> {
    return this.remote.discard(offset, bytes);
  }

  /** Makes everything written so far durable. */
  flush(): Promise<void> {
    return this.remote.flush();
  }

  /** Continues after a `stop` / `enospc` write error policy paused the disk. */
  resume(): Promise<void> {
    return this.remote.resume();
  }

  /**
   * The error that paused the disk, or null while it runs. While paused,
   * held requests wait for {@link resume}, and flush and close fail.
   */
  async stoppedBy(): Promise<BlockError | null> {
    const e = await this.remote.stoppedBy();
    return e ? new BlockError(e.code as ErrorCode, e.message) : null;
  }

  /** Calls `listener` each time a `stop` / `enospc` error policy pauses the disk. */
  async onStop(listener: (e: { operation: 'read' | 'write'; error: BlockError }) => void): Promise<void> {
    await this.remote.onStop(proxy((e) => listener({ operation: e.operation, error: new BlockError(e.code as ErrorCode, e.message) })));
  }

  /** Changes the virtual size. */
  async truncate(size: number): Promise<void> {
    this.len = await this.remote.truncate(size);
  }

  /** Block status at `offset` (QEMU BDRV_BLOCK_* bits in `status`). */
  blockStatus(offset: number, bytes: number): Promise<{ status: number; pnum: number; map?: number }> {
    return this.remote.blockStatus(offset, bytes);
  }

  /** Extents of the disk: data / zero / allocated (qemu-img map). */
  map(offset?: number, bytes?: number): Promise<MapExtent[]> {
    return this.remote.map(offset, bytes);
  }

  stats(): Promise<DiskStats> {
    return this.remote.stats();
  }

  /**
   * A SharedArrayBuffer for {@link SyncDiskClient} in another worker
   * (synchronous reads for emulators). Needs cross-origin isolation.
   */
  syncChannel(dataBytes?: number): Promise<SharedArrayBuffer> {
    return this.remote.syncChannel(dataBytes);
  }

  /**
   * A reader over a shared channel for this page (Atomics.waitAsync, no
   * postMessage): reads come back as views of shared memory, valid until the
   * next read; one read at a time. Needs cross-origin isolation. For bulk
   * reads prefer {@link bulkReader}, which keeps the worker busy while the page
   * consumes.
   */
  async sharedReader(dataBytes = 1 << 20): Promise<SharedDiskReader> {
    return new SharedDiskReader(await this.remote.syncChannel(dataBytes));
  }

  /**
   * The fastest way to read a lot from the page: a ring of `slots` shared
   * data areas of `slotBytes` (default 2 of 2 MiB: as fast as 4 of 1 MiB when
   * the page sleeps on answers, faster when it polls) the worker fills while
   * the page consumes, with no postMessage, copy or transfer per read.
   *
   * ```ts
   * const reader = await disk.bulkReader();
   * for await (const piece of reader.stream(0, disk.length)) sink(piece); // views valid until the next piece
   * ```
   *
   * `poll: true` makes the page poll briefly for each answer before it
   * sleeps: a wake-up costs more than a 1 MiB read from a warm cache, so on a
   * machine with a core to spare a stream runs faster (on a 2-core machine
   * 0.86–0.89× of a raw OPFS worker instead of 0.75–0.84×), but it keeps the
   * page's thread busy (it still yields to the page's other tasks every 8 ms)
   * and, when other work wants the cores, it is slower (beside one busy
   * process 0.54× instead of 0.67×, with the reader giving up polling for a
   * while by itself; bench/browser/page-reads.ts and the README's figures).
   *
   * Needs cross-origin isolation (ENOTSUP otherwise: use {@link readInto}).
   * Closed with the disk.
   */
  async bulkReader(opts: { slots?: number; slotBytes?: number; poll?: boolean } = {}): Promise<BulkReader> {
    return new BulkReader(await this.remote.bulkChannel(opts.slots ?? 2, opts.slotBytes ?? 2 << 20), opts.poll === true);
  }

  /** Flushes and closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.proxyToWorker.close();
    } finally {
      const closed = this.closedError();
      this.reader?.close(closed);
      this.ringReader?.close(closed);
      this.proxyToWorker[releaseProxy]();
    }
  }

  /** What every call fails with once the disk is closed. */
  private closedError(): BlockError {
    return new BlockError('ENOMEDIUM', `Disk '${this.path}' was closed`);
  }

  /** @internal Test hooks. */
  get remoteService(): Remote<DiskApi> {
    return this.proxyToWorker;
  }
}

/**
 * `remote` as it is while open; once `isClosed()`, each method call rejects
 * with `error()` instead of reaching Comlink's released proxy (whose plain
 * Error says nothing about the disk).
 */
function closedGuard<T extends object>(remote: T, isClosed: () => boolean, error: () => BlockError): T {
  return new Proxy(remote, {
    get(target, prop, receiver) {
      // Not `then`: the proxy must not turn thenable.
      if (typeof prop === 'string' && prop !== 'then' && isClosed()) return () => Promise.reject(error());
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
}

/** The ring behind readInto in an isolated page: 4 slots of 1 MiB (4 MiB of shared memory per disk that uses it). */
const RING_READ_SLOTS = 4;
const RING_READ_SLOT_BYTES = 1 << 20;

/** Whether this page may share memory with its workers (SharedArrayBuffer usable). */
function crossOriginIsolated(): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
}

const SharedArrayBufferCtor: { new (n: number): object } =
  typeof SharedArrayBuffer !== 'undefined' ? SharedArrayBuffer : (class Never {} as unknown as { new (n: number): object });

/** Options of {@link DiskWorker.start}. */
export interface StartOptions {
  /** A worker already running workers/block-worker (for custom bundling). */
  worker?: Worker;
  /** URL of the worker script (default: the block worker next to this module). */
  url?: string | URL;
  /** Ask navigator.storage.persist() on the first create (default true). */
  askPersist?: boolean;
}

/** The page's handle on the block worker. */
export class DiskWorker {
  private persistAnswer: boolean | undefined;
  /**
   * Block jobs on open disks: stream, commit, mirror, backup, with their
   * verbs and events (src/client/jobs.ts).
   */
  readonly jobs: DiskJobs;
  /** QMP on the worker's graph: QEMU 7.2's block commands and events (src/client/qmp.ts). */
  readonly qmp: DiskQmp;
  /**
   * Secrets (QEMU's `secret` objects) in the worker's graph: `add(id, data)`,
   * `remove(id)`; encrypted images name them in their options (`key-secret`
   * of luks, `encrypt.key-secret` of qcow2) (src/client/secrets.ts).
   */
  readonly secrets: DiskSecrets;
  private constructor(
    readonly worker: Worker,
    readonly remote: Remote<BlockWorkerApi>,
    private readonly askPersist: boolean,
  ) {
    this.jobs = new DiskJobs(remote);
    this.qmp = new DiskQmp(remote);
    this.secrets = new DiskSecrets(remote);
  }

  /** Starts the block worker and waits until it answers. */
  static async start(opts: StartOptions = {}): Promise<DiskWorker> {
    const worker =
      opts.worker ??
      (opts.url
        ? new Worker(opts.url, { type: 'module', name: 'diskworker' })
        : new Worker(new URL('../../workers/block-worker.js', import.meta.url), { type: 'module', name: 'diskworker' }));
    const remote = wrap<BlockWorkerApi>(worker);
    const dw = new DiskWorker(worker, remote, opts.askPersist ?? true);
    await Promise.race([
      remote.ping(),
      new Promise((_, reject) => {
        worker.addEventListener('error', (e) => reject(new Error(`The block worker failed to start: ${e.message || 'script error'}`)), { once: true });
      }),
    ]);
    return dw;
  }

  private async maybeAskPersist(): Promise<void> {
    if (!this.askPersist || this.persistAnswer !== undefined) return;
    const storage = typeof navigator !== 'undefined' ? navigator.storage : undefined;
    if (!storage?.persist) return;
    const kv = createStore('diskworker-settings', 'settings');
    const stored = (await kvGet<boolean>('persist', kv).catch(() => undefined)) as boolean | undefined;
    if (stored === true) {
      this.persistAnswer = await storage.persisted();
      return;
    }
    this.persistAnswer = await storage.persist().catch(() => false);
    await kvSet('persist', this.persistAnswer, kv).catch(() => undefined);
  }

  /** Creates an image (qcow2 by default). The first create asks persist(). */
  async create(o: CreateOptions): Promise<void> {
    await this.maybeAskPersist();
    await this.remote.create(o);
  }

  /** Opens an image and returns its handle. */
  async open(o: OpenOptions): Promise<Disk> {
    const r = (await this.remote.open(o)) as unknown as Remote<DiskApi>;
    const [length, readOnly, format] = await Promise.all([r.length(), r.readOnly(), r.format()]);
    return new Disk(r, o.path, length, readOnly, format);
  }

  /** Drivers (formats and back ends) available in the worker. */
  drivers(): Promise<string[]> {
    return this.remote.drivers();
  }

  list(storage?: 'opfs' | 'idb' | 'memory'): Promise<ImageEntry[]> {
    return this.remote.list(storage);
  }

  remove(path: string): Promise<void> {
    return this.remote.remove(path);
  }

  info(path: string): Promise<ImageInfo> {
    return this.remote.info(path);
  }

  /**
   * Checks an image (qemu-img check); `repair` fixes leaks and errors.
   * Progress comes as fractions of 1000; a check without repair can be
   * cancelled with the signal (a repair always runs to its end).
   */
  check(path: string, opts: { repair?: boolean } & JobOptions = {}): Promise<CheckReport> {
    return this.job(opts, (progress, id) => this.remote.check(path, opts.repair ?? false, progress, id));
  }

  private async job<T>(opts: JobOptions, run: (progress: ((p: Progress) => void) | undefined, id: number) => Promise<T>): Promise<T> {
    const id = await this.remote.newJobId();
    const onAbort = () => void this.remote.cancel(id);
    if (opts.signal?.aborted) await this.remote.cancel(id);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await run(opts.onProgress ? proxy(opts.onProgress) : undefined, id);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Converts an image (qemu-img convert), with progress and cancellation. */
  async convert(o: ConvertOptions, opts: JobOptions = {}): Promise<void> {
    await this.maybeAskPersist();
    return this.job(opts, (p, id) => this.remote.convert(o, p, id));
  }

  /** Streams a Blob / File (e.g. a picked image) into OPFS or IndexedDB. */
  async importFile(file: Blob, o: ImportOptions, opts: JobOptions = {}): Promise<void> {
    await this.maybeAskPersist();
    return this.job(opts, (p, id) => this.remote.importBlob(file, o, p, id));
  }

  /**
   * A stream of an image for download: the stored file (default), the guest
   * view (`raw`), or a conversion into another format (qcow2, vmdk, vpc,
   * vhdx, vdi, qed, qcow, luks) with its creation `options` (qemu-img -o keys,
   * e.g. `{ subformat: 'streamOptimized' }` for vmdk, `{ 'key-secret': 'sec0' }`
   * for luks). A format the worker cannot create fails with ENOTSUP.
   * `compress` writes qcow2 clusters compressed. `fromOptions` are the
   * source's blockdev options (its key secret) when it is not open here.
   * Read the stream piece by piece, e.g. into a FileSystemWritableFileStream,
   * or `new Response(stream).blob()`.
   */
  async exportStream(
    path: string,
    opts: {
      format?: ExportFormat;
      signal?: AbortSignal;
      compress?: boolean;
      options?: Record<string, string | number | boolean>;
      fromOptions?: Record<string, unknown>;
    } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    return this.job({ ...(opts.signal ? { signal: opts.signal } : {}) }, (_p, id) =>
      this.remote.exportStream(path, opts.format, id, opts.compress ?? false, opts.options ?? {}, opts.fromOptions),
    );
  }

  /**
   * Every file of a conversion of `path` into `format` with its creation
   * `options`, each a stream, the image first: the descriptor and its extent
   * files for the vmdk subformats of several files (`{ subformat:
   * 'twoGbMaxExtentSparse' }`, `twoGbMaxExtentFlat`, `monolithicFlat`), which
   * `exportStream` refuses; one file for the other formats. Each is named as
   * the image names it (the source's base name: `disk.vmdk`,
   * `disk-s001.vmdk`, ...); save them side by side. The conversion waits in
   * a temporary OPFS directory until every stream has been read or cancelled.
   */
  async exportFiles(
    path: string,
    opts: { format: ExportFormat; signal?: AbortSignal; options?: Record<string, string | number | boolean>; fromOptions?: Record<string, unknown> },
  ): Promise<Array<{ name: string; stream: ReadableStream<Uint8Array> }>> {
    return this.job({ ...(opts.signal ? { signal: opts.signal } : {}) }, (_p, id) => this.remote.exportFiles(path, opts.format, id, opts.options ?? {}, opts.fromOptions));
  }

  /**
   * Which implementation each hot path uses in the worker (WASM where it measured faster;
   * README, "Which implementation runs where").
   */
  implementations(): Promise<Implementations> {
    return this.remote.implementations();
  }

  /** navigator.storage.estimate() and the persistence answer. */
  async storage(): Promise<StorageReport> {
    const r = await this.remote.estimate();
    if (this.persistAnswer !== undefined) r.persisted = this.persistAnswer;
    return r;
  }

  /** The answer of persist() asked on the first create (undefined before). */
  get persisted(): boolean | undefined {
    return this.persistAnswer;
  }

  /** Cancels every job, flushes and closes every disk, then stops the worker. */
  async close(): Promise<void> {
    try {
      await this.remote.shutdown();
    } finally {
      this.remote[releaseProxy]();
      this.worker.terminate();
    }
  }

  /** Stops the worker at once (no flush): what a crash does. */
  terminate(): void {
    this.worker.terminate();
  }
}
