/**
 * Moving bytes in and out of grains: plain and compressed grain reads, the
 * data part of a write (plain, or a compressed grain with its marker), and
 * filling the rest of a new grain with zeros or the backing file's data
 * (QEMU's get_whole_cluster), in bounded pieces.
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError } from '../../core/errors.js';
import type { Extent } from './extent.js';
import { inflateGrain, deflateGrain } from './grain-codec.js';
import { GRAIN_MARKER_SIZE, SECTOR } from './header.js';

/** Largest piece of a grain copied at once (grains may be up to 1 GiB). */
const COPY_CHUNK = 4 << 20;

/** Reads `n` bytes at `offset` of `child` into `out`, zeros past its end. */
export async function readClamped(child: BdrvChild, offset: number, n: number, out: Uint8Array): Promise<void> {
  const len = child.length;
  const k = offset >= len ? 0 : Math.min(n, len - offset);
  if (k > 0) await child.preadv(offset, k, out.subarray(0, k));
  if (k < n) out.fill(0, k, n);
}

/** EIO for a host offset no file can reach (a flat extent's offset near 2^63 sectors: QEMU's wraps and fails). */
function tooFar(end: number): void {
  if (end > Number.MAX_SAFE_INTEGER) throw new BlockError('EIO', 'Input/output error', {}, { detail: `extent data at byte ${end}, past 2^53` });
}

/** The last grain decompressed, for reads that walk one grain in pieces. */
export interface GrainCache {
  key: string;
  data: Uint8Array;
}

/** Per-image buffers of compressed reads, reused from grain to grain (no garbage per grain). */
export interface GrainBuffers {
  last?: GrainCache;
  src?: Uint8Array;
  out?: Uint8Array;
}

/**
 * Reads `n` bytes at `inCluster` of the grain at `host` in `ext` into `out`,
 * decompressing compressed grains (EINVAL, as QEMU, for a bad marker size,
 * a stream that does not decode, or a read past the decoded bytes).
 */
export async function readGrain(ext: Extent, host: number, inCluster: number, n: number, out: Uint8Array, cache: GrainBuffers): Promise<void> {
  if (!ext.compressed) {
    tooFar(host + inCluster + n);
    await readClamped(ext.file, host + inCluster, n, out);
    return;
  }
  const key = `${ext.startSector}:${host}`;
  let data = cache.last?.key === key ? cache.last.data : undefined;
  if (!data) {
    const cluster = ext.clusterBytes;
    let start = host;
    let len = cluster;
    if (ext.hasMarker) {
      const m = new Uint8Array(GRAIN_MARKER_SIZE);
      await readClamped(ext.file, host, GRAIN_MARKER_SIZE, m);
      len = new DataView(m.buffer).getUint32(8, true);
      start = host + GRAIN_MARKER_SIZE;
    }
    if (len === 0 || len > 2 * cluster) {
      throw new BlockError('EINVAL', 'Invalid argument', { offset: host }, { detail: `compressed grain at 0x${host.toString(16)} claims ${len} bytes (grain of ${cluster})` });
    }
    if (!cache.src || cache.src.length < len) cache.src = new Uint8Array(len);
    const src = cache.src.subarray(0, len);
    await readClamped(ext.file, start, len, src);
    // The cached grain is dropped first: its buffer takes the new one.
    cache.last = undefined;
    if (!cache.out || cache.out.length < cluster) cache.out = new Uint8Array(cluster);
    data = await inflateGrain(src, cluster, { offset: host }, cache.out);
    cache.last = { key, data };
  }
  if (inCluster + n > data.length) {
    throw new BlockError('EINVAL', 'Invalid argument', { offset: host }, { detail: `compressed grain at 0x${host.toString(16)} holds ${data.length} bytes, read wants ${inCluster + n}` });
  }
  out.set(data.subarray(inCluster, inCluster + n));
}

/**
 * Writes the data of a write into the grain at `host` (QEMU's
 * vmdk_write_extent): in place, or for a compressed extent as a grain
 * marker (guest sector, size) followed by the zlib stream, which must cover
 * the whole grain (or end at the extent's end). Moves the extent's next
 * free sector as QEMU does.
 */
export async function writeGrain(ext: Extent, host: number, inCluster: number, data: Uint8Array, guestOffset: number): Promise<void> {
  let bytes = data;
  let at = host + inCluster;
  if (ext.compressed) {
    const cluster = ext.clusterBytes;
    const endsExtent = guestOffset + data.length === ext.endSector * SECTOR;
    if (inCluster !== 0 || data.length > cluster || (data.length < cluster && !endsExtent)) {
      throw new BlockError('EINVAL', 'Invalid argument', { offset: guestOffset }, { detail: `a compressed grain takes whole grains of ${cluster} bytes, not ${data.length} at ${inCluster} in one` });
    }
    if (!ext.hasMarker) throw new BlockError('EINVAL', 'Invalid argument', { offset: guestOffset }, { detail: 'compressed extent without grain markers' });
    const z = await deflateGrain(data);
    bytes = new Uint8Array(GRAIN_MARKER_SIZE + z.length);
    const dv = new DataView(bytes.buffer);
    dv.setBigUint64(0, BigInt(Math.floor(guestOffset / SECTOR)), true);
    dv.setUint32(8, z.length, true);
    bytes.set(z, GRAIN_MARKER_SIZE);
    at = host;
  }
  tooFar(at + bytes.length);
  try {
    await ext.file.pwritev(at, bytes.length, bytes);
  } finally {
    const end = Math.ceil((at + bytes.length) / SECTOR);
    ext.nextClusterSector = ext.compressed ? end : Math.max(ext.nextClusterSector, end);
  }
}

/**
 * Fills [from, to) of a new grain at `host` (guest grain start `guestStart`)
 * with the backing file's data (`backing` set) or zeros.
 */
export async function fillGrain(
  ext: Extent,
  host: number,
  guestStart: number,
  from: number,
  to: number,
  backing: ((offset: number, n: number, out: Uint8Array) => Promise<void>) | undefined,
): Promise<void> {
  if (to <= from) return;
  const buf = new Uint8Array(Math.min(COPY_CHUNK, to - from));
  for (let p = from; p < to; p += buf.length) {
    const n = Math.min(buf.length, to - p);
    const piece = buf.subarray(0, n);
    if (backing) await backing(guestStart + p, n, piece);
    else piece.fill(0);
    await ext.file.pwritev(host + p, n, piece);
  }
}
