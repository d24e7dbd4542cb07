/**
 * The driver contract (QEMU's `struct BlockDriver`).
 *
 * A driver is a static descriptor ({@link BlockDriver}) that opens nodes; each
 * open node gets a {@link DriverInstance} holding that node's state and methods.
 * All methods are byte-based and async, with one entry per operation.
 *
 * What the generic layer (src/core/request-path.ts) guarantees to every instance method
 * that takes `(offset, bytes)`:
 * - `offset` and `bytes` are safe non-negative integers, `offset + bytes` does
 *   not overflow, and the range lies inside the node's length (truncate aside);
 * - both are multiples of `limits.requestAlignment` (reads may end at the
 *   aligned end of the node even when the length itself is unaligned);
 * - `bytes` is at most `limits.maxTransfer` (if set) and never 0;
 * - no overlapping serialising request (read-modify-write, copy-on-read) is in
 *   flight on the same node, and overlapping writes reach the driver in the
 *   order they were submitted;
 * - writes only arrive when some parent holds WRITE or WRITE_UNCHANGED on the
 *   node, and never while the node is read-only;
 * - only the flags listed in `supportedWriteFlags` / `supportedZeroFlags`
 *   reach the driver (FUA is emulated with a flush otherwise).
 *
 * Optional methods have the defaults documented on each; a missing one never
 * crashes the caller.
 */
import type { BlockNode } from './node.js';
import type { BdrvChild } from './child.js';
import type { BlockLimits } from './limits.js';
import type { PermMask, ChildRoleMask } from './permissions.js';
import type { OptionReader } from './options.js';
import type { BlockDebugger } from './debug-event.js';
import type { QdictEntries, QdictValue } from './qemu-json.js';
import type { CopyRangeRequest } from './copy-range.js';

/** Flags of a request (QEMU BDRV_REQ_*). */
export const ReqFlag = {
  /** Force unit access: the data is on stable storage when the request completes. */
  FUA: 0x01,
  /** A zero write may deallocate (unmap) instead of writing zeros. */
  MAY_UNMAP: 0x02,
  /** A zero write must fail with ENOTSUP rather than fall back to writing a buffer. */
  NO_FALLBACK: 0x04,
  /** The write stores bytes that are already there (needs WRITE_UNCHANGED only). */
  WRITE_UNCHANGED: 0x08,
  /** Write the data compressed (formats that support it). */
  COMPRESSED: 0x10,
  /** Internal: a copy-on-read request (do not recurse into copy-on-read again). */
  COPY_ON_READ: 0x20,
  /** Internal: do not wait for serialising requests (used by the RMW itself). */
  NO_SERIALISING: 0x40,
  /** Read: prefetch only, the buffer may be ignored (jobs). */
  PREFETCH: 0x80,
  /** Truncate: the grown area must read as zeros (it would show a longer backing file otherwise). */
  ZERO_WRITE: 0x100,
  /**
   * Read: copy what the node does not hold into it (QEMU's BDRV_REQ_COPY_ON_READ,
   * set by the copy-on-read filter for its reads).
   */
  WANT_COPY_ON_READ: 0x200,
} as const;
export type ReqFlags = number;

/**
 * Result of an I/O method: a promise, or undefined when the request completed
 * synchronously. Callers that `await` it need not care; the generic layer uses
 * the synchronous case to skip promise chains on hot paths.
 */
export type IoResult = Promise<void> | void;

/** Block status bits (QEMU BDRV_BLOCK_*). */
export const Status = {
  /** Reads return data from this layer or a file below it. */
  DATA: 0x01,
  /** Reads return zeros. */
  ZERO: 0x02,
  /** `map` holds the host offset of the range in `file`. */
  OFFSET_VALID: 0x04,
  /** The range is allocated in this layer (not from backing). */
  ALLOCATED: 0x08,
  /** The range reaches the end of the node. */
  EOF: 0x10,
  /** Ask the generic layer to look into `file` to find zeros. */
  RECURSE: 0x20,
  /** The range is stored compressed (qcow2), map is not a plain offset. */
  COMPRESSED: 0x40,
} as const;

