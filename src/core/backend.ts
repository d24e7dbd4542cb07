/**
 * BlockBackend: the handle devices, the page and the CLI hold on a graph node
 * (QEMU's BlockBackend). It checks requests against the device length, holds
 * them while the node is drained, applies the error policy per direction
 * (rerror / werror) and keeps statistics.
 */
import type { BdrvChild, RootParent } from './child.js';
import type { BlockGraph, OpenFlags } from './graph.js';
import type { BlockNode, IoStats, OpStats } from './node.js';
import { newIoStats } from './node.js';
import { ReqFlag, type BlockStatusResult, type PreallocMode, type ReqFlags } from './driver.js';
import { BlockError, STRERROR, toBlockError } from './errors.js';
import { Perm, PERM_ALL, type PermMask } from './permissions.js';
import { blockStatus } from './block-status.js';
import { checkRequest } from './request-checks.js';
import { flush } from './request-flush.js';

/** What to do when a request fails (QEMU's BlockdevOnError). */
export type ErrorAction = 'report' | 'ignore' | 'stop' | 'enospc';

/** Options of a backend. */
export interface BackendOptions {
  /** Name shown in messages (QEMU's device name). Default: "backend<n>". */
  name?: string;
  /** Permissions to take. Default: consistent read, plus write unless read-only (resize is taken while truncating). */
  perm?: PermMask;
  /** Permissions to share. Default: consistent read, write unchanged and graph changes. */
  shared?: PermMask;
  /** Error policy for reads (report | ignore | stop). Default report. */
  rerror?: ErrorAction;
  /**
   * Error policy for writes (report | ignore | stop | enospc). Default report,
   * as QEMU's BlockBackend: the request fails with its error. `stop` and
   * `enospc` (stop on ENOSPC only) hold the failed request and every later
   * one until {@link BlockBackend.resume}; see {@link BlockBackend.onStop}.
   */
  werror?: ErrorAction;
  /**
   * Write-through mode (QEMU's disabled write cache): every write and zero
   * write is sent with FUA, so it is on stable storage once acknowledged.
   * Default false (writeback).
   */
  writeThrough?: boolean;
  /** Told when the node is drained and when the drain ends (see {@link BlockBackend.drainListener}). */
  drainListener?: DrainListener;
  /**
   * The backend is a device's (QEMU's guest device model): each failed read
   * or write sends the graph's BLOCK_IO_ERROR event with the action its error
   * policy took. Default false (exports, jobs and tools send none, as QEMU's).
   */
  ioErrorEvents?: boolean;
  /**
   * The backend is a named device (QEMU's BlockBackend with a name):
   * permission conflicts call it "block device '<name>'". Default false:
   * jobs', exports' and tools' backends are "an unnamed block device".
   */
  device?: boolean;
}

/**
 * A user of a backend that stops itself while the backend's node is drained:
 * a block job pauses (QEMU's child_job drained_begin / drained_end). The
 * backend holds the user's new requests during the drain either way.
 */
export interface DrainListener {
  begin(): void;
  end(): void;
}

/** A stopped request: the backend is paused until {@link BlockBackend.resume}. */
export interface StopEvent {
  backend: BlockBackend;
  error: BlockError;
  operation: 'read' | 'write';
}

let backendCounter = 0;
let backendSeq = 0;
const RESOLVED: Promise<void> = Promise.resolve();
const now = typeof performance !== 'undefined' ? () => performance.now() : () => Date.now();

