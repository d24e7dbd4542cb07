/**
 * The preallocate filter (QEMU 7.2's block/preallocate.c): a write that
 * reaches past the end of its `file` node first grows that node with a zero
 * write of `prealloc-size` more bytes (the end rounded up to `prealloc-align`),
 * so a growing image extends its file in large steps; the grown tail is cut
 * back to the real end of the data when the filter closes, loses its write
 * permissions (a reopen to read-only, its last writing parent gone) or before
 * a truncate.
 *
 * The filter keeps three offsets, each -1 when unknown:
 * - `dataEnd`: the end of the data written (the length the filter reports);
 * - `zeroStart`: where the trailing area known to read as zeros begins;
 * - `fileEnd`: the real end of the file node.
 * They are valid only while the filter holds WRITE and RESIZE on its file
 * node and shares neither, so nobody else can move the file's end.
 */
import type { BlockDriver, DriverInstance, PreallocMode, ReopenState, ReqFlags } from '../core/driver.js';
import { ReqFlag } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { einval, toBlockError } from '../core/errors.js';
import type { OptionReader, OptionValue } from '../core/options.js';
import { optText, parseOptSize } from './qemu-opt-value.js';
import { defaultChildPerms, Perm, ROLE_FILTERED_PRIMARY, type PermMask } from '../core/permissions.js';
import { refreshPerms } from '../core/perm-update.js';

const MiB = 1 << 20;
const SECTOR = 512;

/** The filter's two options (QEMU's PreallocateOpts). */
export interface PreallocateOptions {
  /** The file's new end is rounded up to a multiple of this (default 1 MiB). */
  align: number;
  /** How far past the end of a write the file is grown (default 128 MiB). */
  size: number;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;
const canWriteResize = (perm: PermMask) => (perm & Perm.WRITE) !== 0 && (perm & Perm.RESIZE) !== 0;

/**
 * Reads and checks the options (their text as QemuOpts sees it) against the
 * file node's request alignment, with QEMU's messages; absent ones take
 * their value from `base`.
 */
function readOptions(text: (key: string) => string | undefined, childAlign: number, base: PreallocateOptions): PreallocateOptions {
  const size = (key: string, fallback: number) => {
    const t = text(key);
    return t === undefined ? fallback : parseOptSize(key, t);
  };
  const align = size('prealloc-align', base.align);
  const grow = size('prealloc-size', base.size);
  if (align % SECTOR !== 0) {
    throw einval(`prealloc-align parameter of preallocate filter is not aligned to ${SECTOR}`);
  }
  if (align % childAlign !== 0) {
    throw einval(`prealloc-align parameter of preallocate filter is not aligned to underlying node request alignment (${childAlign})`);
  }
  return { align, size: grow };
}

/** QEMU's defaults: grow by 128 MiB, to a multiple of 1 MiB. */
const DEFAULTS: PreallocateOptions = { align: MiB, size: 128 * MiB };

/** The per-node state and I/O of one preallocate filter. */
class Preallocate {
  dataEnd = -1;
  zeroStart = -1;
  fileEnd = -1;
  /**
   * Set while the filter has lost its write permissions but still holds
   * them on its file to cut the preallocated tail (see {@link setPerm}).
   */
  private trim: Promise<void> | null = null;

  constructor(
    private readonly node: BlockNode,
    private readonly file: BdrvChild,
    public opts: PreallocateOptions,
  ) {}

  private invalidate(): void {
    this.dataEnd = this.zeroStart = this.fileEnd = -1;
  }

  /** Whether the filter holds WRITE and RESIZE on its file (and so may trust its offsets). */
  private hasPerms(): boolean {
    return canWriteResize(this.file.perm);
  }

  private async fileLength(): Promise<number> {
    return this.file.node.refreshLength();
  }

