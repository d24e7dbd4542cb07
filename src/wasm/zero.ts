/**
 * All-zero detection (detect-zeroes, convert's sparse detection, zero-cluster detection).
 *
 * Two implementations with the same answers:
 * - {@link isZeroTs}: plain TypeScript, works on any Uint8Array.
 * - {@link WasmZero}: the SIMD module; it checks buffers that live in its memory without
 *   copying (get one with {@link WasmZero.buffer}, or several from a {@link ZeroBufferPool}).
 *   {@link WasmZero.isZero} and {@link WasmZero.runLength} use the TypeScript path for a
 *   buffer elsewhere; {@link WasmZero.detector} copies it in (measured faster in Node).
 * Set DISKWORKER_ZERO=js in the environment (Node) to keep the library on the TypeScript
 * path: {@link loadZeroSync} and {@link loadZero} then return undefined.
 *
 * Views into module memory are detached when that memory grows, and only allocations grow
 * it: allocate what is needed up front. The pool and the detector re-create their views
 * from pointers when the memory has grown, so a later allocation cannot leave them detached
 * between uses.
 */
import { BlockError } from '../core/errors.js';
import { loadWasm, loadWasmSync, hasSimd, type WasmBaseExports, type WasmModule } from './loader.js';

interface ZeroExports extends WasmBaseExports {
  isZero(ptr: number, len: number): number;
  runLength(ptr: number, len: number, block: number, zero: number): number;
}

/** Is every byte of `buf` zero? Plain TypeScript, 32 bytes per step on the aligned part. */
export function isZeroTs(buf: Uint8Array): boolean {
  const len = buf.byteLength;
  const off = buf.byteOffset;
  let i = 0;
  // Head up to 4-byte alignment.
  const head = Math.min(len, (4 - (off & 3)) & 3);
  for (; i < head; i++) if (buf[i] !== 0) return false;
  const words = (len - i) >>> 2;
  if (words > 0) {
    const w = new Uint32Array(buf.buffer, off + i, words);
    let j = 0;
    const n8 = words & ~7;
    for (; j < n8; j += 8) {
      if ((w[j]! | w[j + 1]! | w[j + 2]! | w[j + 3]! | w[j + 4]! | w[j + 5]! | w[j + 6]! | w[j + 7]!) !== 0) return false;
    }
    for (; j < words; j++) if (w[j] !== 0) return false;
    i += words << 2;
  }
  for (; i < len; i++) if (buf[i] !== 0) return false;
  return true;
}

/** The SIMD all-zero check over buffers in module memory. */
export class WasmZero {
  readonly module: WasmModule<ZeroExports>;

  constructor(module: WasmModule<ZeroExports>) {
    this.module = module;
  }

  /**
   * A buffer of `size` bytes in module memory: read data into it and check it with
   * {@link isZero} without a copy. Buffers are never freed: allocate once and reuse.
   */
  buffer(size: number): Uint8Array {
    const ptr = this.module.alloc(size);
    return this.module.bytes(ptr, size);
  }

  /** Does `buf` live in this module's memory (so the check needs no copy)? */
  owns(buf: Uint8Array): boolean {
    return buf.buffer === this.module.memory.buffer;
  }

  /** Is every byte of `buf` zero? */
  isZero(buf: Uint8Array): boolean {
    if (this.owns(buf)) return this.module.exports.isZero(buf.byteOffset, buf.byteLength) !== 0;
    return isZeroTs(buf);
  }

  /**
   * An all-zero check for any buffer, for {@link setZeroDetector}: it looks at the first 16
   * bytes in JS, then checks buffers in module memory in place and copies others into a
   * `scratch`-byte buffer allocated now (once) and checks them piece by piece, stopping at
   * the first piece with a non-zero byte. It beats the BigUint64Array loop of
   * src/core/zero-detect.ts for 512 B to 1 MiB buffers, zero or not (bench/wasm/zero.ts;
   * figures in README). The same function is returned for the same `scratch` size.
   */
  detector(scratch = 16384): (buf: Uint8Array) => boolean {
    // One per scratch size and module: every allocation may grow (and detach) memory.
    let fn = this.detectors.get(scratch);
    if (!fn) {
      fn = this.makeDetector(scratch);
      this.detectors.set(scratch, fn);
    }
    return fn;
  }

  private readonly detectors = new Map<number, (buf: Uint8Array) => boolean>();

