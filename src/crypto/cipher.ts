/**
 * A disk cipher: algorithm, mode and IV generator as LUKS names them, and the
 * sector cipher built from a master key (AES in the WASM module, src/wasm/aes.ts).
 */
import { BlockError } from '../core/errors.js';
import { loadAes, type AesBackend, type AesKey, type AesMode, type IvGen } from '../wasm/aes.js';
import { digest, digestLength, isHashAlg, type HashAlg } from './hash.js';

/** QEMU's cipher algorithm names (QCryptoCipherAlgorithm) that LUKS can name. */
export const CIPHER_ALGS = ['aes-128', 'aes-192', 'aes-256', 'cast5-128', 'serpent-128', 'serpent-192', 'serpent-256', 'twofish-128', 'twofish-192', 'twofish-256'] as const;
export type CipherAlg = (typeof CIPHER_ALGS)[number];
export const CIPHER_MODES = ['ecb', 'cbc', 'xts', 'ctr'] as const;
export type CipherMode = (typeof CIPHER_MODES)[number];
export const IVGEN_ALGS = ['plain', 'plain64', 'essiv'] as const;
export type IvGenAlg = (typeof IVGEN_ALGS)[number];

/** Everything that says how sectors are encrypted. */
export interface CipherSpec {
  alg: CipherAlg;
  mode: CipherMode;
  ivgen: IvGenAlg;
  /** ESSIV's hash (also kept, unused, when a plain IV names one, as dm-crypt does). */
  ivgenHash?: HashAlg;
}

/** Key bytes of an algorithm (one key; XTS takes two). */
export function cipherKeyLength(alg: CipherAlg): number {
  return Number(alg.slice(alg.indexOf('-') + 1)) / 8;
}

/** The master key length LUKS stores for a spec. */
export function masterKeyLength(spec: CipherSpec): number {
  return cipherKeyLength(spec.alg) * (spec.mode === 'xts' ? 2 : 1);
}

export function isCipherAlg(s: string): s is CipherAlg {
  return (CIPHER_ALGS as readonly string[]).includes(s);
}

/** The AES variant ESSIV uses: the one whose key length is the hash's digest length (dm-crypt's rule). */
export function essivCipher(alg: CipherAlg, hash: HashAlg): CipherAlg {
  const d = digestLength(hash);
  if (d === cipherKeyLength(alg)) return alg;
  if (!alg.startsWith('aes-')) throw new BlockError('ENOTSUP', `Cipher ${alg} not supported with essiv`);
  if (d === 16 || d === 24 || d === 32) return `aes-${d * 8}` as CipherAlg;
  throw new BlockError('EINVAL', `No AES cipher with key size ${d} available`);
}

/** Checks that this build can run a spec (AES in ECB, CBC or XTS). */
export function checkSupported(spec: CipherSpec): void {
  if (!spec.alg.startsWith('aes-')) throw new BlockError('ENOTSUP', `Cipher algorithm '${spec.alg}' is not supported by DiskWorker (only AES)`);
  if (spec.mode === 'ctr') throw new BlockError('ENOTSUP', "Cipher mode 'ctr' is not supported by DiskWorker");
  if (spec.ivgen === 'essiv') essivCipher(spec.alg, spec.ivgenHash ?? 'sha256');
}

/**
 * Encrypts and decrypts whole sectors with one key. Sector numbers count
 * from the start of the payload (or, for qcow2, as the caller decides).
 */
export class SectorCipher {
  private constructor(
    private readonly engine: AesBackend,
    private readonly mode: AesMode,
    private readonly ivgen: IvGen,
    private readonly key: AesKey,
    private readonly tweak: AesKey | undefined,
    private readonly ivKey: AesKey | undefined,
    readonly sectorSize: number,
  ) {}

  /** Builds the cipher of `spec` keyed with `masterKey` (the bytes are not kept). */
  static async create(spec: CipherSpec, masterKey: Uint8Array, sectorSize = 512): Promise<SectorCipher> {
    checkSupported(spec);
    const engine = await loadAes();
    const klen = cipherKeyLength(spec.alg);
    if (masterKey.length !== masterKeyLength(spec)) {
      throw new BlockError('EINVAL', `Master key of ${masterKey.length} bytes does not fit ${spec.alg}-${spec.mode}`);
    }
    const keys: AesKey[] = [];
    try {
      const key = engine.key(masterKey.subarray(0, klen));
      keys.push(key);
      const tweak = spec.mode === 'xts' ? engine.key(masterKey.subarray(klen)) : undefined;
      if (tweak) keys.push(tweak);
      let ivKey: AesKey | undefined;
      if (spec.ivgen === 'essiv') {
        const hash = spec.ivgenHash ?? 'sha256';
        const salt = await digest(hash, masterKey);
        ivKey = engine.key(salt.subarray(0, cipherKeyLength(essivCipher(spec.alg, hash))));
        salt.fill(0);
        keys.push(ivKey);
      }
      return new SectorCipher(engine, spec.mode as AesMode, spec.ivgen, key, tweak, ivKey, sectorSize);
    } catch (e) {
      for (const k of keys) k.release();
      throw e;
    }
  }

  /** Encrypts `buf` in place; its first sector has number `sector`. */
  encrypt(buf: Uint8Array, sector: number): void {
    this.engine.crypt(this.mode, this.key, this.tweak, this.ivgen, this.ivKey, buf, sector, this.sectorSize, true);
  }

  /** Decrypts `buf` in place; its first sector has number `sector`. */
  decrypt(buf: Uint8Array, sector: number): void {
    this.engine.crypt(this.mode, this.key, this.tweak, this.ivgen, this.ivKey, buf, sector, this.sectorSize, false);
  }

  /** Wipes the keys. */
  release(): void {
    this.key.release();
    this.tweak?.release();
    this.ivKey?.release();
  }
}

export { isHashAlg };
