/**
 * The stream job (QEMU's block-stream): copies into `top` the data that the
 * chain between `top` and `base` holds, so those images can be dropped, then
 * makes `base` the backing file of `top`. The guest keeps reading and writing
 * `top` meanwhile: the copy runs as copy-on-read requests, which the request
 * path serialises against guest writes and which never overwrite data the
 * guest has written into `top`.
 */
import type { BlockGraph } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import { BlockBackend } from '../core/backend.js';
import { cowChild, isAllocatedAbove } from '../core/block-status.js';
import { drained } from '../core/drain.js';
import { chainNodes, checkInChain, freezeChain, unfreezeChain } from './chain.js';
import { checkOp } from '../core/op-blockers.js';
import { ReqFlag } from '../core/driver.js';
import { BlockError, toBlockError } from '../core/errors.js';
import { PERM_ALL, Perm, ROLE_BACKING } from '../core/permissions.js';
import { insertJobFilter, removeJobFilter } from './job-filter.js';
import { JobLinks } from './job-links.js';
import { markEarlyJobFailure, type JobControl, type JobDriver, type OnErrorPolicy } from './job-types.js';

/** QEMU's stream chunk. */
export const STREAM_CHUNK = 512 * 1024;
/**
 * Chunks copied at once without a speed limit. QEMU copies one at a time; a
 * window lets one chunk's read overlap another's write (bench/jobs/mirror-stream.ts).
 */
export const STREAM_WINDOW = 4;
/**
 * The chunk without a speed limit: four times QEMU's, as mirror's 2 MiB
 * copies. A 1 GiB stream makes 512 rounds of block status and copy-on-read
 * instead of 2048; under a limit the job keeps QEMU's chunk (its progress
 * steps and rate-limit slices).
 */
export const STREAM_FAST_CHUNK = 2 * 1024 * 1024;

/** One chunk of a window. */
interface Chunk {
  n: number;
  /** Allocated below top: copied. */
  copy: boolean;
  failed: boolean;
  error: unknown;
  /** The copy (never rejects: a failure sets `failed`). */
  done: Promise<void>;
}

/** What to stream. */
export interface StreamOptions {
  graph: BlockGraph;
  /** The image that receives the data (the guest's active layer, or any image of the chain). */
  top: BlockNode;
  /** The image that stays below `top`; undefined streams the whole chain (top ends with no backing file). */
  base?: BlockNode;
  /** The backing file name written into `top` (QEMU's backing-file); default: base's filename. */
  backingFile?: string;
  /** What to do when a read fails (default report). */
  onError?: OnErrorPolicy;
  /** The caller made a read-only `top` read-write for the job (QEMU's stream_start): reopen it read-only when the job ends. */
  restoreReadOnly?: boolean;
  /** The job's id, for permission conflicts with its links ("stream job 'id'"). */
  jobId?: string;
  /** node-name of the copy-on-read filter the job inserts (default: an implicit one). */
  filterNodeName?: string;
}

