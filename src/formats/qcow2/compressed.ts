/**
 * Codec calls for compressed clusters, behind one small interface.
 *
 * The codecs come from src/wasm/codec.ts, which picks the fastest in each
 * environment (README, "WASM"): deflate decoding in WASM; deflate encoding
 * with a 4 KiB window (QEMU inflates with windowBits -12, so back-references
 * must stay within 4 KiB) by node:zlib in Node and WASM in browsers; zstd
 * decoding and encoding in WASM everywhere. Decoding follows QEMU: a cluster
 * decodes into exactly one cluster buffer and trailing sector padding is ignored.
 */
import { BlockError, type ErrorContext } from '../../core/errors.js';
import { getClusterCodec, initZstd, zstdCompressCluster, zstdDecompressCluster, type ClusterCodec } from '../../wasm/codec.js';
import { COMPRESSION_TYPE } from './constants.js';

let deflateCodec: ClusterCodec | undefined;

/** Loads the codecs of `type` once; call before the other functions (it is cheap afterwards). */
export async function loadCodec(type: number): Promise<void> {
  if (type === COMPRESSION_TYPE.ZLIB) deflateCodec ??= await getClusterCodec();
  else if (type === COMPRESSION_TYPE.ZSTD) await initZstd();
  else throw new BlockError('ENOTSUP', `Unknown compression type ${type}`);
}

/**
 * Decodes one compressed cluster into `out` (exactly one cluster long).
 * Throws EIO (naming the offset) when the data does not decode to exactly
 * `out.length` bytes.
 */
export async function decompressCluster(type: number, input: Uint8Array, out: Uint8Array, context: ErrorContext = {}): Promise<void> {
  await loadCodec(type);
  if (type === COMPRESSION_TYPE.ZLIB) {
    await deflateCodec!.inflateCluster(input, out, context);
  } else {
    zstdDecompressCluster(input, out, context);
  }
}

/**
 * Compresses one cluster. Returns null when the result would not be smaller
 * than the cluster (the caller writes it uncompressed, as QEMU does).
 */
export async function compressCluster(type: number, input: Uint8Array): Promise<Uint8Array | null> {
  await loadCodec(type);
  if (type === COMPRESSION_TYPE.ZLIB) return deflateCodec!.deflateCluster(input, 6);
  return zstdCompressCluster(input);
}
