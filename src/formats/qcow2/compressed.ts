/**
 * Compressed clusters: the codec calls behind one small interface, reading a
 * compressed cluster (with a one-cluster cache for sequential reads) and
 * writing clusters compressed.
 *
 * The codecs come from src/wasm/codec.ts, which picks the fastest in each
 * environment (README, "WASM"): deflate decoding in WASM; deflate encoding
 * with a 4 KiB window (QEMU inflates with windowBits -12, so back-references
 * must stay within 4 KiB) by node:zlib in Node and WASM in browsers; zstd
 * decoding and encoding in WASM everywhere. Decoding follows QEMU: a cluster
 * decodes into exactly one cluster buffer and trailing sector padding is ignored.
 */
import { BlockError, einval, type ErrorContext } from '../../core/errors.js';
import { getClusterCodec, initZstd, zstdCompressCluster, zstdDecompressCluster, type ClusterCodec } from '../../wasm/codec.js';
import { decodeClusters } from '../../core/decompress-pool.js';
import { decompressPoolFor } from '../../wasm/decompress-workers.js';
import { COMPRESSION_TYPE } from './constants.js';
import { ClusterType, clusterType, makeCompressedEntry, readEntry, writeEntry } from './l2-entry.js';
import { lookup, type Run } from './lookup.js';
import { markCorrupt, overlapCheck } from './metadata-index.js';
import { beforeModify, whenClustersIdle, writableSlice } from './cow.js';
import type { Qcow2Image } from './qcow2.js';

const hex = (n: number) => `0x${n.toString(16)}`;

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
  const p = decodeLoaded(type, input, out, context);
  if (p) await p;
}

/**
 * {@link decompressCluster} once {@link loadCodec} has run: synchronous (no
 * promise per cluster) unless the codec is DecompressionStream.
 */
