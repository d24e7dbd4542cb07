/**
 * The WASM AES (bit-sliced, table-free) and its TypeScript twin against node:crypto on random vectors:
 * ECB for each key size, XTS (aes-128-xts / aes-256-xts) and CBC per 512-byte
 * sector with plain, plain64 and essiv IVs, in both directions, over requests
 * that cross the module's 64 KiB chunk and start at high sector numbers.
 */
import { describe, it, expect } from 'vitest';
import crypto from 'node:crypto';
import { AesEngine, loadAes as loadWasmAes, type AesBackend, type IvGen } from '../../src/wasm/aes.js';
import { TsAesEngine } from '../../src/crypto/aes-ts.js';
import { prng } from '../prng.js';

const SECTOR = 512;

function bytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** An integer in [0, n). */
const below = (rand: () => number, n: number): number => Math.floor(rand() * n);

/** The IV of a sector as dm-crypt / QEMU make it (ESSIV: E_{H(key)}(sector)). */
function ivOf(ivgen: IvGen, sector: number, masterKey: Uint8Array, essivKeyBits = 256): Buffer {
  const iv = Buffer.alloc(16);
  if (ivgen === 'plain') iv.writeUInt32LE(sector % 2 ** 32);
  else iv.writeBigUInt64LE(BigInt(sector));
  if (ivgen !== 'essiv') return iv;
  const salt = crypto.createHash('sha256').update(masterKey).digest().subarray(0, essivKeyBits / 8);
  const c = crypto.createCipheriv(`aes-${essivKeyBits}-ecb`, salt, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(iv), c.final()]);
}

/** node:crypto's answer: each sector on its own with its IV. */
function reference(cipher: string, key: Uint8Array, ivgen: IvGen, data: Uint8Array, sector: number, encrypt: boolean, masterKey = key): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += SECTOR) {
    const iv = ivOf(ivgen, sector + off / SECTOR, masterKey);
    const c = encrypt ? crypto.createCipheriv(cipher, key, iv) : crypto.createDecipheriv(cipher, key, iv);
    c.setAutoPadding(false);
    parts.push(c.update(data.subarray(off, Math.min(data.length, off + SECTOR))), c.final());
  }
  return Buffer.concat(parts);
}

for (const impl of ['wasm', 'typescript'] as const) describe(`${impl} AES vs node:crypto`, () => {
  const loadAes = async (): Promise<AesBackend> => {
    if (impl === 'typescript') return new TsAesEngine();
    const e = await loadWasmAes();
    expect(e).toBeInstanceOf(AesEngine);
    return e;
  };
  it('ECB with 128, 192 and 256-bit keys, both ways', async () => {
    const aes = await loadAes();
    const rand = prng(1);
    for (const bits of [128, 192, 256]) {
      for (let round = 0; round < 8; round++) {
        const keyBytes = bytes(rand, bits / 8);
        const pt = bytes(rand, 16 * (1 + (below(rand, 9))));
        const key = aes.key(keyBytes);
        const buf = pt.slice();
        aes.crypt('ecb', key, undefined, 'plain64', undefined, buf, 0, SECTOR, true);
        const c = crypto.createCipheriv(`aes-${bits}-ecb`, keyBytes, null);
        c.setAutoPadding(false);
        expect(Buffer.from(buf).equals(Buffer.concat([c.update(pt), c.final()]))).toBe(true);
        aes.crypt('ecb', key, undefined, 'plain64', undefined, buf, 0, SECTOR, false);
        expect(Buffer.from(buf).equals(Buffer.from(pt))).toBe(true);
        key.release();
      }
    }
  });

  for (const bits of [128, 256]) {
    for (const ivgen of ['plain', 'plain64'] as const) {
      it(`aes-${bits}-xts-${ivgen} per sector, both ways`, async () => {
        const aes = await loadAes();
        const rand = prng(bits + ivgen.length);
        for (let round = 0; round < 6; round++) {
          const keyBytes = bytes(rand, bits / 4);
          // Sector numbers past 2^32 show plain's truncation; lengths cross the 64 KiB chunk.
          const sector = round % 2 === 0 ? below(rand, 1000) : 2 ** 32 - 3 + (below(rand, 5));
          // The twin is slower: smaller requests for it (still past 64 KiB for WASM's chunking).
          const pt = bytes(rand, SECTOR * (1 + below(rand, impl === 'wasm' ? 300 : 24)));
          const k1 = aes.key(keyBytes.subarray(0, bits / 8));
          const k2 = aes.key(keyBytes.subarray(bits / 8));
          const buf = pt.slice();
          aes.crypt('xts', k1, k2, ivgen, undefined, buf, sector, SECTOR, true);
          expect(Buffer.from(buf).equals(reference(`aes-${bits}-xts`, keyBytes, ivgen, pt, sector, true))).toBe(true);
          aes.crypt('xts', k1, k2, ivgen, undefined, buf, sector, SECTOR, false);
          expect(Buffer.from(buf).equals(Buffer.from(pt))).toBe(true);
          k1.release();
          k2.release();
        }
      });
    }
  }

  for (const bits of [128, 192, 256]) {
    it(`aes-${bits}-cbc with plain64 and essiv:sha256, both ways, a short last sector`, async () => {
      const aes = await loadAes();
      const rand = prng(bits * 7);
      for (const ivgen of ['plain64', 'essiv'] as const) {
        const keyBytes = bytes(rand, bits / 8);
        const sector = below(rand, 100000);
        // A last sector of 256 bytes, as AES-192's key material has.
        const pt = bytes(rand, SECTOR * (1 + below(rand, impl === 'wasm' ? 200 : 24)) + 256);
        const key = aes.key(keyBytes);
        const salt = crypto.createHash('sha256').update(keyBytes).digest();
        const ivKey = ivgen === 'essiv' ? aes.key(salt) : undefined;
        const buf = pt.slice();
        aes.crypt('cbc', key, undefined, ivgen, ivKey, buf, sector, SECTOR, true);
        expect(Buffer.from(buf).equals(reference(`aes-${bits}-cbc`, keyBytes, ivgen, pt, sector, true))).toBe(true);
        aes.crypt('cbc', key, undefined, ivgen, ivKey, buf, sector, SECTOR, false);
        expect(Buffer.from(buf).equals(Buffer.from(pt))).toBe(true);
        key.release();
        ivKey?.release();
      }
    });
  }

  it(`refuses bad key and data lengths (${impl}) with a BlockError naming them`, async () => {
    const aes = await loadAes();
    expect(() => aes.key(new Uint8Array(20))).toThrow(/AES key length 20/);
    const key = aes.key(new Uint8Array(16));
    expect(() => aes.crypt('cbc', key, undefined, 'plain64', undefined, new Uint8Array(17), 0, SECTOR, true)).toThrow(/length 17/);
    key.release();
  });
});
