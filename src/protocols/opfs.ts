/**
 * opfs: images in the Origin Private File System through
 * FileSystemSyncAccessHandle (dedicated workers only).
 *
 * Filenames: `opfs:/dir/sub/disk.qcow2` (or `/dir/sub/disk.qcow2` when opfs is
 * the graph's default protocol). Directories are created by `create`.
 *
 * The read-write handle is exclusive: a second writer (another tab, worker or
 * node) gets EBUSY "image is in use". Read-only opens use the shared
 * `mode: 'read-only'` handle where the browser has it (feature-detected);
 * elsewhere they need the exclusive handle too.
 *
 * Discard overwrites the range with zeros (no hole punching in OPFS).
 *
 * Quota: a QuotaExceededError from write / truncate becomes ENOSPC; the
 * request fails and nothing after it is written. {@link opfsTestHooks} can
 * impose a smaller quota for tests.
 */
import type { BlockDriver, CreateContext, DriverInstance, IoResult, PreallocMode, ReopenState } from '../core/driver.js';
import { BlockError, einval, toBlockError, STRERROR } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';

/** The parts of FileSystemSyncAccessHandle we use (lib.dom lacks `mode`). */
interface SyncHandle {
  read(buf: Uint8Array, opts?: { at: number }): number;
  write(buf: Uint8Array, opts?: { at: number }): number;
  truncate(size: number): void;
  getSize(): number;
  flush(): void;
  close(): void;
  readonly mode?: string;
}

interface FileHandleWithModes {
  createSyncAccessHandle(opts?: { mode?: 'readwrite' | 'read-only' | 'readwrite-unsafe' }): Promise<SyncHandle>;
  getFile(): Promise<File>;
}

/** Test hooks: a quota smaller than the browser's, counted over the files this worker has open. */
export const opfsTestHooks: { quotaBytes?: number } = {};

const PREFIX = 'opfs:';

/** `opfs:/a/b.img` → ['a', 'b.img']; rejects '..', empty names and NULs. */
export function splitOpfsPath(filename: string): string[] {
  const p = filename.startsWith(PREFIX) ? filename.slice(PREFIX.length) : filename;
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.length === 0) throw einval(`OPFS path '${filename}' names no file`);
  for (const s of parts) {
    if (s === '..' || s.includes('\0') || s.includes('\\')) throw einval(`OPFS path '${filename}' has an invalid component '${s}'`);
  }
  return parts;
}

/** Canonical `opfs:/a/b` name of a path. */
export function opfsName(parts: string[]): string {
  return `${PREFIX}/${parts.join('/')}`;
}

function storageApi(): StorageManager {
  if (typeof navigator === 'undefined' || !navigator.storage?.getDirectory) {
    throw new BlockError('ENOTSUP', 'The Origin Private File System is not available here (navigator.storage.getDirectory is missing)');
  }
  return navigator.storage;
}

/** The directory holding `parts`' last element (created on demand). */
export async function opfsDirectory(parts: string[], create: boolean): Promise<FileSystemDirectoryHandle> {
  let dir = await storageApi().getDirectory();
  for (const d of parts.slice(0, -1)) {
    try {
      dir = await dir.getDirectoryHandle(d, { create });
    } catch (e) {
      throw mapOpfsError(e, `Could not open directory '${d}' of '${opfsName(parts)}'`);
    }
  }
  return dir;
}

function mapOpfsError(e: unknown, what: string): BlockError {
  const err = toBlockError(e);
  return new BlockError(err.code, `${what}: ${STRERROR[err.code] ?? err.message} (${err.message})`, err.context, { cause: e });
}

/** Whether this browser has shared read-only sync access handles. */
export function hasReadOnlySyncHandles(): boolean {
  const proto = (globalThis as { FileSystemSyncAccessHandle?: { prototype: object } }).FileSystemSyncAccessHandle?.prototype;
  return !!proto && 'mode' in proto;
}

/** Sizes of the files this worker has open, for the test quota. */
const openSizes = new Map<OpfsInstance, number>();

function quotaCheck(inst: OpfsInstance, newSize: number): void {
  const quota = opfsTestHooks.quotaBytes;
  if (quota === undefined) return;
  let total = 0;
  for (const [i, s] of openSizes) total += i === inst ? Math.max(s, newSize) : s;
  if (total > quota) {
    throw new DOMException(`Test quota of ${quota} bytes exceeded (${total} bytes needed)`, 'QuotaExceededError');
  }
}

class OpfsInstance implements DriverInstance {
  private size: number;
  private closed = false;
  constructor(
    private handle: SyncHandle,
    private readonly name: string,
    private readonly node: BlockNode,
    private readonly parts: string[],
  ) {
    this.size = handle.getSize();
    openSizes.set(this, this.size);
  }
  readonly supportedWriteFlags = 0;

