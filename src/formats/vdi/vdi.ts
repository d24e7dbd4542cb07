/**
 * vdi: VirtualBox disk images (VDI 1.1), with QEMU 7.2's semantics
 * (block/vdi.c). The guest disk is cut into 1 MiB blocks; the block map says
 * which slot of the data area holds each block, or that it has none (it
 * reads as zeros). A write to a block without a slot appends one: the whole
 * block is written (the guest data, zeros around it), then the header (its
 * blocks_allocated) and the map sectors that changed. Static images have
 * every block in a slot from the start.
 *
 * - header.ts: the header layout, QEMU's checks and messages, new headers
 * - block-map.ts: the map as held in memory and written back
 * - check.ts: qemu-img check
 * - create.ts: qemu-img create -f vdi
 */
import type { BlockDriver, BlockStatusResult, CheckFix, CheckResult, DriverInstance, IoResult } from '../../core/driver.js';
import { Status } from '../../core/driver.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader } from '../../core/options.js';
import { BlockError } from '../../core/errors.js';
import { ROLE_IMAGE } from '../../core/permissions.js';
import { BlockMap, isAllocated } from './block-map.js';
import { checkBlockMap, repairRefused } from './check.js';
import { createVdi, vdiCreateOptions } from './create.js';
import {
  VDI_DISCARDED,
  VDI_FIELD,
  VDI_HEADER_SIZE,
  VDI_SIGNATURE,
  VDI_TYPE_STATIC,
  decodeHeader,
  validateHeader,
  type VdiHeader,
} from './header.js';

/** One block's part of a write: in place (slot -1), or into the new slot reserved for it. */
interface WriteStep {
  block: number;
  inBlock: number;
  piece: Uint8Array;
  slot: number;
  /** Wakes the writes waiting for the new slot (once settled: undefined). */
  release?: (() => void) | undefined;
}

/** An open VDI node. */
export class VdiImage implements DriverInstance {
  /** Guest size: the header's, rounded up to whole sectors. */
  private readonly diskSize: number;
  private readonly blockSize: number;
  private readonly offsetData: number;
  private readonly isStatic: boolean;
  /** Next free slot (the header's blocks_allocated, counted up as QEMU does). */
  private blocksAllocated: number;
  /** Blocks whose new slot is being written: later writes to them wait (QEMU's bmap lock). */
  private readonly pending = new Map<number, Promise<void>>();
  /** Why writes would damage the image, once looked at (undefined: not yet; null: they would not). */
  private writeRefusal: string | null | undefined = undefined;

  constructor(
    private readonly file: BdrvChild,
    /** The header's bytes as read, written back with the counts updated. */
    private readonly headerBytes: Uint8Array,
    private readonly header: VdiHeader,
    diskSize: number,
    private readonly map: BlockMap,
  ) {
    this.diskSize = diskSize;
    this.blockSize = header.blockSize;
    this.offsetData = header.offsetData;
    this.isStatic = header.imageType === VDI_TYPE_STATIC;
    this.blocksAllocated = header.blocksAllocated;
  }

  getLength(): number {
    return this.diskSize;
  }

  /** Host offset of `inBlock` in slot `entry`. */
  private host(entry: number, inBlock: number): number {
    return this.offsetData + entry * this.blockSize + inBlock;
  }

  /**
   * The run from `offset` (at most `bytes`) of blocks that read alike: all
   * without a slot, or in consecutive slots. `entry` is the first block's.
   */
  private run(offset: number, bytes: number): { entry: number; n: number } {
    const bs = this.blockSize;
    let block = Math.floor(offset / bs);
    const entry = this.map.get(block);
    let n = Math.min(bytes, (block + 1) * bs - offset);
    const allocated = isAllocated(entry);
    let next = entry;
    while (n < bytes) {
      block++;
      const e = this.map.get(block);
      if (allocated ? e !== ++next || !isAllocated(e) : isAllocated(e)) break;
      n = Math.min(bytes, n + bs);
    }
    return { entry, n };
  }

  preadv(offset: number, bytes: number, buf: Uint8Array): IoResult {
    const first = this.run(offset, bytes);
    if (first.n === bytes) return this.readRun(offset, first.entry, bytes, buf);
    return this.readRuns(offset, bytes, buf);
  }

