/**
 * vmdk: VMware disk images with QEMU 7.2's semantics (block/vmdk.c).
 *
 * An image is a list of extents laid end to end: flat files (the guest bytes
 * at an offset) and sparse files (grain directory, grain tables, grains,
 * optionally compressed with markers: streamOptimized). A monolithic sparse
 * file holds its own descriptor; otherwise a descriptor file names the
 * extent files. A write to a missing grain appends one to its extent (the
 * rest of the grain from the backing file or zeros), then sets the grain
 * table entry in both tables; the descriptor's CID changes on the first
 * write after open. A parent named by parentFileNameHint is read where a
 * grain is missing, as long as its CID is the one this image recorded.
 *
 * - header.ts: sparse headers, footer, new-extent layout
 * - descriptor.ts: descriptor text (values, extent lines, CID, new text, probe)
 * - extent.ts: one extent's tables, lookup and grain allocation
 * - io.ts: grain reads and writes (compressed too), COW fill
 * - open.ts: open; create.ts: qemu-img create -f vmdk; grain-codec.ts: zlib
 */
import type { BlockDriver, BlockStatusResult, CheckFix, CheckResult, DriverInstance, ReqFlags, SpecificInfo } from '../../core/driver.js';
import { ReqFlag, Status } from '../../core/driver.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockLimits } from '../../core/limits.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader } from '../../core/options.js';
import { BlockError } from '../../core/errors.js';
import { ROLE_IMAGE } from '../../core/permissions.js';
import { createVmdk, vmdkCreateOptions } from './create.js';
import { DESC_SIZE, probeDescriptor, readCid, withNewCid } from './descriptor.js';
import { Found, readPadded, type Extent, type Lookup } from './extent.js';
import { SECTOR, VMDK3_MAGIC, VMDK4_MAGIC } from './header.js';
import { fillGrain, readGrain, writeGrain, type GrainBuffers } from './io.js';
import { openLayout, type VmdkLayout } from './open.js';
import { childOptions } from '../../core/filename.js';

/** A FIFO lock (QEMU's s->lock, held across every request). */
class Lock {
  private held = false;
  private readonly waiters: Array<() => void> = [];
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.held) await new Promise<void>((r) => this.waiters.push(r));
    else this.held = true;
    try {
      return await f();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.held = false;
    }
  }
}

const einvalLookup = (at: Lookup, offset: number): BlockError => new BlockError('EINVAL', 'Invalid argument', { offset }, { detail: at.why });

/** An open VMDK node. */
export class VmdkImage implements DriverInstance {
  private readonly lock = new Lock();
  private readonly extents: Extent[];
  private readonly length: number;
  private cidUpdated = false;
  private cidChecked = false;
  private readonly grainCache: GrainBuffers = {};
  readonly supportedWriteFlags = ReqFlag.COMPRESSED;

  constructor(
    private readonly node: BlockNode,
    /** The image file: the sparse file, or the descriptor file. */
    private readonly file: BdrvChild,
    private readonly layout: VmdkLayout,
  ) {
    this.extents = layout.extents;
    const last = this.extents[this.extents.length - 1];
    this.length = last ? last.endSector * SECTOR : 0;
  }

  getLength(): number {
    return this.length;
  }

  /** The CID the descriptor holds now (read from the file each time, as QEMU). */
  async currentCid(): Promise<number> {
    return readCid(await readPadded(this.file, this.layout.descOffset, DESC_SIZE), false);
  }

  private findExtent(offset: number): Extent | undefined {
    const sector = Math.floor(offset / SECTOR);
    return this.extents.find((e) => sector < e.endSector);
  }

  private extentAt(offset: number): Extent {
    const e = this.findExtent(offset);
    if (!e) throw new BlockError('EIO', 'Input/output error', { offset }, { detail: `no extent holds offset ${offset}` });
    return e;
  }

  /**
   * Whether the parent is the image this one was made over (QEMU's
   * vmdk_is_cid_valid): a vmdk whose CID is our parentCID. Remembered once true.
   */
  private async parentValid(): Promise<boolean> {
    const b = this.node.backing;
    if (this.cidChecked || !b) return true;
    const inst = b.node.instance;
    if (b.node.driver.name !== 'vmdk' || !(inst instanceof VmdkImage)) return false;
    let cid: number;
    try {
      cid = await inst.currentCid();
    } catch {
      return false;
    }
    if (cid !== this.layout.parentCid) return false;
    this.cidChecked = true;
    return true;
  }

