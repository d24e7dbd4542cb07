// zstd (RFC 8878) for qcow2 compressed clusters (compression_type=zstd).
//
// decompress: any zstd frame without a dictionary (raw / RLE / compressed blocks, Huffman
//   and FSE tables in every mode, repeat offsets, several frames, skippable frames, the
//   xxhash64 content checksum verified when present), into a buffer of declared size.
//   FLAG_CLUSTER gives QEMU's rule for compressed clusters: stop when the output is full,
//   ignore the sector padding after the frame.
// compress: one frame per call (single segment, content size, no checksum), greedy / lazy
//   LZ with a hash chain, Huffman literals, FSE sequence tables (computed, predefined or
//   RLE, whichever is smaller); raw blocks where compression does not pay.
//
// Pointer + length in, integer status out (see shared/common.ts). Corrupt or truncated
// frames return an error code; errorOffset() gives the input offset where it was detected.

export { decompress, errorOffset, FLAG_CLUSTER } from './zstd/decode';

export function alloc(size: usize): usize {
  return heap.alloc(size);
}

export { compress } from './zstd/encode';
