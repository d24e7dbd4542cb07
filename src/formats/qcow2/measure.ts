/**
 * qemu-img measure for a qcow2 target (QEMU's qcow2_measure). The sizes are
 * uint64 in QEMU and reach 2^63 (`--size` takes up to INT64_MAX, `-o size`
 * up to 2^64 - 1), so the arithmetic is done in bigint, wrapping at 2^64
 * where QEMU's unsigned arithmetic wraps.
 */
import { encryptionOverhead, readEncryptCreateOptions, type Qcow2EncryptRequest } from './crypt.js';
import { checkRefcountBits, readRefcountBits } from './create.js';
import type { MeasureInfo } from '../../core/driver.js';
import { Status } from '../../core/driver.js';
import type { BlockNode } from '../../core/node.js';
import { OptionReader, type BlockOptions } from '../../core/options.js';
import { BlockError, einval } from '../../core/errors.js';
import { blockStatus } from '../../core/request-path.js';
import { lookupSecret } from '../../core/secrets.js';
import type { BlockGraph } from '../../core/graph.js';
import { MAX_L1_BYTES } from './constants.js';
import type { Qcow2Image } from './qcow2.js';

/** uint64 wrap-around, as C's unsigned arithmetic. */
const u64 = (x: bigint): bigint => BigInt.asUintN(64, x);
const divUp = (x: bigint, d: bigint): bigint => (x + d - 1n) / d;
/** QEMU's ROUND_UP on a uint64 (wraps to 0 near 2^64). */
const roundUp = (x: bigint, a: bigint): bigint => u64(divUp(x, a) * a);

/** QEMU's qcow2_refcount_metadata_size (no generous increase): refcount blocks and table, in bytes. */
function refcountMetadataSize(clusters: bigint, cs: bigint, order: bigint): bigint {
  const perTable = cs / 8n;
  const perBlock = (cs * 8n) >> order;
  let table = 0n;
  let blocks = 0n;
  let n = 0n;
  let last: bigint;
  do {
    last = n;
    blocks = divUp(clusters + table + blocks, perBlock);
    table = divUp(blocks, perTable);
    n = clusters + blocks + table;
  } while (n !== last);
  return (blocks + table) * cs;
}

/** QEMU's qcow2_calc_prealloc_size: the image with every cluster allocated, metadata included. */
export function preallocSizeExact(total: bigint, cs: bigint, order: bigint, extendedL2: boolean): bigint {
  const aligned = roundUp(total, cs);
  const esz = extendedL2 ? 16n : 8n;
  let meta = cs;
  const nl2e = roundUp(aligned / cs, cs / esz);
  meta += nl2e * esz;
  const nl1e = roundUp((nl2e * esz) / cs, cs / 8n);
  meta += nl1e * 8n;
  meta += refcountMetadataSize((meta + aligned) / cs, cs, order);
  return u64(meta + aligned);
}

/**
 * Bytes of the source that need clusters in the new image: every cluster
 * that holds data (block status DATA), whole; zero and unallocated ranges
 * need none (there is no backing file).
 */
async function dataClusterBytes(source: BlockNode, cs: number): Promise<number> {
  let required = 0;
  const len = source.length;
  for (let off = 0; off < len;) {
    const st = await blockStatus(source, true, off, len - off);
    let pnum = Math.max(st.pnum, 1);
    if (!(st.status & Status.ZERO) && st.status & Status.DATA) {
      // Up to the end of the cluster: the next step starts in the next one.
      pnum = Math.ceil((off + pnum) / cs) * cs - off;
      required += (off % cs) + pnum;
    }
    off += pnum;
  }
  return required;
}

/**
 * The creation options qcow2_measure reads, with its checks and messages in
 * its order. It checks less than create does (no lazy_refcounts, data_file,
 * compression_type or backing-with-preallocation rules; `encryption` and any
 * encrypt.* without encrypt.format=luks are ignored), so create's reader is not used.
 */
