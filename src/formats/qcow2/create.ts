/**
 * qcow2 image creation (qemu-img create -f qcow2 -o ...); measure.ts measures.
 * Layout as QEMU writes it: header, refcount table, refcount block(s), L1 table.
 */
import { readEncryptCreateOptions, setUpEncryption, type Qcow2EncryptRequest } from './crypt.js';
import type { CreateContext, CreateOptionSpec } from '../../core/driver.js';
import { OptionReader } from '../../core/options.js';
import { BlockError, einval, toBlockError } from '../../core/errors.js';
import { joinRelative } from '../../core/backing-open.js';
import { checkExtentSizeHint, deleteCreatedFile } from '../../core/create.js';
import { AUTOCLEAR, COMPAT, INCOMPAT, MAX_L1_BYTES, MAX_VIRTUAL_SIZE, V3_HEADER_LENGTH } from './constants.js';
import { serializeHeader, type Qcow2Header } from './header.js';
import { setRefcount } from './refcount.js';
import type { Qcow2Image } from './qcow2.js';

/**
 * In QEMU 7.2's order (qcow2_create_opts): the order is what `qemu-img create`
 * prints on its "Formatting ..." line, and only options with a default here
 * are printed when not given. Help texts are QEMU's.
 */
export const qcow2CreateOptions: readonly CreateOptionSpec[] = [
  { name: 'encryption', type: 'bool', help: "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)" },
  { name: 'encrypt.format', type: 'string', help: "Encrypt the image, format choices: 'aes', 'luks'" },
  { name: 'encrypt.key-secret', type: 'string', help: 'ID of secret providing qcow AES key or LUKS passphrase' },
  { name: 'encrypt.cipher-alg', type: 'string', help: 'Name of encryption cipher algorithm' },
  { name: 'encrypt.cipher-mode', type: 'string', help: 'Name of encryption cipher mode' },
  { name: 'encrypt.ivgen-alg', type: 'string', help: 'Name of IV generator algorithm' },
  { name: 'encrypt.ivgen-hash-alg', type: 'string', help: 'Name of IV generator hash algorithm' },
  { name: 'encrypt.hash-alg', type: 'string', help: 'Name of encryption hash algorithm' },
  { name: 'encrypt.iter-time', type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
  { name: 'cluster_size', type: 'size', help: 'qcow2 cluster size', default: '65536' },
  { name: 'extended_l2', type: 'bool', help: 'Extended L2 tables', default: 'off' },
  { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, metadata, falloc, full)' },
  { name: 'compression_type', type: 'string', help: 'Compression method used for image cluster compression', default: 'zlib' },
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'compat', type: 'string', help: 'Compatibility level (v2 [0.10] or v3 [1.1])' },
  { name: 'backing_file', type: 'string', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', help: 'Image format of the base image' },
  { name: 'data_file', type: 'string', help: 'File name of an external data file' },
  { name: 'data_file_raw', type: 'bool', help: 'The external data file must stay valid as a raw image' },
  { name: 'lazy_refcounts', type: 'bool', help: 'Postpone refcount updates', default: 'off' },
  { name: 'refcount_bits', type: 'number', help: 'Width of a reference count entry in bits', default: '16' },
];

const AMENDABLE = new Set(['size', 'compat', 'backing_file', 'backing_fmt', 'data_file', 'data_file_raw', 'lazy_refcounts', 'refcount_bits', 'encrypt.iter-time']);

/**
 * The options `amend` names in its help (QEMU's qcow2 amend list): the
 * creation options an open image can change, and the LUKS keyslot options.
 */
export const qcow2AmendOptions: readonly CreateOptionSpec[] = [
  ...qcow2CreateOptions.filter((o) => AMENDABLE.has(o.name)),
  { name: 'encrypt.keyslot', type: 'number', help: 'Select a single keyslot to modify explicitly' },
  { name: 'encrypt.new-secret', type: 'string', help: 'New secret to set in the matching keyslots. Empty string to erase' },
  { name: 'encrypt.old-secret', type: 'string', help: 'Select all keyslots that match this password' },
  { name: 'encrypt.state', type: 'string', help: 'Select new state of affected keyslots (active/inactive)' },
];

export interface Qcow2CreateParams {
  size: number;
  version: 2 | 3;
  backingFile?: string;
  backingFmt?: string;
  clusterSize: number;
  prealloc: 'off' | 'metadata' | 'falloc' | 'full';
  lazy: boolean;
  refcountBits: number;
  dataFile?: string;
  dataFileRaw: boolean;
  compressionType: number;
  extendedL2: boolean;
  /** Encryption (encrypt.format=luks, or the legacy aes). */
  encrypt?: Qcow2EncryptRequest;
}

/**
 * refcount_bits as QEMU's drivers read it: any integer, a negative one too
 * (checked by {@link checkRefcountBits}); text that is no integer is refused.
 */
export function readRefcountBits(o: OptionReader): number | undefined {
  const v = o.raw('refcount_bits');
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v)) return Number.isSafeInteger(v) ? v : 0;
  // strtoll in base 0: a sign, then hex, octal or decimal digits.
  const m = typeof v === 'string' ? /^[ \t\n\v\f\r]*([+-]?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(v) : null;
  if (!m) throw einval("Parameter 'refcount-bits' expects integer", {}, `got '${String(v)}'`);
  const magnitude = m[2] !== undefined ? BigInt(`0x${m[2]}`) : m[3] !== undefined ? BigInt(`0o${m[3].slice(1) || '0'}`) : BigInt(m[4]!);
  const n = m[1] === '-' ? -magnitude : magnitude;
  if (n !== BigInt.asIntN(64, n)) throw einval("Parameter 'refcount-bits' expects integer", {}, `got '${String(v)}'`);
  // Any integer outside 1..64 is refused the same way; 0 stands for them.
  return n >= 1n && n <= 64n ? Number(n) : 0;
}