  /**
   * Runs before each write or zero write to [offset, offset + bytes):
   * grows the file when the request ends past it. With `mergeZero` (a plain
   * zero write), returns true when the range already reads as zeros after
   * this call, so the zero write itself can be skipped.
   */
  async beforeWrite(offset: number, bytes: number, mergeZero: boolean): Promise<boolean> {
    const end = offset + bytes;
    const fileAlign = this.file.node.limits.requestAlignment;
    const preallocAlign = Math.max(this.opts.align, fileAlign);
    if (!this.hasPerms()) return false;
    if (this.dataEnd < 0) {
      this.dataEnd = await this.fileLength();
      if (this.fileEnd < 0) this.fileEnd = this.dataEnd;
    }
    if (end <= this.dataEnd) return false;
    this.dataEnd = end;
    if (this.zeroStart < 0 || !mergeZero) this.zeroStart = end;
    if (this.fileEnd < 0) this.fileEnd = await this.fileLength();
    if (end <= this.fileEnd) return mergeZero && offset >= this.zeroStart;

    const start = alignUp(mergeZero ? Math.min(offset, this.fileEnd) : this.fileEnd, fileAlign);
    const stop = alignUp(Math.max(start, end) + this.opts.size, preallocAlign);
    try {
      await this.file.pwriteZeroes(start, stop - start, ReqFlag.NO_FALLBACK);
    } catch {
      // No cheap way to grow the file: the write goes on unpreallocated, the end is re-read next time.
      this.fileEnd = -1;
      return false;
    }
    this.fileEnd = stop;
    return mergeZero && start <= offset;
  }

  async truncate(offset: number, exact: boolean, prealloc: PreallocMode, flags: ReqFlags): Promise<void> {
    if (this.dataEnd >= 0 && offset > this.dataEnd) {
      if (this.fileEnd < 0) this.fileEnd = await this.fileLength();
      if (prealloc === 'falloc' && offset <= this.fileEnd) {
        // Already allocated by the filter: it becomes the user's data.
        this.dataEnd = offset;
        return;
      }
      if (prealloc !== 'falloc' && this.fileEnd > this.dataEnd) {
        // Drop the filter's tail first: a shrink with preallocation would fail, and
        // 'off' and 'full' should give the file the user asked for.
        try {
          await this.file.truncate(this.dataEnd, true, 'off', 0);
        } catch (e) {
          this.fileEnd = -1;
          throw toBlockError(e).withPrefix('preallocate-filter: failed to drop write-zero preallocation');
        }
        this.fileEnd = this.dataEnd;
      }
      this.dataEnd = offset;
    }
    try {
      await this.file.truncate(offset, exact, prealloc, flags);
    } catch (e) {
      this.invalidate();
      throw e;
    }
    if (this.hasPerms()) this.dataEnd = this.zeroStart = this.fileEnd = offset;
  }

  async getLength(): Promise<number> {
    if (this.dataEnd >= 0) return this.dataEnd;
    const len = this.file.length;
    if (this.hasPerms() && this.trim === null) this.dataEnd = this.zeroStart = this.fileEnd = len;
    return len;
  }

  /** Cuts the file back to the end of the data, if the filter grew it. Failures are not reported (as QEMU's close). */
  async dropPreallocation(): Promise<void> {
    if (this.dataEnd < 0) return;
    if (this.fileEnd < 0) this.fileEnd = await this.fileLength().catch(() => -1);
    if (this.fileEnd < 0) return;
    if (this.dataEnd < this.fileEnd) {
      try {
        await this.file.truncate(this.dataEnd, true, 'off', 0);
        this.fileEnd = this.dataEnd;
      } catch {
        this.fileEnd = -1;
      }
    }
  }

  childPerm(role: number, perm: PermMask, shared: PermMask): { perm: PermMask; shared: PermMask } {
    const p = defaultChildPerms(role, perm, shared, !this.node.readOnly);
    // Until a grown tail is cut (see setPerm) the filter still needs to resize its file.
    if (canWriteResize(perm) || this.trim !== null || this.tailToCut()) {
      p.perm |= Perm.WRITE | Perm.RESIZE;
      // Nobody else may move the file's end under the filter's offsets.
      p.shared &= ~(Perm.WRITE | Perm.RESIZE);
    }
    return p;
  }

