/**
 * The WASM Serpent (assembly/serpent.ts through src/wasm/serpent.ts): the
 * NESSIE known answers of test/crypto/serpent.test.ts, and byte for byte the
 * TypeScript cipher (src/crypto/serpent.ts, itself held against the
 * specification's vectors and a round-by-round reference) in ECB, CBC and XTS
 * over sectors: groups of four blocks cut short at a buffer's end, sectors
 * whose block count is not a multiple of four (groups that straddle sectors),
 * fewer than four sectors side by side in CBC encryption, a partial last
 * sector, buffers of several 64 KiB pieces, and a sector larger than a piece.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { Serpent } from '../../src/crypto/serpent.js';
import { SectorCipher, type CipherSpec } from '../../src/crypto/cipher.js';
import { ModeCipher } from '../../src/crypto/sector-modes.js';
import { BlockError } from '../../src/core/errors.js';
import { bytes, compareWithTypeScript, hex, same, toHex } from './block-cipher-kit.js';
import { loadSerpent, serpentImplementation, useTypeScriptSerpent, type SerpentEngine } from '../../src/wasm/serpent.js';

const engine = (await loadSerpent()) as SerpentEngine;

describe('WASM Serpent', () => {
  afterAll(() => useTypeScriptSerpent(false));

  it('loads in Node (WebAssembly SIMD)', () => {
    expect(engine).toBeDefined();
    expect(serpentImplementation()).toBe('wasm');
  });

  const KNOWN = [
    { key: '80000000000000000000000000000000', ct: '264E5481EFF42A4606ABDA06C0BFDA3D' },
    { key: '8000000000000000000000000000000000000000000000000000000000000000', ct: 'A223AA1288463C0E2BE38EBD825616C0' },
  ];
  for (const v of KNOWN) {
    it(`${v.key.length * 4}-bit key (NESSIE set 1, vector 0): the zero block encrypts to ${v.ct} and back`, () => {
      const k = engine.key(hex(v.key));
      const block = k.encrypt(new Uint8Array(16));
      expect(toHex(block)).toBe(v.ct);
      expect(toHex(k.decrypt(block))).toBe('00'.repeat(16));
      k.release();
    });
  }

  compareWithTypeScript([16, 24, 32], (key) => engine.key(key), (key) => new Serpent(key));

  it('every mode and IV generator through the sector cipher: the same bytes with the module as with TypeScript forced', async () => {
    const data = bytes(512 * 70 + 512, 3);
    for (const alg of ['serpent-128', 'serpent-192', 'serpent-256'] as const) {
      for (const mode of ['cbc', 'xts', 'ctr', 'ecb'] as const) {
        for (const ivgen of ['plain', 'plain64', 'essiv'] as const) {
          const spec: CipherSpec = { alg, mode, ivgen, ivgenHash: 'sha256' };
          const klen = (Number(alg.slice(8)) / 8) * (mode === 'xts' ? 2 : 1);
          const key = bytes(klen, klen + mode.length);
          const out: Uint8Array[] = [];
          for (const ts of [false, true]) {
            useTypeScriptSerpent(ts);
            expect(serpentImplementation()).toBe(ts ? 'typescript' : 'wasm');
            const c = await SectorCipher.create(spec, key, 512);
            const buf = data.slice();
            c.encrypt(buf, 0xfffffff0);
            out.push(buf.slice());
            c.decrypt(buf, 0xfffffff0);
            same(buf, data);
            c.release();
          }
          useTypeScriptSerpent(false);
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
    expect(k2.encrypt(new Uint8Array(16))).toEqual(new Serpent(bytes(32, 2)).encrypt(new Uint8Array(16)));
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