/** Makes the driver of a stream job; hand it to {@link JobRegistry.create}. */
export function streamJob(options: StreamOptions): JobDriver {
  const { graph, top, base } = options;
  const onError = options.onError ?? 'report';
  if (base) checkInChain(top, base);
  if (top.readOnly) throw new BlockError('EPERM', `Node '${top.nodeName}' is read-only: cannot stream into it`);
  // As QEMU's qmp_block_stream: every node from top down to base must allow streaming.
  const blocked = chainNodes(top, base);
  for (const n of blocked) checkOp(n, 'stream');
  const frozen = freezeChain(top, base);
  // As QEMU's stream_start: the images below top that drop out of the chain stay as they are
  // while the job reads them once (nobody else may write or resize them).
  const links = new JobLinks(graph, 'stream', options.jobId);
  try {
    for (const n of blocked.slice(1)) links.add('intermediate node', n, 0, Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED);
  } catch (e) {
    unfreezeChain(frozen);
    void links.removeAll().catch(() => undefined);
    // QEMU's job exists when it adds these links.
    throw markEarlyJobFailure(e);
  }
  top.copyOnRead++;
  let setupDone!: () => void;
  const graphReady = new Promise<void>((resolve) => (setupDone = resolve));
  let blk: BlockBackend | undefined;
  let filter: BlockNode | undefined;
  let released = false;
  let speed = 0;
  /** Takes the job's copy-on-read filter out again, top back under its parents. */
  const dropFilter = async (): Promise<void> => {
    const f = filter;
    filter = undefined;
    if (f) await removeJobFilter(graph, f, top);
  };
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    // The job's links stay until it is dismissed (free): they keep the dropped filter, as QEMU's.
    await dropFilter();
    top.copyOnRead--;
    unfreezeChain(frozen);
    await blk?.close();
    // Writers gone first: the image goes back to read-only as it was before the job.
    if (options.restoreReadOnly) await graph.reopen([{ node: top, readOnly: true }]).catch(() => undefined);
  };

  return {
    type: 'stream',
    blockedNodes: blocked,
    links,
    graphReady,
    async run(ctl: JobControl): Promise<void> {
      // QEMU's stream puts a copy-on-read filter above top, implicit unless named (the copying
      // itself is top's own copy-on-read here); it shows in the graph while the job runs.
      try {
        filter = await insertJobFilter(graph, top, 'copy-on-read', options.filterNodeName);
        // QEMU's job holds its filter ("main node") and top ("active node") before the intermediate
        // nodes; ours holds those from its creation, so these two go before them in its list.
        links.add('active node', top, 0, Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.WRITE, { first: true });
        links.add('main node', filter, 0, PERM_ALL, { first: true });
        // The job copies by reading through its filter, which copies what it reads into top.
        blk = await BlockBackend.attach(graph, filter, {
          name: ctl.id,
          drainListener: ctl.drainListener,
          perm: Perm.CONSISTENT_READ,
          shared: Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.WRITE,
        });
      } finally {
        setupDone();
      }
      const backing = cowChild(top);
      if (!backing) return;
      const len = top.length;
      ctl.progressSetRemaining(len);
      let firstError: BlockError | undefined;
      // A buffer per chunk of a window: copy-on-read has written a chunk before its pread resolves.
      const bufs: Uint8Array[] = [];
      const bufFor = (i: number, n: number): Uint8Array => {
        if (n > STREAM_FAST_CHUNK) return new Uint8Array(n);
        if (!bufs[i] || bufs[i]!.length < n) bufs[i] = new Uint8Array(Math.min(n <= STREAM_CHUNK ? STREAM_CHUNK : STREAM_FAST_CHUNK, len));
        return bufs[i]!.subarray(0, n);
      };
      let offset = 0;
      for (let ended = false; offset < len && !ended; ) {
        await ctl.pausePoint();
        if (ctl.isCancelled()) break;
        // Plans up to a window of chunks and copies them at once (reads and writes of
        // neighbouring chunks overlap); under a speed limit one at a time, as QEMU does.
        const window = speed > 0 ? 1 : STREAM_WINDOW;
        const chunk = speed > 0 ? STREAM_CHUNK : STREAM_FAST_CHUNK;
        const batch: Chunk[] = [];
        for (let pos = offset; batch.length < window && pos < len; ) {
          const c: Chunk = { n: Math.min(chunk, len - pos), copy: false, failed: false, error: undefined, done: Promise.resolve() };
          batch.push(c);
          try {
            const inTop = await isAllocatedAbove(top, backing, false, pos, c.n);
            c.n = inTop.pnum || c.n;
            if (!inTop.allocated) {
              const below = await isAllocatedAbove(backing, base, false, pos, c.n);
              c.n = below.pnum || c.n;
              c.copy = below.allocated;
            }
            // Copy-on-read puts the data into top without overwriting what the guest wrote there.
            if (c.copy) {
              c.done = blk.pread(pos, bufFor(batch.length - 1, c.n), ReqFlag.PREFETCH).then(
                () => undefined,
                (e: unknown) => {
                  c.failed = true;
                  c.error = e;
                },
              );
            }
          } catch (e) {
            c.failed = true;
            c.error = e;
            break;
          }
          pos += c.n;
        }
        await Promise.all(batch.map((c) => c.done));
        // Results in order: a failure stops (and is retried from its chunk), is skipped, or ends the job.
        for (const c of batch) {
          if (c.failed) {
            const err = toBlockError(c.error);
            const action = ctl.errorAction(onError, 'read', err);
            if (action === 'stop') break;
            firstError ??= err;
            if (action === 'report') {
              ended = true;
              break;
            }
          }
          ctl.progressUpdate(c.n);
          offset += c.n;
          if (c.copy) await ctl.ratelimit(c.n);
        }
      }
      if (firstError) throw firstError;
    },

    async prepare(): Promise<void> {
      // As QEMU's stream_prepare: the filter goes first, then the chain changes.
      await dropFilter();
      const backing = top.backing;
      if (!backing) return;
      const baseFile = base ? (options.backingFile ?? base.filename) : undefined;
      const baseFormat = base?.driver.name;
      if (!top.instance.changeBackingFile) {
        throw new BlockError('ENOTSUP', `Driver '${top.driver.name}' cannot change the backing file of '${top.nodeName}'`);
      }
      const change = top.instance.changeBackingFile.bind(top.instance);
      // Guest requests wait while the chain changes: none may see top without its backing file.
      await drained(top, async () => {
        await change(baseFile, baseFormat);
        unfreezeChain(frozen);
        if (base) base.ref();
        await graph.detachChild(backing);
        if (base) {
          try {
            await graph.attachChild(top, base, 'backing', ROLE_BACKING);
          } catch (e) {
            await base.unref();
            throw e;
          }
        }
      });
    },

    async clean(): Promise<void> {
      await release();
    },

    async free(): Promise<void> {
      await links.removeAll();
    },

    setSpeed(bytesPerSecond: number): void {
      speed = bytesPerSecond;
    },
  };
}
