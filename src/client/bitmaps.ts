/**
 * `disk.bitmaps`: the dirty bitmaps of an open disk, from the page (QEMU's
 * block-dirty-bitmap-* commands and query-block's dirty-bitmaps).
 *
 * ```ts
 * await disk.bitmaps.add('backup', { persistent: true });
 * // ... the guest writes ...
 * for await (const [offset, length] of disk.bitmaps.dirtyExtents('backup')) {
 *   sink(offset, await disk.read(offset, length));   // incremental export
 * }
 * await disk.bitmaps.clear('backup');
 * ```
 *
 * Persistent bitmaps (qcow2 v3) are stored in the image when the disk
 * closes, as QEMU stores them (and removed from it at once). One found in
 * use at open (the page went away without closing the disk) is listed as
 * inconsistent and can only be removed. {@link DiskBitmaps.store} stores
 * them earlier: they then stay valid in the image until the next write
 * (which marks them in use again), so a page that goes away at a quiet
 * moment after a store keeps them.
 */
import type { Remote } from 'comlink';
import type { DiskApi } from './api.js';
import type { AddBitmapOptions, BitmapInfo } from './protocol.js';

/** Options of {@link DiskBitmaps.dirtyExtents}. */
export interface DirtyExtentsOptions {
  /** Start of the range (default 0). */
  offset?: number;
  /** Length of the range (default: to the end of the disk). */
  bytes?: number;
  /** Longest extent returned; longer runs come as several extents. */
  maxLength?: number;
  /** Extents fetched from the worker per message (default 4096). */
  pageSize?: number;
}

/** The dirty bitmaps of one open disk. */
export class DiskBitmaps {
  constructor(
    private readonly remote: Remote<DiskApi>,
    private readonly length: () => number,
  ) {}

  /** Adds a bitmap covering the whole disk. */
  async add(name: string, opts: AddBitmapOptions = {}): Promise<void> {
    await this.remote.bitmapAdd(name, opts);
  }

  /** Removes a bitmap (a persistent one leaves the image at once, as in QEMU). */
  async remove(name: string): Promise<void> {
    await this.remote.bitmapRemove(name);
  }

  /** Clears every bit. */
  async clear(name: string): Promise<void> {
    await this.remote.bitmapClear(name);
  }

  /** Guest writes mark the bitmap again. */
  async enable(name: string): Promise<void> {
    await this.remote.bitmapEnable(name);
  }

  /** Guest writes no longer mark the bitmap. */
  async disable(name: string): Promise<void> {
    await this.remote.bitmapDisable(name);
  }

  /** ORs the `sources` bitmaps into `target` (same disk, same size). */
  async merge(target: string, sources: string[]): Promise<void> {
    await this.remote.bitmapMerge(target, sources);
  }

  /**
   * Stores the persistent bitmaps in the image now. They stay valid there
   * until the next write, which marks them in use first: call it when the
   * disk goes quiet (e.g. the guest paused, or the page is being hidden).
   */
  async store(): Promise<void> {
    await this.remote.bitmapStore();
  }

  /** The disk's bitmaps with their state and dirty byte count. */
  list(): Promise<BitmapInfo[]> {
    return this.remote.bitmapList();
  }

  /**
   * The dirty extents of bitmap `name` as [offset, length] pairs in byte
   * order, whole granules (the last one clipped at the end of the disk),
   * fetched from the worker a page at a time.
   */
  async *dirtyExtents(name: string, opts: DirtyExtentsOptions = {}): AsyncGenerator<[number, number]> {
    let offset = opts.offset ?? 0;
    const end = opts.bytes !== undefined ? offset + opts.bytes : this.length();
    const pageSize = opts.pageSize ?? 4096;
    for (;;) {
      const page = await this.remote.bitmapExtents(name, offset, Math.max(0, end - offset), pageSize, opts.maxLength);
      yield* page.extents;
      if (page.next < 0) return;
      offset = page.next;
    }
  }
}
