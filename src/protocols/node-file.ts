/**
 * node-file: images in the local file system through Node's fs (QEMU's
 * file-posix). What Node has no call for, a Perl helper does: lseek's
 * SEEK_DATA / SEEK_HOLE for block status and fallocate for discard, zero
 * writes and preallocation=falloc, with file-posix's order of attempts
 * (node-file-ops.ts); without the helper, block status finds the holes of a
 * sparse file by reading (node-file-holes.ts), zero writes write zero
 * buffers and discard overwrites with zeros. Image locks: another Perl
 * helper holds the locks QEMU sees, and DiskWorker reads QEMU's locks from
 * /proc/locks and refuses what QEMU would (node-file-locks.ts,
 * node-file-lock-holder.ts). flush = fdatasync. cache.direct=on opens the file
 * with O_DIRECT (node-file-direct.ts). As in QEMU's block layer,
 * the length is counted in whole 512-byte sectors: an odd-sized file reads as
 * rounded up, the tail as zeros (block status: a trailing hole).
 */
import type { BlockLimits } from '../core/limits.js';
import { ReqFlag, Status, type ReqFlags, type BlockDriver, type BlockStatusResult, type CreateContext, type DriverInstance, type PreallocMode, type ReopenState } from '../core/driver.js';
import { BlockError, codeOfErrno, einval, toBlockError, STRERROR } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';
import { checkExtentSizeHint } from '../core/create.js';
import { copyRangeTo, type CopyRangeRequest } from '../core/copy-range.js';
import type { FileHandle } from 'node:fs/promises';
import { FileIo, loadSyncFs } from './node-file-io.js';
import { DirectIo, probeDirectAlignment } from './node-file-direct.js';
import { hasHoles, holeBlockSize, scanHoles } from './node-file-holes.js';
import type { Stats } from 'node:fs';
import { ImageLockCheck, loadLockFs } from './node-file-locks.js';
import { LockHolder } from './node-file-lock-holder.js';
import { ERRNO, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, FileOps, SEEK_DATA, SEEK_HOLE, type FileOpsFile } from './node-file-ops.js';
import { Perm, PERM_ALL, type PermMask } from '../core/permissions.js';

const SECTOR = 512;

type FsPromises = typeof import('node:fs/promises');
let fsp: FsPromises | null = null;
/** node:fs/promises, imported when first needed (this module loads in browsers too). */
export async function fs(): Promise<FsPromises> {
  fsp ??= await import('node:fs/promises');
  return fsp;
}

/** An open (or create) failure as file-posix words it: "Could not open 'x': <errno text>". */
export function openError(e: unknown, filename: string, verb: 'open' | 'create' = 'open'): BlockError {
  const err = toBlockError(e);
  const text = (e as { code?: unknown } | null)?.code === 'EISDIR' ? 'Is a directory' : (STRERROR[err.code] ?? err.message);
  return new BlockError(err.code, `Could not ${verb} '${filename}': ${text}`, {}, { cause: e });
}

/**
 * A failed system call as file-posix reports it: the errno's text (what QEMU's
 * callers print after their own prefix), with the offset in the context.
 */
function ioError(e: unknown, offset: number): BlockError {
  if (e instanceof BlockError) return e;
  const err = toBlockError(e);
  return new BlockError(err.code, STRERROR[err.code] ?? err.message, { offset }, { cause: e });
}

/** An open regular file; src/protocols/node-device.ts serves devices with a subclass. */
export class NodeFileInstance implements DriverInstance {
  constructor(
    private fh: FileHandle,
    protected size: number,
    protected readonly filename: string,
    /** The node this instance serves (block status names it as the place of the data). */
    private readonly node?: BlockNode,
  ) {}
  readonly supportedWriteFlags = 0;
  /** Reads and writes: small ones on this thread, large ones through the pool (node-file-io.ts). */
  readonly io = new FileIo(() => this.fh);
  /**
   * Opened with O_DIRECT (cache.direct=on): requests go through aligned
   * memory and are aligned to the probed {@link directAlignment}.
   */
  private direct: DirectIo | null = null;
  /** The request alignment the O_DIRECT file needs (1 when not direct). */
  directAlignment = 1;

