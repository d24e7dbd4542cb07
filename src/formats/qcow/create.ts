/**
 * qemu-img create -f qcow (QEMU 7.2's qcow_co_create_opts / qcow_co_create):
 * the 48-byte header, the backing file name after it, then a zeroed L1
 * table (whole sectors) at the header's end rounded up to 8 bytes. Images
 * with a backing file get 512-byte clusters (new clusters are not filled
 * from the backing file) and 32 KiB L2 tables; others 4 KiB of each.
 * Legacy AES encryption is created as QEMU does: it needs a key secret.
 */
import type { CreateContext, CreateOptionSpec } from '../../core/driver.js';
import { OptionReader } from '../../core/options.js';
import { BlockError, einval } from '../../core/errors.js';
import { lookupSecret } from '../../core/secrets.js';
import { QCOW_CRYPT_AES, QCOW_CRYPT_NONE, QCOW_HEADER_SIZE, QCOW_MAGIC, QCOW_VERSION, encodeHeader } from './header.js';

/** QEMU's qcow_create_opts in its order; help texts are QEMU's. */
export const qcowCreateOptions: readonly CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'backing_file', type: 'string', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', help: 'Format of the backing image' },
  { name: 'encryption', type: 'bool', help: "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)" },
  { name: 'encrypt.format', type: 'string', help: "Encrypt the image, format choices: 'aes'" },
  { name: 'encrypt.key-secret', type: 'string', help: 'ID of the secret that provides the AES encryption key' },
];

const QCOW_KEYS = new Set(qcowCreateOptions.map((s) => s.name));
const SECTOR = 512;

/** The encryption asked for: undefined (none), or the secret's id (checked later, as QEMU). */
function encryptRequest(o: OptionReader): { keySecret: string | undefined } | undefined {
  const legacy = o.has('encryption') ? o.bool('encryption', false) : undefined;
  const format = o.string('encrypt.format');
  const keySecret = o.string('encrypt.key-secret');
  if (legacy !== undefined && format !== undefined) {
    throw einval("'encrypt.format' and its alias 'encryption' can't be used at the same time");
  }
  const fmt = legacy === true ? 'aes' : format;
  if (fmt === undefined) {
    if (keySecret !== undefined) throw einval("Parameter 'encrypt.format' is missing");
    return undefined;
  }
  if (fmt !== 'aes' && fmt !== 'qcow' && fmt !== 'luks') throw einval(`Parameter 'format' does not accept value '${fmt}'`);
  if (fmt === 'luks') throw einval('Unsupported encryption format', {}, 'qcow images take aes encryption only');
  return { keySecret };
}

export async function createQcow(ctx: CreateContext): Promise<void> {
  const o = ctx.options;
  const protoOptions: Record<string, unknown> = {};
  for (const k of o.unconsumed()) if (!QCOW_KEYS.has(k)) protoOptions[k] = o.raw(k);
  // The alias conflict is found before the file is made; the rest after, as in QEMU.
  let encryptError: unknown;
  let encrypt: { keySecret: string | undefined } | undefined;
  try {
    encrypt = encryptRequest(o);
  } catch (e) {
    if (/alias/.test((e as Error).message)) throw e;
    encryptError = e;
  }
  const size = Math.ceil(o.size('size', 0) / SECTOR) * SECTOR;
  const backingFile = o.string('backing_file');
  // qcow stores no backing format; the generic layer checked the name.
  o.string('backing_fmt');
  o.finish();

  const graph = ctx.graph;
  const proto = await graph.protocolForOpen(ctx.filename);
  if (!proto.create) throw new BlockError('ENOTSUP', `Protocol driver '${proto.name}' does not support image creation`);
  await proto.create({ ...ctx, options: new OptionReader(protoOptions as Record<string, string>, `Block protocol '${proto.name}'`) });
  if (encryptError) throw encryptError;
  if (size === 0) throw einval('Image size is too small, cannot be zero length');

  // "fat:" names vvfat's special backing file: not stored, but the small clusters stay.
  const storedName = backingFile !== undefined && backingFile !== 'fat:' ? new TextEncoder().encode(backingFile) : undefined;
  const clusterBits = backingFile !== undefined ? 9 : 12;
  const l2Bits = backingFile !== undefined ? 12 : 9;
  const headerSize = Math.ceil((QCOW_HEADER_SIZE + (storedName?.length ?? 0)) / 8) * 8;
  const shift = clusterBits + l2Bits;
  const l1Size = Math.ceil(size / 2 ** shift);
  if (encrypt) {
    if (encrypt.keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'encrypt.key-secret' is required for cipher");
    // QEMU's create reads the secret (and fails naming it when there is none).
    lookupSecret(graph, encrypt.keySecret).fill(0);
  }
  const header = encodeHeader({
    magic: QCOW_MAGIC,
    version: QCOW_VERSION,
    backingFileOffset: storedName ? BigInt(QCOW_HEADER_SIZE) : 0n,
    backingFileSize: storedName?.length ?? 0,
    mtime: 0,
    size: BigInt(size),
    clusterBits,
    l2Bits,
    cryptMethod: encrypt ? QCOW_CRYPT_AES : QCOW_CRYPT_NONE,
    l1TableOffset: BigInt(headerSize),
  });
  const l1Bytes = Math.ceil((8 * l1Size) / SECTOR) * SECTOR;
  const image = new Uint8Array(headerSize + l1Bytes);
  image.set(header);
  if (storedName) image.set(storedName, QCOW_HEADER_SIZE);
  const fileNode = await graph.open({ driver: proto.name, filename: ctx.filename });
  try {
    const { BlockBackend } = await import('../../core/backend.js');
    const bb = await BlockBackend.attach(graph, fileNode);
    try {
      // QEMU writes past the end of the empty file; here the file is sized first.
      await bb.truncate(image.length, { exact: false });
      await bb.write(0, image);
      await bb.flush();
    } finally {
      await bb.close();
    }
  } finally {
    await fileNode.unref();
  }
}
