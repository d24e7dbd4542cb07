/**
 * Hashes and PBKDF2 for LUKS, through WebCrypto (`globalThis.crypto.subtle`, in Node 20
 * and browsers). The anti-forensic splitter hashes thousands of small blocks: in Node it
 * uses node:crypto's synchronous hashes for those, elsewhere WebCrypto. MD5, SHA-224 and
 * RIPEMD-160, which WebCrypto lacks, come from node:crypto in Node and from
 * src/crypto/hash-ts.ts elsewhere.
 */
import { BlockError } from '../core/errors.js';
import { isTsHash, tsDigest, tsPbkdf2 } from './hash-ts.js';

/** QEMU's hash names (QCryptoHashAlgorithm) and what serves them here (no `subtle`: not in WebCrypto). */
const HASHES: Record<string, { subtle?: string; node: string; length: number }> = {
  md5: { node: 'md5', length: 16 },
  sha1: { subtle: 'SHA-1', node: 'sha1', length: 20 },
  sha224: { node: 'sha224', length: 28 },
  sha256: { subtle: 'SHA-256', node: 'sha256', length: 32 },
  sha384: { subtle: 'SHA-384', node: 'sha384', length: 48 },
  sha512: { subtle: 'SHA-512', node: 'sha512', length: 64 },
  ripemd160: { node: 'ripemd160', length: 20 },
};

/** A hash name QEMU knows. */
export type HashAlg = 'md5' | 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512' | 'ripemd160';
export const HASH_NAMES = Object.keys(HASHES) as HashAlg[];

export function isHashAlg(name: string): name is HashAlg {
  return Object.prototype.hasOwnProperty.call(HASHES, name);
}

function spec(alg: HashAlg): { subtle?: string; node: string; length: number } {
  const s = HASHES[alg];
  if (!s) throw new BlockError('EINVAL', `Hash algorithm '${alg}' not supported`);
  return s;
}

/** Digest length in bytes. */
export function digestLength(alg: HashAlg): number {
  return spec(alg).length;
}

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new BlockError('ENOTSUP', 'WebCrypto (crypto.subtle) is not available: encrypted images need it');
  return s;
}

/** The digest of `data`. */
export async function digest(alg: HashAlg, data: Uint8Array): Promise<Uint8Array> {
  const s = spec(alg);
  if (s.subtle) return new Uint8Array(await subtle().digest(s.subtle, data as BufferSource));
  return await blockHasher(alg)([data]);
}

type NodeCrypto = {
  createHash(alg: string): { update(d: Uint8Array): unknown; digest(): Uint8Array };
  pbkdf2(password: Uint8Array, salt: Uint8Array, iterations: number, length: number, digest: string, cb: (err: Error | null, key: Uint8Array) => void): void;
};
let nodeCrypto: NodeCrypto | null | undefined;

function nodeHashes(): NodeCrypto | null {
  if (nodeCrypto === undefined) {
    const get = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
    nodeCrypto = typeof get === 'function' ? ((get('node:crypto') as NodeCrypto | undefined) ?? null) : null;
  }
  return nodeCrypto;
}

/** A hasher of many small inputs: synchronous where the platform allows, else WebCrypto. */
export function blockHasher(alg: HashAlg): (parts: Uint8Array[]) => Uint8Array | Promise<Uint8Array> {
  const s = spec(alg);
  const nc = nodeHashes();
  if (nc) {
    return (parts) => {
      const h = nc.createHash(s.node);
      for (const p of parts) h.update(p);
      return new Uint8Array(h.digest());
    };
  }
  if (isTsHash(alg)) return (parts) => tsDigest(alg, parts);
  return webHasher(alg);
}

/** WebCrypto's digest of the concatenated parts (no synchronous hash in browsers). */
function webHasher(alg: HashAlg): (parts: Uint8Array[]) => Promise<Uint8Array> {
  return async (parts) => {
    const total = parts.reduce((n, p) => n + p.length, 0);
    const joined = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      joined.set(p, at);
      at += p.length;
    }
    return digest(alg, joined);
  };
}

/** PBKDF2-HMAC of `password` with `salt`, `iterations` rounds, `length` bytes of output. */
export async function pbkdf2(alg: HashAlg, password: Uint8Array, salt: Uint8Array, iterations: number, length: number): Promise<Uint8Array> {
  const s = spec(alg);
  if (!s.subtle) {
    const nc = nodeHashes();
    if (nc) {
      return new Promise((resolve, reject) => nc.pbkdf2(password, salt, iterations, length, s.node, (err, key) => (err ? reject(err) : resolve(new Uint8Array(key)))));
    }
    if (isTsHash(alg)) return tsPbkdf2(alg, password, salt, iterations, length);
  }
  const key = await subtle().importKey('raw', password as BufferSource, 'PBKDF2', false, ['deriveBits']);
  const bits = await subtle().deriveBits({ name: 'PBKDF2', hash: s.subtle!, salt: salt as BufferSource, iterations }, key, length * 8);
  return new Uint8Array(bits);
}

/**
 * PBKDF2 iterations per second on this machine for a key of `length` bytes (QEMU's
 * qcrypto_pbkdf2_count_iters): doubles a trial count until one run takes long enough
 * to time, then scales. Times wall-clock (browsers have no CPU clock).
 */
export async function pbkdf2IterationsPerSecond(alg: HashAlg, password: Uint8Array, salt: Uint8Array, length: number): Promise<number> {
  let iterations = 1 << 12;
  for (;;) {
    const start = performance.now();
    await pbkdf2(alg, password, salt, iterations, length);
    const ms = performance.now() - start;
    if (ms >= 100 || iterations >= 1 << 30) return Math.floor((iterations * 1000) / Math.max(ms, 1));
    iterations *= 2;
  }
}

/** Random bytes from the platform's CSPRNG. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  // getRandomValues fills at most 65536 bytes per call.
  for (let off = 0; off < n; off += 65536) globalThis.crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  return out;
}
