/**
 * qcow2 encryption (crypt method 2, LUKS): the LUKS header lives in clusters
 * named by the CRYPTO header extension; guest data clusters are encrypted
 * sector by sector with IVs from their host offset (QEMU's "physical
 * offset" rule for LUKS). The read and write paths call {@link decryptHost}
 * and {@link encryptHost}; zero and unallocated clusters are not encrypted.
 * Legacy AES (crypt method 1): AES-128-CBC keyed with the password's first 16
 * bytes, plain64 IVs from the guest offset.
 */
import { BlockError } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';
import { lookupSecret } from '../../core/secrets.js';
import { LuksVolume, passwordBytes } from '../../crypto/luks.js';
import { SectorCipher } from '../../crypto/cipher.js';
import { LUKS_SECTOR } from '../../crypto/luks-header.js';
import { createLuksOn, luksPayloadOffset, readLuksCreateOptions, type LuksCreateRequest } from '../luks/create.js';
import { amendLuksVolume } from '../luks/luks.js';
import type { Qcow2Image } from './qcow2.js';

export const CRYPT_NONE = 0;
export const CRYPT_AES = 1;
export const CRYPT_LUKS = 2;

/** The `encrypt` open options (`encrypt.format`, `encrypt.key-secret`). */
function encryptOptions(raw: unknown): { format?: string; keySecret?: string } {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object') throw new BlockError('EINVAL', "Invalid parameter type for 'encrypt', expected: object");
  const o = new OptionReader(raw as Record<string, never>, "Block format 'qcow2'", 'encrypt.');
  const format = o.string('format');
  const keySecret = o.string('key-secret');
  o.finish();
  return { ...(format !== undefined ? { format } : {}), ...(keySecret !== undefined ? { keySecret } : {}) };
}

/**
 * Opens the image's encryption from the header and the `encrypt` options
 * (QEMU's checks and messages); `noIo` opens the LUKS header without a key.
 */
