/**
 * cache.direct=on for node-file: the file is opened with O_DIRECT (as
 * file-posix's BDRV_O_NOCACHE), which asks the kernel for reads and writes
 * at offsets and lengths aligned to the device's block size, from memory
 * aligned likewise.
 *
 * Why a bounce buffer: Node gives no control over where an ArrayBuffer lives
 * (malloc'd memory, 16-byte aligned), and the kernel refuses such memory
 * with EINVAL (measured on ext4 over virtio-blk: 512-byte memory alignment
 * needed past a page). A WebAssembly.Memory is mapped at a page boundary, so
 * its slots at page multiples are aligned; each request is copied through
 * one. The request alignment is probed as file-posix does
 * (raw_probe_alignment): the smallest of 1, 512, 1024, 2048, 4096 bytes the
 * file reads at; the generic request path then aligns every request to it.
 */
import { BlockError } from '../core/errors.js';
import type { FileIo } from './node-file-io.js';

/** Bytes of one bounce slot (a multiple of the page size). */
export const DIRECT_SLOT = 1 << 20;
/** Slots in the shared bounce memory: requests beyond this many wait for a slot. */
const SLOTS = 8;
/** The largest alignment probed (file-posix's MAX_BLOCKSIZE, also the page size). */
const MAX_ALIGN = 4096;
const WASM_PAGE = 65536;

/** Page-aligned memory for O_DIRECT requests, shared by every direct file of the process. */
class BouncePool {
  private readonly memory = new WebAssembly.Memory({ initial: (SLOTS * DIRECT_SLOT) / WASM_PAGE, maximum: (SLOTS * DIRECT_SLOT) / WASM_PAGE });
  private readonly free: number[] = Array.from({ length: SLOTS }, (_, i) => i);
  private readonly waiters: Array<(slot: number) => void> = [];

  /** A slot's bytes: page-aligned, {@link DIRECT_SLOT} long. */
  view(slot: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, slot * DIRECT_SLOT, DIRECT_SLOT);
  }

  /** Takes a slot, waiting while all are in use. */
  acquire(): Promise<number> | number {
    const slot = this.free.pop();
    if (slot !== undefined) return slot;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(slot: number): void {
    const next = this.waiters.shift();
    if (next) next(slot);
    else this.free.push(slot);
  }
}

let pool: BouncePool | null = null;
function bounce(): BouncePool {
  pool ??= new BouncePool();
  return pool;
}

/**
 * The request alignment of a file opened with O_DIRECT, as file-posix probes
 * it: the first of 1, 512, 1024, 2048, 4096 bytes that reads at offset 0
 * (an error other than EINVAL counts as working; a 1-byte read working means
 * the file tells nothing: 4096). None: QEMU's error.
 */
export function probeDirectAlignment(readSync: (buf: Uint8Array, length: number) => number): number {
  probeMemory ??= new WebAssembly.Memory({ initial: 1, maximum: 1 });
  const buf = new Uint8Array(probeMemory.buffer, 0, MAX_ALIGN);
  for (const align of [1, 512, 1024, 2048, 4096]) {
    try {
      readSync(buf, align);
    } catch (e) {
      if ((e as { code?: unknown }).code === 'EINVAL') continue;
    }
    return align === 1 ? MAX_ALIGN : align;
  }
  throw new BlockError('EINVAL', 'Could not find working O_DIRECT alignment', {}, { hint: 'Try cache.direct=off\n' });
}

/** Page-aligned memory for the alignment probe (made at the first direct open). */
let probeMemory: WebAssembly.Memory | null = null;

/**
 * Reads and writes of a file opened with O_DIRECT, through aligned bounce
 * slots, at most {@link DIRECT_SLOT} bytes each (the caller loops). A short
 * read is the end of the file: the rest of the request reads as zeros (an
 * O_DIRECT read past the end may stop at an unaligned length, from where no
 * aligned read could go on).
 */
export class DirectIo {
  constructor(private readonly io: FileIo) {}

  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const n = Math.min(length, DIRECT_SLOT);
    const p = bounce();
    const slot = await p.acquire();
    try {
      const view = p.view(slot);
      const got = await this.io.read(view, 0, n, position);
      buf.set(view.subarray(0, got), offset);
      if (got === 0) return 0;
      if (got < n) buf.fill(0, offset + got, offset + n);
      return n;
    } finally {
      p.release(slot);
    }
  }

  async write(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const n = Math.min(length, DIRECT_SLOT);
    const p = bounce();
    const slot = await p.acquire();
    try {
      const view = p.view(slot);
      view.set(buf.subarray(offset, offset + n));
      return await this.io.write(view, 0, n, position);
    } finally {
      p.release(slot);
    }
  }
}