export class BlockBackend implements RootParent {
  readonly kind = 'root' as const;
  readonly name: string;
  readonly description: string | undefined;
  private link: BdrvChild | null = null;
  private quiesced = 0;
  private heldUntil: Promise<void> | null = null;
  private release: (() => void) | null = null;
  /** Told when the node is drained and when that ends; settable while open. */
  drainListener: DrainListener | undefined;
  /** The listener told of the current drain's begin, so the same one hears its end. */
  private drainTold: DrainListener | undefined;
  private paused: Promise<void> | null = null;
  private resumePaused: (() => void) | null = null;
  readonly rerror: ErrorAction;
  readonly werror: ErrorAction;
  /** Whether writes are sent with FUA (see {@link BackendOptions.writeThrough}); changeable while open. */
  writeThrough: boolean;
  /** Request statistics. */
  readonly stats: IoStats = newIoStats();
  /**
   * I/O limits on the backend's reads and writes (QEMU's BlockBackend
   * throttling, block_set_io_throttle): each waits for its turn here before
   * it is sent. Discards and flushes are not limited, as in QEMU. Null: none.
   */
  ioLimits: { intercept(bytes: number, isWrite: boolean): Promise<void> } | null = null;
  /** Listeners told when the error policy stops the backend. */
  readonly onStop: Array<(e: StopEvent) => void> = [];
  /** The error that stopped the backend, while it is stopped. */
  private stopError: BlockError | null = null;
  /** Set by close(): stopped requests give up with this error instead of retrying. */
  private abandon: BlockError | null = null;
  private readonly ioErrorEvents: boolean;

  /** Creation order (QEMU lists its BlockBackends so). */
  readonly seq = backendSeq++;

  private constructor(opts: BackendOptions) {
    this.name = opts.name ?? `backend${backendCounter++}`;
    this.description = opts.device ? `block device '${this.name}'` : undefined;
    this.rerror = opts.rerror ?? 'report';
    this.werror = opts.werror ?? 'report';
    this.writeThrough = opts.writeThrough ?? false;
    this.drainListener = opts.drainListener;
    this.ioErrorEvents = opts.ioErrorEvents ?? false;
    if (this.rerror === 'enospc') throw new BlockError('EINVAL', "rerror='enospc' is not a valid read error policy");
  }

  /** Attaches a new backend to an open node (the node gets one more reference). */
  static async attach(graph: BlockGraph, node: BlockNode, opts: BackendOptions = {}): Promise<BlockBackend> {
    const bb = new BlockBackend(opts);
    // As a QEMU guest device: read, and write unless read-only; resize only while truncating.
    const perm = opts.perm ?? (node.readOnly ? Perm.CONSISTENT_READ : Perm.CONSISTENT_READ | Perm.WRITE);
    const shared = opts.shared ?? Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.GRAPH_MOD;
    bb.link = await graph.attachRoot(bb, node, perm, shared & PERM_ALL);
    bb.graph = graph;
    await settled(node);
    return bb;
  }

  /** Opens an image (see {@link BlockGraph.open}) and attaches a backend to it. */
  static async open(
    graph: BlockGraph,
    spec: string | Record<string, unknown>,
    flags: OpenFlags = {},
    opts: BackendOptions = {},
  ): Promise<BlockBackend> {
    const node = await graph.open(spec, flags);
    try {
      return await BlockBackend.attach(graph, node, opts);
    } finally {
      await node.unref();
    }
  }

  private graph!: BlockGraph;

  /** The root node, or ENOMEDIUM once closed. */
  get node(): BlockNode {
    if (!this.link) throw new BlockError('ENOMEDIUM', `Backend '${this.name}' has no medium (it was closed)`);
    return this.link.node;
  }

  /** The link to the root node (for graph operations). */
  get root(): BdrvChild {
    if (!this.link) throw new BlockError('ENOMEDIUM', `Backend '${this.name}' has no medium (it was closed)`);
    return this.link;
  }

  /** Device length in bytes. */
  get length(): number {
    return this.node.length;
  }

  /**
   * Changes the permissions held and shared (QEMU's blk_set_perm; qemu-io
   * takes some per command). A conflict throws and changes nothing.
   */
  setPerm(perm: PermMask, shared: PermMask): void {
    const link = this.root;
    if (link.perm === perm && link.shared === (shared & PERM_ALL)) return;
    this.graph.setLinkPerms(link, perm, shared & PERM_ALL);
  }

  /** Resolves once the last permission changes are in place outside the process (node-file's image locks). */
  settled(): Promise<void> {
    return settled(this.node);
  }

