/**
 * LUKS's anti-forensic splitter: the master key is stored spread over `stripes`
 * blocks, all of which are needed to get it back (a partly erased key slot loses it).
 * Each step XORs a stripe into an accumulator and diffuses it by hashing each
 * digest-sized piece with its big-endian index in front.
 */
import { blockHasher, digestLength, randomBytes, type HashAlg } from './hash.js';

async function diffuse(alg: HashAlg, hash: ReturnType<typeof blockHasher>, block: Uint8Array): Promise<void> {
  const d = digestLength(alg);
  const index = new Uint8Array(4);
  for (let i = 0, at = 0; at < block.length; i++, at += d) {
    new DataView(index.buffer).setUint32(0, i);
    const piece = block.subarray(at, Math.min(block.length, at + d));
    const h = await hash([index, piece]);
    piece.set(h.subarray(0, piece.length));
  }
}

function xorInto(dst: Uint8Array, src: Uint8Array): void {
  for (let i = 0; i < dst.length; i++) dst[i]! ^= src[i]!;
}

/** Splits `key` into `stripes` blocks of key.length bytes. */
export async function afSplit(alg: HashAlg, key: Uint8Array, stripes: number): Promise<Uint8Array> {
  const n = key.length;
  const out = randomBytes(n * stripes);
  const acc = new Uint8Array(n);
  const hash = blockHasher(alg);
  for (let s = 0; s < stripes - 1; s++) {
    xorInto(acc, out.subarray(s * n, (s + 1) * n));
    await diffuse(alg, hash, acc);
  }
  const last = out.subarray((stripes - 1) * n);
  last.set(acc);
  xorInto(last, key);
  acc.fill(0);
  return out;
}

/** Joins `stripes` blocks of `keyLength` bytes back into the key. */
export async function afMerge(alg: HashAlg, material: Uint8Array, keyLength: number, stripes: number): Promise<Uint8Array> {
  const acc = new Uint8Array(keyLength);
  const hash = blockHasher(alg);
  for (let s = 0; s < stripes - 1; s++) {
    xorInto(acc, material.subarray(s * keyLength, (s + 1) * keyLength));
    await diffuse(alg, hash, acc);
  }
  xorInto(acc, material.subarray((stripes - 1) * keyLength, stripes * keyLength));
  return acc;
}
