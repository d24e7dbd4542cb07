/**
 * The page's Disk (src/client/index.ts) seen as an IoDisk, so the demo's
 * console runs the CLI's qemu-io interpreter. Page-safe. What the page API
 * cannot express fails with ENOTSUP instead of doing something else.
 */
import { ReqFlag, Status, type PreallocMode } from '../../core/driver.js';
import { BlockError } from '../../core/errors.js';
import type { IoAllocation, IoDisk } from './disk.js';
import type { IoInfoFields } from './info.js';
import { infoText } from './info.js';

/** The part of the page's Disk the interpreter uses. */
export interface PageDiskLike {
  readonly length: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array, opts?: { flags?: number; copy?: boolean }): Promise<void>;
  writeZeroes(offset: number, bytes: number, unmap?: boolean): Promise<void>;
  discard(offset: number, bytes: number): Promise<void>;
  flush(): Promise<void>;
  truncate(size: number): Promise<void>;
  blockStatus(offset: number, bytes: number): Promise<{ status: number; pnum: number }>;
}

export interface PageDiskOptions {
  /** The `info` fields (the page asks its DiskWorker); without it `info` fails with ENOTSUP. */
  info?: () => Promise<IoInfoFields>;
  /** Whether the format takes compressed writes. */
  compressed?: boolean;
}

export class PageDisk implements IoDisk {
  constructor(
    readonly disk: PageDiskLike,
    private readonly opts: PageDiskOptions = {},
  ) {}

  get length(): number {
    return this.disk.length;
  }
  get readOnly(): boolean {
    return this.disk.readOnly;
  }
  get available(): boolean {
    return true;
  }
  checkRead(offset: number, bytes: number): void {
    // What the worker's BlockBackend answers, without allocating the buffer first.
    if (offset + bytes > this.disk.length) throw new BlockError('EIO', `Read of ${bytes} bytes at offset ${offset} is past the end of the disk`);
  }
  async pread(offset: number, buf: Uint8Array): Promise<void> {
    buf.set(await this.disk.read(offset, buf.length));
  }
  write(offset: number, buf: Uint8Array, flags: number): Promise<void> {
    return this.disk.write(offset, buf, { flags, copy: true });
  }
  async writeZeroes(offset: number, bytes: number, flags: number): Promise<void> {
    if (flags & ReqFlag.NO_FALLBACK) throw new BlockError('ENOTSUP', 'write -z -n is not available on the page API');
    await this.disk.writeZeroes(offset, bytes, (flags & ReqFlag.MAY_UNMAP) !== 0);
    // The page API has no FUA on write zeroes: a flush gives the same durability.
    if (flags & ReqFlag.FUA) await this.disk.flush();
  }
  discard(offset: number, bytes: number): Promise<void> {
    return this.disk.discard(offset, bytes);
  }
  flush(): Promise<void> {
    return this.disk.flush();
  }
  async truncate(size: number, prealloc: PreallocMode): Promise<void> {
    if (prealloc !== 'off') throw new BlockError('ENOTSUP', `truncate -m ${prealloc} is not available on the page API`);
    await this.disk.truncate(size);
  }
  async isAllocated(offset: number, bytes: number): Promise<IoAllocation> {
    if (offset >= this.disk.length) return { allocated: false, pnum: 0 };
    const r = await this.disk.blockStatus(offset, Math.min(bytes, this.disk.length - offset));
    return { allocated: (r.status & Status.ALLOCATED) !== 0, pnum: r.pnum };
  }
  supportsCompressed(): boolean {
    return this.opts.compressed ?? false;
  }
  async info(): Promise<{ text: string; supported: boolean }> {
    if (!this.opts.info) throw new BlockError('ENOTSUP', 'info is not available for this disk');
    return infoText(await this.opts.info());
  }
}
