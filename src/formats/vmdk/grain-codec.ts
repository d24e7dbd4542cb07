/**
 * Compressed grains: zlib streams (RFC 1950: a two-byte header, raw
 * deflate, an Adler-32 trailer), as QEMU's vmdk driver writes them with
 * zlib's compress() and reads them with uncompress().
 *
 * The deflate work goes through the project's codec (src/wasm/codec.ts:
 * WASM inflate, WASM or node:zlib deflate with a 4 KiB window, which a zlib
 * header announcing 32 KiB covers). Data that does not shrink is stored in
 * stored blocks, as zlib would for incompressible input.
 */
import { BlockError, type ErrorContext } from '../../core/errors.js';
import { deflateCluster } from '../../wasm/codec.js';
import { loadDeflate, MAX_CODEC_BUFFER, type WasmDeflate } from '../../wasm/deflate.js';

let wasm: Promise<WasmDeflate> | undefined;

/** Adler-32 of `b` (RFC 1950). */
export function adler32(b: Uint8Array): number {
  let a = 1;
  let s = 0;
  for (let i = 0; i < b.length; ) {
    const end = Math.min(b.length, i + 5552);
    for (; i < end; i++) {
      a += b[i]!;
      s += a;
    }
    a %= 65521;
    s %= 65521;
  }
  return ((s << 16) | a) >>> 0;
}

/**
 * Decodes the zlib stream `src` into at most `capacity` bytes and returns
 * them (in `into` when it is large enough: callers reuse one buffer). EINVAL (as QEMU, whose uncompress() fails) for a bad header, a
 * corrupt stream or one that decodes to more than `capacity` bytes.
 */
export async function inflateGrain(src: Uint8Array, capacity: number, context: ErrorContext = {}, into?: Uint8Array): Promise<Uint8Array> {
  const where = context.offset !== undefined ? ` at 0x${context.offset.toString(16)}` : '';
  if (capacity > MAX_CODEC_BUFFER) {
    throw new BlockError('EINVAL', `vmdk: compressed grain of ${capacity} bytes is larger than the ${MAX_CODEC_BUFFER}-byte codec buffer`, context);
  }
  if (src.length < 2 || (src[0]! & 0x0f) !== 8 || ((src[0]! << 8) | src[1]!) % 31 !== 0 || src[1]! & 0x20) {
    const h = src.length >= 2 ? ((src[0]! << 8) | src[1]!).toString(16).padStart(4, '0') : 'missing';
    throw new BlockError('EINVAL', `vmdk: compressed grain${where} has no zlib header (0x${h})`, context);
  }
  wasm ??= loadDeflate();
  const codec = await wasm;
  const out = into && into.length >= capacity ? into.subarray(0, capacity) : new Uint8Array(capacity);
  let n: number;
  try {
    n = codec.inflate(src.subarray(2), out, false, context);
  } catch (e) {
    throw new BlockError('EINVAL', `vmdk: compressed grain${where} does not decode: ${(e as Error).message}`, context, { cause: e });
  }
  return out.subarray(0, n);
}

/** Raw deflate stored blocks holding `src` (for data that does not shrink). */
function storedBlocks(src: Uint8Array): Uint8Array {
  const blocks = Math.max(1, Math.ceil(src.length / 65535));
  const out = new Uint8Array(src.length + blocks * 5);
  let o = 0;
  for (let i = 0, k = 0; k < blocks; k++) {
    const n = Math.min(65535, src.length - i);
    out[o++] = k === blocks - 1 ? 1 : 0;
    out[o++] = n & 0xff;
    out[o++] = n >>> 8;
    out[o++] = ~n & 0xff;
    out[o++] = (~n >>> 8) & 0xff;
    out.set(src.subarray(i, i + n), o);
    o += n;
    i += n;
  }
  return out;
}

/** The zlib stream of `src` (header, deflate at level 6, Adler-32). */
export async function deflateGrain(src: Uint8Array): Promise<Uint8Array> {
  const raw = (await deflateCluster(src, 6)) ?? storedBlocks(src);
  const out = new Uint8Array(raw.length + 6);
  out[0] = 0x78;
  out[1] = 0x9c;
  out.set(raw, 2);
  new DataView(out.buffer).setUint32(raw.length + 2, adler32(src), false);
  return out;
}
