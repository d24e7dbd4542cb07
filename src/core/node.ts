/**
 * A node of the block graph (QEMU's `BlockDriverState`).
 *
 * A node is one driver instance with its options, its children (file, backing,
 * data-file) and its parents. The request path state (tracked requests, drain,
 * flush generations, statistics) lives here too, used by src/core/request-path.ts.
 */
import type { OpBlocker } from './op-blockers.js';
import type { BlockDriver, DriverInstance } from './driver.js';
import type { BlockGraph } from './graph.js';
import type { BlockOptions, OptionReader } from './options.js';
import type { ChildRoleMask, PermMask } from './permissions.js';
import { BdrvChild, type ChildParent } from './child.js';
import { defaultLimits, type BlockLimits } from './limits.js';
import { BlockError } from './errors.js';
import { ChildRole, PERM_ALL } from './permissions.js';
import type { TrackedRequest } from './tracked-requests.js';
import { ArraySet } from './array-set.js';
import type { BdrvDirtyBitmap } from './dirty-bitmap.js';
import type { QdictEntries } from './qemu-json.js';

/** detect-zeroes option values. */
export type DetectZeroes = 'off' | 'on' | 'unmap';

/** Per-operation counters of a node or backend (QEMU's BlockAcctStats). */
export interface OpStats {
  ops: number;
  bytes: number;
  failed: number;
  /** Total time spent in completed requests, milliseconds. */
  timeMs: number;
}

/** I/O accounting of a node, per operation type. */
export interface IoStats {
  read: OpStats;
  write: OpStats;
  zeroWrite: OpStats;
  discard: OpStats;
  flush: OpStats;
  /** When the last request ended, done or failed (performance.now() ms); a BlockBackend's only (QEMU's last_access_time_ns). */
  lastAccessMs?: number;
}

export function newIoStats(): IoStats {
  const z = (): OpStats => ({ ops: 0, bytes: 0, failed: 0, timeMs: 0 });
  return { read: z(), write: z(), zeroWrite: z(), discard: z(), flush: z() };
}

/** A hook run before a write reaches a node (backup's copy-before-write). */
export type BeforeWriteHook = (
  node: BlockNode,
  kind: 'write' | 'zero' | 'discard' | 'truncate',
  offset: number,
  bytes: number,
) => Promise<void>;

/** Called once when a write reaches past the node's write threshold. */
export type WriteThresholdHandler = (node: BlockNode, threshold: number, offset: number, bytes: number) => void;

/** One graph node. Create nodes with {@link BlockGraph.open}. */
export class BlockNode {
  readonly kind = 'node' as const;
  /** The driver's per-node state; set once open succeeds. */
  instance!: DriverInstance;
  /** Links to children, in the order they were attached. */
  readonly children: BdrvChild[] = [];
  /** Links from parents. */
  readonly parents: BdrvChild[] = [];
  /** References held (parents, backends, the caller of open). At 0 the node closes. */
  refcnt = 1;
  /** Request limits, refreshed from the driver and children. */
  limits: BlockLimits = defaultLimits();
  /** The node was opened as raw by probing (refuse writes that change its format). */
  probed = false;
  /** Whether the node is open. */
  isOpen = false;
  /** What refuses operations on this node now (a block job's blocker; see op-blockers.ts). */
  readonly opBlockers = new Set<OpBlocker>();

  // Request path state (src/core/request-path.ts).
  /** Cached length in bytes. */
  totalBytes = 0;
  /** Requests in flight on this node. */
  inFlight = 0;
  /** Untracked (fast path) reads in flight; serialising requests wait for them. */
  fastReads = 0;
  fastReadWaiters: Array<() => void> = [];
  /** Serialising requests in flight; while > 0 reads take the tracked path. */
  serialisingInFlight = 0;
  /** Tracked requests, for serialising overlaps. */
  readonly tracked = new ArraySet<TrackedRequest>();
  /** Drain nesting depth (QEMU quiesce_counter). */
  quiesceCounter = 0;
  /** Resolvers waiting for inFlight to reach 0. */
  idleWaiters: Array<() => void> = [];
  /** Incremented on each completed write. */
  writeGeneration = 0;
  /** The generation the last successful flush covered. */
  flushedGeneration = 0;
  /** A flush in progress, joined by concurrent flushes. */
  activeFlush: Promise<void> | null = null;
  /** detect-zeroes mode. */
  detectZeroes: DetectZeroes = 'off';
  /** discard=unmap (true) or ignore (false). */
  discardUnmap = false;
  /** cache.no-flush: skip flushes to disk. */
  noFlush = false;
  /**
   * cache.direct: bypass the host's page cache (O_DIRECT where the protocol
   * has it, node-file). Children inherit it unless they set their own.
   */
  direct = false;
  /**
   * force-share: the node's parents share every permission on it (QEMU's
   * bs->force_share), so it never refuses other users, QEMU's locks included.
   * Only for read-only nodes; children inherit it.
   */
  forceShare = false;
  /** Copy-on-read users; reads copy unallocated data into this node while > 0. */
  copyOnRead = 0;
  /** Offset above which a write triggers {@link onWriteThreshold}, 0 = off. */
  writeThreshold = 0;
  onWriteThreshold: WriteThresholdHandler | null = null;
  /** Highest byte written so far (QEMU wr_highest_offset). */
  highestWriteEnd = 0;
  /** Hooks run before every write, zero write, discard and truncate. */
  readonly beforeWriteHooks: BeforeWriteHook[] = [];
  /** Named dirty bitmaps (see dirty-bitmap.ts); the request path marks the enabled ones. */
  readonly dirtyBitmaps: BdrvDirtyBitmap[] = [];
  /** I/O accounting. */
  stats: IoStats = newIoStats();