  /** Whether writes are refused. */
  get readOnly(): boolean {
    return this.node.readOnly || !(this.root.perm & Perm.WRITE);
  }

  drainedBegin(): void {
    if (this.quiesced++ === 0) {
      this.heldUntil = new Promise((r) => (this.release = r));
      this.drainTold = this.drainListener;
      this.drainTold?.begin();
    }
  }

  drainedEnd(): void {
    if (--this.quiesced === 0) {
      const r = this.release;
      this.heldUntil = null;
      this.release = null;
      const told = this.drainTold;
      this.drainTold = undefined;
      told?.end();
      r?.();
    }
  }

  /** Continues after the error policy stopped the backend: the held requests are retried. */
  resume(): void {
    const r = this.resumePaused;
    this.paused = null;
    this.resumePaused = null;
    this.stopError = null;
    r?.();
  }

  /** Whether the error policy has stopped the backend. */
  get isStopped(): boolean {
    return this.paused !== null;
  }

  /** The error that stopped the backend (null while it runs). */
  get stoppedBy(): BlockError | null {
    return this.stopError;
  }

  /** The error flush and close give while requests are held by a stop. */
  private stoppedFailure(what: string): BlockError {
    const err = this.stopError!;
    return new BlockError(
      err.code,
      `Cannot ${what} '${this.name}': requests are stopped by the error policy after: ${err.message}`,
      err.context,
      { cause: err },
    );
  }

  /**
   * Whether the medium is in (QEMU's blk_is_available): false while the node
   * or a node below it has no medium, such as a CD-ROM drive without a disc.
   */
  get isAvailable(): boolean {
    return mediumIn(this.node, 0);
  }

  /** The device length; ENOMEDIUM when no medium is in. */
  getLength(): number {
    if (!this.isAvailable) throw new BlockError('ENOMEDIUM', `No medium found in '${this.name}'`);
    return this.node.length;
  }

  private checkRange(offset: number, bytes: number, node: BlockNode = this.node): void {
    if (!mediumIn(node, 0)) throw new BlockError('ENOMEDIUM', `No medium found in '${this.name}'`, { node: node.nodeName, offset });
    checkRequest(node, offset, bytes);
    const len = node.length;
    if (offset > len || len - offset < bytes) {
      throw new BlockError(
        'EIO',
        `Request at offset ${offset} of ${bytes} bytes is beyond the end of '${this.name}' (${len} bytes)`,
        { node: node.nodeName, offset },
      );
    }
  }

  private async gate(): Promise<void> {
    while (this.heldUntil || this.paused) {
      if (this.paused) await this.paused;
      if (this.heldUntil) await this.heldUntil;
    }
  }

  private async run(
    op: 'read' | 'write',
    stats: OpStats,
    bytes: number,
    fn: () => Promise<void> | void,
    limited = false,
  ): Promise<void> {
    if (limited && this.ioLimits) await this.ioLimits.intercept(bytes, op === 'write');
    for (;;) {
      if (this.heldUntil || this.paused) await this.gate();
      if (this.abandon) throw this.abandon;
      const start = now();
      try {
        await fn();
        stats.ops++;
        stats.bytes += bytes;
        stats.timeMs += now() - start;
        this.stats.lastAccessMs = now();
        return;
      } catch (e) {
        stats.failed++;
        this.stats.lastAccessMs = now();
        const err = toBlockError(e);
        const action = op === 'read' ? this.rerror : this.werror;
        const stop = action === 'stop' || (action === 'enospc' && err.code === 'ENOSPC');
        // Once stopped, the retries of held requests do not report again (QEMU's VM is stopped).
        if (!this.paused) this.ioErrorEvent(op, stop ? 'stop' : action === 'ignore' ? 'ignore' : 'report', err);
        if (action === 'ignore') return;
        if (!stop) throw err;
        // Stop: hold this and later requests until resume(), then retry.
        if (!this.paused) {
          this.paused = new Promise((r) => (this.resumePaused = r));
          this.stopError = err;
          for (const l of this.onStop) l({ backend: this, error: err, operation: op });
        }
      }
    }
  }