/** QEMU's check of a refcount width: a power of two from 1 to 64. */
export function checkRefcountBits(bits: number): void {
  if (bits < 1 || bits > 64 || (bits & (bits - 1)) !== 0) {
    throw einval('Refcount width must be a power of two and may not exceed 64 bits', {}, `refcount_bits ${bits}`);
  }
}

/** Reads and validates creation options, with QEMU's messages. */
export function readCreateOptions(o: OptionReader, sizeRequired: boolean): Qcow2CreateParams & { sizeGiven: boolean } {
  const size = o.size('size');
  const compat = o.string('compat') ?? o.string('version') ?? '1.1';
  const backingFile = o.string('backing_file');
  const backingFmt = o.string('backing_fmt');
  const clusterSize = o.size('cluster_size', 65536);
  const prealloc = o.choice('preallocation', ['off', 'metadata', 'falloc', 'full'] as const, 'off');
  const lazy = o.bool('lazy_refcounts', false);
  const refcountBits = readRefcountBits(o) ?? 16;
  const dataFile = o.string('data_file');
  const dataFileRaw = o.bool('data_file_raw', false);
  const ctypeText = o.string('compression_type', 'zlib');
  if (ctypeText !== 'zlib' && ctypeText !== 'zstd') {
    // QEMU names the option as its QAPI schema does here.
    throw einval(`Parameter 'compression-type' does not accept value '${ctypeText}'`, {}, 'expected one of: zlib, zstd');
  }
  const ctype: 'zlib' | 'zstd' = ctypeText;
  const extendedL2 = o.bool('extended_l2', false);
  const encrypt = readEncryptCreateOptions(o);
  o.bool('nocow');
  let version: 2 | 3;
  if (compat === '0.10' || compat === 'v2') version = 2;
  else if (compat === '1.1' || compat === 'v3') version = 3;
  else throw einval(`Parameter 'version' does not accept value '${compat}'`);
  if (size === undefined && sizeRequired && !backingFile) throw einval("Parameter 'size' is required");
  if (size !== undefined && size > MAX_VIRTUAL_SIZE) throw new BlockError('EFBIG', 'Image size is too large', {}, { detail: String(size) });
  if (clusterSize < 512 || clusterSize > 2 * 1024 * 1024 || (clusterSize & (clusterSize - 1)) !== 0) {
    throw einval('Cluster size must be a power of two between 512 and 2048k');
  }
  if (backingFmt && !backingFile) throw einval('Backing format cannot be used without backing file');
  if (version < 3 && lazy) {
    throw einval('Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  checkRefcountBits(refcountBits);
  if (version < 3 && refcountBits !== 16) {
    throw einval('Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)');
  }
  if (version < 3 && dataFile) {
    throw einval('External data files are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  if (dataFileRaw && !dataFile) throw einval('data-file-raw requires data-file');
  if (dataFileRaw && backingFile) throw einval('Backing file and data-file-raw cannot be used at the same time');
  if (version < 3 && extendedL2) {
    throw einval('Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  if (extendedL2 && clusterSize < 16384) {
    throw einval('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  }
  if (backingFile && prealloc !== 'off' && !extendedL2) {
    throw einval('Backing file and preallocation can only be used at the same time if extended_l2 is on');
  }
  if (version < 3 && ctype !== 'zlib') {
    throw einval('Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  return {
    size: size ?? 0,
    sizeGiven: size !== undefined,
    version,
    ...(backingFile ? { backingFile } : {}),
    ...(backingFmt ? { backingFmt } : {}),
    clusterSize,
    prealloc,
    lazy,
    refcountBits,
    ...(dataFile ? { dataFile } : {}),
    dataFileRaw,
    compressionType: ctype === 'zstd' ? 1 : 0,
    extendedL2,
    ...(encrypt ? { encrypt } : {}),
  };
}

/** Builds the bytes of an empty image (header, refcount table and blocks, L1). */
export function buildEmptyImage(p: Qcow2CreateParams): Uint8Array {
  const cs = p.clusterSize;
  const cbits = Math.log2(cs);
  const order = Math.log2(p.refcountBits);
  const l2Entries = cs / (p.extendedL2 ? 16 : 8);
  const l1Size = Math.ceil(p.size / (cs * l2Entries));
  if (l1Size * 8 > MAX_L1_BYTES) throw new BlockError('EFBIG', `Image size ${p.size} needs an L1 table larger than 32 MiB`);
  // An empty image has no L1 table at all (offset 0), as QEMU makes it.
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const perBlock = (cs * 8) >> order;
  let rb = 1;
  let rt = 1;
  for (let i = 0; i < 32; i++) {
    const total = 1 + rt + rb + l1Clusters;
    const nrb = Math.ceil(total / perBlock);
    const nrt = Math.max(1, Math.ceil((nrb * 8) / cs));
    if (nrb === rb && nrt === rt) break;
    rb = nrb;
    rt = nrt;
  }
  const total = 1 + rt + rb + l1Clusters;
  const out = new Uint8Array(total * cs);
  const h: Qcow2Header = {
    version: p.version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: cbits,
    size: p.size,
    cryptMethod: 0,
    l1Size,
    l1TableOffset: l1Size > 0 ? (1 + rt + rb) * cs : 0,
    refcountTableOffset: cs,
    refcountTableClusters: rt,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatible: 0n,
    compatible: p.lazy ? COMPAT.LAZY_REFCOUNTS : 0n,
    autoclear: 0n,
    refcountOrder: p.version === 3 ? order : 4,
    headerLength: p.version === 3 ? V3_HEADER_LENGTH : 72,
    compressionType: p.compressionType,
    tail: new Uint8Array(0),
    featureTable: [],
    unknownExtensions: [],
  };
  if (p.compressionType !== 0) h.incompatible |= INCOMPAT.COMPRESSION;
  if (p.extendedL2) h.incompatible |= INCOMPAT.EXTL2;
  if (p.dataFile) {
    h.incompatible |= INCOMPAT.DATA_FILE;
    h.dataFile = p.dataFile;
    if (p.dataFileRaw) h.autoclear |= AUTOCLEAR.DATA_FILE_RAW;
  }
  if (p.backingFile) {
    h.backingFile = p.backingFile;
    if (p.backingFmt) h.backingFormat = p.backingFmt;
  }
  out.set(serializeHeader(h), 0);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < rb; b++) dv.setBigUint64(cs + b * 8, BigInt((1 + rt + b) * cs));
  for (let c = 0; c < total; c++) {
    const b = Math.floor(c / perBlock);
    setRefcount(out.subarray((1 + rt + b) * cs, (2 + rt + b) * cs), c % perBlock, h.refcountOrder, 1);
  }
  return out;
}

/**
 * Length of a new image file: {@link buildEmptyImage}'s bytes up to the end
 * of the L1 table's entries (QEMU writes only those), or all of them when
 * there is no L1 table.
 */
export function emptyImageEnd(p: Qcow2CreateParams, built: number): number {
  const l2Entries = p.clusterSize / (p.extendedL2 ? 16 : 8);
  const l1Size = Math.ceil(p.size / (p.clusterSize * l2Entries));
  if (l1Size === 0) return built;
  const l1Clusters = Math.ceil((l1Size * 8) / p.clusterSize);
  return built - l1Clusters * p.clusterSize + l1Size * 8;
}

export async function createQcow2(ctx: CreateContext): Promise<void> {
  const p = readCreateOptions(ctx.options, true);
  // Options of the image file's protocol, which QEMU hands down to it; Node
  // can set neither, so they are checked and kept as hints (as node-file does).
  ctx.options.bool('nocow');
  checkExtentSizeHint(ctx.options.size('extent_size_hint'));
  ctx.options.finish();
  const graph = ctx.graph;
  if (!p.sizeGiven && p.backingFile) {
    // Size from the backing file.
    const name = p.backingFile.startsWith('json:') ? p.backingFile : joinRelative(ctx.filename, p.backingFile);
    const b = await graph.open(p.backingFmt ? { driver: p.backingFmt, file: { filename: name } } : name, { readOnly: true });
    try {
      p.size = b.length;
    } finally {
      await b.unref();
    }
  }
  p.size = Math.ceil(p.size / 512) * 512;
  // data_file_raw promises the data file reads as the image on its own, so
  // QEMU maps it 1:1 from the start: metadata preallocation at least.
  if (p.dataFileRaw && p.prealloc === 'off') p.prealloc = 'metadata';
  const proto = await graph.protocolForOpen(ctx.filename);
  if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
  await proto.create({ ...ctx, options: new OptionReader({ size: 0 }, `Block protocol '${proto.name}'`) });
  const created: string[] = [ctx.filename];
  try {
    if (p.dataFile) {
      const dname = joinRelative(ctx.filename, p.dataFile);
      const dproto = graph.protocolFor(dname);
      if (!dproto.create) throw new BlockError('ENOTSUP', `Protocol driver '${dproto.name}' does not support image creation`);
      await dproto.create({ ...ctx, filename: dname, options: new OptionReader({ size: 0 }, `Block protocol '${dproto.name}'`) });
      created.push(dname);
    }
    const bytes = buildEmptyImage(p);
    const fileNode = await graph.open({ driver: proto.name, filename: ctx.filename });
    try {
      const { BlockBackend } = await import('../../core/backend.js');
      const bb = await BlockBackend.attach(graph, fileNode);
      try {
        // The file ends where QEMU's does: after the L1 table's entries, not
        // its whole cluster (the rest of that cluster reads as zeros anyway).
        const end = emptyImageEnd(p, bytes.length);
        await bb.truncate(end);
        // In QEMU's order, with its messages, so a full disk fails the same way:
        // the header cluster, the refcount table and block, then the L1 table.
        const cs = p.clusterSize;
        const steps: Array<[number, number, string]> = [
          [0, cs, 'Could not write qcow2 header'],
          [cs, Math.min(3 * cs, end), 'Could not write refcount table'],
          [3 * cs, end, 'Could not resize image: Failed to grow the L1 table'],
        ];
        for (const [from, to, what] of steps) {
          if (to <= from) continue;
          await bb.write(from, bytes.subarray(from, to)).catch((e: unknown) => {
            throw toBlockError(e).withPrefix(what);
          });
        }
        await bb.flush();
      } finally {
        await bb.close();
      }
    } finally {
      await fileNode.unref();
    }
    if (p.prealloc !== 'off' || p.dataFile) {
      const { BlockBackend } = await import('../../core/backend.js');
      const opts: Record<string, unknown> = { driver: 'qcow2', file: { driver: proto.name, filename: ctx.filename } };
      if (p.dataFile) opts['data-file'] = { driver: graph.protocolFor(joinRelative(ctx.filename, p.dataFile)).name, filename: joinRelative(ctx.filename, p.dataFile) };
      const bb = await BlockBackend.open(graph, opts, { noBacking: true });
      try {
        const inst = bb.node.instance as unknown as {
          lock: { run<T>(fn: () => Promise<T>): Promise<T> };
          preallocate(from: number, to: number, mode: string): Promise<void>;
        };
        if (p.prealloc !== 'off') {
          await inst.lock.run(() => inst.preallocate(0, p.size, p.prealloc)).catch((e: unknown) => {
            throw toBlockError(e).withPrefix('Could not resize image');
          });
        }
        // Without preallocation QEMU's resize to the virtual size also sizes the data file.
        if (p.prealloc === 'off') await bb.node.children.find((c) => c.name === 'data-file')?.truncate(p.size, false, 'off');
        await bb.flush();
      } finally {
        await bb.close();
      }
    }
    if (p.encrypt) {
      // As QEMU: encryption is set up last, on the image as created so far.
      const { BlockBackend } = await import('../../core/backend.js');
      const opts: Record<string, unknown> = { driver: 'qcow2', file: { driver: proto.name, filename: ctx.filename } };
      if (p.dataFile) opts['data-file'] = { driver: graph.protocolFor(joinRelative(ctx.filename, p.dataFile)).name, filename: joinRelative(ctx.filename, p.dataFile) };
      const bb = await BlockBackend.open(graph, opts, { noBacking: true });
      try {
        await setUpEncryption(bb.node.instance as unknown as Qcow2Image, p.encrypt);
        await bb.flush();
      } finally {
        await bb.close();
      }
    }
  } catch (e) {
    // As QEMU's qcow2 create: the files it made (or truncated) are deleted again.
    for (const name of created) await deleteCreatedFile(graph, name);
    throw e;
  }
}
