/**
 * qcow2 header: parse and validate (every field before use), and serialize
 * with its extensions. Unknown header fields and unknown extensions are kept
 * and written back unchanged.
 */
import { BlockError } from '../../core/errors.js';
import {
  AUTOCLEAR,
  COMPRESSION_NAMES,
  EXT,
  FEATURE_ENTRY_SIZE,
  FEATURE_NAMES,
  HDR,
  INCOMPAT,
  INCOMPAT_KNOWN,
  MAX_BACKING_NAME,
  MAX_BITMAPS,
  MAX_BITMAP_DIRECTORY,
  MAX_CLUSTER_BITS,
  MAX_L1_BYTES,
  MAX_REFTABLE_BYTES,
  MAX_SNAPSHOTS,
  MAX_VIRTUAL_SIZE,
  MIN_CLUSTER_BITS,
  QCOW2_MAGIC,
  V2_HEADER_LENGTH,
  V3_HEADER_LENGTH,
  V3_MIN_HEADER_LENGTH,
} from './constants.js';

export interface FeatureName {
  type: number;
  bit: number;
  name: string;
}

export interface BitmapsExtension {
  nbBitmaps: number;
  directorySize: number;
  directoryOffset: number;
}

/** A parsed header with its extensions. */
export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Bytes of the header past byte 105 up to headerLength (future fields, padding), kept on rewrite. */
  tail: Uint8Array;
  backingFile?: string;
  backingFormat?: string;
  dataFile?: string;
  featureTable: FeatureName[];
  bitmaps?: BitmapsExtension;
  /** The LUKS header's clusters (crypt method 2): offset and length in bytes. */
  cryptoHeader?: { offset: number; length: number };
  /** Extensions we do not interpret, kept on rewrite. */
  unknownExtensions: Array<{ type: number; data: Uint8Array }>;
}

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

function einval(msg: string, detail?: string): BlockError {
  return new BlockError('EINVAL', msg, {}, { detail });
}

/** The largest offset QEMU takes in a header field (it passes them on as int64). */
const INT64_MAX = (1n << 63n) - 1n;

/**
 * A u64 field that passed QEMU's checks, as a number. Offsets past 2^53 are
 * valid for QEMU (what lies past the file's end reads as zeros) but are not
 * safe integers here: refused with the value.
 */
function safeField(v: bigint, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new BlockError('EFBIG', `qcow2 header field ${field} has an unsupported value ${v}`);
  }
  return Number(v);
}

/** Reads the cluster bits from the first bytes, after checking magic and version. */
export function peekClusterBits(buf: Uint8Array): number {
  if (buf.length < V2_HEADER_LENGTH) throw einval('Image is not in qcow2 format', `only ${buf.length} bytes`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint32(HDR.MAGIC) !== QCOW2_MAGIC) throw einval('Image is not in qcow2 format');
  const version = dv.getUint32(HDR.VERSION);
  if (version < 2 || version > 3) throw new BlockError('ENOTSUP', `Unsupported qcow2 version ${version}`);
  const cb = dv.getUint32(HDR.CLUSTER_BITS);
  if (cb < MIN_CLUSTER_BITS || cb > MAX_CLUSTER_BITS) {
    throw einval(`Unsupported cluster size: 2^${cb}`);
  }
  return cb;
}

/**
 * What an open refused for `unknown` incompatible bits reports, as QEMU's
 * report_unsupported_feature: the names the image's feature table gives them
 * (in table order, up to the first unnamed entry, 46 characters at most),
 * then the bits it does not name, together in hex.
 */
export function unsupportedFeatures(table: FeatureName[], unknown: bigint): string {
  const parts: string[] = [];
  let mask = unknown;
  for (const f of table) {
    if (f.name === '') break;
    const bit = 1n << BigInt(f.bit);
    if (f.type === 0 && f.bit < 64 && mask & bit) {
      parts.push(f.name.slice(0, 46));
      mask &= ~bit;
    }
  }
  if (mask) parts.push(`Unknown incompatible feature: ${mask.toString(16)}`);
  return `Unsupported qcow2 feature(s): ${parts.join(', ')}`;
}

/**
 * Parses the header cluster `buf` (the first cluster of the file, zeros past
 * its end). `forCheck`: opened for check (QEMU's BDRV_O_CHECK), which lets
 * an image without a refcount table or with a broken snapshot table open.
 */
