/**
 * Twofish known answers from the Twofish paper's test vectors (Schneier et
 * al., Appendix "Test Vectors", and ecb_tbl.txt of the submission): the
 * all-zero block under the zero 128-bit key and the two longer keys given
 * there, and the 49-step chain of ecb_tbl.txt for each key size (each step's
 * key is the previous plaintext followed by the previous key, its plaintext
 * the previous ciphertext). Also the q0 / q1 permutations' first entries
 * against the paper's tables, decryption, and the size checks.
 */
import { describe, it, expect } from 'vitest';
import { Twofish, TWOFISH_Q } from '../../src/crypto/twofish.js';
import { BlockError } from '../../src/core/errors.js';

const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

describe('Twofish', () => {
  it('q0 and q1 built from the t-tables give the paper\'s permutations', () => {
    expect(toHex(TWOFISH_Q.q0.subarray(0, 8))).toBe('A967B3E804FDA376');
    expect(toHex(TWOFISH_Q.q1.subarray(0, 8))).toBe('75F3C6F4DB7BFBC8');
    expect(new Set(TWOFISH_Q.q0).size).toBe(256);
    expect(new Set(TWOFISH_Q.q1).size).toBe(256);
  });

  const KNOWN = [
    { key: '00000000000000000000000000000000', ct: '9F589F5CF6122C32B6BFEC2F2AE8C35A' },
    { key: '0123456789ABCDEFFEDCBA98765432100011223344556677', ct: 'CFD1D2E5A9BE9CDF501F13B892BD2248' },
    { key: '0123456789ABCDEFFEDCBA987654321000112233445566778899AABBCCDDEEFF', ct: '37527BE0052334B89F0CFCCAE87CFA20' },
  ];
  for (const v of KNOWN) {
    it(`${v.key.length * 4}-bit key: the zero block encrypts to ${v.ct} and back`, () => {
      const c = new Twofish(hex(v.key));
      const block = c.encrypt(new Uint8Array(16));
      expect(toHex(block)).toBe(v.ct);
      expect(toHex(c.decrypt(block))).toBe('00'.repeat(16));
    });
  }

  const CHAIN_49 = { 16: '5D9D4EEFFA9151575524F115815A12E0', 24: 'E75449212BEEF9F4A390BD860A640941', 32: '37FE26FF1CF66175F5DDF4C33B97A205' } as const;
  for (const [bytes, last] of Object.entries(CHAIN_49)) {
    it(`ecb_tbl chain, ${Number(bytes) * 8}-bit key: step 49 gives ${last}`, () => {
      let key: Uint8Array = new Uint8Array(Number(bytes));
      let pt: Uint8Array = new Uint8Array(16);
      let ct: Uint8Array = pt;
      for (let i = 1; i <= 49; i++) {
        const c = new Twofish(key);
        ct = c.encrypt(pt.slice());
        expect(c.decrypt(ct.slice())).toEqual(pt);
        const next = new Uint8Array(16 + key.length);
        next.set(pt);
        next.set(key, 16);
        key = next.slice(0, key.length);
        pt = ct;
      }
      expect(toHex(ct)).toBe(last);
    });
  }

  it('many blocks at once equal block by block', () => {
    const c = new Twofish(hex('0123456789ABCDEFFEDCBA98765432100011223344556677'));
    const data = Uint8Array.from({ length: 4096 }, (_, i) => (i * 37 + 11) & 255);
    const whole = c.encrypt(data.slice());
    for (let at = 0; at < data.length; at += 16) expect(c.encrypt(data.slice(at, at + 16))).toEqual(whole.subarray(at, at + 16));
    expect(c.decrypt(whole)).toEqual(data);
  });

  it('refuses other key sizes and partial blocks', () => {
    expect(() => new Twofish(new Uint8Array(20))).toThrow(BlockError);
    expect(() => new Twofish(new Uint8Array(16)).encrypt(new Uint8Array(24))).toThrow(/24 bytes/);
  });
});
