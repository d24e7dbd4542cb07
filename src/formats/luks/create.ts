/**
 * qemu-img create -f luks (and measure): QEMU's options, defaults
 * (aes-256, xts, plain64, sha256, essiv's hash sha256, 2000 ms of PBKDF2)
 * and order of checks; the file is sized to the payload offset plus the
 * virtual size with the requested preallocation before the key slot is
 * written.
 */
import type { CreateContext, CreateOptionSpec, MeasureInfo, PreallocMode } from '../../core/driver.js';
import { OptionReader } from '../../core/options.js';
import { BlockError, einval } from '../../core/errors.js';
import { lookupSecret } from '../../core/secrets.js';
import { deleteCreatedFile } from '../../core/create.js';
import { CIPHER_ALGS, CIPHER_MODES, IVGEN_ALGS, masterKeyLength, type CipherSpec } from '../../crypto/cipher.js';
import { HASH_NAMES, type HashAlg } from '../../crypto/hash.js';
import { LUKS_DEFAULTS, LuksVolume, type LuksCreateOptions } from '../../crypto/luks.js';
import { keyMaterialSectors, LUKS_KEY_SLOT_OFFSET, LUKS_SECTOR, LUKS_SLOTS, LUKS_STRIPES } from '../../crypto/luks-header.js';

/**
 * QEMU 7.2's cipher algorithm enum (QCryptoCipherAlgorithm; sm4 came later):
 * all accepted as values, des and 3des then refused as LUKS ciphers.
 */
const QAPI_CIPHER_ALGS = ['aes-128', 'aes-192', 'aes-256', 'des', '3des', 'cast5-128', 'serpent-128', 'serpent-192', 'serpent-256', 'twofish-128', 'twofish-192', 'twofish-256'] as const;

/** QEMU's block_crypto_create_opts_luks, in its order. */
export const LUKS_CREATE_OPTIONS: readonly CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'key-secret', type: 'string', help: 'ID of the secret that provides the keyslot passphrase' },
  { name: 'cipher-alg', type: 'string', help: 'Name of encryption cipher algorithm' },
  { name: 'cipher-mode', type: 'string', help: 'Name of encryption cipher mode' },
  { name: 'ivgen-alg', type: 'string', help: 'Name of IV generator algorithm' },
  { name: 'ivgen-hash-alg', type: 'string', help: 'Name of IV generator hash algorithm' },
  { name: 'hash-alg', type: 'string', help: 'Name of encryption hash algorithm' },
  { name: 'iter-time', type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
];

/**
 * An enum option's value. A bad one is named without the reader's prefix, as
 * QEMU's visitor of the crypto options names it (qcow2's `encrypt.cipher-alg=x`
 * fails as "Parameter 'cipher-alg' ..."), unlike a bad number.
 */
function enumValue<T extends string>(o: OptionReader, key: string, values: readonly T[]): T | undefined {
  const v = o.string(key);
  if (v === undefined) return undefined;
  if (!(values as readonly string[]).includes(v)) throw einval(`Parameter '${key}' does not accept value '${v}'`);
  return v as T;
}

/** The parsed creation options of a LUKS volume (QEMU's QCryptoBlockCreateOptionsLUKS). */
export interface LuksCreateRequest {
  keySecret: string | undefined;
  options: LuksCreateOptions;
}

/**
 * Reads the LUKS creation options from `o` (keys without prefix; qcow2 passes
 * its `encrypt.` reader). Enum values are checked here, the secret later.
 */
export function readLuksCreateOptions(o: OptionReader): LuksCreateRequest {
  const keySecret = o.string('key-secret');
  const alg = enumValue(o, 'cipher-alg', QAPI_CIPHER_ALGS) ?? LUKS_DEFAULTS.spec.alg;
  const mode = enumValue(o, 'cipher-mode', CIPHER_MODES) ?? LUKS_DEFAULTS.spec.mode;
  const ivgen = enumValue(o, 'ivgen-alg', IVGEN_ALGS) ?? LUKS_DEFAULTS.spec.ivgen;
  let ivgenHash = enumValue(o, 'ivgen-hash-alg', HASH_NAMES);
  const hash = enumValue(o, 'hash-alg', HASH_NAMES) ?? LUKS_DEFAULTS.hash;
  const iterTime = o.uint('iter-time') ?? LUKS_DEFAULTS.iterTime;
  if (ivgen === 'essiv') ivgenHash ??= 'sha256';
  if (!(CIPHER_ALGS as readonly string[]).includes(alg)) throw new BlockError('EINVAL', `Algorithm '${alg}' not supported`);
  if (iterTime === 0) throw new BlockError('EINVAL', "Parameter 'iter-time' must be at least 1 millisecond");
  const spec: CipherSpec = { alg: alg as CipherSpec['alg'], mode, ivgen, ...(ivgenHash ? { ivgenHash: ivgenHash as HashAlg } : {}) };
  return { keySecret, options: { spec, hash, iterTime } };
}