  private async readRuns(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes) {
      const r = this.run(offset + done, bytes - done);
      await this.readRun(offset + done, r.entry, r.n, buf.subarray(done, done + r.n));
      done += r.n;
    }
  }

  private readRun(offset: number, entry: number, n: number, buf: Uint8Array): IoResult {
    if (!isAllocated(entry)) {
      buf.fill(0, 0, n);
      return;
    }
    // Slots past the end of the file read as zeros (the file layer pads them), as in QEMU.
    return this.file.preadv(this.host(entry, offset % this.blockSize), n, buf.subarray(0, n));
  }

  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const r = this.run(offset, bytes);
    if (!isAllocated(r.entry)) return { status: Status.ZERO, pnum: r.n };
    // A static image's slots may be holes in the file: the generic layer asks the file.
    const recurse = this.isStatic ? Status.RECURSE : 0;
    return {
      status: Status.DATA | Status.OFFSET_VALID | recurse,
      pnum: r.n,
      map: this.host(r.entry, offset % this.blockSize),
      file: this.file.node,
    };
  }

  /**
   * Why a write could damage the image, or null: the block map overlaps the
   * header, the data area (which grows without end) does not start after the
   * map, or a block sits in a slot at or past blocks_allocated (where the
   * next new block would go). QEMU writes such images regardless; we refuse,
   * naming the values.
   */
  private refusal(): string | null {
    if (this.writeRefusal !== undefined) return this.writeRefusal;
    const h = this.header;
    const mapEnd = h.offsetBmap + this.map.bytes.length;
    let why: string | null = null;
    if (this.map.entries > 0 && h.offsetBmap < VDI_HEADER_SIZE) {
      why = `the block map at offset 0x${h.offsetBmap.toString(16)} overlaps the ${VDI_HEADER_SIZE}-byte header`;
    } else if (this.map.entries > 0 && h.offsetData < mapEnd) {
      why = `the data area at offset 0x${h.offsetData.toString(16)} does not start after the block map (0x${h.offsetBmap.toString(16)} to 0x${mapEnd.toString(16)})`;
    } else {
      for (let block = 0; block < this.map.entries; block++) {
        const e = this.map.get(block);
        if (isAllocated(e) && e >= this.blocksAllocated) {
          why = `block ${block} is in slot ${e}, not below blocks_allocated ${this.blocksAllocated}, where new blocks go`;
          break;
        }
      }
    }
    this.writeRefusal = why;
    return why;
  }

  /**
   * Writes as QEMU's vdi_co_pwritev: blocks with a slot are written in place;
   * each block without one gets the next slot and is written whole (the
   * data, zeros around it); then the header and the map sectors that changed.
   *
   * The slots of a request are taken when it arrives, in block order, before
   * anything is written: a request's new blocks get consecutive slots and
   * requests get them in the order they were made, as when QEMU runs them
   * one after the other (qemu-img convert's in-order writes), whatever the
   * number of requests in flight.
   */
  pwritev(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const why = this.refusal();
    if (why !== null) return Promise.reject(new BlockError('EIO', `vdi: writes to this image are refused: ${why}`, { offset }));
    const bs = this.blockSize;
    const steps: WriteStep[] = [];
    let first = -1;
    let last = -1;
    let reserved: Error | undefined;
    for (let done = 0; done < bytes; ) {
      const pos = offset + done;
      const block = Math.floor(pos / bs);
      const inBlock = pos - block * bs;
      const n = Math.min(bytes - done, bs - inBlock);
      const piece = buf.subarray(done, done + n);
      done += n;
      if (isAllocated(this.map.get(block)) || this.pending.has(block)) {
        steps.push({ block, inBlock, piece, slot: -1 });
        continue;
      }
      const slot = this.blocksAllocated;
      if (slot >= VDI_DISCARDED) {
        reserved = new BlockError('ENOSPC', `vdi: no slot left for block ${block} (blocks_allocated is ${slot})`, { offset: pos });
        break;
      }
      this.blocksAllocated = slot + 1;
      let release!: () => void;
      this.pending.set(block, new Promise<void>((r) => (release = r)));
      steps.push({ block, inBlock, piece, slot, release });
      if (first < 0) first = block;
      last = block;
    }
    return this.runSteps(steps, first, last, reserved);
  }

  private async runSteps(steps: WriteStep[], first: number, last: number, reserved: Error | undefined): Promise<void> {
    let i = 0;
    try {
      for (; i < steps.length; i++) {
        const st = steps[i]!;
        if (st.slot >= 0) {
          await this.writeNewBlock(st);
          continue;
        }
        // A block another request is giving a slot: its whole-block write goes first.
        const wait = this.pending.get(st.block);
        if (wait) await wait;
        await this.file.pwritev(this.host(this.map.get(st.block), st.inBlock), st.piece.length, st.piece);
      }
    } catch (e) {
      // The slots taken stay the blocks' (as QEMU's, set before its write); nobody waits on them.
      for (; i < steps.length; i++) this.settle(steps[i]!);
      throw e;
    }
    if (first >= 0) await this.writeMetadata(first, last);
    if (reserved) throw reserved;
  }

  /** Writes a block whole into its new slot: `piece` at `inBlock`, zeros around it. */
  private async writeNewBlock(st: WriteStep): Promise<void> {
    // A piece that covers the block is written as it is (no 1 MiB copy per block).
    let whole = st.piece;
    if (whole.length !== this.blockSize) {
      whole = new Uint8Array(this.blockSize);
      whole.set(st.piece, st.inBlock);
    }
    try {
      await this.file.pwritev(this.host(st.slot, 0), this.blockSize, whole);
    } finally {
      // Readers see the slot only now, once the data is there.
      this.settle(st);
    }
  }

  /** Gives a reserved block its slot in the map and lets waiting writes go on. */
  private settle(st: WriteStep): void {
    if (st.slot < 0 || !st.release) return;
    this.map.set(st.block, st.slot);
    this.pending.delete(st.block);
    st.release();
    st.release = undefined;
  }

  /** The header (blocks_allocated, the rounded disk size), then the map sectors of blocks first..last. */
  private async writeMetadata(first: number, last: number): Promise<void> {
    const h = this.headerBytes.slice();
    const dv = new DataView(h.buffer);
    dv.setBigUint64(VDI_FIELD.DISK_SIZE, BigInt(this.diskSize), true);
    dv.setUint32(VDI_FIELD.BLOCKS_ALLOCATED, this.blocksAllocated, true);
    await this.file.pwritev(0, h.length, h);
    const s = this.map.sectors(first, last);
    await this.file.pwritev(this.header.offsetBmap + s.offset, s.bytes.length, s.bytes);
  }

  async check(fix: CheckFix): Promise<CheckResult> {
    if (fix.errors || fix.leaks) throw repairRefused();
    return checkBlockMap(this.map, this.blocksAllocated);
  }

  getInfo(): { clusterSize: number; vmStateOffset: number } {
    return { clusterSize: this.blockSize, vmStateOffset: 0 };
  }

  hasZeroInit(): boolean {
    if (!this.isStatic) return true;
    return this.file.node.instance.hasZeroInit?.() ?? false;
  }
}

/** Reads the header from `file`: its first 512 bytes, zeros past a short file's end (as QEMU reads it). */
async function readHeader(file: BdrvChild): Promise<Uint8Array> {
  const b = new Uint8Array(VDI_HEADER_SIZE);
  await file.preadv(0, VDI_HEADER_SIZE, b);
  return b;
}

export const vdiDriver = {
  name: 'vdi',
  kind: 'format',
  placesInWriteOrder: true,
  createOptions: vdiCreateOptions,
  /** QEMU's vdi_probe: a whole header with the signature. */
  probe(header: Uint8Array): number {
    if (header.length < VDI_HEADER_SIZE) return 0;
    const at = VDI_FIELD.SIGNATURE;
    const sig = (header[at]! | (header[at + 1]! << 8) | (header[at + 2]! << 16) | (header[at + 3]! << 24)) >>> 0;
    return sig === VDI_SIGNATURE ? 100 : 0;
  },
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
    const bytes = await readHeader(file);
    const header = decodeHeader(bytes);
    const diskSize = validateHeader(header);
    const map = await BlockMap.read(file, header.offsetBmap, header.blocksInImage);
    return new VdiImage(file, bytes, header, diskSize, map);
  },
  create: createVdi,
} satisfies BlockDriver;
