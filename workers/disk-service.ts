/**
 * One open disk as the page sees it through Comlink: a BlockBackend behind
 * the {@link DiskApi} contract, with the channels (sync, bulk ring, read
 * port) it serves.
 */
import type { BlockNode } from '../src/core/node.js';
import { checkOp } from '../src/core/op-blockers.js';
import { transfer } from 'comlink';
import type { BlockBackend } from '../src/core/backend.js';
import { BlockError } from '../src/core/errors.js';
import { Perm } from '../src/core/permissions.js';
import { Status, type BlockStatusResult } from '../src/core/driver.js';
import { SyncServer } from '../src/channels/sync-server.js';
import { RingServer } from '../src/channels/ring-server.js';
import { serveReadPort } from '../src/channels/read-port-server.js';
import type { DiskApi, StopEvent } from '../src/client/api.js';
import type { AddBitmapOptions, BitmapExtentsPage, BitmapInfo, DiskStats, MapExtent, SnapshotEntry } from '../src/client/protocol.js';
import * as bitmaps from './disk-bitmaps.js';
import * as snapshots from './disk-snapshots.js';
import { imageNodeOf } from './paths.js';

/** One open disk, as the page sees it through Comlink. */
export class DiskService implements DiskApi {
  private closed = false;
  private readonly syncServers: SyncServer[] = [];
  constructor(
    readonly backend: BlockBackend,
    readonly path: string,
    private readonly onClose: () => void,
    /** Runs before the close: the jobs on this disk are cancelled first. */
    private readonly beforeClose: () => Promise<void> = async () => undefined,
  ) {}

  /** Virtual size in bytes. */
  length(): number {
    return this.backend.length;
  }

  readOnly(): boolean {
    return this.backend.readOnly;
  }

  format(): string {
    return imageNodeOf(this.backend.node).driver.name;
  }

  /** The filename of the image the disk runs on now (a mirror or active commit moves it). */
  image(): string {
    return imageNodeOf(this.backend.node).filename;
  }

  /** Reads into a new buffer, transferred to the caller. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    await this.backend.pread(offset, buf);
    return transfer(buf, [buf.buffer]);
  }

  /** Reads into the caller's (transferred) buffer and transfers it back. */
  async readInto(offset: number, buf: Uint8Array): Promise<Uint8Array> {
    await this.backend.pread(offset, buf);
    return transfer(buf, [buf.buffer]);
  }

  /** The page's end of a read port (src/channels/read-port-server.ts). */
  readPort(): MessagePort {
    const served = serveReadPort(this.backend);
    this.readPorts.push(served);
    return transfer(served.port, [served.port]);
  }
  private readonly readPorts: Array<{ close(): void }> = [];

  /** Reads into a view of a SharedArrayBuffer the caller shares (nothing moves). */
  async readShared(offset: number, buf: Uint8Array): Promise<void> {
    await this.backend.pread(offset, buf);
  }

  /** Writes `data` (transferred by the caller). */
  async write(offset: number, data: Uint8Array, flags = 0): Promise<void> {
    await this.backend.write(offset, data, flags);
  }

  async writeZeroes(offset: number, bytes: number, unmap = false): Promise<void> {
    await this.backend.writeZeroes(offset, bytes, unmap ? 0x02 : 0);
  }

  async discard(offset: number, bytes: number): Promise<void> {
    await this.backend.discard(offset, bytes);
  }

  async flush(): Promise<void> {
    await this.backend.flush();
  }

  /** Continues after a `stop` / `enospc` error policy paused the disk. */
  resume(): void {
    this.backend.resume();
  }

  /** Whether the error policy has paused the disk. */
  isStopped(): boolean {
    return this.backend.isStopped;
  }

  /** The error that paused the disk (null while it runs), as plain fields (see onStop). */
  stoppedBy(): { code: string; message: string } | null {
    const e = this.backend.stoppedBy;
    return e ? { code: e.code, message: e.message } : null;
  }

  /**
   * Calls `listener` (a Comlink proxy from the page) each time the error
   * policy pauses the disk. The error goes as plain fields: an Error nested in
   * an argument would lose its code in the structured clone.
   */
  onStop(listener: (e: StopEvent) => void): void {
    this.backend.onStop.push((e) => {
      void Promise.resolve(listener({ operation: e.operation, code: e.error.code, message: e.error.message })).catch(() => undefined);
    });
  }

  async truncate(size: number): Promise<number> {
    // As QEMU's block_resize: refused while a block job holds the disk (below its filter, if any).
    for (let n: BlockNode | undefined = this.backend.node; n; n = n.filtered?.node) checkOp(n, 'resize');
    // The disk holds resize only while it resizes (QEMU's block_resize takes it for the call).
    const { perm, shared } = this.backend.root;
    if (!(perm & Perm.RESIZE)) this.backend.setPerm(perm | Perm.RESIZE, shared);
    try {
      await this.backend.truncate(size);
    } finally {
      if (!(perm & Perm.RESIZE)) this.backend.setPerm(perm, shared);
    }
    return this.backend.length;
  }

