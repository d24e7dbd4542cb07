/**
 * The contract between the page and the block worker: what the worker
 * exposes through Comlink ({@link BlockWorkerApi}) and what each open disk
 * answers ({@link DiskApi}). The page is typed against these interfaces only;
 * workers/ implements them. Types only: both sides import this file.
 */
import type { ProxyMarked } from 'comlink';
import type { QmpEvent } from '../qmp/events.js';
import type { QmpReply } from '../qmp/dispatcher.js';
import type {
  AddBitmapOptions,
  BitmapExtentsPage,
  BitmapInfo,
  CheckReport,
  ConvertOptions,
  CreateOptions,
  DiskStats,
  ExportFormat,
  ImageEntry,
  ImageInfo,
  Implementations,
  ImportOptions,
  MapExtent,
  OpenOptions,
  SnapshotEntry,
  Progress,
  StorageKind,
  StorageReport,
} from './protocol.js';
import type { BlockJobInfo, JobInfo, JobStartRequest, JobVerbRequest, JobWireEvent } from './jobs-protocol.js';

/** A progress callback proxied from the page. */
export type ProgressFn = (p: Progress) => void | Promise<void>;

/** What a stop policy reports when it pauses a disk. */
export interface StopEvent {
  operation: 'read' | 'write';
  code: string;
  message: string;
}

