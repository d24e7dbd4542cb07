/**
 * The AES sector modes over node:crypto (src/crypto/sector-modes.ts) against
 * the WASM module's (assembly/aes.ts): the same ciphertext for ECB, CBC and
 * XTS with every IV generator, sector numbers crossing 2^32 (where plain
 * wraps and plain64 does not), and a round trip everywhere, CTR included
 * (CTR over the WASM ECB against CTR over node:crypto). The TypeScript MD5,
 * SHA-224 and RIPEMD-160 and their PBKDF2 against node:crypto's.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { createCipheriv, createDecipheriv, createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { SectorCipher, useNodeAes, type CipherSpec } from '../../src/crypto/cipher.js';
import { tsDigest, tsPbkdf2 } from '../../src/crypto/hash-ts.js';
import { useTypeScriptAes } from '../../src/wasm/aes.js';

const ALGS = ['aes-128', 'aes-192', 'aes-256'] as const;
const MODES = ['ecb', 'cbc', 'xts', 'ctr'] as const;
const IVGENS = ['plain', 'plain64', 'essiv'] as const;

async function run(spec: CipherSpec, key: Uint8Array, data: Uint8Array, sector: number, node: boolean): Promise<{ enc: Uint8Array; dec: Uint8Array }> {
  useNodeAes(node);
  const c = await SectorCipher.create(spec, key, 512);
  const enc = data.slice();
  c.encrypt(enc, sector);
  const dec = enc.slice();
  c.decrypt(dec, sector);
  c.release();
  return { enc, dec };
}

describe('AES sector modes: node:crypto vs WASM', () => {
  afterAll(() => useNodeAes(true));
  for (const alg of ALGS) {
    for (const mode of MODES) {
      it(`${alg}-${mode} with plain, plain64 and essiv`, async () => {
        for (const ivgen of IVGENS) {
          const spec: CipherSpec = { alg, mode, ivgen, ...(ivgen === 'essiv' ? { ivgenHash: 'sha256' as const } : {}) };
          const key = randomBytes((Number(alg.slice(4)) / 8) * (mode === 'xts' ? 2 : 1));
          // 37 sectors, the first numbered just below 2^32; and an unaligned view.
          const data = new Uint8Array(randomBytes(512 * 37 + 1)).subarray(1);
          const a = await run(spec, key, data, 0xffffffff - 5, true);
          const b = await run(spec, key, data, 0xffffffff - 5, false);
          expect(Buffer.from(a.dec).equals(Buffer.from(data))).toBe(true);
          expect(Buffer.from(b.dec).equals(Buffer.from(data))).toBe(true);
          expect(Buffer.from(a.enc).equals(Buffer.from(b.enc))).toBe(true);
          expect(Buffer.from(a.enc).equals(Buffer.from(data))).toBe(false);
        }
      });
    }
  }

  it('the TypeScript twin (useTypeScriptAes) gives the same bytes in every mode', async () => {
    for (const mode of MODES) {
      const spec: CipherSpec = { alg: 'aes-256', mode, ivgen: 'essiv', ivgenHash: 'sha256' };
      const key = randomBytes(mode === 'xts' ? 64 : 32);
      const data = new Uint8Array(randomBytes(2048));
      const a = await run(spec, key, data, 7, true);
      useTypeScriptAes(true);
      try {
        const b = await run(spec, key, data, 7, true);
        expect(Buffer.from(b.enc).equals(Buffer.from(a.enc))).toBe(true);
        expect(Buffer.from(b.dec).equals(Buffer.from(data))).toBe(true);
      } finally {
        useTypeScriptAes(false);
      }
    }
  });

  it('ECB, CBC and XTS ciphertext does not depend on how sectors are batched', async () => {
    const spec: CipherSpec = { alg: 'aes-256', mode: 'xts', ivgen: 'plain64' };
    const key = randomBytes(64);
    const data = new Uint8Array(randomBytes(4096));
    const whole = (await run(spec, key, data, 10, true)).enc;
    const first = (await run(spec, key, data.subarray(0, 1024), 10, true)).enc;
    const rest = (await run(spec, key, data.subarray(1024), 12, true)).enc;
    expect(Buffer.concat([first, rest]).equals(Buffer.from(whole))).toBe(true);
  });
});

describe('CBC decryption through one node:crypto context', () => {
  afterAll(() => useNodeAes(true));
  /** The definition: each sector alone, CBC from its ESSIV IV = AES-256-ECB(sha256(key), sector as le64). */
  function reference(alg: string, key: Uint8Array, cipherText: Uint8Array, sector: number): Uint8Array {
    const ivKey = createHash('sha256').update(key).digest();
    const out = new Uint8Array(cipherText.length);
    for (let at = 0, s = sector; at < cipherText.length; at += 512, s++) {
      const le = Buffer.alloc(16);
      le.writeBigUInt64LE(BigInt(s));
      const iv = createCipheriv('aes-256-ecb', ivKey, null).setAutoPadding(false).update(le);
      const d = createDecipheriv(`${alg}-cbc`, key, iv).setAutoPadding(false);
      out.set(d.update(cipherText.subarray(at, Math.min(at + 512, cipherText.length))), at);
      d.final();
    }
    return out;
  }

  for (const alg of ['aes-128', 'aes-256'] as const) {
    it(`${alg}-cbc-essiv: many pieces, a partial last sector and an unaligned view decrypt as sector by sector`, async () => {
      const key = randomBytes(Number(alg.slice(4)) / 8);
      const spec: CipherSpec = { alg, mode: 'cbc', ivgen: 'essiv', ivgenHash: 'sha256' };
      // 300 sectors and 48 bytes: past several 64 KiB pieces, the last one short.
      for (const [len, shift] of [[512 * 300 + 48, 0], [512 * 129, 1], [512, 0], [48, 0]] as const) {
        const cipherText = new Uint8Array(randomBytes(len + shift)).subarray(shift);
        const want = reference(alg, key, cipherText, 0xfffffff0);
        for (const node of [true, false]) {
          useNodeAes(node);
          const c = await SectorCipher.create(spec, key, 512);
          const got = cipherText.slice();
          c.decrypt(got, 0xfffffff0);
          c.release();
          expect(Buffer.from(got).equals(Buffer.from(want)), `${len} bytes, node:crypto ${node}`).toBe(true);
        }
      }
    });
  }
});

