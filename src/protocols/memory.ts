/**
 * memory: the reference back end and test fixture. A sparse image held in
 * fixed-size chunks (holes read as zeros and report as such in block status),
 * named so it can be reopened (`memory:name`), with a fault hook that fails
 * writes or silently stops persisting them after the Nth write (power cut),
 * and fails reads of a chosen range.
 */
import type { BlockDriver, BlockStatusResult, DriverInstance, PreallocMode } from '../core/driver.js';
import { Status } from '../core/driver.js';
import { BlockError, einval, type ErrorCode } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';
import { copyRangeTo, type CopyRangeRequest } from '../core/copy-range.js';

const CHUNK_SHIFT = 16;
const CHUNK = 1 << CHUNK_SHIFT;

/** Faults injected into writes of a memory file. */
export interface MemoryFaults {
  /** Writes after this many succeed fail with {@link failCode}. */
  failAfterWrites?: number;
  /** Code of injected failures. Default EIO. */
  failCode?: ErrorCode;
  /**
   * Writes after this many succeed are dropped without error: the stored
   * image is what a power cut at that point would leave.
   */
  dropAfterWrites?: number;
  /** Reads that touch [start, end) fail with {@link failCode}. */
  failReads?: { start: number; end: number };
}

/** The bytes of one memory image. */
export class MemoryFile {
  private readonly chunks = new Map<number, Uint8Array>();
  length: number;
  /** Successful writes (write, zero, discard, truncate) seen so far. */
  writeCount = 0;
  faults: MemoryFaults = {};
  /** Set while a node has it open for writing. */
  writer: string | null = null;

  constructor(length = 0) {
    this.length = length;
  }

  /** Counts a modifying operation; false means "drop it" (power cut), throws for failures. */
  private admit(what: string, offset: number): boolean {
    const f = this.faults;
    if (f.failAfterWrites !== undefined && this.writeCount >= f.failAfterWrites) {
      throw new BlockError(f.failCode ?? 'EIO', `Injected ${f.failCode ?? 'EIO'} on ${what} at offset ${offset}`, { offset });
    }
    this.writeCount++;
    return !(f.dropAfterWrites !== undefined && this.writeCount > f.dropAfterWrites);
  }

  read(offset: number, buf: Uint8Array): void {
    const bad = this.faults.failReads;
    if (bad && offset < bad.end && offset + buf.length > bad.start) {
      const code = this.faults.failCode ?? 'EIO';
      throw new BlockError(code, `Injected ${code} on read at offset ${offset}`, { offset });
    }
    let done = 0;
    const end = Math.min(offset + buf.length, this.length);
    while (offset + done < end) {
      const pos = offset + done;
      const idx = Math.floor(pos / CHUNK);
      const within = pos - idx * CHUNK;
      const n = Math.min(CHUNK - within, end - pos);
      const c = this.chunks.get(idx);
      if (c) buf.set(c.subarray(within, within + n), done);
      else buf.fill(0, done, done + n);
      done += n;
    }
    if (done < buf.length) buf.fill(0, done);
  }

  write(offset: number, data: Uint8Array): void {
    if (!this.admit('write', offset)) return;
    this.writeRaw(offset, data);
  }

  /** Writes without counting (used to seed content). */
  writeRaw(offset: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const idx = Math.floor(pos / CHUNK);
      const within = pos - idx * CHUNK;
      const n = Math.min(CHUNK - within, data.length - done);
      let c = this.chunks.get(idx);
      if (!c) {
        c = new Uint8Array(CHUNK);
        this.chunks.set(idx, c);
      }
      c.set(data.subarray(done, done + n), within);
      done += n;
    }
    if (offset + data.length > this.length) this.length = offset + data.length;
  }

  /** Zeros a range, dropping whole chunks (holes). */
  zero(offset: number, bytes: number): void {
    if (!this.admit('write zeroes', offset)) return;
    this.zeroRaw(offset, bytes);
    if (offset + bytes > this.length) this.length = offset + bytes;
  }

  private zeroRaw(offset: number, bytes: number): void {
    let pos = offset;
    const end = offset + bytes;
    while (pos < end) {
      const idx = Math.floor(pos / CHUNK);
      const within = pos - idx * CHUNK;
      const n = Math.min(CHUNK - within, end - pos);
      if (n === CHUNK) this.chunks.delete(idx);
      else this.chunks.get(idx)?.fill(0, within, within + n);
      pos += n;
    }
  }

  truncate(length: number): void {
    if (!this.admit('truncate', length)) return;
    if (length < this.length) this.zeroRaw(length, Math.ceil(this.length / CHUNK) * CHUNK - length);
    this.length = length;
  }

  /** Whether a byte range holds any allocated chunk, and how far the answer goes. */
  status(offset: number, bytes: number): { data: boolean; pnum: number } {
    const idx = Math.floor(offset / CHUNK);
    const data = this.chunks.has(idx);
    let end = (idx + 1) * CHUNK;
    while (end < offset + bytes && this.chunks.has(Math.floor(end / CHUNK)) === data) end += CHUNK;
    return { data, pnum: Math.min(end, offset + bytes) - offset };
  }

  /** Bytes held in memory. */
  get allocatedBytes(): number {
    return this.chunks.size * CHUNK;
  }

  /** A full copy (for power-cut snapshots). */
  clone(): MemoryFile {
    const m = new MemoryFile(this.length);
    for (const [k, v] of this.chunks) m.chunks.set(k, v.slice());
    return m;
  }

  /** The whole content as one buffer (small images, tests). */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    this.read(0, out);
    return out;
  }
}