export function parseHeader(
  buf: Uint8Array,
  forCheck = false,
  beforeExtensions?: (h: Qcow2Header) => void,
  /** A read-write open (not for a check): a corrupt image is refused. */
  readWrite = false,
): Qcow2Header {
  const clusterBits = peekClusterBits(buf);
  const clusterSize = 2 ** clusterBits;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const version = dv.getUint32(HDR.VERSION) as 2 | 3;
  const raw = {
    backingFileOffset: dv.getBigUint64(HDR.BACKING_FILE_OFFSET),
    l1TableOffset: dv.getBigUint64(HDR.L1_TABLE_OFFSET),
    refcountTableOffset: dv.getBigUint64(HDR.REFCOUNT_TABLE_OFFSET),
    snapshotsOffset: dv.getBigUint64(HDR.SNAPSHOTS_OFFSET),
    size: dv.getBigUint64(HDR.SIZE),
  };
  const h: Qcow2Header = {
    version,
    // Offsets are set once they have passed QEMU's checks (below).
    backingFileOffset: 0,
    backingFileSize: dv.getUint32(HDR.BACKING_FILE_SIZE),
    clusterBits,
    // Checked with the tables, in QEMU's order ("Image is too big").
    size: Number(raw.size),
    cryptMethod: dv.getUint32(HDR.CRYPT_METHOD),
    l1Size: dv.getUint32(HDR.L1_SIZE),
    l1TableOffset: 0,
    refcountTableOffset: 0,
    refcountTableClusters: dv.getUint32(HDR.REFCOUNT_TABLE_CLUSTERS),
    nbSnapshots: dv.getUint32(HDR.NB_SNAPSHOTS),
    snapshotsOffset: 0,
    incompatible: 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: 0,
    tail: new Uint8Array(0),
    featureTable: [],
    unknownExtensions: [],
  };
  // The checks of QEMU's qcow2_do_open, in its order and with its wording;
  // the values go in the detail.
  if (version === 3) {
    if (buf.length < V3_MIN_HEADER_LENGTH) throw einval('qcow2 header too short');
    h.incompatible = dv.getBigUint64(HDR.INCOMPATIBLE_FEATURES);
    h.compatible = dv.getBigUint64(HDR.COMPATIBLE_FEATURES);
    h.autoclear = dv.getBigUint64(HDR.AUTOCLEAR_FEATURES);
    h.refcountOrder = dv.getUint32(HDR.REFCOUNT_ORDER);
    h.headerLength = dv.getUint32(HDR.HEADER_LENGTH);
    if (h.headerLength < V3_MIN_HEADER_LENGTH) throw einval('qcow2 header too short', `header_length ${h.headerLength}`);
  }
  if (h.headerLength > clusterSize || h.headerLength > buf.length) {
    throw einval('qcow2 header exceeds cluster size', `header_length ${h.headerLength}, cluster size ${clusterSize}`);
  }
  if (h.headerLength > HDR.COMPRESSION_TYPE) {
    h.compressionType = buf[HDR.COMPRESSION_TYPE]!;
    h.tail = buf.slice(HDR.COMPRESSION_TYPE + 1, h.headerLength);
  }
  if (raw.backingFileOffset > BigInt(clusterSize)) throw einval('Invalid backing file offset', hex(raw.backingFileOffset));
  h.backingFileOffset = Number(raw.backingFileOffset);
  if (h.compressionType > 1) {
    throw new BlockError('ENOTSUP', `qcow2: unknown compression type: ${h.compressionType}`);
  }
  if (h.compressionType === 0 && h.incompatible & INCOMPAT.COMPRESSION) {
    throw einval('qcow2: Compression type incompatible feature bit must not be set');
  }
  if (h.compressionType !== 0 && !(h.incompatible & INCOMPAT.COMPRESSION)) {
    throw einval('qcow2: Compression type incompatible feature bit must be set');
  }
  const unknown = h.incompatible & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) {
    // Unknown features are refused first; the extensions are read only for their names.
    try {
      parseExtensions(h, buf, clusterSize);
    } catch {
      // What was read of the feature table before the bad extension names what it can.
    }
    throw new BlockError('ENOTSUP', unsupportedFeatures(h.featureTable, unknown));
  }
  // As in qcow2_do_open: right after the unknown features, before the other header checks.
  if (h.incompatible & INCOMPAT.CORRUPT && readWrite && !forCheck) {
    throw new BlockError('EACCES', 'qcow2: Image is corrupt; cannot be opened read/write');
  }
  if (h.incompatible & INCOMPAT.EXTL2 && clusterBits < 14) {
    throw einval(`Unsupported subcluster size: ${clusterSize / 32}`);
  }
  if (h.refcountOrder > 6) {
    throw einval('Reference count entry width too large; may not exceed 64 bits', `refcount_order ${h.refcountOrder}`);
  }
  validateTables(h, raw, forCheck);
  if (h.cryptMethod > 2) throw einval(`Unsupported encryption method ${h.cryptMethod | 0}`);
  beforeExtensions?.(h);
  parseExtensions(h, buf, clusterSize);
  if (h.backingFileOffset !== 0 && h.backingFileSize > Math.min(MAX_BACKING_NAME, clusterSize - h.backingFileOffset)) {
    throw einval('Backing file name too long', `${h.backingFileSize} bytes at ${hex(h.backingFileOffset)}`);
  }
  if (h.backingFileOffset !== 0 && h.backingFileSize > 0) {
    h.backingFile = new TextDecoder().decode(buf.subarray(h.backingFileOffset, h.backingFileOffset + h.backingFileSize));
  }
  if (h.autoclear & AUTOCLEAR.DATA_FILE_RAW && !(h.incompatible & INCOMPAT.DATA_FILE)) {
    // QEMU clears the bit rather than failing; so do we (on the next header write).
    h.autoclear &= ~AUTOCLEAR.DATA_FILE_RAW;
  }
  return h;
}