/** One open disk (a BlockBackend in the worker). */
export interface DiskApi {
  /** Virtual size in bytes. */
  length(): number;
  readOnly(): boolean;
  /** Format driver name ("qcow2", "raw"). */
  format(): string;
  /** The filename of the image the disk runs on now (a mirror or active commit moves it). */
  image(): string;
  /** Reads into a new buffer, transferred to the caller. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Reads into `buf` (transferred in and back). */
  readInto(offset: number, buf: Uint8Array): Promise<Uint8Array>;
  /** A port of the read channel (src/channels/read-port-server.ts). */
  readPort(): MessagePort;
  /** Reads into a view of a SharedArrayBuffer the caller shares. */
  readShared(offset: number, buf: Uint8Array): Promise<void>;
  /** Writes `data` (transferred) with request flags (FUA = 1). */
  write(offset: number, data: Uint8Array, flags?: number): Promise<void>;
  writeZeroes(offset: number, bytes: number, unmap?: boolean): Promise<void>;
  discard(offset: number, bytes: number): Promise<void>;
  flush(): Promise<void>;
  /** Continues after a stop policy paused the disk. */
  resume(): void;
  isStopped(): boolean;
  /** The error that paused the disk, or null while it runs. */
  stoppedBy(): { code: string; message: string } | null;
  onStop(listener: (e: StopEvent) => void): void;
  /** Changes the virtual size; returns the new size. */
  truncate(size: number): Promise<number>;
  blockStatus(offset: number, bytes: number): Promise<{ status: number; pnum: number; map?: number }>;
  map(offset?: number, bytes?: number): Promise<MapExtent[]>;
  stats(): DiskStats;
  /** Starts a synchronous channel (src/channels/sync-server.ts) and returns its buffer. */
  syncChannel(dataBytes?: number): SharedArrayBuffer;
  /** Starts a bulk-read ring (src/channels/ring-server.ts) and returns its buffer. */
  bulkChannel(slots?: number, slotBytes?: number): SharedArrayBuffer;
  /** Dirty bitmaps (workers/disk-bitmaps.ts; the page wraps them as `disk.bitmaps`). */
  bitmapAdd(name: string, opts?: AddBitmapOptions): void;
  bitmapRemove(name: string): Promise<void>;
  bitmapClear(name: string): void;
  bitmapEnable(name: string): void;
  bitmapDisable(name: string): void;
  /** ORs the bitmaps `sources` into `target` (all of this disk). */
  bitmapMerge(target: string, sources: string[]): void;
  /** Stores the persistent bitmaps now; valid in the image until the next write. */
  bitmapStore(): Promise<void>;
  bitmapList(): BitmapInfo[];
  /** Up to `maxExtents` dirty extents of `name` in [offset, offset + bytes), each at most `maxLength`. */
  bitmapExtents(name: string, offset: number, bytes: number, maxExtents: number, maxLength?: number): BitmapExtentsPage;
  /** Internal snapshots (workers/disk-snapshots.ts; the page wraps them as `disk.snapshots`). */
  snapshotCreate(name: string, vmState?: Uint8Array): Promise<SnapshotEntry>;
  /** Returns the disk size after the apply. */
  snapshotApply(idOrName: string): Promise<number>;
  snapshotDelete(idOrName: string): Promise<void>;
  snapshotList(): SnapshotEntry[];
  /** The snapshot's VM state (transferred), without applying it. */
  snapshotReadVmState(idOrName: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** The object the block worker exposes. */
export interface BlockWorkerApi {
  ping(): string;
  /** Names of the drivers available in the worker. */
  drivers(): string[];
  crossOriginIsolated(): boolean;
  create(o: CreateOptions): Promise<void>;
  open(o: OpenOptions): Promise<DiskApi & ProxyMarked>;
  /** Images of the back ends that keep a catalogue (all, or one kind). */
  list(storage?: StorageKind): Promise<ImageEntry[]>;
  remove(path: string): Promise<void>;
  info(path: string): Promise<ImageInfo>;
  check(path: string, repair?: boolean, onProgress?: ProgressFn, jobId?: number): Promise<CheckReport>;
  /** A fresh id to pass to a long operation so that {@link cancel} can stop it. */
  newJobId(): number;
  cancel(jobId: number): void;
  convert(o: ConvertOptions, onProgress?: ProgressFn, jobId?: number): Promise<void>;
  importBlob(blob: Blob, o: ImportOptions, onProgress?: ProgressFn, jobId?: number): Promise<void>;
  /**
   * A stream of the image for download (see ExportFormat); a converted copy
   * takes creation `options` (e.g. vmdk `subformat: 'streamOptimized'`), and
   * the source is opened with `fromOptions` (its key secret) when not open.
   */
  exportStream(
    path: string,
    format?: ExportFormat,
    jobId?: number,
    compress?: boolean,
    options?: Record<string, string | number | boolean>,
    fromOptions?: Record<string, unknown>,
  ): Promise<ReadableStream<Uint8Array>>;
  /**
   * Every file of a conversion into `format` (a vmdk descriptor and its extent
   * files for twoGbMaxExtentSparse / Flat and monolithicFlat; one file for the
   * other formats), the image first, each a stream named as the image names it.
   */
  exportFiles(
    path: string,
    format: ExportFormat,
    jobId?: number,
    options?: Record<string, string | number | boolean>,
    fromOptions?: Record<string, unknown>,
  ): Promise<Array<{ name: string; stream: ReadableStream<Uint8Array> }>>;
  /**
   * Adds a secret (QEMU's `secret` object) to the worker's graph: EINVAL for
   * an id that is not an identifier, EEXIST for one taken, with QEMU's messages.
   */
  secretAdd(id: string, data: Uint8Array): void;
  /** Removes a secret and wipes its bytes: ENOENT "object 'id' not found" for an unknown id. */
  secretRemove(id: string): void;
  /** Which implementation (WASM or TypeScript) serves each hot path. */
  implementations(): Promise<Implementations>;
  estimate(): Promise<StorageReport>;
  /** Adds a listener (a Comlink proxy) of every block job's events. */
  jobSubscribe(listener: (e: JobWireEvent) => void): void;
  /** Starts a block job on an open disk (src/client/jobs.ts wraps it). */
  jobStart(req: JobStartRequest): Promise<JobInfo>;
  /** Gives a verb to a job; QEMU's EPERM error when its state refuses it. */
  jobVerb(id: string, verb: JobVerbRequest, arg?: number | boolean): Promise<void>;
  /** query-jobs (all, or one). */
  jobInfo(id?: string): JobInfo[];
  /** query-block-jobs (all, or one). */
  jobBlockInfo(id?: string): BlockJobInfo[];
  /** Runs a QMP command on the worker's graph (src/client/qmp.ts wraps it). */
  qmpExecute(name: string, args: Record<string, unknown>): Promise<QmpReply>;
  /** Adds a listener (a Comlink proxy) of every QMP event. */
  qmpSubscribe(listener: (e: QmpEvent) => void): void;
  /** Cancels every job, then closes every open disk (flushing them). */
  shutdown(): Promise<void>;
}