/** The answer of a block-status query. */
export interface BlockStatusResult {
  /** Status bits ({@link Status}). */
  status: number;
  /** Number of bytes from `offset` for which the answer holds (> 0 unless at EOF). */
  pnum: number;
  /** Host offset in `file`, valid when status has OFFSET_VALID. */
  map?: number;
  /** The node that holds the data at `map`. */
  file?: BlockNode;
}

/** Preallocation modes of truncate and create (QEMU PreallocMode). */
export const PreallocMode = ['off', 'metadata', 'falloc', 'full'] as const;
export type PreallocMode = (typeof PreallocMode)[number];

/** Results of an image check (QEMU BdrvCheckResult). */
export interface CheckResult {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters?: number;
  allocatedClusters?: number;
  fragmentedClusters?: number;
  compressedClusters?: number;
  /**
   * Human-readable lines about each problem found, as qemu-img prints them. A
   * line starting with {@link CHECK_REPORT_LINE} is an error report (QEMU's
   * error_report): the tool prints it after its own name.
   */
  messages: string[];
}

/** Marks a check message that the tool prints after its name (see CheckResult.messages). */
export const CHECK_REPORT_LINE = '\u0001';

/** What `check` may repair, and who hears about its progress. */
export interface CheckFix {
  leaks: boolean;
  errors: boolean;
  /**
   * Called as the check advances (`done` of `total` steps). A check that
   * repairs nothing stops when it throws (ECANCELED to cancel); a repairing
   * check is not interrupted.
   */
  progress?: (done: number, total: number) => void;
}

/** An internal snapshot as listed by `qemu-img snapshot -l` / `info`. */
export interface SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  icount?: number;
  /** Guest disk size at the time of the snapshot. */
  diskSize?: number;
}

/** Reopen transaction state handed to prepare / commit / abort. */
export interface ReopenState {
  node: BlockNode;
  /** Read-only after the reopen. */
  readOnly: boolean;
  /** New option values (already parsed by the generic layer). */
  options: Record<string, unknown>;
  /** cache.direct after the reopen (node-file reopens its file with or without O_DIRECT); undefined: unchanged. */
  direct?: boolean;
  /** Driver-private data carried from prepare to commit / abort. */
  opaque?: unknown;
}

/**
 * A size/format description used by `measure` (QEMU BlockMeasureInfo). The
 * sizes are QEMU's uint64 values: a measure of `--size 7E` exceeds 2^53.
 */
export interface MeasureInfo {
  required: bigint;
  fullyAllocated: bigint;
  bitmaps?: bigint;
}

/** Format-specific `info` fields (the `format-specific` object of qemu-img info). */
export interface SpecificInfo {
  type: string;
  data: Record<string, unknown>;
}

/** The context a driver gets for create: where to put the image. */
export interface CreateContext {
  /** Options (the `-o` list of qemu-img create), already split per key. */
  options: OptionReader;
  /** The graph, to open or create the protocol file. */
  graph: import('./graph.js').BlockGraph;
  /** Name of the image file to create. */
  filename: string;
  /** Reports progress (0..1) for long preallocation. */
  progress?: (done: number, total: number) => void;
}

/** Description of one creation option, for `qemu-img create -o help`. */
export interface CreateOptionSpec {
  name: string;
  type: 'size' | 'number' | 'bool' | 'string';
  help: string;
  default?: string;
}

/**
 * The images a storage back end holds, for back ends with a listable store
 * (OPFS, IndexedDB, memory): the worker lists and removes images through it
 * instead of knowing each back end's prefix.
 */
export interface ImageCatalogue {
  /** The storage kind the page sees ("opfs", "idb", "memory"). */
  readonly storage: string;
  /** Every image, named with the driver's prefix, with its size in bytes (-1 when unknown). */
  list(): Promise<Array<{ path: string; size: number }>>;
  /** Removes an image: ENOENT when it does not exist, EBUSY while it is open. */
  remove(filename: string): Promise<void>;
}

/** Reports amend progress: `done` of `total` units of work. */
export type AmendProgress = (done: number, total: number) => void;