  /** Switches to O_DIRECT I/O: the handle was opened with O_DIRECT; probes its alignment (file-posix's raw_probe_alignment). */
  useDirect(readSync: (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => number): void {
    this.direct = new DirectIo(this.io);
    this.directAlignment = probeDirectAlignment((buf, length) => readSync(this.fh.fd, buf, 0, length, 0));
  }

  /** The node's requests are aligned for O_DIRECT. */
  refreshLimits(l: BlockLimits): void {
    if (this.directAlignment > l.requestAlignment) l.requestAlignment = this.directAlignment;
    if (this.direct) l.minMemAlignment = l.optMemAlignment = Math.max(l.optMemAlignment, this.directAlignment);
  }

  /** Reads and writes: through the O_DIRECT bounce buffers, or straight (node-file-io.ts). */
  private get rw(): { read: FileIo['read']; write: FileIo['write'] } {
    return this.direct ?? this.io;
  }
  /** As file-posix: unmapping zero writes (done as plain zero writes here) and NO_FALLBACK. */
  readonly supportedZeroFlags = ReqFlag.MAY_UNMAP | ReqFlag.NO_FALLBACK;
  /** QEMU's locks on this file, checked on permission updates; null with locking=off. */
  locks: ImageLockCheck | null = null;

  /** This file in the file-ops helper: made when first needed; null without the helper. */
  private ops: Promise<FileOpsFile | null> | undefined;
  /** What fallocate can do here, learnt as file-posix learns it (has_write_zeroes, has_discard, has_fallocate). */
  private can = { zeroRange: true, punch: true, fallocate: true };

  /** Whether this file may use the helper (not for devices). */
  protected usesFileOps(): boolean {
    return true;
  }

  /** The helper's descriptor of this very file (same inode), or null. */
  private fileOps(): Promise<FileOpsFile | null> {
    this.ops ??= (async () => {
      if (!this.usesFileOps()) return null;
      const helper = await FileOps.get();
      if (!helper) return null;
      const { resolve } = await import('node:path');
      const f = await helper.open(resolve(this.filename));
      if (!f) return null;
      // The path may name another file by now (renamed over): use it only if it is ours.
      if (f.inode !== (await this.fh.stat()).ino) {
        await f.close();
        return null;
      }
      return f;
    })().catch(() => null);
    return this.ops;
  }

  /** fallocate through the helper: true when done, the errno when it cannot (one of `unsupported`; ENOTSUP without the helper), else throws. */
  private async fallocate(mode: number, offset: number, bytes: number, unsupported: readonly number[] = [ERRNO.ENOTSUP]): Promise<true | number> {
    const f = await this.fileOps();
    if (!f) return ERRNO.ENOTSUP;
    const r = await f.fallocate(mode, offset, bytes);
    if (r.ok) return true;
    if (unsupported.includes(r.errno)) return r.errno;
    const code = codeOfErrno(r.errno);
    throw new BlockError(code, STRERROR[code] ?? `errno ${r.errno}`, { offset });
  }

  /** Refuses permissions another process's QEMU locks forbid (file-posix's check_perm). */
  checkPerm(perm: PermMask, shared: PermMask): void {
    this.locks?.check(perm, shared);
  }

  setPerm(perm: PermMask, shared: PermMask): void {
    this.locks?.commit(perm, shared);
  }

  /** The checked update was given up: the bytes it locked go (file-posix's abort_perm_update). */
  abortPermUpdate(): void {
    this.locks?.abort();
  }

  /** The image locks of the last permission update are in place. */
  settled(): Promise<void> {
    return this.locks?.settled() ?? Promise.resolve();
  }

  /** The file's length rounded up to a whole 512-byte sector (QEMU's total_sectors). */
  getLength(): number {
    return Math.ceil(this.size / SECTOR) * SECTOR;
  }

  /**
   * Data up to the file's real end, zeros in the rest of the last sector, as
   * file-posix reports a trailing hole. In a file with holes (fewer blocks
   * than its length) all-zero blocks are holes (node-file-holes.ts).
   */
  async blockStatus(wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const f = wantZero && offset < this.size ? await this.fileOps() : null;
    if (f) return this.seekStatus(f, offset, bytes);
    let hole = wantZero && offset >= this.size;
    let pnum = wantZero && !hole ? Math.min(bytes, this.size - offset) : bytes;
    if (wantZero && !hole) {
      const holes = await this.holeLayout();
      if (holes.sparse) {
        const run = await scanHoles((o, n, b) => this.preadv(o, n, b), holes.block, offset, offset + pnum, this.size);
        hole = run.zero;
        pnum = run.pnum;
      }
    }
    return { status: (hole ? Status.ZERO : Status.DATA) | Status.OFFSET_VALID, pnum, map: offset, ...(this.node ? { file: this.node } : {}) };
  }

  /**
   * Block status from SEEK_DATA / SEEK_HOLE, as file-posix's: data up to the
   * next hole, a hole up to the next data, a hole to the end when no data
   * follows (ENXIO); data when the file system tells nothing.
   */
  private async seekStatus(f: FileOpsFile, offset: number, bytes: number): Promise<BlockStatusResult> {
    const where = { map: offset, ...(this.node ? { file: this.node } : {}) };
    const data = await f.seek(SEEK_DATA, offset);
    let zero = false;
    let pnum = bytes;
    if (!data.ok) {
      // ENXIO: a trailing hole; anything else: no information, all data.
      zero = data.errno === ERRNO.ENXIO;
    } else if (data.value > offset) {
      zero = true;
      pnum = data.value - offset;
    } else if (data.value === offset) {
      const hole = await f.seek(SEEK_HOLE, offset);
      if (hole.ok && hole.value > offset) {
        // A partial sector at the end of the file counts as data (rounded up to the alignment).
        const align = this.node?.limits.requestAlignment ?? 1;
        pnum = Math.ceil((hole.value - offset) / align) * align;
      }
    }
    return { status: (zero ? Status.ZERO : Status.DATA) | Status.OFFSET_VALID, pnum: Math.min(pnum, bytes), ...where };
  }

  /** Whether the file has holes, from fstat; asked again after anything that changed the file. */
  private holes: { sparse: boolean; block: number } | undefined;

  private async holeLayout(): Promise<{ sparse: boolean; block: number }> {
    if (!this.holes) {
      const st = await this.fh.stat();
      this.holes = { sparse: hasHoles(st), block: holeBlockSize(st) };
    }
    return this.holes;
  }

  async preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes) {
      const bytesRead = await this.rw.read(buf, done, bytes - done, offset + done).catch((e: unknown) => {
        throw ioError(e, offset + done);
      });
      if (bytesRead === 0) {
        // Past the end of the file: zeros, as a short read from a hole would give.
        buf.fill(0, done, bytes);
        return;
      }
      done += bytesRead;
    }
  }

  /** The source is this file: the destination side takes over (QEMU's file-posix). */
  copyRangeFrom(r: CopyRangeRequest): Promise<void> {
    return copyRangeTo(r);
  }

  /**
   * File to file inside this process, as copy_file_range would: the bytes go
   * from one open file to the other in 1 MiB pieces without climbing the
   * graph. A source on another back end is ENOTSUP, so is one on another file
   * system, as copy_file_range refuses it (EXDEV) (the caller reads and writes:
   * qemu-img convert -C then zero-detects what it writes, so the target's
   * allocation follows from this).
   */
  async copyRangeTo(r: CopyRangeRequest): Promise<void> {
    const src = r.src.node.instance;
    if (!(src instanceof NodeFileInstance)) throw new BlockError('ENOTSUP', 'Operation not supported');
    const [from, to] = await Promise.all([src.fh.stat(), this.fh.stat()]);
    if (from.dev !== to.dev) throw new BlockError('ENOTSUP', `Cannot offload a copy from '${src.filename}' to '${this.filename}': another file system`);
    const step = 1 << 20;
    const buf = new Uint8Array(Math.min(step, r.bytes));
    for (let done = 0; done < r.bytes; done += step) {
      const n = Math.min(step, r.bytes - done);
      await src.preadv(r.srcOffset + done, n, buf.subarray(0, n));
      await this.pwritev(r.dstOffset + done, n, buf.subarray(0, n));
    }
  }

  async pwritev(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes) {
      const bytesWritten = await this.rw.write(buf, done, bytes - done, offset + done).catch((e: unknown) => {
        throw ioError(e, offset + done);
      });
      if (bytesWritten === 0) throw new BlockError('EIO', `Short write to '${this.filename}' at offset ${offset + done}`);
      done += bytesWritten;
    }
    if (offset + bytes > this.size) this.size = offset + bytes;
    this.holes = undefined;
  }

  /**
   * file-posix's zero write: with MAY_UNMAP a punched hole first; then
   * FALLOC_FL_ZERO_RANGE; then a punched hole filled again by fallocate;
   * past the end of the file, fallocate (or, without the helper, a longer
   * file: the preallocate filter grows files this way). What none of them
   * can do is ENOTSUP: the generic layer writes zero buffers, or refuses
   * under NO_FALLBACK.
   */
  async pwriteZeroes(offset: number, bytes: number, flags: ReqFlags = 0): Promise<void> {
    const end = offset + bytes;
    if (flags & ReqFlag.MAY_UNMAP && this.can.punch) {
      if ((await this.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, bytes, [ERRNO.ENOTSUP, ERRNO.EINVAL, ERRNO.EBUSY])) === true) return this.changed();
    }
    if (this.can.zeroRange) {
      const r = await this.fallocate(FALLOC_FL_ZERO_RANGE, offset, bytes, [ERRNO.ENOTSUP, ERRNO.EINVAL]);
      if (r === true) return this.changed(end);
      if (r === ERRNO.ENOTSUP) this.can.zeroRange = false;
    }
    if (this.can.punch && this.can.fallocate) {
      const r = await this.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, bytes, [ERRNO.ENOTSUP, ERRNO.EINVAL]);
      if (r === true) {
        const r2 = await this.fallocate(0, offset, bytes);
        if (r2 === true) return this.changed(end);
        if (r2 === ERRNO.ENOTSUP) this.can.fallocate = false;
      } else if (r === ERRNO.ENOTSUP) {
        this.can.punch = false;
      }
    }
    if (offset >= this.size && this.can.fallocate) {
      const r = await this.fallocate(0, offset, bytes);
      if (r === true) return this.changed(end);
      if (r === ERRNO.ENOTSUP) this.can.fallocate = false;
    }
    if (offset < this.size) throw new BlockError('ENOTSUP', `Cannot zero '${this.filename}' at offset ${offset} without writing`);
    await this.fh.truncate(end).catch((e: unknown) => {
      throw ioError(e, offset);
    });
    this.size = end;
    // The file grew by a hole.
    this.holes = undefined;
  }

  async flushToDisk(): Promise<void> {
    await this.fh.datasync().catch((e: unknown) => {
      throw ioError(e, 0);
    });
  }

  /** A zero write or discard changed the file (and maybe lengthened it to `end`). */
  private changed(end = 0): void {
    if (end > this.size) this.size = end;
    this.holes = undefined;
  }

  /**
   * QEMU punches a hole (ENOTSUP where the file system cannot: discard is
   * advisory). Without the helper the part inside the file is overwritten
   * with zeros instead, so the range still reads as zeros.
   */
  async pdiscard(offset: number, bytes: number): Promise<void> {
    if (await this.fileOps()) {
      if (!this.can.punch) throw new BlockError('ENOTSUP', 'Operation not supported', { offset });
      const r = await this.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, bytes);
      if (r === true) return this.changed();
      this.can.punch = false;
      throw new BlockError('ENOTSUP', 'Operation not supported', { offset });
    }
    const end = Math.min(offset + bytes, this.size);
    if (end <= offset) return;
    const zeros = new Uint8Array(Math.min(end - offset, 1 << 20));
    for (let pos = offset; pos < end; pos += zeros.length) {
      await this.pwritev(pos, Math.min(zeros.length, end - pos), zeros);
    }
  }

  async truncate(offset: number, _exact: boolean, prealloc: PreallocMode): Promise<void> {
    const old = this.size;
    if (prealloc === 'falloc' && offset > old) {
      // posix_fallocate: fallocate where the file system can (the file grows with it).
      let r: true | number;
      try {
        r = await this.fallocate(0, old, offset - old);
      } catch (e) {
        throw toBlockError(e).withPrefix('Could not preallocate new data', { offset });
      }
      if (r === true) {
        this.changed(offset);
        if (old === 0) await this.allocateFirstBlock(offset);
        return;
      }
    }
    if ((prealloc === 'full' || prealloc === 'falloc') && offset > old) {
      // Without fallocate, falloc writes zeros too (as posix_fallocate's fallback): the space is reserved either way.
      const what = prealloc === 'full' ? 'Could not write zeros for preallocation' : 'Could not preallocate new data';
      const zeros = new Uint8Array(Math.min(offset - old, 1 << 20));
      try {
        for (let pos = old; pos < offset; pos += zeros.length) {
          const n = Math.min(zeros.length, offset - pos);
          await this.pwritev(pos, n, zeros.subarray(0, n));
        }
      } catch (e) {
        // Give the space back, as file-posix does: the file keeps its old length.
        await this.fh.truncate(old).catch(() => undefined);
        this.size = old;
        throw toBlockError(e).withPrefix(what, { offset });
      }
    }
    await this.fh.truncate(offset).catch((e: unknown) => {
      throw toBlockError(ioError(e, offset)).withPrefix('Could not resize file', { offset });
    });
    this.size = offset;
    // A grown file has a hole at its end; a shrunk one may have lost its holes.
    this.holes = undefined;
    if (prealloc === 'off' && old === 0 && offset > 0) await this.allocateFirstBlock(offset);
  }

  /**
   * Writes zeros over the first block of a file grown from empty, as
   * file-posix does for its alignment probing: the block then shows as data
   * in block status (qemu-img map) and disk size. A sector for files under
   * 4 KiB (QEMU's sector would lengthen a file under 512 bytes; this stays
   * within the file); failures are ignored, as QEMU's.
   */
  private async allocateFirstBlock(size: number): Promise<void> {
    const n = Math.min(size < 4096 ? 512 : 4096, size);
    await this.rw.write(new Uint8Array(n), 0, n, 0).catch(() => undefined);
  }

  async reloadLength(): Promise<void> {
    this.size = (await this.fh.stat()).size;
    this.holes = undefined;
  }

  async getAllocatedFileSize(): Promise<number> {
    const st = await this.fh.stat();
    return st.blocks * 512;
  }

  hasZeroInit(): boolean {
    return true;
  }

  async close(): Promise<void> {
    const ops = this.ops;
    this.ops = Promise.resolve(null);
    await (await ops)?.close();
    // Unlocked before the close, so once close resolves QEMU can take the image.
    await this.locks?.release();
    await this.fh.close();
  }

  /** A handle opened with the new mode, between reopen prepare and commit, and its O_DIRECT alignment (0: not direct). */
  private reopenFh: FileHandle | null = null;
  private reopenAlignment = 0;

  /**
   * A new handle when the reopen changes read-only or cache.direct (QEMU's
   * file-posix reopens the file with the new flags); with O_DIRECT its
   * alignment is probed here, so a file system without O_DIRECT fails the
   * reopen, not the commit.
   */
  async reopenPrepare(state: ReopenState): Promise<void> {
    const direct = state.direct ?? this.direct !== null;
    if (state.readOnly === state.node.readOnly && direct === (this.direct !== null)) return;
    const f = await fs();
    let fh: FileHandle;
    try {
      fh = await f.open(this.filename, openFlags(f, state.readOnly, direct));
    } catch (e) {
      throw openError(e, this.filename);
    }
    try {
      const { readSync } = await import('node:fs');
      this.reopenAlignment = direct ? probeDirectAlignment((buf, length) => readSync(fh.fd, buf, 0, length, 0)) : 0;
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
    this.reopenFh = fh;
  }

  reopenCommit(): void {
    if (!this.reopenFh) return;
    const old = this.fh;
    this.fh = this.reopenFh;
    this.reopenFh = null;
    this.direct = this.reopenAlignment ? new DirectIo(this.io) : null;
    this.directAlignment = this.reopenAlignment || 1;
    void old.close().catch(() => undefined);
  }

  reopenAbort(): void {
    const fh = this.reopenFh;
    this.reopenFh = null;
    void fh?.close().catch(() => undefined);
  }
}