  /** QEMU's BLOCK_IO_ERROR (send_qmp_error_event), for a device's backend. */
  private ioErrorEvent(operation: 'read' | 'write', action: 'ignore' | 'report' | 'stop', err: BlockError): void {
    if (!this.ioErrorEvents || !this.link) return;
    this.graph.emitEvent('BLOCK_IO_ERROR', {
      device: this.name,
      'node-name': this.link.node.nodeName,
      operation,
      action,
      nospace: err.code === 'ENOSPC',
      reason: STRERROR[err.code] ?? err.text,
    });
  }

  /** Reads `length` bytes at `offset` into a new buffer. */
  async read(offset: number, length: number, flags: ReqFlags = 0): Promise<Uint8Array> {
    this.checkRange(offset, length);
    const buf = new Uint8Array(length);
    await this.pread(offset, buf, flags);
    return buf;
  }

  /** Reads into `buf` (its length is the request size). */
  pread(offset: number, buf: Uint8Array, flags: ReqFlags = 0): Promise<void> {
    const link = this.link;
    // Fast path: no drain, no error policy to apply, a plain in-range request (request-read.ts
    // validates the numbers); synchronous completion costs no extra tick.
    if (link !== null && this.heldUntil === null && this.paused === null && this.rerror === 'report' && this.ioLimits === null && buf instanceof Uint8Array) {
      const len = buf.length;
      // Zero-length reads take the checked path (a missing medium fails them too).
      if (offset >= 0 && len > 0 && offset + len <= link.node.totalBytes) {
        try {
          // Reading the clock costs about as much as a cached read (a sizeable part of an
          // OPFS 4 KiB read in a browser worker), so latency is sampled (1 in 64).
          const start = (this.readSample++ & 63) === 0 ? now() : -1;
          const r = link.preadv(offset, len, buf, flags);
          if (r === undefined) {
            this.accountRead(len, start);
            return RESOLVED;
          }
          return r.then(
            () => this.accountRead(len, start),
            (e: unknown) => {
              this.stats.read.failed++;
              this.stats.lastAccessMs = now();
              const err = toBlockError(e);
              this.ioErrorEvent('read', 'report', err);
              throw err;
            },
          );
        } catch (e) {
          this.stats.read.failed++;
          this.stats.lastAccessMs = now();
          const err = toBlockError(e);
          this.ioErrorEvent('read', 'report', err);
          return Promise.reject(err);
        }
      }
    }
    try {
      const checked = this.root;
      if (!(buf instanceof Uint8Array)) {
        throw new BlockError('EINVAL', `Read buffer for '${this.name}' is not a Uint8Array`, { offset });
      }
      this.checkRange(offset, buf.length, checked.node);
      const len = buf.length;
      return this.run('read', this.stats.read, len, () => checked.preadv(offset, len, buf, flags), true);
    } catch (e) {
      this.stats.read.failed++;
      this.stats.lastAccessMs = now();
      return Promise.reject(toBlockError(e));
    }
  }

  private accountRead(len: number, start: number): void {
    const st = this.stats.read;
    st.ops++;
    st.bytes += len;
    this.stats.lastAccessMs = now();
    if (start >= 0) {
      this.readTimeSampled += now() - start;
      this.readSamples++;
      // timeMs is an estimate for all reads from the sampled ones.
      st.timeMs = (this.readTimeSampled / this.readSamples) * st.ops;
    }
  }
  private readSample = 0;
  private readSamples = 0;
  private readTimeSampled = 0;

