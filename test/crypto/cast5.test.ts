/**
 * CAST-128 known answers from RFC 2144 Appendix B: B.1's single plaintext /
 * key / ciphertext triple for the 128-bit key, and B.2's "full maintenance
 * test" (a million rounds of a and b encrypting each other's halves), which
 * runs every S-box entry of the rounds and the key schedule many times.
 */
import { describe, it, expect } from 'vitest';
import { Cast5 } from '../../src/crypto/cast5.js';
import { CAST5_SBOXES } from '../../src/crypto/cast5-sboxes.js';
import { BlockError } from '../../src/core/errors.js';

const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

describe('CAST5 (CAST-128)', () => {
  it('has eight 256-word S-boxes, S1 and S8 as in Appendix A', () => {
    expect(CAST5_SBOXES.map((s) => s.length)).toEqual(Array(8).fill(256));
    expect(CAST5_SBOXES[0]![0]!.toString(16)).toBe('30fb40d4');
    expect(CAST5_SBOXES[7]![255]!.toString(16)).toBe('ea8bf59e');
  });

  it('B.1: the 128-bit key encrypts 0123456789ABCDEF to 238B4FE5847E44B2 and back', () => {
    const c = new Cast5(hex('0123456712345678234567893456789A'));
    const block = c.encrypt(hex('0123456789ABCDEF'));
    expect(toHex(block)).toBe('238B4FE5847E44B2');
    expect(toHex(c.decrypt(block))).toBe('0123456789ABCDEF');
  });

  it('B.2: the full maintenance test', () => {
    const a = hex('0123456712345678234567893456789A');
    const b = hex('0123456712345678234567893456789A');
    for (let i = 0; i < 1_000_000; i++) {
      new Cast5(b).encrypt(a);
      new Cast5(a).encrypt(b);
    }
    expect(toHex(a)).toBe('EEA9D0A249FD3BA6B3436FB89D6DCA92');
    expect(toHex(b)).toBe('B2C95EB00C31AD7180AC05B8E83D696E');
  }, 120_000);

  it('refuses other key sizes and partial blocks', () => {
    expect(() => new Cast5(new Uint8Array(10))).toThrow(BlockError);
    expect(() => new Cast5(new Uint8Array(16)).encrypt(new Uint8Array(12))).toThrow(/12 bytes/);
  });
});