  private makeDetector(scratch: number): (buf: Uint8Array) => boolean {
    const m = this.module;
    const ptr = m.alloc(scratch);
    let view = m.bytes(ptr, scratch);
    const isZero = m.exports.isZero;
    return (buf: Uint8Array): boolean => {
      const len = buf.byteLength;
      const head = Math.min(len, 16);
      for (let i = 0; i < head; i++) if (buf[i] !== 0) return false;
      if (head === len) return true;
      if (buf.buffer === m.memory.buffer) return isZero(buf.byteOffset, len) !== 0;
      if (view.buffer !== m.memory.buffer) view = m.bytes(ptr, scratch);
      for (let off = 0; off < len; off += scratch) {
        const n = Math.min(scratch, len - off);
        view.set(n === len ? buf : buf.subarray(off, off + n));
        if (isZero(ptr, n) === 0) return false;
      }
      return true;
    };
  }

  /**
   * Length in bytes of the leading run of whole `block`-byte blocks of `buf` that are all
   * zero (`zero` true) or each contain a non-zero byte (`zero` false). The last block may be
   * short. `block` must be a power of two.
   */
  runLength(buf: Uint8Array, block: number, zero: boolean): number {
    if (this.owns(buf)) return this.module.exports.runLength(buf.byteOffset, buf.byteLength, block, zero ? 1 : 0) >>> 0;
    return runLengthTs(buf, block, zero);
  }
}

/**
 * A fixed set of equal-size buffers in module memory, allocated in one piece when the pool
 * is made (so making it grows the memory at most once) and reused: read data into one and
 * check it without a copy. {@link take} returns undefined when all are in use; the caller
 * then uses an ordinary buffer and the TypeScript check.
 */
export class ZeroBufferPool {
  readonly zero: WasmZero;
  /** Bytes per buffer. */
  readonly size: number;
  /** Number of buffers. */
  readonly count: number;
  private readonly base: number;
  private readonly free: number[] = [];

  constructor(zero: WasmZero, count: number, size: number) {
    if (!Number.isInteger(count) || count < 1 || !Number.isInteger(size) || size < 1 || size % 16 !== 0) {
      throw new BlockError('EINVAL', `bad zero buffer pool: ${count} buffers of ${size} bytes (size must be a positive multiple of 16)`);
    }
    this.zero = zero;
    this.size = size;
    this.count = count;
    this.base = zero.module.alloc(count * size);
    for (let i = count - 1; i >= 0; i--) this.free.push(this.base + i * size);
  }

  /** A free buffer of `len` bytes (at most {@link size}), or undefined when none is free. */
  take(len: number = this.size): Uint8Array | undefined {
    if (len > this.size) return undefined;
    const ptr = this.free.pop();
    // A fresh view: one made before the memory last grew would be detached.
    return ptr === undefined ? undefined : this.zero.module.bytes(ptr, len);
  }

  /** Returns a buffer from {@link take}; buffers from elsewhere are ignored. */
  give(buf: Uint8Array): void {
    const rel = buf.byteOffset - this.base;
    if (!this.zero.owns(buf) || rel < 0 || rel % this.size !== 0 || rel / this.size >= this.count) return;
    if (this.free.includes(buf.byteOffset)) throw new BlockError('EINVAL', `zero buffer at 0x${buf.byteOffset.toString(16)} returned twice`);
    this.free.push(buf.byteOffset);
  }

  /** Buffers not in use. */
  available(): number {
    return this.free.length;
  }
}

/** TypeScript version of {@link WasmZero.runLength}. */
export function runLengthTs(buf: Uint8Array, block: number, zero: boolean): number {
  let off = 0;
  while (off < buf.byteLength) {
    const n = Math.min(block, buf.byteLength - off);
    if (isZeroTs(buf.subarray(off, off + n)) !== zero) break;
    off += n;
  }
  return off;
}

/** Loads the SIMD zero module; resolves to undefined when the engine has no SIMD. */
export async function loadZero(): Promise<WasmZero | undefined> {
  if (!hasSimd() || forcedJs()) return undefined;
  return new WasmZero(await loadWasm<ZeroExports>('zero'));
}

/** Synchronous {@link loadZero} (Node, or after setWasmSource with bytes). */
export function loadZeroSync(): WasmZero | undefined {
  if (!hasSimd() || forcedJs()) return undefined;
  return new WasmZero(loadWasmSync<ZeroExports>('zero'));
}

/** DISKWORKER_ZERO=js (Node): benchmarks and tests compare against the TypeScript path. */
function forcedJs(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return env?.['DISKWORKER_ZERO'] === 'js';
}