describe('node:crypto in 64 KiB pieces', () => {
  afterAll(() => useNodeAes(true));
  it('ECB, XTS and CTR over many pieces (and an unaligned view) give the WASM module\'s bytes', async () => {
    for (const mode of ['ecb', 'xts', 'ctr'] as const) {
      const spec: CipherSpec = { alg: 'aes-256', mode, ivgen: 'plain64' };
      const key = randomBytes(mode === 'xts' ? 64 : 32);
      const data = new Uint8Array(randomBytes(512 * 300 + 3)).subarray(3);
      const a = await run(spec, key, data, 0x1_0000_0000 - 100, true);
      const b = await run(spec, key, data, 0x1_0000_0000 - 100, false);
      expect(Buffer.from(a.enc).equals(Buffer.from(b.enc)), mode).toBe(true);
      expect(Buffer.from(a.dec).equals(Buffer.from(data)), mode).toBe(true);
    }
  });
});

describe('TypeScript hashes vs node:crypto', () => {
  for (const alg of ['md5', 'sha224', 'ripemd160'] as const) {
    it(`${alg} digests and PBKDF2`, () => {
      for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
        const d = new Uint8Array(n).map((_, i) => i * 7);
        expect(Buffer.from(tsDigest(alg, [d.subarray(0, n >> 1), d.subarray(n >> 1)])).toString('hex')).toBe(createHash(alg).update(d).digest('hex'));
      }
      for (const pwLen of [5, 70]) {
        const pw = new Uint8Array(pwLen).fill(3);
        const salt = new Uint8Array(32).fill(1);
        expect(Buffer.from(tsPbkdf2(alg, pw, salt, 1000, 80)).toString('hex')).toBe(pbkdf2Sync(pw, salt, 1000, 80, alg).toString('hex'));
      }
    });
  }
});
