/**
 * The WASM CAST5 (assembly/cast5.ts through src/wasm/cast5.ts): RFC 2144's
 * B.1 known answer through the module, a chain of keys and blocks in the
 * manner of B.2 held byte for byte against the TypeScript cipher
 * (src/crypto/cast5.ts, itself held against the whole of B.2), and the
 * TypeScript cipher's bytes in ECB and CBC over sectors of 8-byte blocks:
 * pairs cut short at a buffer's end, sectors of an odd block count (pairs that
 * straddle sectors), an odd number of sectors side by side in CBC encryption,
 * a partial last sector, buffers of several 64 KiB pieces, and a sector larger
 * than a piece.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { Cast5 } from '../../src/crypto/cast5.js';
import { SectorCipher, type CipherSpec } from '../../src/crypto/cipher.js';
import { BlockError } from '../../src/core/errors.js';
import { bytes, compareWithTypeScript, hex, same, toHex } from './block-cipher-kit.js';
import { cast5Implementation, loadCast5, useTypeScriptCast5, type Cast5Engine } from '../../src/wasm/cast5.js';

const engine = (await loadCast5()) as Cast5Engine;

describe('WASM CAST5', () => {
  afterAll(() => useTypeScriptCast5(false));

  it('loads in Node', () => {
    expect(engine).toBeDefined();
    expect(cast5Implementation()).toBe('wasm');
  });

  it('B.1: the 128-bit key encrypts 0123456789ABCDEF to 238B4FE5847E44B2 and back', () => {
    const k = engine.key(hex('0123456712345678234567893456789A'));
    const block = k.encrypt(hex('0123456789ABCDEF'));
    expect(toHex(block)).toBe('238B4FE5847E44B2');
    expect(toHex(k.decrypt(block))).toBe('0123456789ABCDEF');
    k.release();
  });

  it('2000 steps of the B.2 chain: the same a and b as the TypeScript cipher', () => {
    const run = (make: (key: Uint8Array) => { encrypt(d: Uint8Array): Uint8Array; release(): void }) => {
      const a = hex('0123456712345678234567893456789A');
      const b = a.slice();
      for (let i = 0; i < 1000; i++) {
        const kb = make(b);
        a.set(kb.encrypt(a));
        kb.release();
        const ka = make(a);
        b.set(ka.encrypt(b));
        ka.release();
      }
      return [a, b];
    };
    const [wa, wb] = run((key) => engine.key(key));
    const [ta, tb] = run((key) => new Cast5(key));
    same(wa, ta);
    same(wb, tb);
  });

  // [sector size, data length]: 3 and 5 blocks per sector (pairs straddle sectors), the
  // usual 512 with 1..4 sectors and a partial one, 4096, a buffer of several 64 KiB
  // pieces, and a 128 KiB sector (larger than a piece).
  const SHAPES: Array<[number, number]> = [
    [24, 24 * 7 + 16],
    [40, 40 * 6],
    [512, 8],
    [512, 512],
    [512, 512 * 2 + 24],
    [512, 512 * 3],
    [512, 512 * 4],
    [4096, 4096 * 3 + 512],
    [512, 300 * 1024 + 512 + 64],
    [128 * 1024, 128 * 1024 * 2 + 4096],
  ];

  compareWithTypeScript([16], (key) => engine.key(key), (key) => new Cast5(key), { blockSize: 8, shapes: SHAPES, xts: false });

  it('every mode and IV generator through the sector cipher: the same bytes with the module as with TypeScript forced', async () => {
    const data = bytes(512 * 70 + 512, 3);
    for (const mode of ['cbc', 'ctr', 'ecb'] as const) {
      for (const ivgen of ['plain', 'plain64'] as const) {
        const spec: CipherSpec = { alg: 'cast5-128', mode, ivgen };
        const key = bytes(16, 16 + mode.length);
        const out: Uint8Array[] = [];
        for (const ts of [false, true]) {
          useTypeScriptCast5(ts);
          expect(cast5Implementation()).toBe(ts ? 'typescript' : 'wasm');
          const c = await SectorCipher.create(spec, key, 512);
          const buf = data.slice();
          c.encrypt(buf, 0xfffffff0);
          out.push(buf.slice());
          c.decrypt(buf, 0xfffffff0);
          same(buf, data);
          c.release();
        }
        useTypeScriptCast5(false);
        same(out[0], out[1]);
      }
    }
  });

  it('a released key refuses to run; the next key (in its wiped context) encrypts right', () => {
    const k1 = engine.key(bytes(16, 1));
    k1.release();
    k1.release();
    expect(() => k1.encrypt(new Uint8Array(8))).toThrow(BlockError);
    const k2 = engine.key(bytes(16, 2));
    expect(k2.encrypt(new Uint8Array(8))).toEqual(new Cast5(bytes(16, 2)).encrypt(new Uint8Array(8)));
    k2.release();
  });

  it('refuses partial blocks, sector sizes that are not whole blocks, XTS, and bad key sizes, naming the value', () => {
    const k = engine.key(bytes(16, 1));
    expect(() => k.encrypt(new Uint8Array(12))).toThrow(/12 bytes/);
    expect(() => k.cbcDecrypt(new Uint8Array(64), new Uint8Array(8), 20)).toThrow(/sector size 20/);
    expect(() => k.xts(new Uint8Array(512), new Uint8Array(16), 512, true)).toThrow(BlockError);
    expect(() => engine.key(new Uint8Array(20))).toThrow(/20 bytes/);
    k.release();
  });
});
