/**
 * All-zero detection (detect-zeroes, convert's sparse detection, zero-cluster detection).
 *
 * Two implementations with the same answers:
 * - {@link isZeroTs}: plain TypeScript, works on any Uint8Array.
 * - {@link WasmZero}: the SIMD module; it checks buffers that live in its memory without
 *   copying (get one with {@link WasmZero.buffer}). For a buffer elsewhere it uses the
 *   TypeScript path, because copying it in first would cost more than the check.
 */
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
   * Length in bytes of the leading run of whole `block`-byte blocks of `buf` that are all
   * zero (`zero` true) or each contain a non-zero byte (`zero` false). The last block may be
   * short. `block` must be a power of two.
   */
  runLength(buf: Uint8Array, block: number, zero: boolean): number {
    if (this.owns(buf)) return this.module.exports.runLength(buf.byteOffset, buf.byteLength, block, zero ? 1 : 0) >>> 0;
    return runLengthTs(buf, block, zero);
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
  if (!hasSimd()) return undefined;
  return new WasmZero(await loadWasm<ZeroExports>('zero'));
}

/** Synchronous {@link loadZero} (Node, or after setWasmSource with bytes). */
export function loadZeroSync(): WasmZero | undefined {
  if (!hasSimd()) return undefined;
  return new WasmZero(loadWasmSync<ZeroExports>('zero'));
}
