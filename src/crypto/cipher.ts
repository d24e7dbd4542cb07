/**
 * A disk cipher: algorithm, mode and IV generator as LUKS names them, and the
 * sector cipher built from a master key (AES in node:crypto where it exists, else in
 * the WASM module, src/wasm/aes.ts; the modes over node:crypto in sector-modes.ts).
 * Twofish, Serpent and CAST5 run in TypeScript (twofish.ts, serpent.ts, cast5.ts)
 * under the same modes; all three in their WASM modules where they load
 * (src/wasm/serpent.ts, four blocks at a time in SIMD vectors; src/wasm/twofish.ts
 * and cast5.ts, two blocks' rounds interleaved).
 */
import { BlockError } from '../core/errors.js';
import { loadAes, typeScriptAesForced, type AesBackend, type AesKey, type AesMode, type IvGen } from '../wasm/aes.js';
import { digest, digestLength, isHashAlg, type HashAlg } from './hash.js';
import { ENGINE_PIECE, ModeCipher, restartCbcChains, type EcbEngine } from './sector-modes.js';
import { Cast5 } from './cast5.js';
import { Serpent } from './serpent.js';
import { loadSerpent } from '../wasm/serpent.js';
import { Twofish } from './twofish.js';
import { loadTwofish } from '../wasm/twofish.js';
import { loadCast5 } from '../wasm/cast5.js';
import type { BlockCipherEngine } from '../wasm/block-cipher-module.js';

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

/** The family names QEMU uses in its ESSIV errors ("No Serpent cipher with key size 20 available"). */
const ESSIV_FAMILIES: Record<string, string> = { aes: 'AES', serpent: 'Serpent', twofish: 'Twofish' };

/**
 * The cipher ESSIV uses (QEMU's qcrypto_block_luks_essiv_cipher): the payload
 * cipher when its key length is the hash's digest length, else the same
 * family's variant with that key length (AES, Serpent, Twofish; CAST5 has
 * only one).
 */
export function essivCipher(alg: CipherAlg, hash: HashAlg): CipherAlg {
  const d = digestLength(hash);
  if (d === cipherKeyLength(alg)) return alg;
  const family = alg.slice(0, alg.indexOf('-'));
  const title = ESSIV_FAMILIES[family];
  if (!title) throw new BlockError('EINVAL', `Cipher ${alg} not supported with essiv`);
  const variant = `${family}-${d * 8}`;
  if (!isCipherAlg(variant)) throw new BlockError('EINVAL', `No ${title} cipher with key size ${d} available`);
  return variant;
}

/**
 * Checks that a spec can run, with QEMU's messages in its order: ESSIV's
 * cipher first, then the mode (XTS needs a 16-byte block, which CAST5's
 * 8 bytes are not).
 */
export function checkSupported(spec: CipherSpec): void {
  if (spec.ivgen === 'essiv') essivCipher(spec.alg, spec.ivgenHash ?? 'sha256');
  if (spec.mode === 'xts' && cipherBlockSize(spec.alg) !== 16) throw new BlockError('EINVAL', `Unsupported cipher mode ${spec.mode}`);
}

/** Block size in bytes of an algorithm. */
export function cipherBlockSize(alg: CipherAlg): number {
  return alg.startsWith('cast5-') ? 8 : 16;
}

/** An ECB engine for the algorithms other than AES: TypeScript, or the family's WASM module (Serpent, Twofish, CAST5) when `module` is given. */
function softEngine(alg: CipherAlg, key: Uint8Array, module: BlockCipherEngine | undefined): EcbEngine {
  if (module) return module.key(key);
  if (alg.startsWith('twofish-')) return new Twofish(key);
  if (alg.startsWith('serpent-')) return new Serpent(key);
  if (alg.startsWith('cast5-')) return new Cast5(key);
  throw new BlockError('ENOTSUP', `Cipher algorithm '${alg}' has no TypeScript implementation`);
}

type NodeCipher = { update(d: Uint8Array): Uint8Array; setAutoPadding(on: boolean): NodeCipher; final(): Uint8Array };
type NodeCiphers = {
  createCipheriv(alg: string, key: Uint8Array, iv: Uint8Array | null): NodeCipher;
  createDecipheriv(alg: string, key: Uint8Array, iv: Uint8Array | null): NodeCipher;
};
let nodeCiphers: NodeCiphers | null | undefined;
let preferNode = true;

/** node:crypto where the platform has it (Node), else null. */
function nodeCrypto(): NodeCiphers | null {
  if (nodeCiphers === undefined) {
    const get = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
    nodeCiphers = typeof get === 'function' ? ((get('node:crypto') as NodeCiphers | undefined) ?? null) : null;
  }
  return nodeCiphers;
}

