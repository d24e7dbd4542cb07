/**
 * The WASM Twofish (assembly/twofish.ts through src/wasm/twofish.ts): the
 * Twofish paper's known answers of test/crypto/twofish.test.ts (the zero block
 * under its 128-, 192- and 256-bit keys, and the 49-step ecb_tbl chains), and
 * byte for byte the TypeScript cipher (src/crypto/twofish.ts) in ECB, CBC and
 * XTS over sectors: pairs of blocks cut short at a buffer's end, sectors of an
 * odd block count (pairs that straddle sectors), an odd number of sectors side
 * by side in CBC encryption, a partial last sector, buffers of several 64 KiB
 * pieces, and a sector larger than a piece.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { Twofish } from '../../src/crypto/twofish.js';
import { SectorCipher, type CipherSpec } from '../../src/crypto/cipher.js';
import { ModeCipher } from '../../src/crypto/sector-modes.js';
import { BlockError } from '../../src/core/errors.js';
import { bytes, compareWithTypeScript, hex, same, toHex } from './block-cipher-kit.js';
import { loadTwofish, twofishImplementation, useTypeScriptTwofish, type TwofishEngine } from '../../src/wasm/twofish.js';

const engine = (await loadTwofish()) as TwofishEngine;

describe('WASM Twofish', () => {
  afterAll(() => useTypeScriptTwofish(false));

  it('loads in Node (WebAssembly SIMD)', () => {
    expect(engine).toBeDefined();
    expect(twofishImplementation()).toBe('wasm');
  });

  const KNOWN = [
    { key: '00000000000000000000000000000000', ct: '9F589F5CF6122C32B6BFEC2F2AE8C35A' },
    { key: '0123456789ABCDEFFEDCBA98765432100011223344556677', ct: 'CFD1D2E5A9BE9CDF501F13B892BD2248' },
    { key: '0123456789ABCDEFFEDCBA987654321000112233445566778899AABBCCDDEEFF', ct: '37527BE0052334B89F0CFCCAE87CFA20' },
  ];
  for (const v of KNOWN) {
    it(`${v.key.length * 4}-bit key (the paper's test vectors): the zero block encrypts to ${v.ct} and back`, () => {
      const k = engine.key(hex(v.key));
      const block = k.encrypt(new Uint8Array(16));
      expect(toHex(block)).toBe(v.ct);
      expect(toHex(k.decrypt(block))).toBe('00'.repeat(16));
      k.release();
    });
  }

  const CHAIN_49 = { 16: '5D9D4EEFFA9151575524F115815A12E0', 24: 'E75449212BEEF9F4A390BD860A640941', 32: '37FE26FF1CF66175F5DDF4C33B97A205' } as const;
  for (const [n, last] of Object.entries(CHAIN_49)) {
    it(`ecb_tbl chain, ${Number(n) * 8}-bit key: step 49 gives ${last} through the module`, () => {
      let key: Uint8Array = new Uint8Array(Number(n));
      let pt: Uint8Array = new Uint8Array(16);
      let ct: Uint8Array = pt;
      for (let i = 1; i <= 49; i++) {
        const k = engine.key(key);
        ct = k.encrypt(pt.slice());
        expect(k.decrypt(ct.slice())).toEqual(pt);
        k.release();
        const next = new Uint8Array(16 + key.length);
        next.set(pt);
        next.set(key, 16);
        key = next.slice(0, key.length);
        pt = ct;
      }
      expect(toHex(ct)).toBe(last);
    });
  }

  compareWithTypeScript([16, 24, 32], (key) => engine.key(key), (key) => new Twofish(key));

  it('every mode and IV generator through the sector cipher: the same bytes with the module as with TypeScript forced', async () => {
    const data = bytes(512 * 70 + 512, 3);
    for (const alg of ['twofish-128', 'twofish-192', 'twofish-256'] as const) {
      for (const mode of ['cbc', 'xts', 'ctr', 'ecb'] as const) {
        for (const ivgen of ['plain', 'plain64', 'essiv'] as const) {
          const spec: CipherSpec = { alg, mode, ivgen, ivgenHash: 'sha256' };
          const klen = (Number(alg.slice(8)) / 8) * (mode === 'xts' ? 2 : 1);
          const key = bytes(klen, klen + mode.length);
          const out: Uint8Array[] = [];
          for (const ts of [false, true]) {
            useTypeScriptTwofish(ts);
            expect(twofishImplementation()).toBe(ts ? 'typescript' : 'wasm');
            const c = await SectorCipher.create(spec, key, 512);
            const buf = data.slice();
            c.encrypt(buf, 0xfffffff0);
            out.push(buf.slice());
            c.decrypt(buf, 0xfffffff0);
            same(buf, data);
            c.release();
          }
          useTypeScriptTwofish(false);
          same(out[0], out[1]);
        }
      }
    }
  });

  it('ModeCipher over module keys runs its own CBC and XTS the same as the keys\' fast paths', () => {
    const make = () => engine.key(bytes(32, 5));
    const strip = (e: ReturnType<typeof make>) => ({ blockSize: 16, inPlace: true, encrypt: (d: Uint8Array) => e.encrypt(d), decrypt: (d: Uint8Array) => e.decrypt(d), release: () => e.release() });
    for (const mode of ['cbc', 'xts'] as const) {
      const fast = new ModeCipher(mode, 'essiv', make(), make(), make(), 512);
      const slow = new ModeCipher(mode, 'essiv', strip(make()), strip(make()), strip(make()), 512);
      const data = bytes(512 * 9 + 32, 8);
      const a = data.slice();
      const b = data.slice();
      fast.crypt(a, 12345, true);
      slow.crypt(b, 12345, true);
      same(a, b);
      fast.crypt(a, 12345, false);
      same(a, data);
      fast.release();
      slow.release();
    }
  });

  it('a released key refuses to run; the next key (in its wiped context) encrypts right', () => {
    const k1 = engine.key(bytes(32, 1));
    k1.release();
    k1.release(); // twice is harmless
    expect(() => k1.encrypt(new Uint8Array(16))).toThrow(BlockError);
    const k2 = engine.key(bytes(32, 2));
    expect(k2.encrypt(new Uint8Array(16))).toEqual(new Twofish(bytes(32, 2)).encrypt(new Uint8Array(16)));
    k2.release();
  });

  it('refuses partial blocks, sector sizes that are not whole blocks, and bad key sizes, naming the value', () => {
    const k = engine.key(bytes(16, 1));
    expect(() => k.encrypt(new Uint8Array(20))).toThrow(/20 bytes/);
    expect(() => k.cbcDecrypt(new Uint8Array(64), new Uint8Array(16), 40)).toThrow(/sector size 40/);
    expect(() => engine.key(new Uint8Array(20))).toThrow(/20 bytes/);
    k.release();
  });
});