/**
 * The path in a `file:` filename. What follows the prefix is the path, colons
 * included; a colon before any slash would read as a protocol again, so such
 * a path gets "./" in front (as QEMU's file driver does).
 */
export function parseFileName(filename: string): string {
  if (!filename.startsWith('file:')) return filename;
  const path = filename.slice(5);
  return /^[^/]*:/.test(path) ? `./${path}` : path;
}

async function createFile(ctx: CreateContext): Promise<void> {
  // file-posix creates whole sectors.
  const size = Math.ceil(ctx.options.size('size', 0) / SECTOR) * SECTOR;
  const prealloc = ctx.options.choice('preallocation', ['off', 'falloc', 'full'] as const, 'off');
  // Accepted as QEMU does; Node cannot set btrfs / XFS attributes, so both are hints only.
  ctx.options.bool('nocow');
  checkExtentSizeHint(ctx.options.size('extent_size_hint'));
  ctx.options.finish();
  // QEMU's file create skips the prefix and takes the rest as it is.
  const filename = ctx.filename.startsWith('file:') ? ctx.filename.slice(5) : ctx.filename;
  const f = await fs();
  await loadSyncFs();
  await loadLockFs();
  let fh: FileHandle;
  try {
    // Not truncated yet: a file QEMU holds must survive the lock check below.
    fh = await f.open(filename, f.constants.O_RDWR | f.constants.O_CREAT, 0o644);
  } catch (e) {
    throw openError(e, filename, 'create');
  }
  const inst = new NodeFileInstance(fh, 0, filename);
  try {
    // As file-posix's create: locks for writes and resizes, letting others do anything but resize,
    // then tests (other processes, and other opens of this process: a convert onto its own source).
    const st = await fh.stat();
    const { resolve } = await import('node:path');
    inst.locks = new ImageLockCheck(st, filename, await LockHolder.get(), resolve(filename));
    inst.locks.check(Perm.WRITE | Perm.RESIZE, PERM_ALL & ~Perm.RESIZE);
    await fh.truncate(0).catch((e: unknown) => {
      throw toBlockError(ioError(e, 0)).withPrefix('Could not resize file', { offset: 0 });
    });
    await inst.truncate(size, true, prealloc);
  } finally {
    await inst.close();
  }
}