/**
 * Whether new ciphers use node:crypto's AES (OpenSSL, AES-NI) where it exists
 * (true, the default) or the WASM module (false; browsers always use it).
 * useTypeScriptAes(true) (src/wasm/aes.ts) overrides both with the TypeScript twin.
 */
export function useNodeAes(on: boolean): void {
  preferNode = on;
}

/** AES-ECB through node:crypto; CBC encryption and decryption run sectors through one CBC context. */
class NodeAesEcb implements EcbEngine {
  readonly blockSize = 16;
  private enc: NodeCipher | undefined;
  private dec: NodeCipher | undefined;
  private readonly key: Uint8Array;
  private readonly name: string;

  constructor(
    private readonly nc: NodeCiphers,
    key: Uint8Array,
  ) {
    this.key = Uint8Array.from(key); // a copy even of a Buffer (whose slice is a view): release wipes it
    this.name = `aes-${key.length * 8}`;
  }

  encrypt(data: Uint8Array): Uint8Array {
    this.enc ??= this.nc.createCipheriv(`${this.name}-ecb`, this.key, null).setAutoPadding(false);
    return this.enc.update(data);
  }

  decrypt(data: Uint8Array): Uint8Array {
    this.dec ??= this.nc.createDecipheriv(`${this.name}-ecb`, this.key, null).setAutoPadding(false);
    return this.dec.update(data);
  }

  cbcEncrypt(buf: Uint8Array, ivs: Uint8Array, sectorSize: number): void {
    // One CBC context for all sectors: XORing a sector's first block with
    // (its IV ^ the previous sector's last ciphertext block) restarts the chain at its IV.
    const c = this.nc.createCipheriv(`${this.name}-cbc`, this.key, ivs.subarray(0, 16)).setAutoPadding(false);
    for (let s = 0, at = 0; at < buf.length; s++, at += sectorSize) {
      const piece = buf.subarray(at, Math.min(buf.length, at + sectorSize));
      if (s > 0) {
        for (let i = 0; i < 16; i++) piece[i]! ^= ivs[s * 16 + i]! ^ buf[at - 16 + i]!;
      }
      piece.set(c.update(piece));
    }
    c.final();
  }

  /**
   * All sectors through one native CBC context (OpenSSL decrypts CBC blocks in
   * parallel, unlike its encryption), then each sector's first block restarted
   * at its own IV: one 16-byte fix-up per sector instead of a JS XOR pass.
   * Fed in pieces of {@link ENGINE_PIECE} (each update returns a new buffer;
   * see there why small ones).
   */
  cbcDecrypt(buf: Uint8Array, ivs: Uint8Array, sectorSize: number): void {
    const d = this.nc.createDecipheriv(`${this.name}-cbc`, this.key, ivs.subarray(0, 16)).setAutoPadding(false);
    const step = Math.max(1, Math.floor(ENGINE_PIECE / sectorSize)) * sectorSize;
    // The last ciphertext block of the piece before: the chain's link into this piece.
    const carry = new Uint8Array(16);
    for (let at = 0; at < buf.length; at += step) {
      const piece = buf.subarray(at, Math.min(buf.length, at + step));
      const plain = d.update(piece);
      const first = (at / sectorSize) * 16;
      if (at > 0) for (let i = 0; i < 16; i++) plain[i]! ^= ivs[first + i]! ^ carry[i]!;
      restartCbcChains(plain, piece, ivs.subarray(first), sectorSize);
      carry.set(piece.subarray(piece.length - 16));
      piece.set(plain);
    }
    d.final();
  }

  release(): void {
    this.key.fill(0);
    this.enc?.final();
    this.dec?.final();
    this.enc = this.dec = undefined;
  }
}

/** AES-ECB over the WASM module (or its TypeScript twin), for the modes it lacks (CTR). */
function wasmEcb(engine: AesBackend, key: AesKey): EcbEngine {
  const run = (data: Uint8Array, encrypt: boolean) => {
    engine.crypt('ecb', key, undefined, 'plain', undefined, data, 0, 16, encrypt);
    return data;
  };
  return { blockSize: 16, inPlace: true, encrypt: (d) => run(d, true), decrypt: (d) => run(d, false), release: () => key.release() };
}

interface SectorImpl {
  crypt(buf: Uint8Array, sector: number, encrypt: boolean): void;
  release(): void;
}

/** The WASM module's own sector modes (ECB, CBC, XTS). */
class WasmSectors implements SectorImpl {
  constructor(
    private readonly engine: AesBackend,
    private readonly mode: AesMode,
    private readonly ivgen: IvGen,
    private readonly key: AesKey,
    private readonly tweak: AesKey | undefined,
    private readonly ivKey: AesKey | undefined,
    private readonly sectorSize: number,
  ) {}

