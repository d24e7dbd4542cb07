/**
 * Codec calls for compressed clusters, behind one small interface so the
 * WASM codecs (src/wasm) can replace them.
 *
 * - deflate decode: fflate (raw deflate; any window size).
 * - deflate encode: pako with windowBits 12. QEMU inflates compressed clusters
 *   with a 4 KiB window (windowBits -12), so back-references must stay within
 *   4 KiB; fflate always searches a 32 KiB window and its output is refused by
 *   QEMU for clusters larger than 4 KiB (see test/qcow2/compressed.test.ts).
 * - zstd decode: fzstd, on the exact frame (QEMU pads to 512-byte sectors).
 * - zstd encode: not available yet (ENOTSUP).
 */
import { inflateSync } from 'fflate';
import { decompress as zstdDecompress } from 'fzstd';
import pako from 'pako';
import { BlockError } from '../../core/errors.js';
import { COMPRESSION_TYPE } from './constants.js';

/**
 * Decodes one compressed cluster into `out` (exactly one cluster long).
 * Throws EIO when the data does not decode to exactly `out.length` bytes.
 */
export function decompressCluster(type: number, input: Uint8Array, out: Uint8Array): void {
  try {
    if (type === COMPRESSION_TYPE.ZLIB) {
      const res = inflateSync(input, { out });
      if (res.length !== out.length || res.buffer !== out.buffer) {
        if (res.length < out.length) throw new Error(`inflated to ${res.length} bytes, expected ${out.length}`);
        if (res.buffer !== out.buffer) out.set(res.subarray(0, out.length));
      }
      return;
    }
    if (type === COMPRESSION_TYPE.ZSTD) {
      const frame = input.subarray(0, zstdFrameLength(input));
      const res = zstdDecompress(frame, out);
      if (res.length !== out.length) throw new Error(`zstd decoded to ${res.length} bytes, expected ${out.length}`);
      if (res.buffer !== out.buffer) out.set(res);
      return;
    }
  } catch (e) {
    if (e instanceof BlockError) throw e;
    throw new BlockError('EIO', `Could not decompress cluster: ${(e as Error).message ?? String(e)}`);
  }
  throw new BlockError('ENOTSUP', `Unknown compression type ${type}`);
}

/** Length of the zstd frame at the start of `buf` (skipping sector padding after it). */
export function zstdFrameLength(buf: Uint8Array): number {
  const bad = (why: string) => new Error(`invalid zstd frame: ${why}`);
  if (buf.length < 6) throw bad('too short');
  const magic = buf[0]! | (buf[1]! << 8) | (buf[2]! << 16) | (buf[3]! << 24);
  if (magic >>> 0 !== 0xfd2fb528) throw bad('bad magic');
  const fhd = buf[4]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const did = [0, 1, 2, 4][fhd & 3]!;
  const fcs = [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
  let pos = 5 + (single ? 0 : 1) + did + fcs;
  for (let guard = 0; guard < 1 << 20; guard++) {
    if (pos + 3 > buf.length) throw bad('truncated block header');
    const bh = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16);
    pos += 3;
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) throw bad('reserved block type');
    pos += type === 1 ? 1 : size;
    if (pos > buf.length) throw bad('truncated block');
    if (last) break;
  }
  if (checksum) pos += 4;
  if (pos > buf.length) throw bad('truncated checksum');
  return pos;
}

/**
 * Compresses one cluster. Returns null when the result would not be smaller
 * than the cluster (the caller writes it uncompressed, as QEMU does).
 */
export function compressCluster(type: number, input: Uint8Array): Uint8Array | null {
  if (type === COMPRESSION_TYPE.ZSTD) {
    throw new BlockError('ENOTSUP', 'Writing zstd-compressed clusters is not supported yet (compression_type=zstd)');
  }
  if (type !== COMPRESSION_TYPE.ZLIB) throw new BlockError('ENOTSUP', `Unknown compression type ${type}`);
  const out = pako.deflateRaw(input, { level: 6, windowBits: 12, memLevel: 8 });
  if (out.length >= input.length) return null;
  return out;
}
