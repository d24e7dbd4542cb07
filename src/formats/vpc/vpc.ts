/**
 * vpc: VHD images (Virtual PC, Hyper-V generation 1, Azure), as QEMU 7.2's
 * vpc driver reads and writes them.
 *
 * - fixed images: the guest data at the same offset in the file, the footer after it;
 * - dynamic (and differencing, read as dynamic: see open.ts) images: blocks
 *   (2 MiB when QEMU creates them) allocated at the end of the file on first
 *   write, each a sector bitmap followed by the data, found through the BAT.
 *
 * Files: footer.ts (on-disk structures, checksum), chs.ts (geometry and
 * size rules), open.ts (validation), create.ts.
 */
import type { BlockDriver, BlockStatusResult, DriverInstance, IoResult, ReqFlags } from '../../core/driver.js';
import { Status } from '../../core/driver.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader } from '../../core/options.js';
import { BlockError, einval } from '../../core/errors.js';
import { ROLE_IMAGE } from '../../core/permissions.js';
import { BAT_UNALLOCATED, hasFooterCookie } from './footer.js';
import type { SizeCalc } from './chs.js';
import { openLayout, type VpcLayout } from './open.js';
import { createVpc, vpcCreateOptions } from './create.js';

const SECTOR = 512;

/** A FIFO lock (QEMU's CoMutex around the BAT): taken without a microtask when free. */
class BatLock {
  private held = false;
  private readonly waiters: Array<() => void> = [];
  get locked(): boolean {
    return this.held;
  }
  async acquire(): Promise<void> {
    if (!this.held) {
      this.held = true;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.held = false;
  }
}

class VpcInstance implements DriverInstance {
  private readonly lock = new BatLock();
  /** The bitmap last made all-ones by a write (QEMU rewrites it when a write moves to another block). */
  private lastBitmapOffset = -1;

  constructor(
    private readonly file: BdrvChild,
    private readonly l: VpcLayout,
  ) {}

  getLength(): number {
    return this.l.length;
  }

  /** Host offset of guest `offset` in a dynamic image, or -1 when its block is not allocated. */
  private hostOffset(offset: number): number {
    const l = this.l;
    const index = Math.floor(offset / l.blockSize);
    const entry = index < l.bat.length ? l.bat[index]! : BAT_UNALLOCATED;
    if (entry === BAT_UNALLOCATED) return -1;
    return entry * SECTOR + l.bitmapSize + (offset % l.blockSize);
  }

  preadv(offset: number, bytes: number, buf: Uint8Array, _flags: ReqFlags): IoResult {
    if (this.l.fixed) return this.file.preadv(offset, bytes, buf, 0);
    // A lone read of one block needs neither the lock nor a promise chain here.
    if (!this.lock.locked && offset % this.l.blockSize + bytes <= this.l.blockSize) {
      const host = this.hostOffset(offset);
      if (host === -1) {
        buf.fill(0, 0, bytes);
        return;
      }
      return this.file.preadv(host, bytes, buf, 0);
    }
    return this.readDynamic(offset, bytes, buf);
  }

  private async readDynamic(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const bs = this.l.blockSize;
    let done = 0;
    while (done < bytes) {
      const at = offset + done;
      const n = Math.min(bytes - done, bs - (at % bs));
      // The lookup waits for an allocation in progress, as QEMU's reads wait for its lock.
      await this.lock.acquire();
      const host = this.hostOffset(at);
      this.lock.release();
      if (host === -1) buf.fill(0, done, done + n);
      else await this.file.preadv(host, n, buf.subarray(done, done + n), 0);
      done += n;
    }
  }

  async pwritev(offset: number, bytes: number, buf: Uint8Array, _flags: ReqFlags): Promise<void> {
    if (this.l.fixed) return this.file.pwritev(offset, bytes, buf, 0);
    const bs = this.l.blockSize;
    let done = 0;
    while (done < bytes) {
      const at = offset + done;
      const n = Math.min(bytes - done, bs - (at % bs));
      let host: number;
      await this.lock.acquire();
      try {
        host = this.hostOffset(at);
        if (host === -1) host = await this.allocBlock(at);
        else await this.markBitmap(host - (at % bs) - this.l.bitmapSize);
      } finally {
        this.lock.release();
      }
      await this.file.pwritev(host, n, buf.subarray(done, done + n), 0);
      done += n;
    }
  }