function decodeLoaded(type: number, input: Uint8Array, out: Uint8Array, context: ErrorContext): Promise<number> | undefined {
  if (type !== COMPRESSION_TYPE.ZLIB) {
    zstdDecompressCluster(input, out, context);
    return undefined;
  }
  const codec = deflateCodec!;
  if (codec.inflateClusterSync) {
    codec.inflateClusterSync(input, out, context);
    return undefined;
  }
  return codec.inflateCluster(input, out, context);
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

/** Reads the part of the compressed cluster `run` that holds guest `offset` into `out`. */
export async function readCompressed(img: Qcow2Image, run: Run, offset: number, out: Uint8Array): Promise<void> {
  const key = `${run.coffset}:${run.csize}`;
  let cluster: Uint8Array;
  if (img.lastCompressed?.key === key) {
    cluster = img.lastCompressed.buf;
  } else {
    if (run.csize <= 0 || run.csize > 2 * img.clusterSize + 512) {
      throw await markCorrupt(img, `Compressed cluster descriptor at ${hex(run.coffset)} has an invalid size ${run.csize}`);
    }
    const input = new Uint8Array(run.csize);
    await img.file.debugEvent('read_compressed');
    await img.file.preadv(run.coffset, run.csize, input);
    cluster = new Uint8Array(img.clusterSize);
    await decompressCluster(img.header.compressionType, input, cluster, { node: img.node.nodeName, offset: run.coffset });
    img.lastCompressed = { key, buf: cluster };
  }
  const inCluster = offset % img.clusterSize;
  out.set(cluster.subarray(inCluster, inCluster + out.length));
}

/** Compressed bytes read at once by {@link readCompressedClusters}. */
const BATCH_BYTES = 1 << 20;
/** Gap between two compressed clusters of a batch, at most (read and dropped). */
const BATCH_GAP = 4096;
/** Read buffers of {@link readCompressedClusters}, reused per image (reads may overlap). */
const batchBuffers = new WeakMap<Qcow2Image, Uint8Array[]>();

/**
 * Reads whole compressed clusters from guest `offset` (cluster aligned; `first`
 * is its run, one whole cluster) into `out`, decoding straight into it: the
 * following clusters join while they are compressed and lie next to each other
 * in the file, so a sequential reader gets one file read per batch instead of
 * one per cluster. Returns the bytes of `out` filled (whole clusters, at least
 * the first). Only without a debugging file child (its events stay one per
 * cluster there) and for clusters whose descriptor is valid and inside the
 * file; anything else goes through {@link readCompressed}.
 */
export async function readCompressedClusters(img: Qcow2Image, first: Run, offset: number, out: Uint8Array): Promise<number> {
  const cs = img.clusterSize;
  const fileLen = img.file.length;
  const usable = (r: Run): boolean => r.type === ClusterType.COMPRESSED && r.bytes === cs && r.csize > 0 && r.csize <= 2 * cs + 512 && r.coffset + r.csize <= fileLen;
  if (img.file.node.instance.debug || offset % cs !== 0 || out.length < cs || !usable(first)) {
    await readCompressed(img, first, offset, out.subarray(0, first.bytes));
    return first.bytes;
  }
  const runs = [first];
  const start = first.coffset;
  let end = start + first.csize;
  // A walk that fails (a corrupt entry) ends the batch; its error comes after the
  // clusters before it are read, as a cluster-by-cluster read would report it.
  let walkFailed = false;
  let walkError: unknown;
  while ((runs.length + 1) * cs <= out.length) {
    const prev = runs[runs.length - 1]!;
    let r: Run;
    try {
      r = await lookup(img, offset + runs.length * cs, cs);
    } catch (e) {
      walkFailed = true;
      walkError = e;
      break;
    }
    if (!usable(r) || r.coffset < prev.coffset || r.coffset > end + BATCH_GAP) break;
    // The batch's buffer stays within BATCH_BYTES (a power of two: no larger one is made).
    if (Math.max(end, r.coffset + r.csize) - start > BATCH_BYTES) break;
    runs.push(r);
    end = Math.max(end, r.coffset + r.csize);
  }
  const span = end - start;
  const free = batchBuffers.get(img) ?? [];
  batchBuffers.set(img, free);
  let buf = free.pop();
  // Sized to the power of two that holds the span: single clusters (random reads) keep a small one.
  if (!buf || buf.length < span) buf = new Uint8Array(2 ** Math.ceil(Math.log2(span)));
  try {
    await img.file.preadv(start, span, buf.subarray(0, span));
    const type = img.header.compressionType;
    await loadCodec(type);
    const tasks = runs.map((r, i) => ({
      input: buf!.subarray(r.coffset - start, r.coffset - start + r.csize),
      out: out.subarray(i * cs, (i + 1) * cs),
      context: { node: img.node.nodeName, offset: r.coffset },
    }));
    // Several clusters at once: a share decodes on the pool's threads, as QEMU's thread pool does.
    const kind = type === COMPRESSION_TYPE.ZSTD ? 'zstd' : 'zlib';
    await decodeClusters(decompressPoolFor(kind), kind, tasks, (t) => decodeLoaded(type, t.input, t.out, t.context));
  } finally {
    free.push(buf);
  }
  if (walkFailed) throw walkError;
  return runs.length * cs;
}

/**
 * Writes whole clusters compressed (the last one may end at the image end);
 * an empty write ends compressed writing (the file is aligned to sectors).
 * Clusters that do not shrink are written normally, as QEMU does; a cluster
 * that is already allocated is refused (compression never overwrites).
 */
export async function writeCompressed(img: Qcow2Image, offset: number, bytes: number, buf: Uint8Array): Promise<void> {
  const cs = img.clusterSize;
  if (img.hasDataFile) throw new BlockError('ENOTSUP', 'Compression is not supported with an external data file');
  if (bytes === 0) {
    // The end of compressed writing: as QEMU does, the file is made a whole
    // number of sectors long (compressed data ends anywhere), for readers
    // that work in sectors.
    const len = img.file.length;
    if (len % 512 !== 0) await img.whenIdle(() => img.file.truncate(Math.ceil(len / 512) * 512, false, 'off'));
    return;
  }
  if (offset % cs !== 0) throw einval(`Compressed writes must be cluster aligned (offset ${offset})`);
  if (bytes % cs !== 0 && offset + bytes !== img.header.size) {
    throw einval(`Compressed writes must cover whole clusters (offset ${offset}, ${bytes} bytes)`);
  }
  // QEMU writes the clusters as parallel tasks (8 at a time): a cluster that fails
  // does not stop the others already started; the first error is reported.
  const failedAt: number[] = [];
  let firstError: unknown;
  for (let pos = 0, i = 0; pos < bytes; pos += cs, i++) {
    if (i >= 9 && failedAt.some((f) => f <= i - 9)) break;
    try {
      const n = Math.min(cs, bytes - pos);
      await writeCompressedCluster(img, offset + pos, n, buf.subarray(pos, pos + n));
    } catch (e) {
      failedAt.push(i);
      firstError ??= e;
    }
  }
  if (failedAt.length > 0) throw firstError;
}

/** One cluster of a compressed write (the last may be the image's partial cluster). */
async function writeCompressedCluster(img: Qcow2Image, offset: number, n: number, data: Uint8Array): Promise<void> {
  const cs = img.clusterSize;
  let cluster = data;
  if (n < cs) {
    cluster = new Uint8Array(cs);
    cluster.set(data);
  }
  const packed = await compressCluster(img.header.compressionType, cluster);
  if (!packed) {
    await img.pwritev(offset, n, data, 0);
    return;
  }
  const ci = Math.floor(offset / cs);
  await whenClustersIdle(img, async () => {
    await beforeModify(img);
    const { sliceOff, buf: l2, dv, i0 } = await writableSlice(img, ci);
    const old = readEntry(dv, i0, img.extendedL2);
    const ct = clusterType(old, img.extendedL2, false);
    if (ct === ClusterType.NORMAL || ct === ClusterType.COMPRESSED || ct === ClusterType.ZERO_ALLOC) {
      throw new BlockError('EIO', `Compression can't overwrite the allocated cluster at guest offset ${offset}`);
    }
    const host = await img.refs.allocBytes(packed.length);
    await overlapCheck(img, host, packed.length);
    await img.file.debugEvent('write_compressed');
    await img.file.pwritev(host, packed.length, packed);
    writeEntry(dv, i0, img.extendedL2, makeCompressedEntry(host, packed.length, img.clusterBits));
    img.l2cache.setDirty(sliceOff, l2);
    img.lastCompressed = null;
  }, ci, ci);
}