export async function openEncryption(img: Qcow2Image, rawEncrypt: unknown, noIo: boolean): Promise<void> {
  const h = img.header;
  const { format, keySecret } = encryptOptions(rawEncrypt);
  if (h.cryptMethod === CRYPT_NONE) {
    if (format !== undefined) throw new BlockError('EINVAL', `No encryption in image header, but options specified format '${format}'`);
    return;
  }
  const headerFormat = h.cryptMethod === CRYPT_AES ? 'aes' : 'luks';
  if (format !== undefined && format !== headerFormat) {
    throw new BlockError('EINVAL', `Header reported '${headerFormat}' encryption format but options specify '${format}'`);
  }
  if (h.cryptMethod === CRYPT_AES) {
    img.cryptPhysical = false;
    if (noIo) return;
    if (keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'encrypt.key-secret' is required for cipher");
    const secret = lookupSecret(img.node.graph, keySecret);
    const key = new Uint8Array(16);
    key.set(passwordBytes(secret).subarray(0, 16));
    secret.fill(0);
    try {
      img.crypto = new LegacyAes(await SectorCipher.create({ alg: 'aes-128', mode: 'cbc', ivgen: 'plain64' }, key, LUKS_SECTOR));
    } finally {
      key.fill(0);
    }
    return;
  }
  img.cryptPhysical = true;
  const ext = h.cryptoHeader;
  if (!ext) {
    if (noIo) return;
    throw new BlockError('EINVAL', `Missing CRYPTO header for crypt method ${h.cryptMethod}`);
  }
  let secret: Uint8Array | undefined;
  if (!noIo) {
    if (keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'encrypt.key-secret' is required for cipher");
    secret = lookupSecret(img.node.graph, keySecret);
  }
  const read = async (offset: number, length: number): Promise<Uint8Array> => {
    if (offset + length > ext.length) throw new BlockError('EINVAL', 'Request for data outside of extension header');
    const buf = new Uint8Array(length);
    const fileLen = img.file.length;
    const at = ext.offset + offset;
    const k = at >= fileLen ? 0 : Math.min(length, fileLen - at);
    if (k > 0) await img.file.preadv(at, k, buf.subarray(0, k));
    return buf;
  };
  try {
    img.crypto = await LuksVolume.open(read, secret);
    img.cryptoSecret = keySecret;
  } finally {
    secret?.fill(0);
  }
}

/** Key slot changes of the image's LUKS header (amend's `encrypt.*` options, without the prefix). */
export async function amendEncryption(img: Qcow2Image, o: OptionReader, force: boolean): Promise<void> {
  const ext = img.header.cryptoHeader!;
  const read = async (offset: number, length: number): Promise<Uint8Array> => {
    if (offset + length > ext.length) throw new BlockError('EINVAL', 'Request for data outside of extension header');
    const buf = new Uint8Array(length);
    await img.file.preadv(ext.offset + offset, length, buf);
    return buf;
  };
  const write = async (offset: number, data: Uint8Array): Promise<void> => {
    if (offset + data.length > ext.length) throw new BlockError('EINVAL', 'Request for data outside of extension header');
    await img.file.pwritev(ext.offset + offset, data.length, data);
  };
  await amendLuksVolume(img.crypto as LuksVolume, o, img.node.graph, img.cryptoSecret, force, read, write);
  o.finish();
  await img.file.flush();
}

/** What encrypts a qcow2 image's data: a LUKS volume or the legacy AES cipher. */
export interface Qcow2Crypto {
  encrypt(offset: number, buf: Uint8Array): void;
  decrypt(offset: number, buf: Uint8Array): void;
  close(): void;
}

/** qcow's old AES-CBC: sectors numbered from the guest offset. */
class LegacyAes implements Qcow2Crypto {
  constructor(private readonly cipher: SectorCipher) {}
  encrypt(offset: number, buf: Uint8Array): void {
    this.cipher.encrypt(buf, offset / LUKS_SECTOR);
  }
  decrypt(offset: number, buf: Uint8Array): void {
    this.cipher.decrypt(buf, offset / LUKS_SECTOR);
  }
  close(): void {
    this.cipher.release();
  }
}

/** Decrypts data of guest offset `guest` read from host offset `host` (multiples of 512). */
export function decryptHost(img: Qcow2Image, host: number, guest: number, buf: Uint8Array): void {
  img.crypto!.decrypt(img.cryptPhysical ? host : guest, buf);
}

/**
 * The bytes to write at host offset `host` for guest offset `guest`: an
 * encrypted copy (the caller's buffer stays plaintext).
 */
export function encryptHost(img: Qcow2Image, host: number, guest: number, buf: Uint8Array): Uint8Array {
  const out = buf.slice();
  img.crypto!.encrypt(img.cryptPhysical ? host : guest, out);
  return out;
}

/** The `encrypt` part of qemu-img info's format-specific data. */
export function encryptInfo(img: Qcow2Image): Record<string, unknown> | undefined {
  const h = img.header;
  if (h.cryptMethod === CRYPT_AES) return { format: 'aes' };
  if (h.cryptMethod === CRYPT_LUKS && img.crypto instanceof LuksVolume) return { format: 'luks', ...img.crypto.info() };
  return undefined;
}

/** qcow2's encryption creation options, from the flat `encrypt.*` keys. */
export type Qcow2EncryptRequest = { format: 'luks'; luks: LuksCreateRequest } | { format: 'aes'; keySecret: string | undefined };

const ENCRYPT_KEYS = ['key-secret', 'cipher-alg', 'cipher-mode', 'ivgen-alg', 'ivgen-hash-alg', 'hash-alg', 'iter-time'] as const;

/**
 * Reads `encryption` and `encrypt.*` creation options as QEMU checks them;
 * messages name the LUKS options with `namePrefix` (create: "encrypt.").
 */
export function readEncryptCreateOptions(o: OptionReader, namePrefix = 'encrypt.'): Qcow2EncryptRequest | undefined {
  const legacy = o.bool('encryption', false);
  const format = o.string('encrypt.format');
  const sub: Record<string, string> = {};
  for (const k of ENCRYPT_KEYS) {
    const v = o.string(`encrypt.${k}`);
    if (v !== undefined) sub[k] = v;
  }
  if (format === undefined && !legacy) {
    if (Object.keys(sub).length > 0) throw new BlockError('EINVAL', "Parameter 'encrypt.format' is missing");
    return undefined;
  }
  if (legacy && format !== undefined) throw new BlockError('EINVAL', "'encrypt.format' and its alias 'encryption' can't be used at the same time");
  if (legacy || format === 'aes') {
    // The old format's options have the key secret only (QEMU's QCryptoBlockOptionsQCow).
    const extra = ENCRYPT_KEYS.find((k) => k !== 'key-secret' && sub[k] !== undefined);
    if (extra) throw new BlockError('EINVAL', `Parameter 'encrypt.${extra}' is unexpected`);
    return { format: 'aes', keySecret: sub['key-secret'] };
  }
  if (format !== 'luks') throw new BlockError('EINVAL', `Parameter 'format' does not accept value '${format}'`);
  return { format: 'luks', luks: readLuksCreateOptions(new OptionReader(sub, "Block format 'qcow2'", namePrefix)) };
}

/** Bytes the LUKS header takes in a new image (whole clusters). */
export function encryptionOverhead(req: Qcow2EncryptRequest, clusterSize: number): number {
  if (req.format === 'aes') return 0;
  return Math.ceil(luksPayloadOffset(req.luks.options.spec) / clusterSize) * clusterSize;
}

/**
 * Sets up encryption on a freshly created, empty image (QEMU's
 * qcow2_set_up_encryption): allocates and zeroes the LUKS header clusters,
 * writes the header with one key slot, and records it in the image header.
 */
export async function setUpEncryption(img: Qcow2Image, req: Qcow2EncryptRequest): Promise<void> {
  if (req.format === 'aes') {
    // No header of its own: the key is the password, so only the secret is checked.
    if (req.keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'encrypt.key-secret' is required for cipher");
    lookupSecret(img.node.graph, req.keySecret).fill(0);
    img.header.cryptMethod = CRYPT_AES;
    await img.writeHeader();
    return;
  }
  const ext = { offset: 0, length: 0 };
  const volume = await createLuksOn(
    req.luks,
    img.node.graph,
    {
      init: async (headerLen) => {
        const clusters = Math.ceil(headerLen / img.clusterSize);
        const offset = await img.lock.run(() => img.refs.alloc(clusters));
        ext.offset = offset;
        ext.length = headerLen;
        const zeros = clusters * img.clusterSize;
        await img.file.pwriteZeroes(offset, zeros).catch(async () => img.file.pwritev(offset, zeros, new Uint8Array(zeros)));
      },
      write: async (offset, data) => {
        if (offset + data.length > ext.length) throw new BlockError('EINVAL', 'Request for data outside of extension header');
        await img.file.pwritev(ext.offset + offset, data.length, data);
      },
    },
    'encrypt.',
  );
  volume.close();
  img.header.cryptMethod = CRYPT_LUKS;
  img.header.cryptoHeader = ext;
  await img.lock.run(async () => {
    const { flushAll } = await import('./cow.js');
    await flushAll(img, true);
  });
  await img.writeHeader();
}

export { LUKS_SECTOR };