/** open(2) flags for a host file: read-only or read-write, O_DIRECT for cache.direct=on. */
function openFlags(f: FsPromises, readOnly: boolean, direct: boolean): number {
  const c = f.constants;
  return (readOnly ? c.O_RDONLY : c.O_RDWR) | (direct ? c.O_DIRECT : 0);
}

/**
 * The open of the host-file drivers (file, host_device, host_cdrom): reads
 * the options file-posix shares, opens `filename` for the node's mode and
 * hands the handle and its stat to `make`; the handle is closed when `make`
 * (or the stat) fails.
 */
export async function openHostFile(
  driver: string,
  node: BlockNode,
  options: OptionReader,
  make: (fh: FileHandle, st: Stats, filename: string) => DriverInstance | Promise<DriverInstance>,
): Promise<DriverInstance> {
  const filename = options.string('filename');
  if (filename === undefined || filename === '') throw einval(`The '${driver}' block driver requires a file name`);
  const locking = options.choice('locking', ['auto', 'on', 'off'] as const, 'auto');
  options.choice('aio', ['threads', 'native', 'io_uring'] as const);
  node.filename = filename;
  await loadSyncFs();
  const f = await fs();
  let fh: FileHandle;
  try {
    // cache.direct=on: O_DIRECT, refused (EINVAL) where the file system has none, as file-posix's open is.
    fh = await f.open(filename, openFlags(f, node.readOnly, node.direct));
  } catch (e) {
    throw openError(e, filename);
  }
  try {
    const st = await fh.stat();
    const inst = await make(fh, st, filename);
    if (node.direct && inst instanceof NodeFileInstance) inst.useDirect((await import('node:fs')).readSync);
    if (locking !== 'off' && inst instanceof NodeFileInstance) {
      await loadLockFs();
      const { resolve } = await import('node:path');
      inst.locks = new ImageLockCheck(st, filename, await LockHolder.get(), resolve(filename));
    }
    return inst;
  } catch (e) {
    await fh.close();
    throw e;
  }
}

