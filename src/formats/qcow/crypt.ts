/**
 * qcow's legacy encryption (crypt_method 1): AES-128-CBC keyed with the
 * first 16 bytes of the password, each 512-byte sector with a plain64 IV of
 * its guest sector number. The open options and messages are QEMU 7.2's
 * (`encrypt.format`, `encrypt.key-secret`).
 */
import type { BlockGraph } from '../../core/graph.js';
import { BlockError, einval } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';
import { lookupSecret } from '../../core/secrets.js';
import { passwordBytes } from '../../crypto/luks.js';
import { SectorCipher } from '../../crypto/cipher.js';
import { QCOW_CRYPT_AES, QCOW_CRYPT_NONE } from './header.js';

const SECTOR = 512;

/** A sector cipher over guest offsets. */
export class QcowCipher {
  constructor(private readonly cipher: SectorCipher) {}
  /** Encrypts `buf` (whole sectors of guest offset `offset`) in place. */
  encrypt(offset: number, buf: Uint8Array): void {
    this.cipher.encrypt(buf, offset / SECTOR);
  }
  decrypt(offset: number, buf: Uint8Array): void {
    this.cipher.decrypt(buf, offset / SECTOR);
  }
  release(): void {
    this.cipher.release();
  }
}

/** The `encrypt` open options. */
function encryptOptions(raw: unknown): { format?: string; keySecret?: string } {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object') throw einval("Invalid parameter type for 'encrypt', expected: object");
  const o = new OptionReader(raw as Record<string, never>, "Block format 'qcow'", 'encrypt.');
  const format = o.string('format');
  const keySecret = o.string('key-secret');
  o.finish();
  return { ...(format !== undefined ? { format } : {}), ...(keySecret !== undefined ? { keySecret } : {}) };
}

/**
 * The cipher for crypt method `method` and the `encrypt` options, as QEMU's
 * qcow_open checks them; undefined without encryption, or with `noIo`
 * (opened for info: no key needed).
 */
export async function openCipher(graph: BlockGraph, method: number, rawEncrypt: unknown, noIo: boolean): Promise<QcowCipher | undefined> {
  const { format, keySecret } = encryptOptions(rawEncrypt);
  if (method === QCOW_CRYPT_NONE) {
    if (format !== undefined) throw einval(`No encryption in image header, but options specified format '${format}'`);
    return undefined;
  }
  if (method !== QCOW_CRYPT_AES) throw einval('invalid encryption method in qcow header', {}, `crypt_method ${method}`);
  if (format !== undefined && format !== 'aes') throw einval(`Header reported 'aes' encryption format but options specify '${format}'`);
  if (noIo) return undefined;
  if (keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'encrypt.key-secret' is required for cipher");
  const secret = lookupSecret(graph, keySecret);
  const key = new Uint8Array(16);
  key.set(passwordBytes(secret).subarray(0, 16));
  secret.fill(0);
  try {
    return new QcowCipher(await SectorCipher.create({ alg: 'aes-128', mode: 'cbc', ivgen: 'plain64' }, key, SECTOR));
  } finally {
    key.fill(0);
  }
}
