/**
 * The deflate codec the qcow2 driver uses for compressed clusters, picked per environment
 * from measured speed (bench/wasm/deflate.ts; figures in README):
 *
 * | environment | inflate                        | deflate (window bits 12)        |
 * |-------------|--------------------------------|---------------------------------|
 * | Node        | WASM (faster than node:zlib)   | node:zlib (faster than WASM)    |
 * | browser     | WASM (faster than              | WASM (CompressionStream cannot  |
 * |             | DecompressionStream)           | limit the window to 4 KiB)      |
 *
 * Fallbacks when the WASM module cannot load: node:zlib in Node; in browsers
 * DecompressionStream('deflate-raw') for inflate, and no compression for deflate
 * (deflateCluster returns null, so the cluster is written uncompressed).
 *
 * Semantics follow QEMU: a compressed cluster inflates into exactly one cluster buffer and
 * anything after the stream (sector padding) is ignored; a stream that yields fewer bytes
 * than the cluster is EIO. Compressed output uses a window of at most 4 KiB.
 */
import { BlockError, type ErrorContext } from '../core/errors.js';
import { WasmDeflate, loadDeflate, loadDeflateSync } from './deflate.js';
import { WasmZstd, loadZstd, loadZstdSync, ZSTD_DEFAULT_LEVEL } from './zstd.js';

/** A codec for compressed clusters. */
export interface ClusterCodec {
  /** Which implementation inflates ("wasm", "node:zlib", "DecompressionStream"). */
  readonly inflateImpl: string;
  /** Which implementation deflates ("wasm", "node:zlib", "none"). */
  readonly deflateImpl: string;
  /**
   * Inflates the compressed cluster `src` into all of `dst` (one cluster); returns
   * dst.byteLength. EIO (naming the input offset) for corrupt or short data.
   */
  inflateCluster(src: Uint8Array, dst: Uint8Array, context?: ErrorContext): Promise<number>;
  /** {@link inflateCluster} without a promise, where the implementation is synchronous (not DecompressionStream). */
  inflateClusterSync?(src: Uint8Array, dst: Uint8Array, context?: ErrorContext): number;
  /** Raw deflate of `src` at `level` (1..9, window <= 4 KiB), or null when it does not shrink. */
  deflateCluster(src: Uint8Array, level?: number): Uint8Array | null;
}

type NodeZlib = typeof import('node:zlib');

/** Node's zlib (undefined outside Node). */
export function nodeZlib(): NodeZlib | undefined {
  const p = (globalThis as { process?: { versions?: { node?: string }; getBuiltinModule?: (id: string) => unknown } }).process;
  if (typeof p?.versions?.node !== 'string' || typeof p.getBuiltinModule !== 'function') return undefined;
  try {
    return p.getBuiltinModule('node:zlib') as NodeZlib;
  } catch {
    return undefined;
  }
}

function shortCluster(got: number, want: number, context: ErrorContext): BlockError {
  return new BlockError('EIO', `compressed cluster inflates to ${got} bytes, expected ${want}`, { ...context, expected: `${want} bytes` });
}

function checkLevel(level: number): void {
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new BlockError('EINVAL', `bad compression level ${level} (1..9)`);
}

function wasmInflate(w: WasmDeflate, src: Uint8Array, dst: Uint8Array, context: ErrorContext): number {
  const n = w.inflate(src, dst, true, context);
  if (n !== dst.byteLength) throw shortCluster(n, dst.byteLength, context);
  return n;
}

function zlibDeflate(z: NodeZlib, src: Uint8Array, level: number): Uint8Array | null {
  checkLevel(level);
  if (src.byteLength === 0) return null;
  const out = z.deflateRawSync(src, { level, windowBits: 12, memLevel: 8 });
  return out.byteLength < src.byteLength ? new Uint8Array(out.buffer, out.byteOffset, out.byteLength) : null;
}

function zlibInflate(z: NodeZlib, src: Uint8Array, dst: Uint8Array, context: ErrorContext): number {
  let out: Buffer;
  try {
    out = z.inflateRawSync(src, { finishFlush: z.constants.Z_SYNC_FLUSH, maxOutputLength: dst.byteLength, windowBits: 15 });
  } catch (e) {
    // maxOutputLength exceeded means "the stream goes on past the cluster": QEMU accepts it.
    if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      return zlibInflatePrefix(z, src, dst, context);
    }
    throw new BlockError('EIO', `inflate of compressed cluster: ${(e as Error).message}`, context, { cause: e });
  }
  if (out.byteLength < dst.byteLength) throw shortCluster(out.byteLength, dst.byteLength, context);
  dst.set(out.subarray(0, dst.byteLength));
  return dst.byteLength;
}

/** Inflates only the first dst.byteLength bytes of a longer stream (node:zlib path). */
function zlibInflatePrefix(z: NodeZlib, src: Uint8Array, dst: Uint8Array, context: ErrorContext): number {
  // Decode with a generous limit and keep the prefix; the stream is bounded by src anyway
  // (deflate expands at most 1032x).
  try {
    const out = z.inflateRawSync(src, { finishFlush: z.constants.Z_SYNC_FLUSH, maxOutputLength: Math.max(dst.byteLength, src.byteLength * 1032 + 1024) });
    if (out.byteLength < dst.byteLength) throw shortCluster(out.byteLength, dst.byteLength, context);
    dst.set(out.subarray(0, dst.byteLength));
    return dst.byteLength;
  } catch (e) {
    if (e instanceof BlockError) throw e;
    throw new BlockError('EIO', `inflate of compressed cluster: ${(e as Error).message}`, context, { cause: e });
  }
}