  getLength(): number {
    return this.size;
  }

  /** Set while a reopen swaps the handle: reads wait for the new one. */
  private swapping: Promise<void> | undefined;

  /** Synchronous: a sync-handle read is a plain pread (IoResult undefined). */
  preadv(offset: number, bytes: number, buf: Uint8Array): IoResult {
    if (this.swapping) return this.swapping.then(() => this.preadv(offset, bytes, buf));
    let done = 0;
    while (done < bytes) {
      const n = this.handle.read(done === 0 && bytes === buf.length ? buf : buf.subarray(done, bytes), { at: offset + done });
      if (n <= 0) {
        buf.fill(0, done, bytes);
        return;
      }
      done += n;
    }
  }

  private fail(e: unknown, what: string, offset: number): BlockError {
    const err = toBlockError(e, { node: this.node.nodeName, offset });
    if (err.code === 'ENOSPC') {
      return new BlockError('ENOSPC', `No space left on device while ${what} '${this.name}' at offset ${offset}: the storage quota is exhausted (${err.message})`, { node: this.node.nodeName, offset }, { cause: e });
    }
    return new BlockError(err.code, `Error while ${what} '${this.name}' at offset ${offset}: ${err.message}`, { node: this.node.nodeName, offset }, { cause: e });
  }

  pwritev(offset: number, bytes: number, buf: Uint8Array): void {
    const end = offset + bytes;
    try {
      if (end > this.size) quotaCheck(this, end);
      let done = 0;
      while (done < bytes) {
        const n = this.handle.write(done === 0 && bytes === buf.length ? buf : buf.subarray(done, bytes), { at: offset + done });
        if (n <= 0) throw new DOMException(`Short write at ${offset + done}`, 'QuotaExceededError');
        done += n;
      }
    } catch (e) {
      // A failed extending write may have grown the file: re-read the size.
      this.size = this.handle.getSize();
      openSizes.set(this, this.size);
      throw this.fail(e, 'writing', offset);
    }
    if (end > this.size) {
      this.size = end;
      openSizes.set(this, end);
    }
  }

  /**
   * OPFS cannot punch holes, so the part of the range inside the file is
   * overwritten with zeros: a discarded range reads as zeros, as it does on
   * node-file, memory and idb (without this, discard was a no-op and the old
   * data stayed readable).
   */
  async pdiscard(offset: number, bytes: number): Promise<void> {
    const end = Math.min(offset + bytes, this.size);
    if (end <= offset) return;
    const zeros = new Uint8Array(Math.min(end - offset, 1 << 20));
    for (let pos = offset; pos < end; pos += zeros.length) {
      const n = Math.min(zeros.length, end - pos);
      this.pwritev(pos, n, zeros.subarray(0, n));
    }
  }

  async flushToDisk(): Promise<void> {
    try {
      this.handle.flush();
    } catch (e) {
      throw this.fail(e, 'flushing', 0);
    }
  }

  async truncate(offset: number, exact: boolean, prealloc: PreallocMode): Promise<void> {
    void exact;
    try {
      if (offset > this.size) quotaCheck(this, offset);
      const old = this.size;
      this.handle.truncate(offset);
      this.size = offset;
      openSizes.set(this, offset);
      if ((prealloc === 'full' || prealloc === 'falloc') && offset > old) {
        // OPFS has no fallocate: write zeros so the space is really taken.
        const zeros = new Uint8Array(Math.min(offset - old, 1 << 20));
        for (let pos = old; pos < offset; pos += zeros.length) {
          const n = Math.min(zeros.length, offset - pos);
          this.handle.write(zeros.subarray(0, n), { at: pos });
        }
      }
    } catch (e) {
      this.size = this.handle.getSize();
      openSizes.set(this, this.size);
      throw this.fail(e, 'resizing', offset);
    }
  }

  async getAllocatedFileSize(): Promise<number> {
    return this.size;
  }

  hasZeroInit(): boolean {
    return true;
  }