export const nodeFileDriver = {
  name: 'file',
  kind: 'protocol',
  protocolPrefixes: ['file:'],
  parseFilename: (filename: string) => ({ filename: parseFileName(filename) }),
  isAvailable: () => typeof process !== 'undefined' && !!process.versions?.node,
  createOptions: [
    { name: 'size', type: 'size', help: 'Virtual disk size' },
    { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, falloc, full)' },
    { name: 'nocow', type: 'bool', help: 'Turn off copy-on-write (valid only on btrfs)' },
    { name: 'extent_size_hint', type: 'size', help: 'Extent size hint for the image file, 0 to disable' },
  ],
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    return openHostFile('file', node, options, (fh, st, filename) => {
      // Devices have their own drivers (host_device, host_cdrom), as in file-posix.
      if (!st.isFile()) throw einval(`'file' driver requires '${filename}' to be a regular file`);
      return new NodeFileInstance(fh, st.size, filename, node);
    });
  },
  create: createFile,
  /** file-posix's delete: unlink, "Error when deleting file X" on failure. */
  async deleteFile(filename: string): Promise<void> {
    const name = filename.startsWith('file:') ? filename.slice(5) : filename;
    const f = await fs();
    await f.unlink(name).catch((e: unknown) => {
      const err = toBlockError(e);
      throw new BlockError(err.code, `Error when deleting file ${name}: ${STRERROR[err.code] ?? err.message}`);
    });
  },
} satisfies BlockDriver;