/** Named memory files shared by the nodes of a process (what a directory is to files). */
export class MemoryStorage {
  readonly files = new Map<string, MemoryFile>();

  get(name: string): MemoryFile | undefined {
    return this.files.get(name);
  }

  /** Creates (or replaces) a file. */
  create(name: string, length = 0): MemoryFile {
    const f = new MemoryFile(length);
    this.files.set(name, f);
    return f;
  }

  remove(name: string): boolean {
    return this.files.delete(name);
  }
}

/** The storage used by {@link memoryDriver}. */
export const defaultMemoryStorage = new MemoryStorage();

class MemoryInstance implements DriverInstance {
  constructor(
    readonly file: MemoryFile,
    private readonly node: BlockNode,
  ) {}
  readonly supportedWriteFlags = 0;
  readonly supportedZeroFlags = 0x02; // MAY_UNMAP

  getLength(): number {
    return this.file.length;
  }
  preadv(offset: number, _bytes: number, buf: Uint8Array): void {
    this.file.read(offset, buf);
  }
  pwritev(offset: number, _bytes: number, buf: Uint8Array): void {
    this.file.write(offset, buf);
  }
  async pwriteZeroes(offset: number, bytes: number): Promise<void> {
    this.file.zero(offset, bytes);
  }
  /** The source is this memory file: the destination side takes over. */
  copyRangeFrom(r: CopyRangeRequest): Promise<void> {
    return copyRangeTo(r);
  }
  /** Memory to memory within the process; any other source cannot be copied here. */
  async copyRangeTo(r: CopyRangeRequest): Promise<void> {
    const src = r.src.node.instance;
    if (!(src instanceof MemoryInstance)) throw new BlockError('ENOTSUP', 'Operation not supported');
    const step = 1 << 20;
    const buf = new Uint8Array(Math.min(step, r.bytes));
    for (let done = 0; done < r.bytes; done += step) {
      const n = Math.min(step, r.bytes - done);
      src.file.read(r.srcOffset + done, buf.subarray(0, n));
      this.file.write(r.dstOffset + done, buf.subarray(0, n));
    }
  }
  async pdiscard(offset: number, bytes: number): Promise<void> {
    this.file.zero(offset, Math.min(bytes, Math.max(0, this.file.length - offset)));
  }
  async truncate(offset: number, _exact: boolean, prealloc: PreallocMode): Promise<void> {
    if (prealloc !== 'off' && prealloc !== 'metadata' && offset > this.file.length) {
      const old = this.file.length;
      this.file.truncate(offset);
      // falloc / full: materialize the new range so it counts as allocated.
      const zeros = new Uint8Array(Math.min(offset - old, 1 << 20));
      for (let pos = old; pos < offset; pos += zeros.length) {
        this.file.writeRaw(pos, zeros.subarray(0, Math.min(zeros.length, offset - pos)));
      }
      return;
    }
    this.file.truncate(offset);
  }
  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const s = this.file.status(offset, bytes);
    return {
      status: (s.data ? Status.DATA : Status.ZERO) | Status.OFFSET_VALID,
      pnum: s.pnum,
      map: offset,
      file: this.node,
    };
  }
  async getAllocatedFileSize(): Promise<number> {
    return this.file.allocatedBytes;
  }
  hasZeroInit(): boolean {
    return true;
  }
  async close(): Promise<void> {
    if (this.file.writer === this.node.nodeName) this.file.writer = null;
  }
}

/** Options: `filename` ("memory:name" or "name"), `size` to create it if missing. */
export function createMemoryDriver(storage: MemoryStorage, name = 'memory'): BlockDriver {
  const strip = (f: string) => (f.startsWith(`${name}:`) ? f.slice(name.length + 1) : f);
  return {
    name,
    kind: 'protocol',
    protocolPrefixes: [`${name}:`],
    parseFilename: (filename) => ({ filename: strip(filename) }),
    async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
      const fname = options.string('filename');
      if (fname === undefined) throw einval(`The '${name}' block driver requires a file name`);
      const key = strip(fname);
      node.filename = `${name}:${key}`;
      const size = options.size('size');
      let file = storage.get(key);
      if (!file) {
        if (size === undefined) {
          throw new BlockError('ENOENT', `Could not open '${name}:${key}': No such file or directory`);
        }
        file = storage.create(key, size);
      }
      if (!node.readOnly) {
        if (file.writer !== null) {
          throw new BlockError('EBUSY', `Image '${name}:${key}' is in use: already open for writing by node '${file.writer}'`);
        }
        file.writer = node.nodeName;
      }
      return new MemoryInstance(file, node);
    },
    async create(ctx) {
      const size = ctx.options.size('size', 0);
      ctx.options.consume('preallocation');
      ctx.options.finish();
      storage.create(strip(ctx.filename), size);
    },
    catalogue: {
      storage: name,
      list: async () => [...storage.files].map(([key, f]) => ({ path: `${name}:${key}`, size: f.length })),
      async remove(filename: string) {
        const key = strip(filename);
        const file = storage.get(key);
        if (!file) throw new BlockError('ENOENT', `Cannot remove '${name}:${key}': No such file or directory`);
        if (file.writer !== null) throw new BlockError('EBUSY', `Cannot remove '${name}:${key}': the image is in use`);
        storage.remove(key);
      },
    },
  } satisfies BlockDriver;
}

/** The memory driver over {@link defaultMemoryStorage}. */
export const memoryDriver = createMemoryDriver(defaultMemoryStorage);
