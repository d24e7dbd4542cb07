/**
 * zstd (RFC 8878) for qcow2 compressed clusters (compression_type=zstd), in WASM.
 *
 * - {@link WasmZstd.decompress}: any zstd frame(s) without a dictionary, into a buffer of
 *   declared size, never beyond it. The content checksum is verified when present.
 *   `cluster` gives QEMU's rule (block/qcow2-threads.c qcow2_zstd_decompress): decode
 *   frames until the output is full and ignore what follows (sector padding); a frame that
 *   does not end exactly there is EIO.
 * - {@link WasmZstd.compress}: one zstd frame (single segment, content size, no checksum),
 *   levels 1..19, readable by every zstd decoder (QEMU's included).
 *
 * The source and destination are copied into and out of module memory. Corrupt and
 * truncated frames become BlockError EIO naming the input offset; dictionaries ENOTSUP.
 */
import { BlockError, type ErrorContext } from '../core/errors.js';
import { loadWasm, loadWasmSync, statusError, trapError, WasmStatus, type WasmBaseExports, type WasmModule } from './loader.js';

interface ZstdExports extends WasmBaseExports {
  decompress(src: number, srcLen: number, dst: number, dstLen: number, flags: number): number;
  compress(src: number, srcLen: number, dst: number, dstLen: number, level: number): number;
  errorOffset(): number;
}

const FLAG_CLUSTER = 1;

/** Largest buffer the wrappers accept (qcow2's largest cluster is 2 MiB). */
export const MAX_ZSTD_BUFFER = 256 * 1024 * 1024;

/** Bytes of scratch the module may touch after the input and the output. */
const SLACK = 64;

/** Compression levels: 1 (fastest) .. 19 (smallest); QEMU uses zstd's default, 3. */
export const ZSTD_MIN_LEVEL = 1;
export const ZSTD_MAX_LEVEL = 19;
export const ZSTD_DEFAULT_LEVEL = 3;

/** The WASM zstd codec. */
export class WasmZstd {
  readonly module: WasmModule<ZstdExports>;
  private inPtr = 0;
  private inSize = 0;
  private outPtr = 0;
  private outSize = 0;

  constructor(module: WasmModule<ZstdExports>) {
    this.module = module;
  }

  private ensure(inLen: number, outLen: number): void {
    if (inLen > MAX_ZSTD_BUFFER || outLen > MAX_ZSTD_BUFFER) {
      throw new BlockError('EINVAL', `zstd: buffer of ${Math.max(inLen, outLen)} bytes is larger than ${MAX_ZSTD_BUFFER}`);
    }
    // Never freed (stub runtime): grow to the largest size seen, rounded up to 64 KiB.
    if (inLen > this.inSize) {
      this.inSize = Math.ceil(Math.max(inLen, 65536) / 65536) * 65536;
      this.inPtr = this.module.alloc(this.inSize + SLACK);
    }
    if (outLen > this.outSize) {
      this.outSize = Math.ceil(Math.max(outLen, 65536) / 65536) * 65536;
      this.outPtr = this.module.alloc(this.outSize + SLACK);
    }
  }

  /**
   * Decodes the zstd frames in `src` into `dst`; returns the number of bytes written.
   * Throws EIO for corrupt, truncated or checksum-failing data and when the data holds more
   * than `dst.byteLength` bytes. With `cluster`, stops once `dst` is full at a frame's end
   * and ignores the rest of `src`.
   */
  decompressInto(src: Uint8Array, dst: Uint8Array, cluster = false, context: ErrorContext = {}): number {
    this.ensure(src.byteLength, dst.byteLength);
    const m = this.module;
    m.u8.set(src, this.inPtr);
    let r: number;
    try {
      r = m.exports.decompress(this.inPtr, src.byteLength, this.outPtr, dst.byteLength, cluster ? FLAG_CLUSTER : 0);
    } catch (e) {
      throw trapError(e, 'zstd decompress', context);
    }
    if (r < 0) throw statusError(r, 'zstd decompress', context, m.exports.errorOffset());
    dst.set(m.u8.subarray(this.outPtr, this.outPtr + r));
    return r;
  }

  /** Decodes all the frames in `src` into a new array (its size found by growing). */
  decompress(src: Uint8Array, sizeHint = 0, context: ErrorContext = {}): Uint8Array {
    let size = Math.max(sizeHint, src.byteLength * 4, 65536);
    for (;;) {
      size = Math.min(size, MAX_ZSTD_BUFFER);
      this.ensure(src.byteLength, size);
      const m = this.module;
      m.u8.set(src, this.inPtr);
      let r: number;
      try {
        r = m.exports.decompress(this.inPtr, src.byteLength, this.outPtr, size, 0);
      } catch (e) {
        throw trapError(e, 'zstd decompress', context);
      }
      if (r === WasmStatus.OVERFLOW && size < MAX_ZSTD_BUFFER) {
        size *= 4;
        continue;
      }
      if (r < 0) throw statusError(r, 'zstd decompress', context, m.exports.errorOffset());
      return m.u8.slice(this.outPtr, this.outPtr + r);
    }
  }

  /**
   * Compresses `src` at `level` into one frame in `dst`; returns its size, or -1 when it
   * does not fit in `dst`.
   */
  compressInto(src: Uint8Array, dst: Uint8Array, level: number = ZSTD_DEFAULT_LEVEL): number {
    if (!Number.isInteger(level) || level < ZSTD_MIN_LEVEL || level > ZSTD_MAX_LEVEL) {
      throw new BlockError('EINVAL', `zstd: bad level ${level} (${ZSTD_MIN_LEVEL}..${ZSTD_MAX_LEVEL})`);
    }
    this.ensure(src.byteLength, dst.byteLength);
    const m = this.module;
    m.u8.set(src, this.inPtr);
    let r: number;
    try {
      r = m.exports.compress(this.inPtr, src.byteLength, this.outPtr, dst.byteLength, level);
    } catch (e) {
      throw trapError(e, 'zstd compress');
    }
    if (r === WasmStatus.OVERFLOW) return -1;
    if (r < 0) throw statusError(r, 'zstd compress');
    dst.set(m.u8.subarray(this.outPtr, this.outPtr + r));
    return r;
  }

  /** Compresses `src` into one frame; a new array, or null when it is not smaller than `src`. */
  compress(src: Uint8Array, level: number = ZSTD_DEFAULT_LEVEL): Uint8Array | null {
    if (src.byteLength === 0) return null;
    const out = new Uint8Array(src.byteLength - 1);
    const n = this.compressInto(src, out, level);
    return n < 0 ? null : out.slice(0, n);
  }

  /** A frame of any size (the output is given room for incompressible data). */
  compressFrame(src: Uint8Array, level: number = ZSTD_DEFAULT_LEVEL): Uint8Array {
    const out = new Uint8Array(src.byteLength + (src.byteLength >> 7) + 64);
    const n = this.compressInto(src, out, level);
    if (n < 0) throw new BlockError('EIO', 'zstd compress: frame larger than its bound');
    return out.slice(0, n);
  }
}

/** Loads the WASM zstd codec. */
export async function loadZstd(): Promise<WasmZstd> {
  return new WasmZstd(await loadWasm<ZstdExports>('zstd'));
}

/** Synchronous {@link loadZstd} (Node, or after setWasmSource with bytes). */
export function loadZstdSync(): WasmZstd {
  return new WasmZstd(loadWasmSync<ZstdExports>('zstd'));
}