  /** Writes `bytes` at `offset` in the file and flushes it (QEMU's bdrv_pwrite_sync). */
  private async writeSync(offset: number, bytes: Uint8Array): Promise<void> {
    await this.file.pwritev(offset, bytes.length, bytes, 0);
    await this.file.flush();
  }

  /**
   * Marks every sector of the block whose bitmap is at `bitmapOffset` as
   * present before the first write to it (since the last write elsewhere):
   * data is never written behind a clear bit.
   */
  private async markBitmap(bitmapOffset: number): Promise<void> {
    if (this.lastBitmapOffset === bitmapOffset) return;
    this.lastBitmapOffset = bitmapOffset;
    await this.writeSync(bitmapOffset, new Uint8Array(this.l.bitmapSize).fill(0xff));
  }

  /**
   * Allocates the block of guest `offset` at the end of the file: its bitmap,
   * then the footer moved past it, then the BAT entry; returns the host offset.
   */
  private async allocBlock(offset: number): Promise<number> {
    const l = this.l;
    const index = Math.floor(offset / l.blockSize);
    const blockStart = l.freeDataBlockOffset;
    if (blockStart / SECTOR > 0xffffffff) {
      throw new BlockError('EFBIG', `Cannot allocate a block at file offset ${blockStart}: past what a BAT entry can address`);
    }
    // As QEMU: the in-memory entry is set first and stays set if a write below fails.
    l.bat[index] = blockStart / SECTOR;
    await this.writeSync(blockStart, new Uint8Array(l.bitmapSize).fill(0xff));
    l.freeDataBlockOffset += l.bitmapSize + l.blockSize;
    try {
      await this.writeSync(l.freeDataBlockOffset, l.footer.bytes);
      const entry = new Uint8Array(4);
      new DataView(entry.buffer).setUint32(0, l.bat[index]!);
      await this.writeSync(l.batOffset + 4 * index, entry);
    } catch (e) {
      l.freeDataBlockOffset -= l.bitmapSize + l.blockSize;
      throw e;
    }
    return this.hostOffset(offset);
  }

  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    if (this.l.fixed) {
      return { status: Status.DATA | Status.OFFSET_VALID | Status.RECURSE, pnum: bytes, map: offset, file: this.file.node };
    }
    const bs = this.l.blockSize;
    await this.lock.acquire();
    try {
      const host = this.hostOffset(offset);
      const first = Math.min(bytes, bs - (offset % bs));
      // An allocated block ends at its boundary: the next block's bitmap lies in between.
      if (host !== -1) return { status: Status.DATA | Status.OFFSET_VALID, pnum: first, map: host, file: this.file.node };
      let pnum = first;
      while (pnum < bytes && this.hostOffset(offset + pnum) === -1) pnum += Math.min(bytes - pnum, bs);
      return { status: Status.ZERO, pnum };
    } finally {
      this.lock.release();
    }
  }

  getInfo(): { clusterSize: number } {
    return { clusterSize: this.l.fixed ? 0 : this.l.blockSize };
  }

  hasZeroInit(): boolean {
    return this.l.fixed ? (this.file.node.instance.hasZeroInit?.() ?? false) : true;
  }
}

/** The `force_size_calc` open option: how the virtual size is taken from the footer. */
function sizeCalc(options: OptionReader): SizeCalc {
  const v = options.string('force_size_calc');
  if (v === undefined) return 'auto';
  if (v === 'chs' || v === 'current_size') return v;
  throw einval(`Invalid size calculation mode: '${v}'`);
}

export const vpcDriver = {
  name: 'vpc',
  kind: 'format',
  strongOptions: ['force_size_calc'],
  probe: (header: Uint8Array) => (hasFooterCookie(header) ? 100 : 0),
  createOptions: vpcCreateOptions,
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
    const calc = sizeCalc(options);
    return new VpcInstance(file, await openLayout(file, calc));
  },
  create: createVpc,
} satisfies BlockDriver;
