/**
 * vhdx: Hyper-V VHDX images, as QEMU 7.2's vhdx driver reads and writes them.
 *
 * The guest disk is cut into payload blocks (1 to 256 MiB) found through the
 * BAT; a block that is not present (or in the ZERO state, which QEMU's new
 * images use) reads as zeros. A write to such a block appends it at the next
 * MiB of the file, writes the data, then journals the BAT entry through the
 * log. Fixed images have every block present from the start (unless created
 * with ZERO blocks, QEMU's default). Differencing images are refused, as
 * QEMU 7.2 refuses them.
 *
 * Files: header.ts (header section), metadata.ts, bat.ts, log.ts (journal
 * and replay), open.ts, check.ts, create.ts, crc32c.ts, io.ts.
 */
import type { BlockDriver, CheckFix, CheckResult, DriverInstance, IoResult, ReqFlags } from '../../core/driver.js';
import { ReqFlag } from '../../core/driver.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockNode } from '../../core/node.js';
import type { BlockLimits } from '../../core/limits.js';
import type { OptionReader } from '../../core/options.js';
import { BlockError, toBlockError } from '../../core/errors.js';
import { ROLE_IMAGE } from '../../core/permissions.js';
import { PayloadState, batIndex } from './bat.js';
import { checkImage } from './check.js';
import { createVhdx, vhdxCreateOptions } from './create.js';
import { HEADER1_OFFSET, HEADER2_OFFSET, HEADER_CRC_SIZE, MiB, encodeHeaderInto, randomGuid, type VhdxHeader } from './header.js';
import { readAt } from './io.js';
import { loggedWrite } from './log.js';
import { openLayout, type Headers, type OpenHost, type VhdxLayout } from './open.js';

const SECTOR = 512;

/** The file offset of `inBlock` in a block at `base`; QEMU adds nothing to a base of 0 (and reads the header there). */
const hostOffset = (base: number, inBlock: number): number => (base === 0 ? 0 : base + inBlock);

/** A FIFO lock (QEMU's CoMutex over the BAT), taken without a microtask when free. */
class Lock {
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

/** The header updates every change needs; shared by open (log replay) and the instance. */
class HeaderKeeper implements OpenHost {
  headers!: Headers;
  /** The file write GUID of this session (set in every header written). */
  private readonly sessionGuid = randomGuid();
  private firstVisibleWrite = true;

  constructor(readonly file: BdrvChild) {}

  setHeaders(h: Headers): void {
    this.headers = h;
  }

  header(): VhdxHeader {
    return this.headers.h[this.headers.current];
  }

  /**
   * Writes the other header with the next sequence number and makes it
   * current; the other fields stay as that header had them. Its 4 KiB are
   * read first (bytes past the structure are kept, and count in the checksum).
   */
  private async updateOne(newDataGuid: boolean, logGuid: Uint8Array | undefined): Promise<void> {
    const idx = this.headers.current === 0 ? 1 : 0;
    const active = this.headers.h[this.headers.current];
    const inactive = this.headers.h[idx];
    inactive.sequenceNumber = BigInt.asUintN(64, active.sequenceNumber + 1n);
    inactive.fileWriteGuid = this.sessionGuid.slice();
    if (newDataGuid) inactive.dataWriteGuid = randomGuid();
    if (logGuid) inactive.logGuid = logGuid.slice();
    const at = idx === 0 ? HEADER1_OFFSET : HEADER2_OFFSET;
    const block = await readAt(this.file, at, HEADER_CRC_SIZE, 'header');
    encodeHeaderInto(inactive, block);
    await this.file.pwritev(at, 80, block.subarray(0, 80));
    await this.file.flush();
    this.headers.current = idx;
  }

  async updateHeaders(newDataGuid: boolean, logGuid?: Uint8Array): Promise<void> {
    await this.updateOne(newDataGuid, logGuid);
    await this.updateOne(newDataGuid, logGuid);
  }

  async userVisibleWrite(): Promise<void> {
    if (!this.firstVisibleWrite) return;
    this.firstVisibleWrite = false;
    await this.updateHeaders(true);
  }
}

/** An open VHDX node. */
export class VhdxImage implements DriverInstance {
  private readonly lock = new Lock();

  constructor(
    private readonly file: BdrvChild,
    private readonly keeper: HeaderKeeper,
    private readonly l: VhdxLayout,
  ) {}

  getLength(): number {
    return this.l.size;
  }

  refreshLimits(limits: BlockLimits): void {
    // QEMU's driver works in 512-byte sectors.
    limits.requestAlignment = Math.max(limits.requestAlignment, SECTOR);
  }

  /** Where a block's entry sends reads: a file offset, -1 for zeros; EIO for states QEMU does not read. */
  private blockHost(idx: number, offset: number): number {
    const bat = this.l.bat;
    const state = bat.state(idx);
    switch (state) {
      case PayloadState.FULLY_PRESENT:
        return bat.offset(idx);
      case PayloadState.NOT_PRESENT:
      case PayloadState.UNDEFINED:
      case PayloadState.ZERO:
      case PayloadState.UNMAPPED:
      case PayloadState.UNMAPPED_V095:
        return -1;
      default:
        throw new BlockError('EIO', 'Input/output error', { offset }, { detail: `BAT entry ${idx} has state ${state}` });
    }
  }

