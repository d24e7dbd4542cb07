/**
 * The block worker's service ({@link BlockWorkerApi}): one BlockGraph over the
 * browser back ends, the image catalogue, info and check, and one
 * {@link DiskService} per open disk (disk-service.ts). Convert, import and
 * export are in image-copy.ts; which hot paths run in WASM is decided in
 * src/wasm/hot-paths.ts.
 */
import { proxy, type ProxyMarked } from 'comlink';
import { BlockBackend } from '../src/core/backend.js';
import { BlockError } from '../src/core/errors.js';
import { Perm } from '../src/core/permissions.js';
import { createImage } from '../src/core/create.js';
import { addSecret, removeSecret } from '../src/core/secrets.js';
import type { BlockGraph } from '../src/core/graph.js';
import { createBrowserGraph } from '../src/browser.js';
import { hotPathState } from '../src/wasm/hot-paths.js';
import type { BlockWorkerApi, ProgressFn } from '../src/client/api.js';
import type {
  CheckReport,
  ConvertOptions,
  CreateOptions,
  ExportFormat,
  ImageEntry,
  Implementations,
  ImageInfo,
  ImportOptions,
  OpenOptions,
  StorageKind,
  StorageReport,
} from '../src/client/protocol.js';
import { DiskService } from './disk-service.js';
import { ImageCopier } from './image-copy.js';
import { JobService } from './job-service.js';
import { canonicalPath, imageNodeOf } from './paths.js';
import type { BlockJobInfo, JobInfo, JobStartRequest, JobVerbRequest, JobWireEvent } from '../src/client/jobs-protocol.js';
import '../src/client/transfer.js';
import { BlockQmp } from '../src/qmp/block-qmp.js';
import type { QmpReply } from '../src/qmp/dispatcher.js';
import type { QmpEvent } from '../src/qmp/events.js';

/** The version QMP's query-version reports in the worker. */
const WORKER_QMP_VERSION = { major: 0, minor: 1, micro: 0, package: 'diskworker 0.1.0 (QEMU 7.2 block QMP, browser worker)' };

let jobCounter = 0;