  /** Writes `data` at `offset`. */
  async write(offset: number, data: Uint8Array, flags: ReqFlags = 0): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      throw new BlockError('EINVAL', `Write data for '${this.name}' is not a Uint8Array`, { offset });
    }
    this.checkRange(offset, data.length);
    const link = this.root;
    if (this.writeThrough) flags |= ReqFlag.FUA;
    return this.run('write', this.stats.write, data.length, () => link.pwritev(offset, data.length, data, flags), true);
  }

  /** Makes `bytes` at `offset` read as zeros (MAY_UNMAP lets the image deallocate). */
  async writeZeroes(offset: number, bytes: number, flags: ReqFlags = 0): Promise<void> {
    this.checkRange(offset, bytes);
    const link = this.root;
    if (this.writeThrough) flags |= ReqFlag.FUA;
    return this.run('write', this.stats.zeroWrite, bytes, () => link.pwriteZeroes(offset, bytes, flags), true);
  }

  /** Discards a range (ignored unless the node was opened with discard=unmap). */
  async discard(offset: number, bytes: number): Promise<void> {
    this.checkRange(offset, bytes);
    const link = this.root;
    return this.run('write', this.stats.discard, bytes, () => link.pdiscard(offset, bytes));
  }

  /** Writes compressed (formats that support it; whole clusters). */
  async writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    return this.write(offset, data, ReqFlag.COMPRESSED);
  }

  /**
   * Flushes everything written so far to stable storage. Fails while the
   * error policy holds stopped requests: their data has not reached storage.
   */
  async flush(): Promise<void> {
    const node = this.node;
    if (!this.isAvailable) throw new BlockError('ENOMEDIUM', `No medium found in '${this.name}'`);
    if (this.stopError) throw this.stoppedFailure('flush');
    return this.run('write', this.stats.flush, 0, async () => {
      if (this.stopError) throw this.stoppedFailure('flush');
      await flush(node);
    });
  }

  /** Changes the device length. */
  async truncate(size: number, opts: { exact?: boolean; prealloc?: PreallocMode } = {}): Promise<void> {
    const link = this.root;
    // QEMU's blk_truncate wording.
    if (!this.isAvailable) throw new BlockError('ENOMEDIUM', 'No medium inserted');
    await this.gate();
    // Resize is taken for the call when the backend does not hold it (QEMU's block_resize does
    // the same): a user that shares no resize (a block job) refuses it with a conflict.
    const held = link.perm;
    const temporary = !(held & Perm.RESIZE) && !this.readOnly;
    if (temporary) this.setPerm(held | Perm.RESIZE, link.shared);
    try {
      await link.truncate(size, opts.exact ?? true, opts.prealloc ?? 'off', 0);
    } finally {
      if (temporary && this.link === link) this.setPerm(link.perm & ~Perm.RESIZE, link.shared);
    }
  }

  /** Block status of the root node from `offset`. */
  async blockStatus(offset: number, bytes: number, wantZero = true): Promise<BlockStatusResult> {
    checkRequest(this.node, offset, bytes);
    return blockStatus(this.node, wantZero, offset, bytes);
  }

  /**
   * Detaches from the node; the node closes (with a flush) when nobody else
   * holds it. While the error policy holds stopped requests, those requests
   * fail with the error that stopped them, the node is still detached, and
   * close rejects: their data never reached storage.
   */
  async close(): Promise<void> {
    const link = this.link;
    if (!link) return;
    let failure: BlockError | null = null;
    if (this.stopError) {
      failure = this.stoppedFailure('close');
      this.abandon = this.stopError;
      this.resume();
    }
    while (this.heldUntil) await this.heldUntil;
    this.link = null;
    try {
      await this.graph.detachRoot(link);
    } catch (e) {
      failure ??= toBlockError(e);
    }
    if (failure) throw failure;
  }
}

/** QEMU's bdrv_is_inserted: the node's own answer, else every child's. */
function mediumIn(node: BlockNode, depth: number): boolean {
  const own = node.instance.isInserted;
  if (own) return own.call(node.instance);
  return depth > 64 || node.children.every((c) => mediumIn(c.node, depth + 1));
}

/** Waits until the permission updates of `node` and its subtree are in place outside the process (image locks). */
async function settled(node: BlockNode, seen = new Set<BlockNode>()): Promise<void> {
  if (seen.has(node)) return;
  seen.add(node);
  await node.instance?.settled?.();
  for (const link of node.children) await settled(link.node, seen);
}
