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
import type { JobControl, JobDriver, OnErrorPolicy } from './job-types.js';

/** QEMU's stream chunk. */
export const STREAM_CHUNK = 512 * 1024;

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
  top.copyOnRead++;
  let blk: BlockBackend | undefined;
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    top.copyOnRead--;
    unfreezeChain(frozen);
    await blk?.close();
  };

  return {
    type: 'stream',
    blockedNodes: blocked,
    async run(ctl: JobControl): Promise<void> {
      blk = await BlockBackend.attach(graph, top, {
        name: ctl.id,
        drainListener: ctl.drainListener,
        perm: Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED,
        shared: PERM_ALL,
      });
      const backing = cowChild(top);
      if (!backing) return;
      const len = top.length;
      ctl.progressSetRemaining(len);
      let firstError: BlockError | undefined;
      // One buffer for the whole job: the copy is serial and copy-on-read has written it before pread resolves.
      const buf = new Uint8Array(Math.min(STREAM_CHUNK, len));
      for (let offset = 0; offset < len; ) {
        await ctl.pausePoint();
        if (ctl.isCancelled()) break;
        let n = Math.min(STREAM_CHUNK, len - offset);
        let copy = false;
        try {
          const inTop = await isAllocatedAbove(top, backing, false, offset, n);
          n = inTop.pnum || n;
          if (!inTop.allocated) {
            const below = await isAllocatedAbove(backing, base, false, offset, n);
            n = below.pnum || n;
            copy = below.allocated;
          }
          // Copy-on-read puts the data into top without overwriting what the guest wrote there.
          if (copy) await blk.pread(offset, n <= buf.length ? buf.subarray(0, n) : new Uint8Array(n), ReqFlag.PREFETCH);
        } catch (e) {
          const err = toBlockError(e);
          const action = ctl.errorAction(onError, 'read', err);
          if (action === 'stop') continue;
          firstError ??= err;
          if (action === 'report') break;
        }
        ctl.progressUpdate(n);
        offset += n;
        if (copy) await ctl.ratelimit(n);
      }
      if (firstError) throw firstError;
    },

    async prepare(): Promise<void> {
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
  };
}