function readMeasureOptions(o: OptionReader): {
  extendedL2: boolean;
  clusterSize: number;
  version: 2 | 3;
  refcountBits: number;
  prealloc: string;
  hasBackingFile: boolean;
  luks?: Qcow2EncryptRequest;
} {
  const extendedL2 = o.bool('extended_l2', false);
  const clusterSize = o.size('cluster_size', 65536);
  if (clusterSize < 512 || clusterSize > 2 * 1024 * 1024 || (clusterSize & (clusterSize - 1)) !== 0) {
    throw einval('Cluster size must be a power of two between 512 and 2048k', {}, `cluster_size ${clusterSize}`);
  }
  if (extendedL2 && clusterSize < 16384) throw einval('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  const compat = o.string('compat');
  // Only QEMU's two spellings here ("v3" is create's QAPI name, not measure's).
  if (compat !== undefined && compat !== '0.10' && compat !== '1.1') throw einval(`Invalid compatibility level: '${compat}'`);
  const version = compat === '0.10' ? 2 : 3;
  const refcountBits = readRefcountBits(o) ?? 16;
  checkRefcountBits(refcountBits);
  if (version < 3 && refcountBits !== 16) {
    throw einval('Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)');
  }
  const prealloc = o.string('preallocation') ?? 'off';
  if (!['off', 'metadata', 'falloc', 'full'].includes(prealloc)) throw einval(`invalid parameter value: ${prealloc}`);
  const hasBackingFile = o.string('backing_file') !== undefined;
  let luks: Qcow2EncryptRequest | undefined;
  if (o.string('encrypt.format') === 'luks') {
    const sub: BlockOptions = { 'encrypt.format': 'luks' };
    for (const k of Object.keys(o.options)) if (k.startsWith('encrypt.')) sub[k] = o.options[k];
    // QEMU names these options without their encrypt. prefix here.
    luks = readEncryptCreateOptions(new OptionReader(sub, o.owner, o.prefix, o.unknownPrefix), '');
  }
  return { extendedL2, clusterSize, version, refcountBits, prealloc, hasBackingFile, ...(luks ? { luks } : {}) };
}

/** qemu-img measure -O qcow2, in QEMU's order of checks. */
export async function measureQcow2(options: OptionReader, source?: BlockNode, graph?: BlockGraph): Promise<MeasureInfo> {
  const p = readMeasureOptions(options);
  const cs = BigInt(p.clusterSize);
  const order = BigInt(Math.log2(p.refcountBits));
  let luksPayload = 0n;
  if (p.luks?.format === 'luks') {
    // QEMU sizes the LUKS header by creating one in memory, which needs the secret named.
    if (p.luks.luks.keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'encrypt.key-secret' is required for cipher");
    if (graph) lookupSecret(graph, p.luks.luks.keySecret).fill(0);
    luksPayload = BigInt(encryptionOverhead(p.luks, p.clusterSize));
  }
  // The size option is checked against the largest L1 table even when a source gives the size.
  let virtualSize = roundUp(options.sizeExact('size') ?? 0n, cs);
  const l2Tables = divUp(virtualSize / cs, cs / (p.extendedL2 ? 16n : 8n));
  if (l2Tables * 8n > BigInt(MAX_L1_BYTES)) throw new BlockError('EFBIG', 'The image size is too large (try using a larger cluster size)');
  let required = 0n;
  if (source) {
    virtualSize = roundUp(BigInt(source.length), cs);
    // With a backing file QEMU cannot know what the chain shares with the source: all of it counts.
    required = p.hasBackingFile ? virtualSize : BigInt(await dataClusterBytes(source, p.clusterSize));
  }
  if (p.prealloc === 'full' || p.prealloc === 'falloc') required = virtualSize;
  const full = u64(luksPayload + preallocSizeExact(virtualSize, cs, order, p.extendedL2));
  const info: MeasureInfo = { required: u64(full - virtualSize + required), fullyAllocated: full };
  // A v2 target cannot hold bitmaps: QEMU prints no bitmaps line then.
  const bitmaps = source && p.version >= 3 ? bitmapsSize(source, p.clusterSize) : undefined;
  if (bitmaps !== undefined) info.bitmaps = BigInt(bitmaps);
  return info;
}

/**
 * The room the source's persistent bitmaps would take in the new image, for
 * sources that can hold persistent bitmaps (qcow2 v3), as QEMU's qcow2_measure
 * counts it: every bitmap fully allocated, its table, and the directory.
 */
function bitmapsSize(source: BlockNode, cs: number): number | undefined {
  if (source.driver.name !== 'qcow2') return undefined;
  const img = source.instance as unknown as Qcow2Image;
  if (!img.header || img.header.version < 3) return undefined;
  let total = 0;
  let dir = 0;
  for (const b of img.bitmaps) {
    const bits = Math.ceil(source.length / 2 ** b.granularityBits);
    const clusters = Math.ceil(Math.ceil(bits / 8) / cs);
    total += clusters * cs;
    total += Math.ceil((clusters * 8) / cs) * cs;
    dir += Math.ceil((24 + new TextEncoder().encode(b.name).length) / 8) * 8;
  }
  return total + Math.ceil(dir / cs) * cs;
}