function parseExtensions(h: Qcow2Header, buf: Uint8Array, clusterSize: number): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = h.headerLength;
  const end = Math.min(h.backingFileOffset !== 0 ? h.backingFileOffset : clusterSize, buf.length);
  const text = new TextDecoder();
  while (pos < end) {
    // As in QEMU, the length is checked before the type, the end marker's too.
    if (end - pos < 8) throw einval('Header extension too large', `at ${hex(pos)}, ${end - pos} bytes left`);
    const type = dv.getUint32(pos);
    const len = dv.getUint32(pos + 4);
    pos += 8;
    if (len > end - pos) throw einval('Header extension too large', `type ${hex(type)}, len=${len}, ${end - pos} bytes left`);
    if (type === EXT.END) break;
    const data = buf.subarray(pos, pos + len);
    // A repeated extension is not an error in QEMU: the later one wins.
    switch (type) {
      case EXT.BACKING_FORMAT:
        // QEMU keeps the format name in 16 bytes.
        if (len >= 16) throw einval(`ERROR: ext_backing_format: len=${len} too large (>=16)`);
        h.backingFormat = text.decode(data);
        break;
      case EXT.DATA_FILE:
        h.dataFile = text.decode(data);
        break;
      case EXT.FEATURE_TABLE:
        // A last, short entry counts too, its missing bytes read as zeros (as in QEMU).
        for (let i = 0; i + 2 < len; i += FEATURE_ENTRY_SIZE) {
          const raw = data.subarray(i + 2, Math.min(i + FEATURE_ENTRY_SIZE, len));
          const nul = raw.indexOf(0);
          h.featureTable.push({ type: data[i]!, bit: data[i + 1]!, name: text.decode(nul < 0 ? raw : raw.subarray(0, nul)) });
        }
        break;
      case EXT.BITMAPS: {
        if (len !== 24) throw einval(`bitmaps_ext: Invalid extension length ${len} (expected 24)`);
        const e = new DataView(data.buffer, data.byteOffset, 24);
        if (e.getUint32(4) !== 0) throw einval('bitmaps_ext: Reserved field is not zero');
        const nb = e.getUint32(0);
        const size = e.getBigUint64(8);
        const off = e.getBigUint64(16);
        if (!(h.autoclear & AUTOCLEAR.BITMAPS)) {
          // Written by a program without bitmap support: the bitmaps are stale. Keep the bytes.
          h.unknownExtensions.push({ type, data: data.slice() });
          break;
        }
        if (nb === 0 || nb > MAX_BITMAPS) throw einval(`bitmaps_ext: invalid number of bitmaps ${nb} (1..${MAX_BITMAPS})`);
        if (size > BigInt(MAX_BITMAP_DIRECTORY)) throw einval(`bitmaps_ext: bitmap directory size ${size} is too large`);
        if (off > BigInt(Number.MAX_SAFE_INTEGER) || Number(off) % clusterSize !== 0) {
          throw einval(`bitmaps_ext: invalid bitmap directory offset ${off}`);
        }
        h.bitmaps = { nbBitmaps: nb, directorySize: Number(size), directoryOffset: Number(off) };
        break;
      }
      case EXT.CRYPTO: {
        if (h.cryptMethod !== 2) throw einval('CRYPTO header extension only expected with LUKS encryption method');
        if (len !== 16) throw einval(`CRYPTO header extension size ${len}, but expected size 16`);
        const e = new DataView(data.buffer, data.byteOffset, 16);
        const offset = safeField(e.getBigUint64(0), 'crypto header offset');
        const length = safeField(e.getBigUint64(8), 'crypto header length');
        if (offset % clusterSize !== 0) throw einval(`Encryption header offset '${offset}' is not a multiple of cluster size '${clusterSize}'`);
        h.cryptoHeader = { offset, length };
        break;
      }
      default:
        h.unknownExtensions.push({ type, data: data.slice() });
    }
    pos += (len + 7) & ~7;
  }
  // The bitmaps bit without the extension stays set, as in QEMU, whose overlap
  // checks then see an empty directory covering the whole file (metadata-index.ts).
}