async function streamInflate(src: Uint8Array, dst: Uint8Array, context: ErrorContext): Promise<number> {
  const ds = new DecompressionStream('deflate-raw' as CompressionFormat);
  const reader = new Blob([src as BlobPart]).stream().pipeThrough(ds).getReader();
  let n = 0;
  try {
    while (n < dst.byteLength) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.byteLength, dst.byteLength - n);
      dst.set(value.subarray(0, take), n);
      n += take;
    }
  } catch (e) {
    // Trailing sector padding makes the stream "corrupt" after its end: only an error
    // before the cluster is full counts.
    if (n < dst.byteLength) throw new BlockError('EIO', `inflate of compressed cluster: ${(e as Error).message}`, context, { cause: e });
  } finally {
    reader.cancel().catch(() => undefined);
  }
  if (n < dst.byteLength) throw shortCluster(n, dst.byteLength, context);
  return n;
}

function makeCodec(wasm: WasmDeflate | undefined): ClusterCodec {
  const z = nodeZlib();
  if (wasm) {
    return {
      inflateImpl: 'wasm',
      deflateImpl: z ? 'node:zlib' : 'wasm',
      async inflateCluster(src, dst, context = {}) {
        return wasmInflate(wasm, src, dst, context);
      },
      inflateClusterSync(src, dst, context = {}) {
        return wasmInflate(wasm, src, dst, context);
      },
      deflateCluster(src, level = 6) {
        if (z) return zlibDeflate(z, src, level);
        checkLevel(level);
        return wasm.deflate(src, level);
      },
    };
  }
  if (z) {
    return {
      inflateImpl: 'node:zlib',
      deflateImpl: 'node:zlib',
      async inflateCluster(src, dst, context = {}) {
        return zlibInflate(z, src, dst, context);
      },
      inflateClusterSync(src, dst, context = {}) {
        return zlibInflate(z, src, dst, context);
      },
      deflateCluster(src, level = 6) {
        return zlibDeflate(z, src, level);
      },
    };
  }
  return {
    inflateImpl: 'DecompressionStream',
    deflateImpl: 'none',
    inflateCluster(src, dst, context = {}) {
      return streamInflate(src, dst, context);
    },
    deflateCluster(_src, level = 6) {
      checkLevel(level);
      return null;
    },
  };
}

let codecPromise: Promise<ClusterCodec> | undefined;

/** The fastest codec available here (loaded once). */
export function getClusterCodec(): Promise<ClusterCodec> {
  codecPromise ??= loadDeflate().then(
    (w) => makeCodec(w),
    () => makeCodec(undefined),
  );
  return codecPromise;
}

/** Synchronous {@link getClusterCodec} for Node. */
export function getClusterCodecSync(): ClusterCodec {
  let w: WasmDeflate | undefined;
  try {
    w = loadDeflateSync();
  } catch {
    w = undefined;
  }
  return makeCodec(w);
}

/** Inflates a compressed cluster with the fastest codec (see {@link ClusterCodec.inflateCluster}). */
export async function inflateCluster(src: Uint8Array, dst: Uint8Array, context?: ErrorContext): Promise<number> {
  return (await getClusterCodec()).inflateCluster(src, dst, context);
}

/** Deflates a cluster with the fastest codec; null when it does not shrink. */
export async function deflateCluster(src: Uint8Array, level = 6): Promise<Uint8Array | null> {
  return (await getClusterCodec()).deflateCluster(src, level);
}

// ---------------------------------------------------------------------------------------
// zstd clusters (compression_type=zstd): WASM in every environment (fzstd is the only
// alternative and is slower; bench/wasm/zstd.ts).

let zstdCodec: WasmZstd | undefined;
let zstdPromise: Promise<WasmZstd> | undefined;

/** Loads the zstd module once (await it in browsers before the synchronous calls). */
export function initZstd(): Promise<WasmZstd> {
  if (zstdCodec) return Promise.resolve(zstdCodec);
  zstdPromise ??= loadZstd().then(
    (z) => (zstdCodec = z),
    (e: unknown) => {
      zstdPromise = undefined;
      throw e;
    },
  );
  return zstdPromise;
}

/** The zstd codec: loaded already, or loaded synchronously (Node). */
function zstdSync(): WasmZstd {
  zstdCodec ??= loadZstdSync();
  return zstdCodec;
}

/**
 * Decodes the zstd-compressed cluster `src` (as stored: the frame, then sector padding)
 * into all of `dst` with QEMU's rule (qcow2_zstd_decompress): frames are decoded until
 * `dst` is full, what follows is ignored; a frame going past `dst` or data ending before
 * it is full is EIO. Returns dst.byteLength. Synchronous: in browsers call
 * {@link initZstd} once first.
 */
export function zstdDecompressCluster(src: Uint8Array, dst: Uint8Array, context: ErrorContext = {}): number {
  const n = zstdSync().decompressInto(src, dst, true, context);
  if (n !== dst.byteLength) {
    throw new BlockError('EIO', `zstd compressed cluster decodes to ${n} bytes, expected ${dst.byteLength}`, { ...context, expected: `${dst.byteLength} bytes` });
  }
  return n;
}

/**
 * Compresses a cluster into one zstd frame at `level` (1..19, default 3 as QEMU), or null
 * when it does not shrink (the caller writes it uncompressed, as QEMU does).
 */
export function zstdCompressCluster(src: Uint8Array, level: number = ZSTD_DEFAULT_LEVEL): Uint8Array | null {
  return zstdSync().compress(src, level);
}
