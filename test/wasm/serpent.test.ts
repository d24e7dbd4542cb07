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
import { loadSerpent, serpentImplementation, useTypeScriptSerpent, type SerpentEngine } from '../../src/wasm/serpent.js';

const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

/** Deterministic bytes (a linear congruential generator). */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Byte equality of large buffers (toEqual walks them element by element, slowly). */
function same(a: Uint8Array | undefined, b: Uint8Array | undefined): void {
  expect(a && b && a.length === b.length && Buffer.compare(a, b) === 0, 'the bytes differ').toBe(true);
}

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

  for (const n of [16, 24, 32]) {
    it(`${n * 8}-bit keys: ECB of 1 to 9 blocks and of 200 KiB equals the TypeScript cipher, and decrypts back`, () => {
      const key = bytes(n, n);
      const k = engine.key(key);
      const ts = new Serpent(key);
      for (const len of [16, 32, 48, 64, 80, 96, 112, 128, 144, 200 * 1024]) {
        const data = bytes(len, len);
        const enc = k.encrypt(data.slice());
        same(enc, ts.encrypt(data.slice()));
        same(k.decrypt(enc), data);
      }
      k.release();
    });
  }

  // [sector size, data length]: 3 and 5 blocks per sector (groups straddle sectors), the
  // usual 512 with 1..5 sectors and a partial one, 4096, a buffer of several 64 KiB
  // pieces, and a 128 KiB sector (larger than a piece).
  const SHAPES: Array<[number, number]> = [
    [48, 48 * 7 + 32],
    [80, 80 * 6],
    [512, 16],
    [512, 512],
    [512, 512 * 2 + 48],
    [512, 512 * 3],
    [512, 512 * 5 + 3 * 16],
    [4096, 4096 * 3 + 512],
    [512, 300 * 1024 + 512 + 64],
    [128 * 1024, 128 * 1024 * 2 + 4096],
  ];
  for (const [ss, len] of SHAPES) {
    it(`CBC and XTS over sectors of ${ss} bytes, ${len} bytes: the same bytes as the TypeScript cipher, and back`, () => {
      const key = bytes(32, ss + len);
      const sectors = Math.ceil(len / ss);
      const ivs = bytes(sectors * 16, 7);
      const data = bytes(len, 9);
      const k = engine.key(key);
      const ts = new Serpent(key);
      const a = data.slice();
      const b = data.slice();
      k.cbcEncrypt(a, ivs, ss);
      ts.cbcEncrypt(b, ivs, ss);
      same(a, b);
      expect(Buffer.compare(a, data)).not.toBe(0);
      k.cbcDecrypt(a, ivs, ss);
      same(a, data);
      for (const encrypt of [true, false]) {
        const x = data.slice();
        const y = data.slice();
        k.xts(x, ivs, ss, encrypt);
        ts.xts(y, ivs, ss, encrypt);
        same(x, y);
        k.xts(x, ivs, ss, !encrypt);
        same(x, data);
      }
      k.release();
    });
  }

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