  crypt(buf: Uint8Array, sector: number, encrypt: boolean): void {
    this.engine.crypt(this.mode, this.key, this.tweak, this.ivgen, this.ivKey, buf, sector, this.sectorSize, encrypt);
  }

  release(): void {
    this.key.release();
    this.tweak?.release();
    this.ivKey?.release();
  }
}

/**
 * Encrypts and decrypts whole sectors with one key. Sector numbers count
 * from the start of the payload (or, for qcow2, as the caller decides).
 * In Node AES runs in node:crypto (see {@link useNodeAes}), elsewhere in the
 * WASM module; both give the same bytes.
 */
export class SectorCipher {
  private constructor(
    private readonly impl: SectorImpl,
    readonly sectorSize: number,
  ) {}

  /** Builds the cipher of `spec` keyed with `masterKey` (the bytes are not kept). */
  static async create(spec: CipherSpec, masterKey: Uint8Array, sectorSize = 512): Promise<SectorCipher> {
    checkSupported(spec);
    const klen = cipherKeyLength(spec.alg);
    if (masterKey.length !== masterKeyLength(spec)) {
      throw new BlockError('EINVAL', `Master key of ${masterKey.length} bytes does not fit ${spec.alg}-${spec.mode}`);
    }
    let ivKeyBytes: Uint8Array | undefined;
    if (spec.ivgen === 'essiv') {
      const hash = spec.ivgenHash ?? 'sha256';
      const salt = await digest(hash, masterKey);
      ivKeyBytes = salt.slice(0, cipherKeyLength(essivCipher(spec.alg, hash)));
      salt.fill(0);
    }
    try {
      if (!spec.alg.startsWith('aes-')) {
        const ivAlg = spec.ivgen === 'essiv' ? essivCipher(spec.alg, spec.ivgenHash ?? 'sha256') : spec.alg;
        const family = spec.alg.slice(0, spec.alg.indexOf('-'));
        const module = family === 'serpent' ? await loadSerpent() : family === 'twofish' ? await loadTwofish() : family === 'cast5' ? await loadCast5() : undefined;
        const soft = (alg: CipherAlg, k: Uint8Array) => softEngine(alg, k, module);
        const tweak = spec.mode === 'xts' ? soft(spec.alg, masterKey.subarray(klen)) : undefined;
        const impl = new ModeCipher(spec.mode, spec.ivgen, soft(spec.alg, masterKey.subarray(0, klen)), tweak, ivKeyBytes && soft(ivAlg, ivKeyBytes), sectorSize);
        return new SectorCipher(impl, sectorSize);
      }
      const nc = preferNode && !typeScriptAesForced() ? nodeCrypto() : null;
      if (nc) {
        const engine = (k: Uint8Array) => new NodeAesEcb(nc, k);
        const tweak = spec.mode === 'xts' ? engine(masterKey.subarray(klen)) : undefined;
        const impl = new ModeCipher(spec.mode, spec.ivgen, engine(masterKey.subarray(0, klen)), tweak, ivKeyBytes && engine(ivKeyBytes), sectorSize);
        return new SectorCipher(impl, sectorSize);
      }
      const aes = await loadAes();
      const keys: AesKey[] = [];
      try {
        const key = (k: Uint8Array) => {
          const x = aes.key(k);
          keys.push(x);
          return x;
        };
        const main = key(masterKey.subarray(0, klen));
        const tweak = spec.mode === 'xts' ? key(masterKey.subarray(klen)) : undefined;
        const ivKey = ivKeyBytes && key(ivKeyBytes);
        if (spec.mode === 'ctr') {
          const impl = new ModeCipher('ctr', spec.ivgen, wasmEcb(aes, main), undefined, ivKey && wasmEcb(aes, ivKey), sectorSize);
          return new SectorCipher(impl, sectorSize);
        }
        return new SectorCipher(new WasmSectors(aes, spec.mode, spec.ivgen, main, tweak, ivKey, sectorSize), sectorSize);
      } catch (e) {
        for (const k of keys) k.release();
        throw e;
      }
    } finally {
      ivKeyBytes?.fill(0);
    }
  }

  /** Encrypts `buf` in place; its first sector has number `sector`. */
  encrypt(buf: Uint8Array, sector: number): void {
    this.impl.crypt(buf, sector, true);
  }

  /** Decrypts `buf` in place; its first sector has number `sector`. */
  decrypt(buf: Uint8Array, sector: number): void {
    this.impl.crypt(buf, sector, false);
  }

  /** Wipes the keys. */
  release(): void {
    this.impl.release();
  }
}

export { isHashAlg };