/** The raw u64 fields, before they are known to fit. */
interface RawFields {
  l1TableOffset: bigint;
  refcountTableOffset: bigint;
  snapshotsOffset: bigint;
  size: bigint;
}

/**
 * The table checks of QEMU's qcow2_do_open, in its order and with its
 * messages. Like QEMU, tables are not required to lie inside the file: what
 * lies past its end reads as zeros, and check reports it.
 */
function validateTables(h: Qcow2Header, raw: RawFields, forCheck: boolean): void {
  const cs = 2 ** h.clusterBits;
  const table = (off: bigint, entries: number, entryLen: number, maxBytes: number, name: string) => {
    if (entries > Math.floor(maxBytes / entryLen)) throw new BlockError('EFBIG', `${name} too large`, {}, { detail: `${entries} entries` });
    // QEMU's limit: the end of the table must fit an int64.
    if (INT64_MAX - BigInt(entries * entryLen) < off || off % BigInt(cs) !== 0n) {
      throw einval(`${name} offset invalid`, hex(off));
    }
  };
  if (h.refcountTableClusters === 0 && !forCheck) throw einval('Image does not contain a reference count table');
  table(raw.refcountTableOffset, h.refcountTableClusters, cs, MAX_REFTABLE_BYTES, 'Reference count table');
  if (!forCheck) table(raw.snapshotsOffset, h.nbSnapshots, 40, 40 * MAX_SNAPSHOTS, 'Snapshot table');
  table(raw.l1TableOffset, h.l1Size, 8, MAX_L1_BYTES, 'Active L1 table');
  const l2Entries = cs / (h.incompatible & INCOMPAT.EXTL2 ? 16 : 8);
  // QEMU's limit: the L1 index of the end of the disk must fit an int.
  const perL1 = BigInt(l2Entries * cs);
  const neededBig = (raw.size + perL1 - 1n) / perL1;
  if (neededBig > 0x7fffffffn) throw new BlockError('EFBIG', 'Image is too big', {}, { detail: `size ${raw.size}` });
  if (h.size > MAX_VIRTUAL_SIZE) throw new BlockError('EFBIG', 'Image is too big', {}, { detail: `size ${raw.size}, more than we address` });
  const needed = Number(neededBig);
  if (h.l1Size < needed) throw einval('L1 table is too small', `l1_size ${h.l1Size}, the size ${h.size} needs ${needed}`);
  h.refcountTableOffset = safeField(raw.refcountTableOffset, 'refcount_table_offset');
  // Checked for check too: a huge offset is not a safe integer either way.
  h.snapshotsOffset = safeField(raw.snapshotsOffset, 'snapshots_offset');
  h.l1TableOffset = safeField(raw.l1TableOffset, 'l1_table_offset');
}

/**
 * Serializes the header and extensions into one cluster. Throws EFBIG
 * when they do not fit.
 */
