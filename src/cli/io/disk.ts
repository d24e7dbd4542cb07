/**
 * The disk qemu-io's commands run on: a small interface that a Node
 * BlockBackend (io/backend-disk.ts) and the page's Disk (io/page-disk.ts)
 * both satisfy through a thin adapter. No Node modules here: the demo
 * bundles the interpreter.
 */
import type { PreallocMode } from '../../core/driver.js';
import type { BlockDebugger } from '../../core/debug-event.js';

/** One run of like allocation, as bdrv_is_allocated reports it. */
export interface IoAllocation {
  allocated: boolean;
  /** Bytes in the run; 0 at or past the end of the disk. */
  pnum: number;
}

export interface IoDisk {
  /** Virtual size in bytes. */
  readonly length: number;
  readonly readOnly: boolean;
  /** False when a removable medium is out (qemu-io's ENOMEDIUM). */
  readonly available: boolean;
  /**
   * Optional cheap check before a read's buffer is allocated (the page
   * refuses a read past the end before allocating it; the CLI allocates
   * first, as qemu-io does).
   */
  checkRead?(offset: number, bytes: number): void;
  /** Reads into `buf` (bytes the driver leaves untouched keep their value). */
  pread(offset: number, buf: Uint8Array): Promise<void>;
  /** Writes with ReqFlag bits (FUA, COMPRESSED). */
  write(offset: number, buf: Uint8Array, flags: number): Promise<void>;
  /** Writes zeroes with ReqFlag bits (MAY_UNMAP, FUA, NO_FALLBACK). */
  writeZeroes(offset: number, bytes: number, flags: number): Promise<void>;
  discard(offset: number, bytes: number): Promise<void>;
  flush(): Promise<void>;
  truncate(size: number, prealloc: PreallocMode): Promise<void>;
  /** Allocation in this layer only at `offset`, at most `bytes` (clamped to the end). */
  isAllocated(offset: number, bytes: number): Promise<IoAllocation>;
  /** Reads / writes the VM state area (qemu-io `read -b` / `write -b`); absent where there is none. */
  loadVmState?(pos: number, buf: Uint8Array): Promise<void>;
  saveVmState?(pos: number, buf: Uint8Array): Promise<void>;
  /** Whether the format takes compressed writes (`write -c`). */
  supportsCompressed(): boolean;
  /**
   * The debugging node (blkdebug) at or below the disk, for qemu-io's
   * breakpoint commands; throws ENOTSUP when there is none. Absent: never one.
   */
  debugger?(): BlockDebugger;
  /** The `info` command's lines; `supported` false ends it with ENOTSUP after them. */
  info(): Promise<{ text: string; supported: boolean }>;
}