  private readonly readBacking = async (offset: number, n: number, out: Uint8Array): Promise<void> => {
    const b = this.node.backing;
    if (!b) return void out.fill(0, 0, n);
    const len = b.node.length;
    const k = offset >= len ? 0 : Math.min(n, len - offset);
    if (k > 0) await b.preadv(offset, k, out.subarray(0, k));
    if (k < n) out.fill(0, k, n);
  };

  async preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    await this.lock.run(async () => {
      let done = 0;
      while (done < bytes) {
        const pos = offset + done;
        const ext = this.extentAt(pos);
        const at = await ext.lookup(pos);
        const inCluster = ext.offsetInCluster(pos);
        const n = Math.min(bytes - done, ext.clusterBytes - inCluster);
        const out = buf.subarray(done, done + n);
        if (at.found === Found.DATA) {
          await readGrain(ext, at.hostOffset, inCluster, n, out, this.grainCache);
        } else if (this.node.backing && at.found !== Found.ZEROED) {
          if (!(await this.parentValid())) {
            throw new BlockError('EINVAL', 'Invalid argument', { offset: pos }, { detail: `the parent's CID is not parentCID ${this.layout.parentCid.toString(16)}` });
          }
          await this.readBacking(pos, n, out);
        } else {
          out.fill(0);
        }
        done += n;
      }
    });
  }

  pwritev(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    if (bytes === 0 && flags & ReqFlag.COMPRESSED) return this.endCompressed();
    return this.lock.run(() => this.write(offset, bytes, buf, false, false));
  }

  /** The end of compressed writing: every extent file's length rounded up to a sector. */
  private async endCompressed(): Promise<void> {
    for (const e of this.extents) {
      const len = Math.ceil(e.file.length / SECTOR) * SECTOR;
      await e.file.truncate(len, false);
    }
  }

  async pwriteZeroes(offset: number, bytes: number): Promise<void> {
    await this.lock.run(async () => {
      // A dry run first: a zero write that cannot be done whole changes nothing.
      await this.write(offset, bytes, undefined, true, true);
      await this.write(offset, bytes, undefined, true, false);
    });
  }

  /** QEMU's vmdk_pwritev: `buf` undefined with `zeroed` for zero writes. */
  private async write(offset: number, bytes: number, buf: Uint8Array | undefined, zeroed: boolean, dryRun: boolean): Promise<void> {
    this.grainCache.last = undefined;
    let done = 0;
    while (done < bytes) {
      const pos = offset + done;
      const ext = this.extentAt(pos);
      if (ext.seSparse) throw new BlockError('ENOTSUP', 'Operation not supported', { offset: pos }, { detail: 'seSparse extents are read only' });
      const inCluster = ext.offsetInCluster(pos);
      let n = Math.min(bytes - done, ext.clusterBytes - inCluster);
      const at = await ext.lookup(pos);
      if (at.found === Found.ERROR) throw einvalLookup(at, pos);
      if (ext.compressed && at.found === Found.DATA) {
        this.node.graph.report('Could not write to allocated cluster for streamOptimized');
        throw new BlockError('EIO', 'Input/output error', { offset: pos }, { detail: 'grain already written in a streamOptimized image' });
      }
      if (zeroed) {
        if (!(ext.hasZeroGrain && inCluster === 0 && n >= ext.clusterBytes)) {
          throw new BlockError('ENOTSUP', 'Operation not supported', { offset: pos }, { detail: 'zeroed grains need whole grains and the zeroed-grain flag' });
        }
        n = ext.clusterBytes;
        if (!dryRun && at.found !== Found.ZEROED) await ext.updateL2(at, 1);
      } else {
        let host = at.hostOffset;
        let fresh = false;
        if (at.found !== Found.DATA) {
          // A compressed grain is filled whole first, then overwritten by its stream (as QEMU).
          const skipFrom = ext.compressed ? 0 : inCluster;
          const skipTo = ext.compressed ? 0 : inCluster + n;
          const sector = ext.takeGrain(at, pos);
          host = sector * SECTOR;
          if (this.node.backing && !(await this.parentValid())) {
            throw new BlockError('EINVAL', 'Invalid argument', { offset: pos }, { detail: `the parent's CID is not parentCID ${this.layout.parentCid.toString(16)}` });
          }
          const fromBacking = this.node.backing && at.found !== Found.ZEROED ? this.readBacking : undefined;
          const grainStart = pos - inCluster;
          await fillGrain(ext, host, grainStart, 0, skipFrom, fromBacking);
          await fillGrain(ext, host, grainStart, skipTo, ext.clusterBytes, fromBacking);
          fresh = true;
        }
        await writeGrain(ext, host, inCluster, buf!.subarray(done, done + n), pos);
        if (fresh) await ext.updateL2(at, host / SECTOR);
      }
      done += n;
      if (!this.cidUpdated) {
        await this.writeCid((globalThis.crypto.getRandomValues(new Uint32Array(1))[0]! >>> 0));
        this.cidUpdated = true;
      }
    }
  }

  /**
   * Rewrites the descriptor area with a new CID and flushes (QEMU's
   * vmdk_write_cid). QEMU's write stops at the file's end rounded up to a
   * sector (it may not grow the file): a short descriptor file ends up one
   * sector long, not 20.
   */
  private async writeCid(cid: number): Promise<void> {
    const at = this.layout.descOffset;
    const area = await readPadded(this.file, at, DESC_SIZE);
    const next = withNewCid(area, cid);
    const n = Math.max(0, Math.min(DESC_SIZE, Math.ceil(this.file.length / SECTOR) * SECTOR - at));
    if (n > 0) await this.file.pwritev(at, n, next.subarray(0, n));
    await this.file.flush();
  }

  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const ext = this.extentAt(offset);
    const at = await this.lock.run(() => ext.lookup(offset));
    const inCluster = ext.offsetInCluster(offset);
    const pnum = Math.min(ext.clusterBytes - inCluster, bytes);
    switch (at.found) {
      case Found.ERROR:
        throw new BlockError('EIO', 'Input/output error', { offset }, { detail: at.why });
      case Found.UNALLOCATED:
        return { status: 0, pnum };
      case Found.ZEROED:
        return { status: Status.ZERO, pnum };
      default:
        if (ext.compressed) return { status: Status.DATA, pnum, file: ext.file.node };
        return {
          status: Status.DATA | Status.OFFSET_VALID | (ext.flat ? Status.RECURSE : 0),
          pnum,
          map: at.hostOffset + inCluster,
          file: ext.file.node,
        };
    }
  }

  refreshLimits(limits: BlockLimits): void {
    for (const e of this.extents) {
      if (!e.flat) limits.pwriteZeroesAlignment = Math.max(limits.pwriteZeroesAlignment, e.clusterBytes);
    }
  }

  /**
   * qemu-img check as QEMU's vmdk_co_check: every grain's lookup must work
   * and point inside its file; the first failure ends the check (printed as
   * QEMU prints it, and the check fails). No repair.
   */
  async check(fix: CheckFix): Promise<CheckResult> {
    if (fix.errors || fix.leaks) throw new BlockError('ENOTSUP', 'This image format does not support checks');
    const total = this.length / SECTOR;
    let ext: Extent | undefined;
    const fail = (code: 'EINVAL' | 'EPERM', line: string, detail: string): never => {
      const e = new BlockError(code, code === 'EPERM' ? 'Operation not permitted' : 'Invalid argument', {}, { detail });
      (e as BlockError & { messages: string[] }).messages = [line];
      throw e;
    };
    await this.lock.run(async () => {
      for (let sector = 0; sector < total; sector += ext!.clusterSectors) {
        ext = this.findExtent(sector * SECTOR);
        if (!ext) return fail('EINVAL', `ERROR: could not find extent for sector ${sector}`, `sector ${sector}`);
        const at = await ext.lookup(sector * SECTOR);
        if (at.found === Found.ERROR) fail('EPERM', `ERROR: could not get cluster_offset for sector ${sector}`, at.why ?? '');
        if (at.found === Found.DATA && at.hostOffset >= ext.file.length) {
          fail('EINVAL', `ERROR: cluster offset for sector ${sector} points after EOF`, `grain at ${at.hostOffset}, file of ${ext.file.length} bytes`);
        }
        if (ext.flat) continue;
        // The rest of this directory entry's grains, visited as QEMU's walk visits them
        // (the same sectors), from the table just read instead of a lookup each.
        const c = ext.clusterSectors;
        const boundary = Math.min(ext.endSector, ext.startSector + (at.l1Index + 1) * ext.l1EntrySectors);
        const table = at.l2Sector > 0 ? ext.cachedTable(at.l2Sector) : undefined;
        if (at.l2Sector === 0) {
          // No grain table: all unallocated.
          const steps = Math.ceil((boundary - sector) / c) - 1;
          if (steps > 0) sector += steps * c;
        } else if (table) {
          const len = ext.file.length;
          let next = sector + c;
          for (; next < boundary; next += c) {
            const entry = table[Math.floor((next - ext.startSector) / c) % ext.l2Size]!;
            const found = ext.classify(entry);
            if (found === Found.ERROR) fail('EPERM', `ERROR: could not get cluster_offset for sector ${next}`, `bad grain table entry for sector ${next}`);
            if (found === Found.DATA && entry * SECTOR >= len) {
              fail('EINVAL', `ERROR: cluster offset for sector ${next} points after EOF`, `grain at ${entry * SECTOR}, file of ${len} bytes`);
            }
          }
          sector = next - c;
        }
      }
    });
    return { corruptions: 0, leaks: 0, checkErrors: 0, corruptionsFixed: 0, leaksFixed: 0, imageEndOffset: 0, messages: [] };
  }

  /** QEMU's vmdk_co_get_info: ENOTSUP when the extents are not alike. */
  getInfo(): { clusterSize?: number; needsCompressedWrites: boolean } {
    const [first, ...rest] = this.extents;
    if (!first) return { needsCompressedWrites: false };
    for (const e of rest) {
      if (e.flat !== first.flat || e.compressed !== first.compressed || (!e.flat && e.clusterSectors !== first.clusterSectors)) {
        throw new BlockError('ENOTSUP', 'Operation not supported', {}, { detail: 'the extents differ in kind' });
      }
    }
    return { ...(first.flat ? {} : { clusterSize: first.clusterBytes }), needsCompressedWrites: first.compressed };
  }

  getSpecificInfo(): SpecificInfo {
    const extents = this.extents.map((e) => ({
      ...(e.compressed ? { compressed: true } : {}),
      'virtual-size': e.sectors * SECTOR,
      filename: e.file.node.filename,
      ...(e.flat ? {} : { 'cluster-size': e.clusterBytes }),
      format: e.type ?? '',
    }));
    return {
      type: 'vmdk',
      data: { cid: this.layout.cid, 'parent-cid': this.layout.parentCid, 'create-type': this.layout.createType, extents },
    };
  }

  backingFile(): { filename: string; format: string } | undefined {
    const hint = this.layout.parentHint;
    return hint === undefined ? undefined : { filename: hint, format: 'vmdk' };
  }

  hasZeroInit(): boolean {
    return this.extents.every((e) => !e.flat || (e.file.node.instance.hasZeroInit?.() ?? false));
  }
}

export const vmdkDriver = {
  name: 'vmdk',
  kind: 'format',
  // The extents are not options a user can give: the file and an overridden backing file only (QEMU's vmdk).
  gatherChildOptions(node, target, backingOverridden) {
    if (node.file) target.push(['file', childOptions(node.file.node)]);
    if (backingOverridden) target.push(['backing', node.backing ? childOptions(node.backing.node) : null]);
  },
  supportsBacking: true,
  // New grains are appended as writes come: copies write in order, as qemu-img does.
  placesInWriteOrder: true,
  createOptions: vmdkCreateOptions,
  /** QEMU's vmdk_probe: a sparse magic, or descriptor text. */
  probe(header: Uint8Array): number {
    if (header.length < 4) return 0;
    const magic = ((header[0]! << 24) | (header[1]! << 16) | (header[2]! << 8) | header[3]!) >>> 0;
    if (magic === VMDK3_MAGIC || magic === VMDK4_MAGIC) return 100;
    return probeDescriptor(header) ? 100 : 0;
  },
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
    return new VmdkImage(node, file, await openLayout(node, file));
  },
  create: createVmdk,
} satisfies BlockDriver;
