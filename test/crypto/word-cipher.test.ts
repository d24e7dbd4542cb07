/**
 * The whole-buffer paths of Twofish, Serpent and CAST5 (src/crypto/word-cipher.ts)
 * against references written here from the definitions: CBC over sectors
 * (each sector's chain from its IV) against a block-at-a-time chain through
 * single-block ECB calls, and ModeCipher's generic CBC (the engine's fast
 * path hidden) against the fast path; unaligned buffers against aligned
 * ones; Serpent's generated rounds (serpent-rounds.ts) against a round-by-round
 * Serpent built here from the word-wide S-box functions, and the generated
 * file against its generator's output.
 */
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { Twofish } from '../../src/crypto/twofish.js';
import { Serpent, SERPENT_SBOXES } from '../../src/crypto/serpent.js';
import { Cast5 } from '../../src/crypto/cast5.js';
import { ModeCipher, type EcbEngine } from '../../src/crypto/sector-modes.js';
import { bytes } from '../wasm/block-cipher-kit.js';

const ENGINES: Array<[string, () => EcbEngine]> = [
  ['twofish-128', () => new Twofish(bytes(16, 1))],
  ['twofish-192', () => new Twofish(bytes(24, 2))],
  ['twofish-256', () => new Twofish(bytes(32, 3))],
  ['serpent-128', () => new Serpent(bytes(16, 4))],
  ['serpent-192', () => new Serpent(bytes(24, 5))],
  ['serpent-256', () => new Serpent(bytes(32, 6))],
  ['cast5-128', () => new Cast5(bytes(16, 7))],
];

/** CBC over sectors, one block at a time through single-block ECB calls. */
function cbcReference(e: EcbEngine, data: Uint8Array, ivs: Uint8Array, sectorSize: number, encrypt: boolean): Uint8Array {
  const bs = e.blockSize;
  const out = data.slice();
  for (let s = 0, at = 0; at < out.length; s++, at += sectorSize) {
    let prev: Uint8Array = ivs.slice(s * bs, s * bs + bs);
    for (let b = at; b < Math.min(out.length, at + sectorSize); b += bs) {
      const block = out.slice(b, b + bs);
      if (encrypt) {
        for (let i = 0; i < bs; i++) block[i]! ^= prev[i]!;
        const c = e.encrypt(block.slice());
        out.set(c, b);
        prev = c;
      } else {
        const p = e.decrypt(block.slice());
        for (let i = 0; i < bs; i++) p[i]! ^= prev[i]!;
        out.set(p, b);
        prev = block;
      }
    }
  }
  return out;
}

/** The engine with only its ECB (ModeCipher then runs its own CBC). */
function ecbOnly(e: EcbEngine): EcbEngine {
  return { blockSize: e.blockSize, inPlace: true, encrypt: (d) => e.encrypt(d), decrypt: (d) => e.decrypt(d), release: () => e.release() };
}

describe('block ciphers over whole buffers', () => {
  for (const [name, make] of ENGINES) {
    it(`${name}: CBC over sectors equals the block-at-a-time chain, the last sector partial`, () => {
      const e = make();
      const ss = 512;
      const data = bytes(ss * 5 + 3 * e.blockSize, 11);
      const ivs = bytes(6 * e.blockSize, 12);
      const enc = data.slice();
      e.cbcEncrypt!(enc, ivs, ss);
      expect(enc).toEqual(cbcReference(e, data, ivs, ss, true));
      expect(enc).not.toEqual(data);
      const dec = enc.slice();
      e.cbcDecrypt!(dec, ivs, ss);
      expect(dec).toEqual(data);
      expect(dec).toEqual(cbcReference(e, enc, ivs, ss, false));
    });

    it(`${name}: ModeCipher's CBC, XTS and CTR give the same bytes with the fast path as without, over unaligned buffers too`, () => {
      const modes = (name.startsWith('cast5') ? ['cbc', 'ctr', 'ecb'] : ['cbc', 'xts', 'ctr', 'ecb']) as Array<'cbc' | 'xts' | 'ctr' | 'ecb'>;
      for (const mode of modes) {
        for (const ivgen of ['plain', 'plain64', 'essiv'] as const) {
          const fast = new ModeCipher(mode, ivgen, make(), mode === 'xts' ? make() : undefined, ivgen === 'essiv' ? make() : undefined, 512);
          const slow = new ModeCipher(mode, ivgen, ecbOnly(make()), mode === 'xts' ? ecbOnly(make()) : undefined, ivgen === 'essiv' ? ecbOnly(make()) : undefined, 512);
          const data = bytes(512 * 9, 21);
          const a = data.slice();
          fast.crypt(a, 0xfffffffd, true);
          const b = data.slice();
          slow.crypt(b, 0xfffffffd, true);
          expect(a).toEqual(b);
          // The same bytes at offsets 1..3 of their buffer (a word view needs a copy there).
          for (const off of [1, 2, 3]) {
            const u = new Uint8Array(data.length + off).subarray(off);
            u.set(data);
            fast.crypt(u, 0xfffffffd, true);
            expect(u).toEqual(a);
            fast.crypt(u, 0xfffffffd, false);
            expect(u).toEqual(data);
          }
          slow.crypt(a, 0xfffffffd, false);
          expect(a).toEqual(data);
        }
      }
    });
  }
});

