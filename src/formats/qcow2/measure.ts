/**
 * qemu-img measure for a qcow2 target (QEMU's qcow2_measure). The sizes are
 * uint64 in QEMU and reach 2^63 (`--size` takes up to INT64_MAX, `-o size`
 * up to 2^64 - 1), so the arithmetic is done in bigint, wrapping at 2^64
 * where QEMU's unsigned arithmetic wraps.
 */
import { encryptionOverhead } from './crypt.js';
import { readCreateOptions } from './create.js';
import type { MeasureInfo } from '../../core/driver.js';
import { Status } from '../../core/driver.js';
import type { BlockNode } from '../../core/node.js';
import { OptionReader } from '../../core/options.js';
import { BlockError } from '../../core/errors.js';
import { blockStatus } from '../../core/request-path.js';
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

/** qemu-img measure -O qcow2, in QEMU's order of checks. */
export async function measureQcow2(options: OptionReader, source?: BlockNode): Promise<MeasureInfo> {
  // The size is read exactly here; the create-time reader below only knows sizes up to 2^53.
  const sizeOption = options.sizeExact('size') ?? 0n;
  const rest = new OptionReader({ ...options.options, size: undefined }, options.owner, options.prefix, options.unknownPrefix);
  const p = readCreateOptions(rest, false);
  rest.finish();
  const cs = BigInt(p.clusterSize);
  const order = BigInt(Math.log2(p.refcountBits));
  let luksPayload = 0n;
  if (p.encrypt?.format === 'luks') {
    // QEMU sizes the LUKS header by creating one in memory, which needs the secret named.
    if (p.encrypt.luks.keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'encrypt.key-secret' is required for cipher");
    luksPayload = BigInt(encryptionOverhead(p.encrypt, p.clusterSize));
  }
  // The size option is checked against the largest L1 table even when a source gives the size.
  let virtualSize = roundUp(sizeOption, cs);
  const l2Tables = divUp(virtualSize / cs, cs / (p.extendedL2 ? 16n : 8n));
  if (l2Tables * 8n > BigInt(MAX_L1_BYTES)) throw new BlockError('EFBIG', 'The image size is too large (try using a larger cluster size)');
  let required = 0n;
  if (source) {
    virtualSize = roundUp(BigInt(source.length), cs);
    // With a backing file QEMU cannot know what the chain shares with the source: all of it counts.
    required = p.backingFile !== undefined ? virtualSize : BigInt(await dataClusterBytes(source, p.clusterSize));
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
