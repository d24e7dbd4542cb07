/**
 * Raw deflate for qcow2 compressed clusters, in WASM.
 *
 * - {@link WasmDeflate.inflate}: decodes into a buffer of declared size, never beyond it.
 *   With `partial` it succeeds once the buffer is full even if the stream continues (QEMU's
 *   rule: compressed cluster sizes are rounded up to 512-byte sectors).
 * - {@link WasmDeflate.deflate}: levels 1..9 with a 4 KiB window (every distance <= 4096,
 *   as QEMU's window bits 12), so every QEMU version reads the result.
 *
 * The source and destination are copied into and out of module memory (a 64 KiB copy costs
 * microseconds; the codec, hundreds). Corrupt and truncated streams become BlockError EIO
 * naming the input offset.
 */
import { BlockError, type ErrorContext } from '../core/errors.js';
import { loadWasm, loadWasmSync, statusError, trapError, WasmStatus, type WasmBaseExports, type WasmModule } from './loader.js';

interface DeflateExports extends WasmBaseExports {
  inflate(src: number, srcLen: number, dst: number, dstLen: number, flags: number): number;
  deflate(src: number, srcLen: number, dst: number, dstLen: number, level: number): number;
  errorOffset(): number;
}

const FLAG_PARTIAL = 1;

/** Largest buffer the wrappers accept (qcow2's largest cluster is 2 MiB). */
export const MAX_CODEC_BUFFER = 64 * 1024 * 1024;

/** The WASM deflate / inflate codec. */
export class WasmDeflate {
  readonly module: WasmModule<DeflateExports>;
  private inPtr = 0;
  private inSize = 0;
  private outPtr = 0;
  private outSize = 0;

  constructor(module: WasmModule<DeflateExports>) {
    this.module = module;
  }

  private ensure(inLen: number, outLen: number): void {
    if (inLen > MAX_CODEC_BUFFER || outLen > MAX_CODEC_BUFFER) {
      throw new BlockError('EINVAL', `deflate: buffer of ${Math.max(inLen, outLen)} bytes is larger than ${MAX_CODEC_BUFFER}`);
    }
    // Never freed (stub runtime): grow to the largest size seen, rounded up to 64 KiB.
    if (inLen > this.inSize) {
      this.inSize = Math.ceil(Math.max(inLen, 65536) / 65536) * 65536;
      this.inPtr = this.module.alloc(this.inSize);
    }
    // 8 bytes of slack so the decoder's 8-byte match copies never need a slow path at the end.
    if (outLen > this.outSize) {
      this.outSize = Math.ceil(Math.max(outLen, 65536) / 65536) * 65536;
      this.outPtr = this.module.alloc(this.outSize + 8);
    }
  }

  /**
   * Inflates raw deflate `src` into `dst`; returns the number of bytes written.
   * Throws EIO for corrupt or truncated data and when the data holds more than
   * `dst.byteLength` bytes (unless `partial`, which stops when `dst` is full).
   */
  inflate(src: Uint8Array, dst: Uint8Array, partial = false, context: ErrorContext = {}): number {
    this.ensure(src.byteLength, dst.byteLength);
    const m = this.module;
    m.u8.set(src, this.inPtr);
    let r: number;
    try {
      r = m.exports.inflate(this.inPtr, src.byteLength, this.outPtr, dst.byteLength, partial ? FLAG_PARTIAL : 0);
    } catch (e) {
      throw trapError(e, 'inflate', context);
    }
    if (r < 0) throw statusError(r, 'inflate', context, m.exports.errorOffset());
    dst.set(m.u8.subarray(this.outPtr, this.outPtr + r));
    return r;
  }

  /**
   * Deflates `src` at `level` (1..9, 4 KiB window) into `dst`; returns the compressed
   * size, or -1 when the result does not fit in `dst`.
   */
  deflateInto(src: Uint8Array, dst: Uint8Array, level: number): number {
    if (!Number.isInteger(level) || level < 1 || level > 9) throw new BlockError('EINVAL', `deflate: bad level ${level}`);
    this.ensure(src.byteLength, dst.byteLength);
    const m = this.module;
    m.u8.set(src, this.inPtr);
    let r: number;
    try {
      r = m.exports.deflate(this.inPtr, src.byteLength, this.outPtr, dst.byteLength, level);
    } catch (e) {
      throw trapError(e, 'deflate');
    }
    if (r === WasmStatus.OVERFLOW) return -1;
    if (r < 0) throw statusError(r, 'deflate');
    dst.set(m.u8.subarray(this.outPtr, this.outPtr + r));
    return r;
  }

  /** Deflates `src`; a new array with the stream, or null when it is not smaller than `src`. */
  deflate(src: Uint8Array, level: number): Uint8Array | null {
    if (src.byteLength === 0) return null;
    const out = new Uint8Array(src.byteLength - 1);
    const n = this.deflateInto(src, out, level);
    return n < 0 ? null : out.slice(0, n);
  }
}

/** Loads the WASM deflate codec. */
export async function loadDeflate(): Promise<WasmDeflate> {
  return new WasmDeflate(await loadWasm<DeflateExports>('deflate'));
}

/** Synchronous {@link loadDeflate}. */
export function loadDeflateSync(): WasmDeflate {
  return new WasmDeflate(loadWasmSync<DeflateExports>('deflate'));
}