/** Serpent round by round: the word-wide S-box functions and the linear transformation, as in the paper's bitslice description. */
class SerpentReference {
  private readonly k: Int32Array[] = [];

  constructor(key: Uint8Array) {
    const padded = new Uint8Array(32);
    padded.set(key);
    if (key.length < 32) padded[key.length] = 1;
    const w = new Int32Array(140);
    const dv = new DataView(padded.buffer);
    for (let i = 0; i < 8; i++) w[i] = dv.getInt32(4 * i, true);
    const rotl = (v: number, n: number) => (v << n) | (v >>> (32 - n));
    for (let i = 0; i < 132; i++) w[i + 8] = rotl(w[i]! ^ w[i + 3]! ^ w[i + 5]! ^ w[i + 7]! ^ 0x9e3779b9 ^ i, 11);
    for (let i = 0; i < 33; i++) {
      const x = w.slice(8 + 4 * i, 12 + 4 * i);
      SERPENT_SBOXES.forward[(35 - i) % 8]!(x);
      this.k.push(x);
    }
  }

  encrypt(block: Uint8Array): Uint8Array {
    const dv = new DataView(block.buffer, block.byteOffset, 16);
    const x = Int32Array.from({ length: 4 }, (_, j) => dv.getInt32(4 * j, true));
    const rotl = (v: number, n: number) => (v << n) | (v >>> (32 - n));
    for (let r = 0; r < 32; r++) {
      for (let j = 0; j < 4; j++) x[j]! ^= this.k[r]![j]!;
      SERPENT_SBOXES.forward[r % 8]!(x);
      if (r === 31) {
        for (let j = 0; j < 4; j++) x[j]! ^= this.k[32]![j]!;
        break;
      }
      x[0] = rotl(x[0]!, 13);
      x[2] = rotl(x[2]!, 3);
      x[1] = x[1]! ^ x[0]! ^ x[2]!;
      x[3] = x[3]! ^ x[2]! ^ (x[0]! << 3);
      x[1] = rotl(x[1]!, 1);
      x[3] = rotl(x[3]!, 7);
      x[0] = x[0]! ^ x[1]! ^ x[3]!;
      x[2] = x[2]! ^ x[3]! ^ (x[1]! << 7);
      x[0] = rotl(x[0]!, 5);
      x[2] = rotl(x[2]!, 22);
    }
    const out = new Uint8Array(16);
    const ov = new DataView(out.buffer);
    for (let j = 0; j < 4; j++) ov.setInt32(4 * j, x[j]!, true);
    return out;
  }
}

describe('Serpent generated rounds', () => {
  it('serpent-rounds.ts and assembly/serpent/rounds.ts are what scripts/gen-serpent-rounds.mjs writes from serpent.ts', () => {
    expect(() => execFileSync('node', ['scripts/gen-serpent-rounds.mjs', '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  for (const n of [16, 24, 32]) {
    it(`${n * 8}-bit keys: 64 blocks equal the round-by-round reference, and decrypt back`, () => {
      for (let seed = 0; seed < 4; seed++) {
        const key = bytes(n, 100 + seed);
        const data = bytes(64 * 16, 200 + seed);
        const c = new Serpent(key);
        const ref = new SerpentReference(key);
        const enc = c.encrypt(data.slice());
        for (let at = 0; at < data.length; at += 16) expect(enc.subarray(at, at + 16)).toEqual(ref.encrypt(data.subarray(at, at + 16)));
        expect(c.decrypt(enc)).toEqual(data);
      }
    });
  }
});
