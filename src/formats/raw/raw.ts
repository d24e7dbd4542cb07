/**
 * raw: the guest sees the bytes of its file, optionally a window of it
 * (`offset`, `size`). Zero writes, discard and block status pass through.
 */
import type { BlockDriver, BlockStatusResult, DriverInstance, IoResult, PreallocMode, ReqFlags } from '../../core/driver.js';
import { ReqFlag, Status, type MeasureInfo } from '../../core/driver.js';
import { BlockError, einval } from '../../core/errors.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader } from '../../core/options.js';
import { ROLE_FILTERED_PRIMARY } from '../../core/permissions.js';
import { blockStatus } from '../../core/block-status.js';
import { copyRangeFrom, copyRangeTo, type CopyRangeRequest } from '../../core/copy-range.js';
import { childAllocatedSize } from '../../core/image-facts.js';

class RawInstance implements DriverInstance {
  constructor(
    private readonly file: BdrvChild,
    private readonly offset: number,
    /** Fixed window size, or undefined to follow the file's length. */
    private size: number | undefined,
  ) {}
  // As QEMU's raw: FUA and the zero-write flags only where the file takes them
  // (otherwise FUA is a flush of this node, which reaches the file after the write counts).
  get supportedWriteFlags(): ReqFlags {
    return (this.file.node.instance.supportedWriteFlags ?? 0) & ReqFlag.FUA;
  }
  get supportedZeroFlags(): ReqFlags {
    return (this.file.node.instance.supportedZeroFlags ?? 0) & (ReqFlag.FUA | ReqFlag.MAY_UNMAP | ReqFlag.NO_FALLBACK);
  }

  /** The source range is this many bytes further in the file. */
  copyRangeFrom(r: CopyRangeRequest): Promise<void> {
    return copyRangeFrom({ ...r, src: this.file, srcOffset: this.offset + r.srcOffset });
  }
  /** The destination range is this many bytes further in the file, inside the window. */
  copyRangeTo(r: CopyRangeRequest): Promise<void> {
    this.bound(r.dstOffset, r.bytes);
    return copyRangeTo({ ...r, dst: this.file, dstOffset: this.offset + r.dstOffset });
  }

  getLength(): number {
    if (this.size !== undefined) return this.size;
    return Math.max(0, this.file.length - this.offset);
  }

  private bound(offset: number, bytes: number): void {
    if (this.size !== undefined && offset + bytes > this.size) {
      throw new BlockError('ENOSPC', `Request at ${offset} of ${bytes} bytes is beyond the raw window of ${this.size} bytes`, {
        offset,
      });
    }
  }

  preadv(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult {
    // QEMU's raw format announces its reads and writes to a debugging file child.
    if (this.file.node.instance.debug) return this.debugRead(offset, bytes, buf, flags);
    return this.file.preadv(this.offset + offset, bytes, buf, flags);
  }
  private async debugRead(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    await this.file.debugEvent('read_aio');
    await this.file.preadv(this.offset + offset, bytes, buf, flags);
  }
  pwritev(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    this.bound(offset, bytes);
    if (this.file.node.instance.debug) return this.debugWrite(offset, bytes, buf, flags);
    return this.file.pwritev(this.offset + offset, bytes, buf, flags);
  }
  private async debugWrite(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    await this.file.debugEvent('write_aio');
    await this.file.pwritev(this.offset + offset, bytes, buf, flags);
  }
  pwriteZeroes(offset: number, bytes: number, flags: ReqFlags): Promise<void> {
    this.bound(offset, bytes);
    return this.file.pwriteZeroes(this.offset + offset, bytes, flags);
  }
  pdiscard(offset: number, bytes: number): Promise<void> {
    this.bound(offset, bytes);
    return this.file.pdiscard(this.offset + offset, bytes);
  }
  async blockStatus(wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const below = await blockStatus(this.file.node, wantZero, this.offset + offset, bytes);
    if (below.pnum === 0) {
      // The file is shorter than the guest view: the rest reads as zeros.
      return { status: Status.ZERO | Status.ALLOCATED, pnum: bytes };
    }
    // As QEMU's BDRV_BLOCK_RAW: the file's answer, so a range the file does not
    // hold (null-co without read-zeroes) is not allocated here either.
    return {
      status: below.status & ~Status.EOF,
      pnum: below.pnum,
      ...(below.map !== undefined ? { map: below.map } : {}),
      ...(below.file ? { file: below.file } : {}),
    };
  }
  async truncate(offset: number, exact: boolean, prealloc: PreallocMode, flags: ReqFlags): Promise<void> {
    if (this.size !== undefined) {
      throw new BlockError('ENOTSUP', 'Cannot resize a raw image with a fixed size window');
    }
    await this.file.truncate(this.offset + offset, exact, prealloc, flags);
  }
  async getAllocatedFileSize(): Promise<number> {
    return childAllocatedSize(this.file);
  }
  /** What the file says (as QEMU's raw_get_info): a file without such information makes raw have none. */
  getInfo(): ReturnType<NonNullable<DriverInstance['getInfo']>> {
    const below = this.file.node.instance.getInfo?.();
    return below && { ...(below.clusterSize !== undefined ? { clusterSize: below.clusterSize } : {}) };
  }
  hasZeroInit(): boolean {
    return this.offset === 0 && this.size === undefined && (this.file.node.instance.hasZeroInit?.() ?? false);
  }
}

export const rawDriver = {
  name: 'raw',
  kind: 'format',
  strongOptions: ['offset', 'size'],
  probe: () => 1,
  // Only the size is raw's own; preallocation and the rest belong to the protocol driver.
  createOptions: [{ name: 'size', type: 'size', help: 'Virtual disk size' }],
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const offset = options.size('offset', 0);
    const size = options.size('size');
    const file = (await node.openChild(options, 'file', ROLE_FILTERED_PRIMARY))!;
    const fileLen = file.length;
    if (offset > fileLen) {
      throw einval(`The sum of offset (${offset}) and size (0) has to be smaller or equal to the actual size of the containing file (${fileLen})`);
    }
    if (size !== undefined && offset + size > fileLen) {
      throw einval(
        `The sum of offset (${offset}) and size (${size}) has to be smaller or equal to the actual size of the containing file (${fileLen})`,
      );
    }
    return new RawInstance(file, offset, size);
  },
  /**
   * A raw image needs its virtual size: the source's length (a `size` option
   * is then ignored, as in QEMU), else the `size` option rounded up to whole
   * sectors in uint64 arithmetic (2^64 - 1 wraps to 0 there too).
   */
  async measure(options: OptionReader, source?: BlockNode): Promise<MeasureInfo> {
    const given = options.sizeExact('size') ?? 0n;
    const size = source ? BigInt(source.length) : BigInt.asUintN(64, ((given + 511n) / 512n) * 512n);
    return { required: size, fullyAllocated: size };
  },
  async create(ctx) {
    const proto = await ctx.graph.protocolForOpen(ctx.filename);
    if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
    await proto.create(ctx);
  },
} satisfies BlockDriver;