  /**
   * QEMU cuts the tail while it checks the lost permissions; ours cannot wait
   * there, so the filter keeps WRITE and RESIZE on its file until the cut is
   * done, then lets them go.
   */
  setPerm(perm: PermMask): void {
    if (canWriteResize(perm)) {
      if (this.dataEnd < 0 && this.trim === null) this.dataEnd = this.fileEnd = this.zeroStart = this.file.length;
      return;
    }
    if (this.trim !== null) return;
    if (!this.tailToCut()) {
      this.invalidate();
      return;
    }
    this.trim = Promise.resolve()
      .then(() => this.dropPreallocation())
      .finally(() => {
        this.trim = null;
        this.invalidate();
        if (this.node.isOpen) refreshPerms([this.node]);
      });
  }

  /** Whether the file may be longer than the data (the filter grew it, or its end is unknown). */
  private tailToCut(): boolean {
    return this.dataEnd >= 0 && (this.fileEnd < 0 || this.dataEnd < this.fileEnd);
  }

  /** Waits for a cut started by {@link setPerm}. */
  async settle(): Promise<void> {
    while (this.trim) await this.trim.catch(() => undefined);
  }
}

async function openPreallocate(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  // QEMU opens the file before it reads the options: a bad file is reported first.
  const file = (await node.openChild(options, 'file', ROLE_FILTERED_PRIMARY))!;
  let opts: PreallocateOptions;
  try {
    opts = readOptions((key) => optText(options.raw(key)), file.node.limits.requestAlignment, DEFAULTS);
  } catch (e) {
    await node.graph.detachChild(file);
    throw e;
  }
  const s = new Preallocate(node, file, opts);
  const childFlags = () => file.node.instance.supportedWriteFlags ?? 0;
  const childZeroFlags = () => file.node.instance.supportedZeroFlags ?? 0;

  return {
    getLength: () => s.getLength(),
    get supportedWriteFlags(): ReqFlags {
      return ReqFlag.WRITE_UNCHANGED | (childFlags() & ReqFlag.FUA);
    },
    get supportedZeroFlags(): ReqFlags {
      return ReqFlag.WRITE_UNCHANGED | (childZeroFlags() & (ReqFlag.FUA | ReqFlag.MAY_UNMAP | ReqFlag.NO_FALLBACK));
    },
    preadv: (offset, bytes, buf, flags) => file.preadv(offset, bytes, buf, flags),
    async pwritev(offset, bytes, buf, flags) {
      await s.beforeWrite(offset, bytes, false);
      await file.pwritev(offset, bytes, buf, flags);
    },
    async pwriteZeroes(offset, bytes, flags) {
      // Only a plain zero write may be folded into the preallocation (not FUA, not unmap).
      const mergeZero = (flags & ~(ReqFlag.NO_FALLBACK | ReqFlag.WRITE_UNCHANGED)) === 0;
      if (await s.beforeWrite(offset, bytes, mergeZero)) return;
      await file.pwriteZeroes(offset, bytes, flags);
    },
    pdiscard: (offset, bytes) => file.pdiscard(offset, bytes),
    truncate: (offset, exact, prealloc, flags) => s.truncate(offset, exact, prealloc, flags),
    childPerm: (_child, role, perm, shared) => s.childPerm(role, perm, shared),
    setPerm: (perm) => s.setPerm(perm),
    async reopenPrepare(state: ReopenState) {
      // Options not given keep their values (qemu-io's reopen -o passes only the new ones).
      const next = readOptions((key) => optText(state.options[key] as OptionValue), file.node.limits.requestAlignment, s.opts);
      // The filter loses its write permissions with the reopen: cut the tail while it can.
      if (state.readOnly && !node.readOnly) {
        await s.dropPreallocation();
        s.dataEnd = s.zeroStart = s.fileEnd = -1;
      }
      state.opaque = next;
    },
    reopenCommit(state: ReopenState) {
      s.opts = state.opaque as PreallocateOptions;
    },
    async close() {
      await s.settle();
      await s.dropPreallocation();
    },
  };
}

/** The preallocate filter driver. */
export const preallocateDriver: BlockDriver = {
  name: 'preallocate',
  kind: 'filter',
  open: openPreallocate,
};