  /**
   * A shared read-only handle cannot write: reopening read-write (an active
   * commit into a backing file) swaps it for the exclusive handle. The
   * read-only handle goes first, or the browser refuses the exclusive one.
   * Once swapped the handle stays (it reads as well), also if the reopen is
   * undone or the node goes back to read-only.
   */
  async reopenPrepare(state: ReopenState): Promise<void> {
    if (state.readOnly || this.handle.mode !== 'read-only') return;
    const swap = (async () => {
      this.handle.close();
      try {
        this.handle = await openHandle(this.parts, false, false);
      } catch (e) {
        this.handle = await openHandle(this.parts, true, false);
        throw e;
      }
    })();
    this.swapping = swap.catch(() => undefined);
    try {
      await swap;
    } finally {
      this.swapping = undefined;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    openSizes.delete(this);
    try {
      if (!this.node.readOnly) this.handle.flush();
    } catch (e) {
      throw this.fail(e, 'flushing', 0);
    } finally {
      this.handle.close();
    }
  }
}

async function openHandle(parts: string[], readOnly: boolean, create: boolean): Promise<SyncHandle> {
  const name = opfsName(parts);
  const dir = await opfsDirectory(parts, create);
  let fh: FileHandleWithModes;
  try {
    fh = (await dir.getFileHandle(parts[parts.length - 1]!, { create })) as unknown as FileHandleWithModes;
  } catch (e) {
    throw mapOpfsError(e, `Could not open '${name}'`);
  }
  if (typeof fh.createSyncAccessHandle !== 'function') {
    throw new BlockError('ENOTSUP', `Could not open '${name}': sync access handles exist only in dedicated workers`);
  }
  try {
    if (readOnly && hasReadOnlySyncHandles()) return await fh.createSyncAccessHandle({ mode: 'read-only' });
    return await fh.createSyncAccessHandle();
  } catch (e) {
    const err = toBlockError(e);
    if (err.code === 'EBUSY' || (e as { name?: string })?.name === 'InvalidStateError') {
      throw new BlockError(
        'EBUSY',
        `Could not open '${name}': the image is in use (it is open for writing in another tab, worker or node)`,
        {},
        { cause: e },
      );
    }
    throw mapOpfsError(e, `Could not open '${name}'`);
  }
}

async function createFile(ctx: CreateContext): Promise<void> {
  const size = ctx.options.size('size', 0);
  const prealloc = ctx.options.choice('preallocation', ['off', 'falloc', 'full'] as const, 'off');
  ctx.options.finish();
  const parts = splitOpfsPath(ctx.filename);
  const handle = await openHandle(parts, false, true);
  const fake = { nodeName: 'create' } as BlockNode;
  const inst = new OpfsInstance(handle, opfsName(parts), fake, parts);
  try {
    await inst.truncate(0, true, 'off');
    await inst.truncate(size, true, prealloc);
  } finally {
    await inst.close();
  }
}

/** Lists the files under `dir` (recursively) as `opfs:/...` names with sizes (-1 when locked). */
export async function listOpfs(prefix = '/'): Promise<Array<{ path: string; size: number }>> {
  const out: Array<{ path: string; size: number }> = [];
  const parts = prefix.split('/').filter(Boolean);
  let dir = await storageApi().getDirectory();
  for (const p of parts) {
    try {
      dir = await dir.getDirectoryHandle(p);
    } catch {
      return out;
    }
  }
  async function walk(d: FileSystemDirectoryHandle, path: string[]): Promise<void> {
    const entries = (d as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries();
    for await (const [name, h] of entries) {
      if (h.kind === 'directory') await walk(h as FileSystemDirectoryHandle, [...path, name]);
      else {
        let size = -1;
        try {
          size = (await (h as FileSystemFileHandle).getFile()).size;
        } catch {
          /* locked by an access handle */
        }
        out.push({ path: opfsName([...path, name]), size });
      }
    }
  }
  await walk(dir, parts);
  return out;
}

/** Removes a file (EBUSY when open, ENOENT when missing). */
export async function removeOpfs(filename: string): Promise<void> {
  const parts = splitOpfsPath(filename);
  const dir = await opfsDirectory(parts, false);
  try {
    await dir.removeEntry(parts[parts.length - 1]!, { recursive: true });
  } catch (e) {
    const err = toBlockError(e);
    if (err.code === 'EBUSY' || (e as { name?: string })?.name === 'InvalidStateError') {
      throw new BlockError('EBUSY', `Cannot remove '${opfsName(parts)}': the image is in use`, {}, { cause: e });
    }
    throw mapOpfsError(e, `Cannot remove '${opfsName(parts)}'`);
  }
}

export const opfsDriver = {
  name: 'opfs',
  kind: 'protocol',
  protocolPrefixes: [PREFIX],
  parseFilename: (filename: string) => ({ filename: opfsName(splitOpfsPath(filename)) }),
  isAvailable: () => typeof navigator !== 'undefined' && !!navigator.storage?.getDirectory,
  createOptions: [
    { name: 'size', type: 'size', help: 'Virtual disk size' },
    { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, falloc, full)' },
  ],
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const filename = options.string('filename');
    if (filename === undefined || filename === '') throw einval("The 'opfs' block driver requires a file name");
    options.choice('locking', ['auto', 'on', 'off'] as const);
    const parts = splitOpfsPath(filename);
    const name = opfsName(parts);
    node.filename = name;
    const handle = await openHandle(parts, node.readOnly, false);
    return new OpfsInstance(handle, name, node, parts);
  },
  create: createFile,
  catalogue: { storage: 'opfs', list: () => listOpfs(), remove: removeOpfs },
} satisfies BlockDriver;