export function serializeHeader(h: Qcow2Header): Uint8Array {
  const cs = 2 ** h.clusterBits;
  const out = new Uint8Array(cs);
  const dv = new DataView(out.buffer);
  dv.setUint32(HDR.MAGIC, QCOW2_MAGIC);
  dv.setUint32(HDR.VERSION, h.version);
  dv.setUint32(HDR.CLUSTER_BITS, h.clusterBits);
  dv.setBigUint64(HDR.SIZE, BigInt(h.size));
  dv.setUint32(HDR.CRYPT_METHOD, h.cryptMethod);
  dv.setUint32(HDR.L1_SIZE, h.l1Size);
  dv.setBigUint64(HDR.L1_TABLE_OFFSET, BigInt(h.l1TableOffset));
  dv.setBigUint64(HDR.REFCOUNT_TABLE_OFFSET, BigInt(h.refcountTableOffset));
  dv.setUint32(HDR.REFCOUNT_TABLE_CLUSTERS, h.refcountTableClusters);
  dv.setUint32(HDR.NB_SNAPSHOTS, h.nbSnapshots);
  dv.setBigUint64(HDR.SNAPSHOTS_OFFSET, BigInt(h.snapshotsOffset));
  let pos = V2_HEADER_LENGTH;
  if (h.version === 3) {
    const len = Math.max(h.headerLength, V3_HEADER_LENGTH);
    dv.setBigUint64(HDR.INCOMPATIBLE_FEATURES, h.incompatible);
    dv.setBigUint64(HDR.COMPATIBLE_FEATURES, h.compatible);
    dv.setBigUint64(HDR.AUTOCLEAR_FEATURES, h.autoclear);
    dv.setUint32(HDR.REFCOUNT_ORDER, h.refcountOrder);
    dv.setUint32(HDR.HEADER_LENGTH, len);
    out[HDR.COMPRESSION_TYPE] = h.compressionType;
    out.set(h.tail.subarray(0, len - HDR.COMPRESSION_TYPE - 1), HDR.COMPRESSION_TYPE + 1);
    pos = len;
  }
  const enc = new TextEncoder();
  const ext = (type: number, data: Uint8Array) => {
    const padded = (data.length + 7) & ~7;
    if (pos + 8 + padded + 8 > cs) throw new BlockError('EFBIG', 'Header extensions do not fit in the first cluster');
    dv.setUint32(pos, type);
    dv.setUint32(pos + 4, data.length);
    out.set(data, pos + 8);
    pos += 8 + padded;
  };
  if (h.backingFormat !== undefined && h.backingFile !== undefined) ext(EXT.BACKING_FORMAT, enc.encode(h.backingFormat));
  if (h.dataFile !== undefined) ext(EXT.DATA_FILE, enc.encode(h.dataFile));
  if (h.cryptoHeader && h.cryptoHeader.offset !== 0) {
    const c = new Uint8Array(16);
    const cd = new DataView(c.buffer);
    cd.setBigUint64(0, BigInt(h.cryptoHeader.offset));
    cd.setBigUint64(8, BigInt(h.cryptoHeader.length));
    ext(EXT.CRYPTO, c);
  }
  // QEMU leaves the feature name table out with clusters of 4 KiB and less,
  // where it would crowd out the other extensions and the backing file name.
  if (h.version === 3 && cs > 4096) {
    const table = new Uint8Array(FEATURE_NAMES.length * FEATURE_ENTRY_SIZE);
    FEATURE_NAMES.forEach(([type, bit, name], i) => {
      table[i * FEATURE_ENTRY_SIZE] = type;
      table[i * FEATURE_ENTRY_SIZE + 1] = bit;
      table.set(enc.encode(name), i * FEATURE_ENTRY_SIZE + 2);
    });
    ext(EXT.FEATURE_TABLE, table);
  }
  if (h.bitmaps) {
    const b = new Uint8Array(24);
    const bd = new DataView(b.buffer);
    bd.setUint32(0, h.bitmaps.nbBitmaps);
    bd.setBigUint64(8, BigInt(h.bitmaps.directorySize));
    bd.setBigUint64(16, BigInt(h.bitmaps.directoryOffset));
    ext(EXT.BITMAPS, b);
  }
  for (const u of h.unknownExtensions) ext(u.type, u.data);
  // End marker (already zero).
  pos += 8;
  if (h.backingFile !== undefined && h.backingFile !== '') {
    const name = enc.encode(h.backingFile);
    if (name.length > MAX_BACKING_NAME) throw einval('Backing file name too long', `${name.length} bytes`);
    if (pos + name.length > cs) throw new BlockError('EFBIG', 'Backing file name does not fit in the first cluster');
    out.set(name, pos);
    dv.setBigUint64(HDR.BACKING_FILE_OFFSET, BigInt(pos));
    dv.setUint32(HDR.BACKING_FILE_SIZE, name.length);
    pos += name.length;
  }
  return out;
}

/** The `format-specific` data qemu-img info shows. */
export function describeFeatures(h: Qcow2Header): Record<string, unknown> {
  if (h.version === 2) return { compat: '0.10', 'compression-type': 'zlib', 'refcount-bits': 16 };
  const data: Record<string, unknown> = {
    compat: '1.1',
    'compression-type': COMPRESSION_NAMES[h.compressionType] ?? 'zlib',
    'lazy-refcounts': (h.compatible & 1n) !== 0n,
  };
  return data;
}
