/**
 * What the WASM block-cipher tests share (serpent, twofish, cast5): hex
 * helpers, deterministic bytes, fast byte equality, and the cases that
 * compare a module key with the TypeScript cipher byte for byte: ECB of
 * several lengths, and CBC / XTS over sectors of awkward shapes (pairs or
 * groups of blocks cut short at a buffer's end, sectors of an odd block count,
 * an odd number of sectors side by side, a partial last sector, buffers of
 * several 64 KiB pieces, a sector larger than a piece).
 */
import { it, expect } from 'vitest';

export const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
export const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();

/** Deterministic bytes (a linear congruential generator). */
export function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Byte equality of large buffers (toEqual walks them element by element, slowly). */
export function same(a: Uint8Array | undefined, b: Uint8Array | undefined): void {
  expect(a && b && a.length === b.length && Buffer.compare(a, b) === 0, 'the bytes differ').toBe(true);
}

/** The operations both a module key and the TypeScript cipher have (16-byte blocks). */
export interface SectorKey {
  encrypt(data: Uint8Array): Uint8Array;
  decrypt(data: Uint8Array): Uint8Array;
  cbcEncrypt(data: Uint8Array, ivs: Uint8Array, sectorSize: number): void;
  cbcDecrypt(data: Uint8Array, ivs: Uint8Array, sectorSize: number): void;
  /** Ciphers of 16-byte blocks only (CAST5 has no XTS). */
  xts?(data: Uint8Array, ivs: Uint8Array, sectorSize: number, encrypt: boolean): void;
}

/** The cipher's shape for {@link compareWithTypeScript}: its block size, the sector shapes to run, whether it has XTS. */
export interface CipherShape {
  blockSize: number;
  shapes: ReadonlyArray<[number, number]>;
  xts: boolean;
}

/** [sector size, data length] of the CBC / XTS comparisons (16-byte blocks). */
export const SHAPES: Array<[number, number]> = [
  [48, 48 * 7 + 32],
  [80, 80 * 6],
  [512, 16],
  [512, 512],
  [512, 512 * 2 + 48],
  [512, 512 * 3],
  [512, 512 * 4],
  [512, 512 * 5 + 3 * 16],
  [4096, 4096 * 3 + 512],
  [512, 300 * 1024 + 512 + 64],
  [128 * 1024, 128 * 1024 * 2 + 4096],
];

/**
 * Registers the byte-for-byte cases: ECB with each of `keySizes`, CBC (and
 * XTS where the cipher has it) over the shapes, each against the TypeScript
 * cipher and back. CBC and XTS use the largest key size.
 */
export function compareWithTypeScript(
  keySizes: readonly number[],
  moduleKey: (key: Uint8Array) => SectorKey & { release(): void },
  typescriptKey: (key: Uint8Array) => SectorKey,
  shape: CipherShape = { blockSize: 16, shapes: SHAPES, xts: true },
): void {
  const bs = shape.blockSize;
  for (const n of keySizes) {
    it(`${n * 8}-bit keys: ECB of 1 to 9 blocks and of 200 KiB equals the TypeScript cipher, and decrypts back`, () => {
      const key = bytes(n, n);
      const k = moduleKey(key);
      const ts = typescriptKey(key);
      for (const len of [1, 2, 3, 4, 5, 6, 7, 8, 9].map((b) => b * bs).concat(200 * 1024)) {
        const data = bytes(len, len);
        const enc = k.encrypt(data.slice());
        same(enc, ts.encrypt(data.slice()));
        same(k.decrypt(enc), data);
      }
      k.release();
    });
  }
  const keyLength = keySizes[keySizes.length - 1]!;
  for (const [ss, len] of shape.shapes) {
    it(`${shape.xts ? 'CBC and XTS' : 'CBC'} over sectors of ${ss} bytes, ${len} bytes: the same bytes as the TypeScript cipher, and back`, () => {
      const key = bytes(keyLength, ss + len);
      const sectors = Math.ceil(len / ss);
      const ivs = bytes(sectors * bs, 7);
      const data = bytes(len, 9);
      const k = moduleKey(key);
      const ts = typescriptKey(key);
      const a = data.slice();
      const b = data.slice();
      k.cbcEncrypt(a, ivs, ss);
      ts.cbcEncrypt(b, ivs, ss);
      same(a, b);
      expect(Buffer.compare(a, data)).not.toBe(0);
      k.cbcDecrypt(a, ivs, ss);
      same(a, data);
      for (const encrypt of shape.xts ? [true, false] : []) {
        const x = data.slice();
        const y = data.slice();
        k.xts!(x, ivs, ss, encrypt);
        ts.xts!(y, ivs, ss, encrypt);
        same(x, y);
        k.xts!(x, ivs, ss, !encrypt);
        same(x, data);
      }
      k.release();
    });
  }
}