/**
 * The static side of a driver: its name, what it is, how to probe, open and
 * create images.
 */
export interface BlockDriver {
  /** Name used in `driver=` and shown by info ("qcow2", "raw", "node-file"). */
  readonly name: string;
  /** protocol: stores bytes itself; format: interprets a child; filter: passes through. */
  readonly kind: 'protocol' | 'format' | 'filter';
  /** Whether nodes of this driver have a backing child. Default false. */
  readonly supportsBacking?: boolean;
  /**
   * Protocol prefixes this driver claims in filenames (`opfs:` in
   * `opfs:/disks/a.img`). Default: none.
   */
  readonly protocolPrefixes?: readonly string[];
  /**
   * Options that change what the node shows (QEMU's strong_runtime_opts):
   * given, they go into its `json:` filename and keep it from taking its
   * file's plain name. A key ending in `.` names every option under it.
   * `driver` and `filename` count always. Default: none.
   */
  readonly strongOptions?: readonly string[];
  /**
   * The plain name that opens the node as it is (QEMU's
   * bdrv_refresh_filename hook filling exact_filename), or '' when none
   * does; `fullOptions` is the node's gathered json: options. Default: the
   * generic rule of src/core/filename.ts.
   */
  refreshFilename?(node: BlockNode, fullOptions: QdictEntries): string;
  /**
   * The children's part of the node's json: options (QEMU's
   * bdrv_gather_child_options), appended to `target`. Default: every child
   * under its link's name, the backing file only when overridden.
   */
  gatherChildOptions?(node: BlockNode, target: Array<readonly [string, QdictValue]>, backingOverridden: boolean): void;
  /**
   * Nodes of this driver have no directory relative file names above them
   * could be resolved in, whatever their children say (QEMU's bdrv_dirname
   * hook of blkverify, whose two children may live in different places).
   * Default: false, the primary child's directory.
   */
  readonly noBaseDirectory?: boolean;
  /**
   * Permissions a node of this driver needs on `child` (or on a child about
   * to be attached with `role`) given its own cumulative `perm` / `shared`,
   * for drivers whose answer depends on nothing opened: unlike
   * {@link DriverInstance.childPerm} it holds while the node's own open
   * attaches its children (QEMU's bdrv_child_perm is there from the start).
   * The instance's hook, when there is one, wins. Default: {@link defaultChildPerms} by role.
   */
  childPerm?(node: BlockNode, child: BdrvChild | null, role: ChildRoleMask, perm: PermMask, shared: PermMask): { perm: PermMask; shared: PermMask };
  /** Options understood by `create`, for help output. Default: none. */
  readonly createOptions?: readonly CreateOptionSpec[];
  /**
   * Whether new data lands in the image in the order writes arrive (vdi
   * appends each new block): copies that must lay an image out as qemu-img's
   * in-order writes do (img convert) then write one piece at a time.
   * Default: false.
   */
  readonly placesInWriteOrder?: boolean;
  /** Options an open image's `amend` takes, for help output. Default: none (no amend). */
  readonly amendOptions?: readonly CreateOptionSpec[];
  /**
   * Scores how well `header` (the first up to 512 bytes) matches the format:
   * 0 = not at all, 100 = certain. Default: never matches (0).
   */
  probe?(header: Uint8Array, filename?: string): number;
  /**
   * Scores how well a plain filename (one without a protocol prefix) names
   * something this protocol serves, such as a host device (QEMU's
   * bdrv_probe_device): 0 = not at all, 100 = certain. The highest score
   * above 0 wins over the graph's default protocol. Default: 0.
   */
  probeDevice?(filename: string): Promise<number>;
  /**
   * Splits a filename into options (`opfs:/a/b` → `{ path: '/a/b' }`).
   * Default: `{ filename }`.
   */
  parseFilename?(filename: string, given?: readonly string[]): Record<string, unknown>;
  /**
   * Opens a node. The driver reads its options from `options` (every key it
   * does not read is an error the generic layer reports), opens its children
   * with `node.openChild()`, and returns the instance that serves the node.
   * A failure must release anything the driver acquired.
   */
  open(node: BlockNode, options: OptionReader): Promise<DriverInstance>;
  /** Creates an image. Default: ENOTSUP "Driver does not support image creation". */
  create?(ctx: CreateContext): Promise<void>;
  /**
   * Measures the size an image of this format would need (qemu-img measure):
   * from the creation options (`size` and the rest) or, with `source`, for a
   * copy of that node's data. Default: ENOTSUP (qemu-img measure says the
   * format "does not support size measurement"). `graph` holds the secrets
   * the options name (QEMU sizes a LUKS header by building one, which reads its secret).
   */
  measure?(options: OptionReader, source?: BlockNode, graph?: import('./graph.js').BlockGraph): Promise<MeasureInfo>;
  /** Whether the back end is usable in this environment. Default: true. */
  isAvailable?(): boolean;
  /** The back end's store of images (protocols only). Default: none (cannot list or remove). */
  readonly catalogue?: ImageCatalogue;
  /**
   * Deletes the file `filename` names (protocols only; QEMU's
   * bdrv_co_delete_file), for a format whose create failed after the file was
   * made. Default: the catalogue's `remove`, else nothing is deleted.
   */
  deleteFile?(filename: string): Promise<void>;
}