  // Names (src/core/filename.ts, QEMU's bdrv_refresh_filename).
  /** The name the driver gave the node when it opened (a protocol's file name), '' for none. */
  openFilename = '';
  /** A name that opens the node as it is, '' when only the json: options do. */
  exactFilename = '';
  /** The options that open the node as it is, as its json: filename spells them. */
  fullOpenOptions: QdictEntries = [];
  /** Inserted by a job without a node name (QEMU's implicit nodes): it shows its child's names. */
  implicit = false;
  /** The parent that opened this node as its child from inline options (QEMU's inherits_from); a reopen of it carries over. */
  inheritsFrom: BlockNode | undefined = undefined;
  /** Opened without its backing file by the opener's flag (qemu-img info), which the name does not count as an override. */
  noBackingFlag = false;
  /**
   * The backing file the image named and the name of the node opened for it
   * from that name alone (QEMU's auto_backing_file), when it was so opened.
   */
  implicitBacking: { named: string; filename: string } | undefined = undefined;

  constructor(
    readonly graph: BlockGraph,
    readonly driver: BlockDriver,
    /** Unique node-name. */
    readonly nodeName: string,
    /** Options the node was opened with (after normalization, children included). */
    readonly options: BlockOptions,
    /** The options the caller gave explicitly (not inherited or defaulted). */
    readonly explicitOptions: BlockOptions,
    /** Whether the node is read-only. Changed only by reopen. */
    public readOnly: boolean,
    /** The filename shown by info, when there is one. */
    public filename: string,
  ) {}

  /** Current length in bytes. */
  get length(): number {
    return this.totalBytes;
  }

  /** Re-reads the length from the driver. */
  async refreshLength(): Promise<number> {
    await this.instance.reloadLength?.();
    const len = await this.instance.getLength();
    if (!Number.isSafeInteger(len) || len < 0) {
      throw new BlockError('EIO', `Driver '${this.driver.name}' reported an invalid length ${len}`, {
        node: this.nodeName,
      });
    }
    this.totalBytes = len;
    return len;
  }

  /** The `file` child (primary child of formats and filters), if any. */
  get file(): BdrvChild | undefined {
    return this.children.find((c) => c.name === 'file');
  }

  /** The `backing` child, if any. */
  get backing(): BdrvChild | undefined {
    return this.children.find((c) => c.name === 'backing');
  }

  /** The node whose data a filter passes through (its filtered child), if this is a filter. */
  get filtered(): BdrvChild | undefined {
    // Most filters call it `file`; blkdebug calls it `image`.
    if (this.driver.kind === 'filter') return this.file ?? this.children.find((c) => c.role & ChildRole.FILTERED);
    return undefined;
  }

  /** Permissions all parents hold on this node together (OR). */
  get cumulativePerm(): PermMask {
    let p = 0;
    for (const c of this.parents) p |= c.perm;
    return p;
  }

  /** Permissions all parents share (AND). */
  get cumulativeShared(): PermMask {
    let s = PERM_ALL;
    for (const c of this.parents) s &= c.shared;
    return s;
  }

  /** Takes a reference. */
  ref(): void {
    this.refcnt++;
  }

  /**
   * Drops a reference; at zero the node is flushed, closed and its children
   * released.
   */
  async unref(): Promise<void> {
    if (this.refcnt <= 0) {
      throw new BlockError('EINVAL', `Node '${this.nodeName}' has no reference left to drop`);
    }
    this.refcnt--;
    if (this.refcnt === 0) await this.graph.closeNode(this);
  }

  /**
   * Opens (or looks up) a child from this node's options and attaches it.
   *
   * `options[key]` may be an options object (a new node is opened), a string
   * (the node-name of an existing node), null (no child) or absent. Returns
   * undefined when there is no child and `allowNone` is set, otherwise EINVAL.
   */
  async openChild(
    options: OptionReader,
    key: string,
    role: ChildRoleMask,
    opts: { allowNone?: boolean; readOnly?: boolean } = {},
  ): Promise<BdrvChild | undefined> {
    const ref = options.child(key);
    if (ref === undefined || ref === null) {
      if (opts.allowNone) return undefined;
      throw new BlockError('EINVAL', `A block device must be specified for "${options.prefix}${key}"`, {
        node: this.nodeName,
      });
    }
    const childReadOnly = opts.readOnly ?? this.readOnly;
    let childNode: BlockNode;
    if (typeof ref === 'string') {
      childNode = this.graph.findNode(ref);
      childNode.ref();
    } else {
      childNode = await this.graph.openNode(ref, {
        inheritFrom: this,
        readOnly: childReadOnly,
        relativeTo: this,
        childKey: key,
        role,
      });
      childNode.inheritsFrom = this;
      // QEMU opens a format's or filter's `file` before it names the node itself: the node lists after it.
      if (key === 'file' && this.driver.kind !== 'protocol') this.graph.registerNode(this, true);
    }
    try {
      return await this.graph.attachChild(this, childNode, key, role);
    } catch (e) {
      await childNode.unref();
      throw e;
    }
  }

  /** Describes the node for messages: `node 'name' (qcow2)`. */
  toString(): string {
    return `node '${this.nodeName}' (${this.driver.name})`;
  }
}

/** Type guard for parents. */
export function isNode(p: ChildParent): p is BlockNode {
  return p.kind === 'node';
}