/** The object the block worker exposes. */
export class BlockWorkerService implements BlockWorkerApi {
  readonly graph: BlockGraph = createBrowserGraph();
  private readonly open_ = new Map<string, DiskService>();
  private readonly cancelled = new Set<number>();
  private lock: Promise<unknown> = Promise.resolve();
  /** The block jobs (stream, commit, mirror, backup) on this worker's disks. */
  readonly jobs = new JobService({
    graph: this.graph,
    findDisk: (device) => this.findDisk(device),
    isOpen: (path) => this.open_.has(canonicalPath(path)),
    create: (o) => this.create(o),
    serial: (fn) => this.serial(fn),
    moved: (disk, image) => {
      for (const [k, d] of this.open_) if (d === disk) this.open_.delete(k);
      this.open_.set(canonicalPath(image), disk);
    },
  });
  private readonly copier = new ImageCopier({
    graph: this.graph,
    openBackend: (o) => this.openBackend(o),
    create: (o) => this.create(o),
    checkCancel: (jobId) => this.checkCancel(jobId),
    openDisk: (path) => this.open_.get(canonicalPath(path)),
    remove: (path) => this.remove(path),
  });

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
    if (this.open_.has(canonicalPath(o.path))) {
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
        return await BlockBackend.open(this.graph, spec, flags, {
          name: o.path,
          werror: o.werror ?? 'report',
          rerror: o.rerror ?? 'report',
          // A disk is the page's device: its I/O errors are QMP's BLOCK_IO_ERROR events.
          ioErrorEvents: true,
          // As a QEMU guest device, it takes no resize permission (block jobs share none on their
          // nodes); truncate takes it for its own duration.
          ...(o.readOnly ? {} : { perm: Perm.CONSISTENT_READ | Perm.WRITE }),
        });
      } finally {
        this.graph.backingPolicy.allowedProtocols = saved;
      }
    });
  }

  async open(o: OpenOptions): Promise<DiskService & ProxyMarked> {
    const key = canonicalPath(o.path);
    if (this.open_.has(key) && !(o.readOnly ?? false)) {
      throw new BlockError('EBUSY', `Could not open '${o.path}': the image is in use (already open for writing in this worker)`);
    }
    const bb = await this.openBackend(o);
    const disk: DiskService = new DiskService(
      bb,
      o.path,
      () => {
        // After a pivot the disk is known by its new image.
        for (const [k, d] of this.open_) if (d === disk) this.open_.delete(k);
      },
      (): Promise<void> => this.jobs.cancelOn(disk),
    );
    if (!bb.readOnly) this.open_.set(key, disk);
    return proxy(disk);
  }

  /** Images of the back ends that keep a catalogue (all, or one storage kind). */
  async list(storage?: StorageKind): Promise<ImageEntry[]> {
    const out: ImageEntry[] = [];
    for (const d of this.graph.listDrivers()) {
      if (!d.catalogue || (d.isAvailable && !d.isAvailable())) continue;
      if (storage && d.catalogue.storage !== storage) continue;
      out.push(...(await d.catalogue.list().catch(() => [])));
    }
    return out;
  }

  /** Removes an image from its back end (EBUSY while this worker has it open). */
  async remove(path: string): Promise<void> {
    const key = canonicalPath(path);
    if (this.open_.has(key)) throw new BlockError('EBUSY', `Cannot remove '${path}': the image is open`);
    const d = this.graph.protocolFor(key);
    if (!d.catalogue) throw new BlockError('ENOTSUP', `Cannot remove '${path}': the '${d.name}' back end keeps no catalogue of images`);
    await d.catalogue.remove(path);
  }

  /**
   * Runs `fn` on the image, reusing this worker's open disk when there is one.
   * `noIo` opens without data access first (QEMU's BDRV_O_NO_IO, as qemu-img
   * info): an encrypted image then needs no key secret; a format that has no
   * such open is opened as usual.
   */
  private async withImage<T>(
    path: string,
    o: { readOnly: boolean; noBacking?: boolean; format?: string; noIo?: boolean },
    fn: (bb: BlockBackend) => Promise<T>,
  ): Promise<T> {
    const mine = this.open_.get(canonicalPath(path));
    if (mine) return fn(mine.backend);
    const open = (spec: string | Record<string, unknown>) =>
      BlockBackend.open(
        this.graph,
        spec,
        { readOnly: o.readOnly, ...(o.noBacking ? { noBacking: true } : {}), ...(o.format ? { format: o.format } : {}) },
        { name: path, werror: 'report' },
      );
    const bb = await this.serial(async () => {
      if (o.noIo) {
        // The drivers' reports of this trial open are not the caller's: the real open makes its own.
        const onReport = this.graph.onReport;
        this.graph.onReport = () => {};
        try {
          return await open({ filename: path, 'x-no-io': true });
        } catch {
          // Not a format with a no-I/O open (raw, vmdk, ...): the usual open reports what fails.
        } finally {
          this.graph.onReport = onReport;
        }
      }
      return open(path);
    });
    try {
      return await fn(bb);
    } finally {
      await bb.close();
    }
  }

  async info(path: string): Promise<ImageInfo> {
    return this.withImage(path, { readOnly: true, noBacking: true, noIo: true }, async (bb) => {
      const node = imageNodeOf(bb.node);
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
      const node = imageNodeOf(bb.node);
      const inst = node.instance;
      if (!inst.check) throw new BlockError('ENOTSUP', `Format '${node.driver.name}' does not support checks`);
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

  convert(o: ConvertOptions, onProgress?: ProgressFn, jobId?: number): Promise<void> {
    return this.copier.convert(o, onProgress, jobId);
  }

  /**
   * Brings a Blob / File in: `copy` stores its bytes unchanged, an image
   * format converts what it holds (format probed).
   */
  importBlob(blob: Blob, o: ImportOptions, onProgress?: ProgressFn, jobId?: number): Promise<void> {
    return this.copier.importBlob(blob, o, onProgress, jobId);
  }

  /**
   * A stream of an image's bytes for download: the stored file as it is
   * (`file` or no format), what the guest sees (`raw`), or a copy converted
   * to another format with its creation `options`.
   */
  exportStream(
    path: string,
    format?: ExportFormat,
    jobId?: number,
    compress = false,
    options: Record<string, string | number | boolean> = {},
    fromOptions?: Record<string, unknown>,
  ): Promise<ReadableStream<Uint8Array>> {
    return this.copier.exportStream(path, format, jobId, compress, options, fromOptions);
  }

  /** Every file of a conversion (a vmdk descriptor and its extents), each a stream: see ImageCopier.exportFiles. */
  exportFiles(
    path: string,
    format: ExportFormat,
    jobId?: number,
    options: Record<string, string | number | boolean> = {},
    fromOptions?: Record<string, unknown>,
  ): Promise<Array<{ name: string; stream: ReadableStream<Uint8Array> }>> {
    return this.copier.exportFiles(path, format, jobId, options, fromOptions);
  }

  /**
   * Adds a secret to this worker's graph (QEMU's object-add of a `secret`),
   * with QEMU's checks of the id; the received bytes are wiped once copied.
   */
  secretAdd(id: string, data: Uint8Array): void {
    try {
      if (typeof id !== 'string' || !/^[A-Za-z][A-Za-z0-9._-]*$/.test(id)) {
        throw new BlockError('EINVAL', "Parameter 'id' expects an identifier");
      }
      addSecret(this.graph, id, data);
    } finally {
      data.fill(0);
    }
  }

  /** Removes a secret and wipes its bytes (QEMU's object-del). */
  secretRemove(id: string): void {
    if (!removeSecret(this.graph, id)) throw new BlockError('ENOENT', `object '${id}' not found`);
  }

  /** Which implementation each hot path uses here (loads the modules that are not yet). */
  async implementations(): Promise<Implementations> {
    return hotPathState();
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

  /** The open, writable disk opened with this path (it keeps that name after a job pivots it). */
  private findDisk(device: string): DiskService | undefined {
    const key = canonicalPath(device);
    const byKey = this.open_.get(key);
    if (byKey) return byKey;
    for (const d of this.open_.values()) if (canonicalPath(d.path) === key) return d;
    return undefined;
  }

  // Block jobs (job-service.ts).
  jobSubscribe(listener: (e: JobWireEvent) => void): void {
    this.jobs.subscribe(listener);
  }
  jobStart(req: JobStartRequest): Promise<JobInfo> {
    return this.jobs.start(req);
  }
  jobVerb(id: string, verb: JobVerbRequest, arg?: number | boolean): Promise<void> {
    return this.jobs.verb(id, verb, arg);
  }
  jobInfo(id?: string): JobInfo[] {
    return this.jobs.info(id);
  }
  jobBlockInfo(id?: string): BlockJobInfo[] {
    return this.jobs.blockInfo(id);
  }

  // QMP (src/qmp/) on this worker's graph, sharing the job registry with dw.jobs.
  private qmpMonitor: BlockQmp | undefined;
  private get qmp(): BlockQmp {
    this.qmpMonitor ??= new BlockQmp(this.graph, WORKER_QMP_VERSION, this.jobs.registry, () =>
      [...this.open_].map(([path, disk]) => ({ name: path, backend: disk.backend })),
    );
    return this.qmpMonitor;
  }
  qmpExecute(name: string, args: Record<string, unknown>): Promise<QmpReply> {
    return this.qmp.dispatcher.execute(name, args ?? {});
  }
  qmpSubscribe(listener: (e: QmpEvent) => void): void {
    this.qmp.events.on(listener);
  }

  /** Cancels every job, then closes every open disk (flushing them). */
  async shutdown(): Promise<void> {
    await this.jobs.cancelAll();
    for (const d of [...this.open_.values()]) await d.close().catch(() => undefined);
    await this.graph.closeAll();
  }
}