/** Bytes of header and key material in front of the payload for a spec. */
export function luksPayloadOffset(spec: CipherSpec): number {
  const slots = keyMaterialSectors(masterKeyLength(spec), LUKS_STRIPES) * LUKS_SECTOR;
  return LUKS_KEY_SLOT_OFFSET + LUKS_SLOTS * slots;
}

export async function createLuks(ctx: CreateContext): Promise<void> {
  const o = ctx.options;
  const size = o.size('size', 0);
  const prealloc0 = o.choice('preallocation', ['off', 'metadata', 'falloc', 'full'] as const, 'off');
  const prealloc: PreallocMode = prealloc0 === 'metadata' ? 'off' : prealloc0;
  const req = readLuksCreateOptions(o);
  const protoOptions: Record<string, string | number | boolean> = {};
  for (const k of o.unconsumed()) {
    const v = o.raw(k);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') protoOptions[k] = v;
  }
  const graph = ctx.graph;
  const proto = await graph.protocolForOpen(ctx.filename);
  if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
  await proto.create({ ...ctx, options: new OptionReader(protoOptions, `Block protocol '${proto.name}'`) });
  try {
    const fileNode = await graph.open({ driver: proto.name, filename: ctx.filename });
    try {
      const { BlockBackend } = await import('../../core/backend.js');
      const bb = await BlockBackend.attach(graph, fileNode);
      try {
        const volume = await createLuksOn(req, graph, {
          init: async (payloadOffset) => {
            if (!Number.isSafeInteger(size + payloadOffset)) throw new BlockError('EFBIG', 'The requested file size is too large');
            await bb.truncate(size + payloadOffset, { exact: false, prealloc });
          },
          write: (offset, data) => bb.write(offset, data),
        });
        volume.close();
        await bb.flush();
      } finally {
        await bb.close();
      }
    } finally {
      await fileNode.unref();
    }
  } catch (e) {
    // As QEMU's luks create: the file, truncated and half written (even one that was there
    // before), is deleted.
    await deleteCreatedFile(graph, ctx.filename);
    throw e;
  }
}

/**
 * Creates a volume from parsed options: checks the secret (QEMU's
 * "Parameter '<prefix>key-secret' is required for cipher"), then writes.
 */
export async function createLuksOn(
  req: LuksCreateRequest,
  graph: import('../../core/graph.js').BlockGraph,
  io: { init: (payloadOffset: number) => Promise<void>; write: (offset: number, data: Uint8Array) => Promise<void> },
  optPrefix = '',
): Promise<LuksVolume> {
  if (req.keySecret === undefined) throw new BlockError('EINVAL', `Parameter '${optPrefix}key-secret' is required for cipher`);
  const secret = lookupSecret(graph, req.keySecret);
  try {
    return await LuksVolume.create(req.options, secret, io.init, io.write);
  } finally {
    secret.fill(0);
  }
}

/** qemu-img measure -O luks: the payload offset plus the virtual size, allocated or not. */
export async function measureLuks(o: OptionReader, source?: import('../../core/node.js').BlockNode, graph?: import('../../core/graph.js').BlockGraph): Promise<MeasureInfo> {
  o.consume('preallocation');
  const given = o.sizeExact('size') ?? 0n;
  const size = source ? BigInt(source.length) : given;
  const req = readLuksCreateOptions(o);
  // QEMU sizes the header by creating one in memory, which needs the secret named.
  if (req.keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'key-secret' is required for cipher");
  if (graph) lookupSecret(graph, req.keySecret).fill(0);
  // uint64 in QEMU: the sum wraps at 2^64.
  const total = BigInt.asUintN(64, BigInt(luksPayloadOffset(req.options.spec)) + size);
  return { required: total, fullyAllocated: total };
}