  preadv(offset: number, bytes: number, buf: Uint8Array, _flags: ReqFlags): IoResult {
    const bs = this.l.blockSize;
    const inBlock = offset % bs;
    // One block: no promise chain of our own.
    if (inBlock + bytes <= bs && !this.lock.locked) {
      const base = this.blockHost(batIndex(this.l.geometry, offset), offset);
      if (base < 0) {
        buf.fill(0, 0, bytes);
        return;
      }
      return this.file.preadv(hostOffset(base, inBlock), bytes, buf, 0);
    }
    return this.readBlocks(offset, bytes, buf);
  }

  private async readBlocks(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const bs = this.l.blockSize;
    for (let done = 0; done < bytes; ) {
      const at = offset + done;
      const n = Math.min(bytes - done, bs - (at % bs));
      // An allocation in progress holds the lock; its entry is final afterwards.
      if (this.lock.locked) {
        await this.lock.acquire();
        this.lock.release();
      }
      const base = this.blockHost(batIndex(this.l.geometry, at), at);
      if (base < 0) buf.fill(0, done, done + n);
      else await this.file.preadv(hostOffset(base, at % bs), n, buf.subarray(done, done + n), 0);
      done += n;
    }
  }

  async pwritev(offset: number, bytes: number, buf: Uint8Array, _flags: ReqFlags): Promise<void> {
    await this.lock.acquire();
    try {
      await this.keeper.userVisibleWrite();
      const bs = this.l.blockSize;
      for (let done = 0; done < bytes; ) {
        const at = offset + done;
        const n = Math.min(bytes - done, bs - (at % bs));
        await this.writeInBlock(at, buf.subarray(done, done + n));
        done += n;
      }
    } finally {
      this.lock.release();
    }
  }

  /** QEMU's vhdx_co_writev for one block's part of a write. */
  private async writeInBlock(offset: number, data: Uint8Array): Promise<void> {
    const l = this.l;
    const bs = l.blockSize;
    const idx = batIndex(l.geometry, offset);
    const inBlock = offset % bs;
    const state = l.bat.state(idx);
    if (state === PayloadState.FULLY_PRESENT) {
      const base = l.bat.offset(idx);
      // An offset of 0 (or any in the header section) cannot hold data: QEMU's EFAULT.
      const host = hostOffset(base, inBlock);
      if (host < MiB) throw new BlockError('EIO', 'Bad address', { offset }, { detail: `BAT entry ${idx} points to file offset ${host}, inside the header section` });
      await this.file.pwritev(host, data.length, data, 0);
      return;
    }
    // EIO for the states QEMU does not write to (partially present, reserved); the rest read as zeros.
    this.blockHost(idx, offset);
    // A ZERO block must keep reading zeros around the data: the file's new end must read so.
    let zeroAround = state === PayloadState.ZERO;
    const priorOffset = l.bat.offset(idx);
    const start = Math.ceil(this.file.length / MiB) * MiB;
    if (zeroAround) {
      try {
        await this.file.truncate(start + bs, false, 'off', ReqFlag.ZERO_WRITE);
        zeroAround = false;
      } catch (e) {
        if (toBlockError(e).code !== 'ENOTSUP') throw e;
      }
    }
    if (zeroAround || state !== PayloadState.ZERO) await this.file.truncate(start + bs, false, 'off', 0);
    l.bat.set(idx, start, PayloadState.FULLY_PRESENT);
    try {
      if (zeroAround) {
        const whole = new Uint8Array(bs);
        whole.set(data, inBlock);
        await this.file.pwritev(start, bs, whole, 0);
      } else {
        await this.file.pwritev(start + inBlock, data.length, data, 0);
      }
    } catch (e) {
      l.bat.set(idx, priorOffset, state);
      throw e;
    }
    await loggedWrite(this.keeper, l.log, l.bat.raw(idx), l.batOffset + idx * 8);
  }

  async check(_fix: CheckFix): Promise<CheckResult> {
    return checkImage(this.l, this.file.length);
  }

  getInfo(): { clusterSize: number } {
    return { clusterSize: this.l.blockSize };
  }

  /** QEMU's: a fixed image (first block present) reads as its file does; others as zeros. */
  hasZeroInit(): boolean {
    if (this.l.bat.entries === 0) return true;
    if (this.l.bat.state(0) === PayloadState.FULLY_PRESENT) return this.file.node.instance.hasZeroInit?.() ?? false;
    return true;
  }
}

export const vhdxDriver = {
  name: 'vhdx',
  kind: 'format',
  placesInWriteOrder: true,
  createOptions: vhdxCreateOptions,
  /** QEMU's vhdx_probe: the "vhdxfile" signature. */
  probe(header: Uint8Array): number {
    if (header.length < 8) return 0;
    return String.fromCharCode(...header.subarray(0, 8)) === 'vhdxfile' ? 100 : 0;
  },
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const forCheck = options.bool('x-check', false);
    const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
    const keeper = new HeaderKeeper(file);
    const layout = await openLayout(file, keeper, { readOnly: node.readOnly, forCheck });
    return new VhdxImage(file, keeper, layout);
  },
  create: createVhdx,
} satisfies BlockDriver;