/**
 * The per-node side of a driver. Every method not marked required is optional;
 * the generic layer's default is given in each comment.
 */
export interface DriverInstance {
  /** Length of the node in bytes. Required. */
  getLength(): number | Promise<number>;

  /**
   * Re-reads the length from storage, for a driver that keeps it (the file
   * was written beside the node, e.g. by blockdev-create). Default: nothing.
   */
  reloadLength?(): Promise<void>;

  /**
   * Reads `bytes` at `offset` into `buf` (exactly `bytes` long). May complete
   * synchronously by returning undefined (OPFS sync handles, memory, caches
   * hits): the generic layer then completes without a microtask.
   * Default: ENOTSUP; filters read their child.
   */
  preadv?(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult;
  /**
   * Writes `buf` at `offset`. Flags are restricted to `supportedWriteFlags`.
   * May complete synchronously (returns undefined).
   * Default: ENOTSUP ("driver does not support writing").
   */
  pwritev?(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult;
  /**
   * Makes the range read as zeros without a data buffer. May throw ENOTSUP,
   * after which the generic layer writes a zero buffer unless NO_FALLBACK.
   * Default: ENOTSUP (fallback to writes).
   */
  pwriteZeroes?(offset: number, bytes: number, flags: ReqFlags): Promise<void>;
  /** Discards the range (advisory). Default: nothing happens. */
  pdiscard?(offset: number, bytes: number): Promise<void>;
  /**
   * Answers what the range holds, from `offset` for up to `bytes`. With
   * `wantZero` false the driver may answer quickly without telling zeros from
   * data. Default: protocols say DATA|OFFSET_VALID at the same offset in
   * themselves; filters forward to their filtered child; formats say
   * DATA|ALLOCATED for the whole range.
   */
  blockStatus?(wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult>;
  /** Pushes cached writes to the OS / back end. Default: nothing to do. */
  flushToOs?(): Promise<void>;
  /** Makes written data durable. Default: nothing to do (children are flushed by the generic layer). */
  flushToDisk?(): Promise<void>;
  /**
   * Flushes the node and its children in one call (QEMU's bdrv_co_flush
   * callback), in place of flushToOs, flushToDisk and the generic flush of
   * the children, and on every flush, written since the last one or not: for
   * drivers that judge their children's failures together (quorum).
   * Default: none, the generic steps run.
   */
  flush?(): Promise<void>;
  /**
   * Changes the length to `offset`. `exact` false allows a larger result.
   * Default: ENOTSUP "Image format driver does not support resize".
   */
  truncate?(offset: number, exact: boolean, prealloc: PreallocMode, flags: ReqFlags): Promise<void>;
  /** Bytes used in storage. Default: the sum of the children's allocated sizes. */
  getAllocatedFileSize?(): Promise<number>;
  /** Releases everything; children are detached by the generic layer. Default: nothing. */
  close?(): Promise<void>;

  /**
   * Resolves once what the last permission update started outside the
   * process is in place (node-file's image locks, taken by a helper process):
   * BlockBackend.attach waits for it, so an open image is locked when the
   * open returns, as QEMU's is.
   */
  settled?(): Promise<void>;
  /** Fills in the node's limits (already set to defaults merged from children). Default: keep. */
  refreshLimits?(limits: BlockLimits): void;
  /**
   * Whether the medium is in (removable media such as a CD-ROM drive). While
   * a node or any node below it says no, backends refuse requests and their
   * length with ENOMEDIUM. Default: true.
   */
  isInserted?(): boolean;
  /** Whether a freshly created image reads as zeros. Default: false. */
  hasZeroInit?(): boolean;
  /**
   * Flags supported by pwritev: FUA (else the generic layer flushes after the
   * write) and COMPRESSED (else a compressed write fails with ENOTSUP).
   * Default: 0.
   */
  readonly supportedWriteFlags?: ReqFlags;
  /** Flags supported by pwriteZeroes (MAY_UNMAP, FUA). Default: 0. */
  readonly supportedZeroFlags?: ReqFlags;

  /** Checks consistency and repairs what `fix` allows. Default: ENOTSUP. */
  check?(fix: CheckFix): Promise<CheckResult>;
  /**
   * Changes image options in place (qemu-img amend). `progress` is told the
   * work done so far out of a total (units are the driver's), as QEMU's amend
   * status callback. Default: ENOTSUP.
   */
  amend?(options: OptionReader, force: boolean, progress?: AmendProgress): Promise<void>;
  /**
   * Cluster size and other generic info (QEMU's bdrv_get_info). Throws
   * ENOTSUP when the driver has no such information at all (QEMU's null and
   * host_cdrom drivers): qemu-io's `info` then fails and qemu-img info omits
   * the cluster size and dirty flag. `needsCompressedWrites`: data must be
   * written compressed (a streamOptimized vmdk), so img convert compresses.
   * Default: none (all zero).
   */
  getInfo?(): { clusterSize?: number; dirty?: boolean; vmStateOffset?: number; needsCompressedWrites?: boolean } | undefined;
  /**
   * Lines the driver reported while opening that QEMU prints on stderr (the
   * repair of a dirty qcow2 image, for example); tools show them once.
   * Default: none.
   */
  openMessages?(): readonly string[];
  /**
   * Lines QEMU reports about what the last close could not do (e.g.
   * persistent bitmaps it could not store), for the tools to print after
   * closing. Default: none.
   */
  closeMessages?(): readonly string[];
  /** Whether the node encrypts its data (qemu-img info's "encrypted: yes"). Default: false. */
  isEncrypted?(): boolean;
  /**
   * Passes a copy request on from the source side (QEMU's
   * bdrv_co_copy_range_from): a format maps the source range onto its file,
   * a protocol hands the request to the destination side
   * ({@link copyRangeTo} of src/core/copy-range.ts). Default: ENOTSUP.
   */
  copyRangeFrom?(r: CopyRangeRequest): Promise<void>;
  /**
   * Carries out a copy request on the destination side (QEMU's
   * bdrv_co_copy_range_to): a format maps the destination range onto its
   * file, a protocol copies inside its back end when the source is on the
   * same one (ENOTSUP otherwise). Default: ENOTSUP.
   */
  copyRangeTo?(r: CopyRangeRequest): Promise<void>;
  /** Format-specific info for `qemu-img info`. Default: none. */
  getSpecificInfo?(): SpecificInfo | undefined;
  /** Backing file name and format stored in the image. Default: none. */
  backingFile?(): { filename: string; format?: string } | undefined;
  /** Rewrites the backing file name stored in the image. Default: ENOTSUP. */
  changeBackingFile?(filename: string | undefined, format: string | undefined): Promise<void>;
  /** Drops all data of the image (commit -d). Default: ENOTSUP. */
  makeEmpty?(): Promise<void>;

  /** Creates an internal snapshot. Default: ENOTSUP. */
  snapshotCreate?(info: SnapshotInfo): Promise<void>;
  /** Reverts to a snapshot. Default: ENOTSUP. */
  snapshotGoto?(idOrName: string): Promise<void>;
  /** Deletes a snapshot. Default: ENOTSUP. */
  snapshotDelete?(id: string | undefined, name: string | undefined): Promise<void>;
  /**
   * Makes a read-only node read snapshot `id` / `name` (both must match when both
   * are given) until it closes (qemu-img convert -l). Default: ENOTSUP.
   */
  snapshotLoadTmp?(id: string | undefined, name: string | undefined): Promise<void>;
  /** Lists the snapshots. Default: none. */
  snapshotList?(): SnapshotInfo[];
  /** Saves VM state bytes. Default: ENOTSUP. */
  saveVmState?(pos: number, buf: Uint8Array): Promise<void>;
  /** Loads VM state bytes. Default: ENOTSUP. */
  loadVmState?(pos: number, buf: Uint8Array): Promise<void>;
  /**
   * Loads VM state bytes of snapshot `id` without applying it (no QEMU
   * counterpart; called with the node drained). Default: ENOTSUP.
   */
  snapshotLoadVmState?(id: string, pos: number, buf: Uint8Array): Promise<void>;
  /** Whether persistent dirty bitmaps can be stored. Default: false. */
  supportsPersistentBitmaps?(): boolean;
  /** Stores persistent dirty bitmaps on close / inactivate. Default: nothing. */
  storePersistentBitmaps?(): Promise<void>;
  /**
   * Throws (QEMU's message) unless a new persistent bitmap `name` of
   * `granularity` could be stored. Default: ENOTSUP, nothing can be stored.
   */
  canStoreNewDirtyBitmap?(name: string, granularity: number): void;
  /**
   * Removes persistent bitmap `name` from the image now, if the image stores
   * it (QEMU's bdrv_co_remove_persistent_dirty_bitmap). Default: nothing.
   */
  removePersistentDirtyBitmap?(name: string): Promise<void>;
  /**
   * Stores the persistent bitmaps now while the image stays writable; they
   * are valid in the image until the next write, which marks them in use
   * first. The caller has drained the node. Default: ENOTSUP.
   */
  checkpointPersistentBitmaps?(): Promise<void>;

  /**
   * Debug events and breakpoints (blkdebug): see src/core/debug-event.ts.
   * Default: none (events announced to the node are ignored).
   */
  readonly debug?: BlockDebugger;

  /** Called when the node becomes quiescent. Default: nothing. */
  drainBegin?(): void;
  /** Called when the node may receive requests again. Default: nothing. */
  drainEnd?(): void;

  /**
   * Phase one of a permission change: may refuse with a BlockError.
   * Default: accept.
   */
  checkPerm?(perm: PermMask, shared: PermMask): void;
  /** Phase two: the change is final. Default: nothing. */
  setPerm?(perm: PermMask, shared: PermMask): void;
  /** Phase two on failure: forget the checked change. Default: nothing. */
  abortPermUpdate?(): void;
  /**
   * Permissions this node needs on `child` (or on a child about to be attached
   * with `role`) given its own cumulative `perm` / `shared`.
   * Default: {@link defaultChildPerms} by role.
   */
  childPerm?(
    child: BdrvChild | null,
    role: ChildRoleMask,
    perm: PermMask,
    shared: PermMask,
  ): { perm: PermMask; shared: PermMask };

  /** Prepares a reopen; may throw to refuse. Default: accept. */
  reopenPrepare?(state: ReopenState): Promise<void>;
  /** Makes a prepared reopen final. Default: nothing. */
  reopenCommit?(state: ReopenState): void;
  /** Undoes a prepared reopen. Default: nothing. */
  reopenAbort?(state: ReopenState): void;
  /**
   * Runs once the reopen is final and the new permissions hold (QEMU's
   * bdrv_reopen_commit_post), e.g. to write what a read-write image must
   * record. A failure does not undo the reopen: the driver leaves itself in a
   * safe state and throws, and reopen reports the error. Default: nothing.
   */
  reopenCommitPost?(state: ReopenState): Promise<void>;
}
