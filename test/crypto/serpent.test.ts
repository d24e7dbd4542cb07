/**
 * Serpent known answers from the NESSIE test vectors of the Serpent authors
 * (Serpent-128-128 and Serpent-256-128 .verified.test-vectors, Set 1,
 * vector 0: the key with only its first bit set, the zero block), in the
 * byte order of those files (and nettle's, QEMU's backend). The 192-bit
 * path (the same key padding) is checked against qemu-io in
 * test/formats/luks/other-ciphers.test.ts. Also the generated S-box code against the tables,
 * many blocks at once, and the size checks.
 */
import { describe, it, expect } from 'vitest';
import { Serpent, SERPENT_SBOXES } from '../../src/crypto/serpent.js';
import { BlockError } from '../../src/core/errors.js';

const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

describe('Serpent', () => {
  const KNOWN = [
    { key: '80000000000000000000000000000000', ct: '264E5481EFF42A4606ABDA06C0BFDA3D' },
    { key: '8000000000000000000000000000000000000000000000000000000000000000', ct: 'A223AA1288463C0E2BE38EBD825616C0' },
  ];
  for (const v of KNOWN) {
    it(`${v.key.length * 4}-bit key (NESSIE set 1, vector 0): the zero block encrypts to ${v.ct} and back`, () => {
      const c = new Serpent(hex(v.key));
      const block = c.encrypt(new Uint8Array(16));
      expect(toHex(block)).toBe(v.ct);
      expect(toHex(c.decrypt(block))).toBe('00'.repeat(16));
    });
  }

  it('the word-wide S-boxes and their inverses compute the paper\'s tables on every bit column', () => {
    const { tables, forward, backward } = SERPENT_SBOXES;
    for (let i = 0; i < 8; i++) {
      const x = new Int32Array(4);
      // Bit column v holds nibble v: input word j has bit v set when v has bit j.
      for (let j = 0; j < 4; j++) for (let v = 0; v < 16; v++) x[j]! |= ((v >>> j) & 1) << v;
      const y = x.slice();
      forward[i]!(y);
      for (let v = 0; v < 16; v++) {
        const out = [0, 1, 2, 3].reduce((n, j) => n | (((y[j]! >>> v) & 1) << j), 0);
        expect(out).toBe(tables[i]![v]);
      }
      backward[i]!(y);
      expect(y).toEqual(x);
    }
  });

  it('a 128-bit key is the 256-bit key padded with a 1 bit (the paper\'s short-key rule)', () => {
    const short = hex('000102030405060708090A0B0C0D0E0F');
    const padded = new Uint8Array(32);
    padded.set(short);
    padded[16] = 1;
    const block = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
    expect(new Serpent(short).encrypt(block.slice())).toEqual(new Serpent(padded).encrypt(block.slice()));
  });

  it('every key size round-trips many blocks, equal block by block', () => {
    for (const n of [16, 24, 32]) {
      const c = new Serpent(Uint8Array.from({ length: n }, (_, i) => i * 7 + 3));
      const data = Uint8Array.from({ length: 2048 }, (_, i) => (i * 53 + 5) & 255);
      const whole = c.encrypt(data.slice());
      for (let at = 0; at < data.length; at += 16) expect(c.encrypt(data.slice(at, at + 16))).toEqual(whole.subarray(at, at + 16));
      expect(c.decrypt(whole)).toEqual(data);
    }
  });

  it('refuses other key sizes and partial blocks', () => {
    expect(() => new Serpent(new Uint8Array(8))).toThrow(BlockError);
    expect(() => new Serpent(new Uint8Array(16)).decrypt(new Uint8Array(8))).toThrow(/8 bytes/);
  });
});
