/**
 * The whole-buffer loops of the block ciphers written in TypeScript
 * (Twofish, Serpent, CAST5): ECB, and CBC and XTS over sectors, on a view of the
 * buffer as 32-bit words, one block encrypted in place per call of the
 * cipher's block function. No allocation per block and no byte shuffling:
 * a cipher reads its block's words straight from the view (CAST5 swaps
 * them to its big-endian order itself).
 */
import { BlockError } from '../core/errors.js';
import { onWords, readLe } from './words.js';
import type { EcbEngine } from './sector-modes.js';

/** A block cipher of 8 or 16 bytes whose block function works on words in place. */
export abstract class WordCipher implements EcbEngine {
  readonly inPlace = true;
  /** Words per block (2 or 4). */
  private readonly n: number;

  protected constructor(
    readonly blockSize: 8 | 16,
    /** The name in the errors ("Twofish data of 20 bytes ..."). */
    private readonly title: string,
  ) {
    this.n = blockSize >> 2;
  }

  /** Encrypts the block of words w[i], w[i+1], ... in place. */
  protected abstract encryptBlock(w: Int32Array, i: number): void;
  /** Decrypts the block of words w[i], w[i+1], ... in place. */
  protected abstract decryptBlock(w: Int32Array, i: number): void;

  encrypt(data: Uint8Array): Uint8Array {
    this.check(data);
    onWords(data, (w) => {
      for (let i = 0; i < w.length; i += this.n) this.encryptBlock(w, i);
    });
    return data;
  }

  decrypt(data: Uint8Array): Uint8Array {
    this.check(data);
    onWords(data, (w) => {
      for (let i = 0; i < w.length; i += this.n) this.decryptBlock(w, i);
    });
    return data;
  }

  /** CBC-encrypts each `sectorSize` piece of `buf` in place, its chain starting at its IV in `ivs` (one block per sector). */
  cbcEncrypt(buf: Uint8Array, ivs: Uint8Array, sectorSize: number): void {
    this.check(buf);
    const n = this.n;
    const wps = sectorSize >> 2;
    onWords(buf, (w) => {
      for (let s = 0, at = 0; at < w.length; s++, at += wps) {
        const end = Math.min(w.length, at + wps);
        // The IV, then each ciphertext block, is XORed into the next plaintext block.
        let c0 = readLe(ivs, s * 4 * n);
        let c1 = readLe(ivs, s * 4 * n + 4);
        let c2 = n === 4 ? readLe(ivs, s * 16 + 8) : 0;
        let c3 = n === 4 ? readLe(ivs, s * 16 + 12) : 0;
        for (let i = at; i < end; i += n) {
          w[i]! ^= c0;
          w[i + 1]! ^= c1;
          if (n === 4) {
            w[i + 2]! ^= c2;
            w[i + 3]! ^= c3;
          }
          this.encryptBlock(w, i);
          c0 = w[i]!;
          c1 = w[i + 1]!;
          if (n === 4) {
            c2 = w[i + 2]!;
            c3 = w[i + 3]!;
          }
        }
      }
    });
  }

  /** CBC-decrypts each `sectorSize` piece of `buf` in place, its chain starting at its IV in `ivs` (one block per sector). */
  cbcDecrypt(buf: Uint8Array, ivs: Uint8Array, sectorSize: number): void {
    this.check(buf);
    const n = this.n;
    const wps = sectorSize >> 2;
    onWords(buf, (w) => {
      for (let s = 0, at = 0; at < w.length; s++, at += wps) {
        const end = Math.min(w.length, at + wps);
        // The block before's ciphertext (the IV for the first), kept before the block is overwritten.
        let p0 = readLe(ivs, s * 4 * n);
        let p1 = readLe(ivs, s * 4 * n + 4);
        let p2 = n === 4 ? readLe(ivs, s * 16 + 8) : 0;
        let p3 = n === 4 ? readLe(ivs, s * 16 + 12) : 0;
        for (let i = at; i < end; i += n) {
          const c0 = w[i]!;
          const c1 = w[i + 1]!;
          const c2 = n === 4 ? w[i + 2]! : 0;
          const c3 = n === 4 ? w[i + 3]! : 0;
          this.decryptBlock(w, i);
          w[i]! ^= p0;
          w[i + 1]! ^= p1;
          if (n === 4) {
            w[i + 2]! ^= p2;
            w[i + 3]! ^= p3;
          }
          p0 = c0;
          p1 = c1;
          p2 = c2;
          p3 = c3;
        }
      }
    });
  }

  /**
   * XTS over each `sectorSize` piece of `buf` in place (16-byte blocks): each
   * block XORed with its tweak before and after the cipher, the tweak starting
   * at the sector's 16 bytes of `tweaks` and multiplied by α per block
   * (GF(2^128), little-endian, x^128 + x^7 + x^2 + x + 1). One pass, the
   * tweak in four locals: no tweak buffer.
   */
  xts(buf: Uint8Array, tweaks: Uint8Array, sectorSize: number, encrypt: boolean): void {
    this.check(buf);
    if (this.n !== 4) throw new BlockError('EINVAL', `XTS needs a 16-byte block cipher, not ${this.title}`);
    const wps = sectorSize >> 2;
    onWords(buf, (w) => {
      for (let s = 0, at = 0; at < w.length; s++, at += wps) {
        const end = Math.min(w.length, at + wps);
        let a = readLe(tweaks, s * 16);
        let b = readLe(tweaks, s * 16 + 4);
        let c = readLe(tweaks, s * 16 + 8);
        let d = readLe(tweaks, s * 16 + 12);
        for (let i = at; i < end; i += 4) {
          w[i]! ^= a;
          w[i + 1]! ^= b;
          w[i + 2]! ^= c;
          w[i + 3]! ^= d;
          if (encrypt) this.encryptBlock(w, i);
          else this.decryptBlock(w, i);
          w[i]! ^= a;
          w[i + 1]! ^= b;
          w[i + 2]! ^= c;
          w[i + 3]! ^= d;
          const carry = d >>> 31;
          d = (d << 1) | (c >>> 31);
          c = (c << 1) | (b >>> 31);
          b = (b << 1) | (a >>> 31);
          a = (a << 1) ^ (carry * 0x87);
        }
      }
    });
  }

  abstract release(): void;

  private check(data: Uint8Array): void {
    if (data.length % this.blockSize !== 0) {
      throw new BlockError('EINVAL', `${this.title} data of ${data.length} bytes is not a whole number of ${this.blockSize}-byte blocks`);
    }
  }
}