  async blockStatus(offset: number, bytes: number): Promise<{ status: number; pnum: number; map?: number }> {
    const r: BlockStatusResult = await this.backend.blockStatus(offset, bytes);
    return { status: r.status, pnum: r.pnum, ...(r.map !== undefined ? { map: r.map } : {}) };
  }

  /** Extents of the whole disk (or a range), merged where the answer is the same. */
  async map(offset = 0, bytes = this.backend.length - offset): Promise<MapExtent[]> {
    const out: MapExtent[] = [];
    let pos = offset;
    const end = offset + bytes;
    while (pos < end) {
      const r = await this.backend.blockStatus(pos, end - pos);
      if (r.pnum <= 0) break;
      const e: MapExtent = {
        offset: pos,
        length: r.pnum,
        data: !!(r.status & Status.DATA),
        zero: !!(r.status & Status.ZERO),
        allocated: !!(r.status & Status.ALLOCATED),
        compressed: !!(r.status & Status.COMPRESSED),
      };
      const last = out[out.length - 1];
      if (last && last.data === e.data && last.zero === e.zero && last.allocated === e.allocated && last.compressed === e.compressed) {
        last.length += e.length;
      } else out.push(e);
      pos += r.pnum;
    }
    return out;
  }

  stats(): DiskStats {
    return structuredClone(this.backend.stats);
  }

  /**
   * Starts the synchronous channel: a SharedArrayBuffer another worker uses
   * with {@link SyncDiskClient} (Atomics.wait) to read and write this disk
   * synchronously. Needs cross-origin isolation.
   */
  syncChannel(dataBytes = 1 << 20): SharedArrayBuffer {
    if (!Number.isSafeInteger(dataBytes) || dataBytes < 4096 || dataBytes > 64 << 20) {
      throw new BlockError('EINVAL', `Sync channel data area must be 4 KiB..64 MiB, got ${dataBytes}`);
    }
    const server = new SyncServer(this.backend, dataBytes);
    server.start();
    this.syncServers.push(server);
    return server.buffer;
  }

  /**
   * Starts a bulk-read ring (src/channels/ring-server.ts): a SharedArrayBuffer of
   * `slots` data areas of `slotBytes` the page streams reads through with
   * {@link BulkReader}. Needs cross-origin isolation.
   */
  bulkChannel(slots = 4, slotBytes = 1 << 20): SharedArrayBuffer {
    if (this.closed) throw new BlockError('ENOMEDIUM', `Disk '${this.path}' was closed`);
    const server = new RingServer(this.backend, slots, slotBytes);
    server.start();
    this.ringServers.push(server);
    return server.buffer;
  }
  private readonly ringServers: RingServer[] = [];

  // Dirty bitmaps (disk-bitmaps.ts).
  bitmapAdd(name: string, opts?: AddBitmapOptions): void {
    bitmaps.bitmapAdd(this.backend, name, opts);
  }
  bitmapRemove(name: string): Promise<void> {
    return bitmaps.bitmapRemove(this.backend, name);
  }
  bitmapClear(name: string): void {
    bitmaps.bitmapClear(this.backend, name);
  }
  bitmapEnable(name: string): void {
    bitmaps.bitmapEnable(this.backend, name);
  }
  bitmapDisable(name: string): void {
    bitmaps.bitmapDisable(this.backend, name);
  }
  bitmapMerge(target: string, sources: string[]): void {
    bitmaps.bitmapMerge(this.backend, target, sources);
  }
  bitmapStore(): Promise<void> {
    return bitmaps.bitmapStore(this.backend);
  }
  bitmapList(): BitmapInfo[] {
    return bitmaps.bitmapList(this.backend);
  }
  bitmapExtents(name: string, offset: number, bytes: number, maxExtents: number, maxLength?: number): BitmapExtentsPage {
    return bitmaps.bitmapExtents(this.backend, name, offset, bytes, maxExtents, maxLength);
  }

  // Internal snapshots (disk-snapshots.ts).
  snapshotCreate(name: string, vmState?: Uint8Array): Promise<SnapshotEntry> {
    return snapshots.snapshotCreate(this.backend, name, vmState);
  }
  snapshotApply(idOrName: string): Promise<number> {
    return snapshots.snapshotApply(this.backend, idOrName);
  }
  snapshotDelete(idOrName: string): Promise<void> {
    return snapshots.snapshotDelete(this.backend, idOrName);
  }
  snapshotList(): SnapshotEntry[] {
    return snapshots.snapshotList(this.backend);
  }
  async snapshotReadVmState(idOrName: string): Promise<Uint8Array> {
    const vm = await snapshots.snapshotReadVmState(this.backend, idOrName);
    return transfer(vm, [vm.buffer as ArrayBuffer]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.beforeClose().catch(() => undefined);
    for (const s of this.syncServers) s.stop();
    for (const s of this.ringServers) s.stop();
    for (const p of this.readPorts) p.close();
    try {
      await this.backend.close();
    } finally {
      this.onClose();
    }
  }
}

