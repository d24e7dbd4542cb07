/**
 * Disk cipher modes over sectors (ECB, CBC, XTS, CTR) built on a block
 * cipher that encrypts many independent blocks at once (an "ECB engine"),
 * with the IV generators plain, plain64 and essiv. Each sector is its own
 * chain, its IV from its number, as QEMU's crypto/block.c does it: CBC
 * chains within a sector, XTS's tweak is the encrypted IV multiplied by α
 * per block, CTR counts the IV up as one big-endian number per block.
 *
 * Bulk ECB is what node:crypto (AES-NI through OpenSSL) does fast, so XTS,
 * CBC decryption, CTR and ESSIV become a few whole-buffer ECB calls and XORs
 * in JS. CBC encryption is serial: an engine may do it natively
 * ({@link EcbEngine.cbcEncrypt}), else it runs a block at a time.
 */
import { BlockError } from '../core/errors.js';

/** A block cipher keyed once: ECB over whole buffers (lengths a multiple of the block size). */
export interface EcbEngine {
  readonly blockSize: number;
  /** Whether encrypt / decrypt overwrite their argument (else they return a new buffer). */
  readonly inPlace?: boolean;
  /** The encryption of `data`: in place or a new buffer. */
  encrypt(data: Uint8Array): Uint8Array;
  decrypt(data: Uint8Array): Uint8Array;
  /** CBC-encrypts each `sectorSize` piece of `buf` in place with its IV from `ivs` (optional fast path). */
  cbcEncrypt?(buf: Uint8Array, ivs: Uint8Array, sectorSize: number): void;
  /** CBC-decrypts each `sectorSize` piece of `buf` in place with its IV from `ivs` (optional fast path). */
  cbcDecrypt?(buf: Uint8Array, ivs: Uint8Array, sectorSize: number): void;
  /**
   * XTS over each `sectorSize` piece of `buf` in place, its first tweak the
   * sector's 16 bytes in `tweaks` (its IV encrypted with the tweak key); an
   * optional fast path for engines that run blocks one at a time.
   */
  xts?(buf: Uint8Array, tweaks: Uint8Array, sectorSize: number, encrypt: boolean): void;
  release(): void;
}

export type ModeName = 'ecb' | 'cbc' | 'xts' | 'ctr';
export type IvGenName = 'plain' | 'plain64' | 'essiv';

if (new Uint8Array(Uint32Array.of(1).buffer)[0] !== 1) {
  // The XOR and tweak loops view bytes as little-endian 32-bit words.
  throw new BlockError('ENOTSUP', 'Disk encryption modes need a little-endian platform');
}

function xorInto(dst: Uint8Array, src: Uint8Array): void {
  if ((dst.byteOffset & 3) === 0 && (src.byteOffset & 3) === 0 && (dst.length & 3) === 0) {
    const d = new Uint32Array(dst.buffer, dst.byteOffset, dst.length >> 2);
    const s = new Uint32Array(src.buffer, src.byteOffset, dst.length >> 2);
    for (let i = 0; i < d.length; i++) d[i]! ^= s[i]!;
    return;
  }
  for (let i = 0; i < dst.length; i++) dst[i]! ^= src[i]!;
}

/** A buffer 4-byte aligned holding a copy of `src` (or `src` itself when aligned and `copy` is false). */
function aligned(src: Uint8Array, copy: boolean): Uint8Array {
  if (!copy && (src.byteOffset & 3) === 0) return src;
  const out = new Uint8Array(src.length);
  out.set(src);
  return out;
}

/**
 * Turns the CBC decryption of many sectors as one chain (`plain`, from
 * `cipherText` with the first sector's IV) into each sector's own chain: a
 * sector's first block was XORed with the previous sector's last ciphertext
 * block instead of its IV, so that XOR is undone and the IV's applied.
 * Blocks of 16 bytes.
 */
export function restartCbcChains(plain: Uint8Array, cipherText: Uint8Array, ivs: Uint8Array, sectorSize: number): void {
  if (((plain.byteOffset | cipherText.byteOffset | ivs.byteOffset | sectorSize) & 3) === 0) {
    const o = new Uint32Array(plain.buffer, plain.byteOffset, plain.length >> 2);
    const c = new Uint32Array(cipherText.buffer, cipherText.byteOffset, cipherText.length >> 2);
    const v = new Uint32Array(ivs.buffer, ivs.byteOffset, ivs.length >> 2);
    const wps = sectorSize >> 2;
    for (let s = 1, w = wps; w < o.length; s++, w += wps) {
      o[w]! ^= v[s * 4]! ^ c[w - 4]!;
      o[w + 1]! ^= v[s * 4 + 1]! ^ c[w - 3]!;
      o[w + 2]! ^= v[s * 4 + 2]! ^ c[w - 2]!;
      o[w + 3]! ^= v[s * 4 + 3]! ^ c[w - 1]!;
    }
    return;
  }
  for (let s = 1, at = sectorSize; at < plain.length; s++, at += sectorSize) {
    for (let i = 0; i < 16; i++) plain[at + i]! ^= ivs[s * 16 + i]! ^ cipherText[at - 16 + i]!;
  }
}

/**
 * Bytes per call into an engine that returns a new buffer (node:crypto): a
 * large result comes from fresh pages every time, and the page faults cost
 * more than the cipher (measured 3-4x the CPU with 1 MiB calls than with
 * 64 KiB ones); below glibc's default mmap threshold (128 KiB) they are reused.
 */
export const ENGINE_PIECE = 64 * 1024;

/** ECB over `data` in place, in pieces of {@link ENGINE_PIECE} for engines that return new buffers. */
function ecbInPlace(engine: EcbEngine, data: Uint8Array, encrypt: boolean): void {
  const step = engine.inPlace ? data.length : ENGINE_PIECE;
  for (let at = 0; at < data.length; at += step) {
    const piece = data.subarray(at, Math.min(data.length, at + step));
    const out = encrypt ? engine.encrypt(piece) : engine.decrypt(piece);
    if (out !== piece) piece.set(out);
  }
}

/** Sector modes over an engine: the key, the XTS tweak key, the ESSIV key. */
export class ModeCipher {
  private readonly bs: number;
  /** XTS's tweak buffer, kept between calls (the luks driver encrypts 1 MiB at a time). */
  private scratch: Uint32Array | undefined;

  constructor(
    private readonly mode: ModeName,
    private readonly ivgen: IvGenName,
    private readonly key: EcbEngine,
    private readonly tweak: EcbEngine | undefined,
    private readonly ivKey: EcbEngine | undefined,
    private readonly sectorSize: number,
  ) {
    this.bs = key.blockSize;
    if (mode === 'xts' && (this.bs !== 16 || !tweak)) throw new BlockError('EINVAL', 'XTS needs a 16-byte block cipher and a tweak key');
    if (sectorSize % this.bs !== 0) throw new BlockError('EINVAL', `Sector size ${sectorSize} is not a multiple of the cipher block size ${this.bs}`);
  }

  /** The IVs of `count` sectors from `first`, one cipher block each. */
  private ivs(first: number, count: number): Uint8Array {
    const bs = this.bs;
    const out = new Uint8Array(count * bs);
    const dv = new DataView(out.buffer);
    if (this.ivgen === 'essiv') {
      // ESSIV encrypts the plain64 IV with its own cipher, whose block may be larger.
      const ebs = this.ivKey!.blockSize;
      const raw = new Uint8Array(count * ebs);
      const rv = new DataView(raw.buffer);
      for (let i = 0; i < count; i++) {
        const s = first + i;
        rv.setUint32(i * ebs, s >>> 0, true);
        rv.setUint32(i * ebs + 4, Math.floor(s / 0x100000000) >>> 0, true);
      }
      const enc = this.ivKey!.encrypt(raw);
      // ESSIV's cipher is of the payload's family, so of its block size: the encrypted IVs as they are.
      if (ebs === bs) return aligned(enc, false);
      for (let i = 0; i < count; i++) out.set(enc.subarray(i * ebs, i * ebs + Math.min(bs, ebs)), i * bs);
      return out;
    }
    for (let i = 0; i < count; i++) {
      const s = first + i;
      dv.setUint32(i * bs, s >>> 0, true);
      if (this.ivgen === 'plain64' && bs >= 8) dv.setUint32(i * bs + 4, Math.floor(s / 0x100000000) >>> 0, true);
    }
    return out;
  }

  /** Encrypts (or decrypts) `buf` in place; its first sector has number `sector`. */
  crypt(buf: Uint8Array, sector: number, encrypt: boolean): void {
    const ss = this.sectorSize;
    if (buf.length % ss !== 0 && buf.length % this.bs !== 0) {
      throw new BlockError('EINVAL', `Length ${buf.length} is not a multiple of the cipher block size ${this.bs}`);
    }
    const count = Math.ceil(buf.length / ss);
    switch (this.mode) {
      case 'ecb':
        return ecbInPlace(this.key, buf, encrypt);
      case 'ctr':
        return this.ctr(buf, this.ivs(sector, count));
      case 'xts':
        return this.xts(buf, this.ivs(sector, count), encrypt);
      case 'cbc':
        return encrypt ? this.cbcEncrypt(buf, this.ivs(sector, count)) : this.cbcDecrypt(buf, this.ivs(sector, count));
    }
  }

  private cbcEncrypt(buf: Uint8Array, ivs: Uint8Array): void {
    const ss = this.sectorSize;
    const bs = this.bs;
    if (this.key.cbcEncrypt) return this.key.cbcEncrypt(buf, ivs, ss);
    const block = new Uint8Array(bs);
    for (let s = 0, at = 0; at < buf.length; s++, at += ss) {
      block.set(ivs.subarray(s * bs, s * bs + bs));
      for (let b = at; b < Math.min(buf.length, at + ss); b += bs) {
        const p = buf.subarray(b, b + bs);
        xorInto(block, p);
        block.set(this.key.encrypt(block));
        p.set(block);
      }
    }
  }

  private cbcDecrypt(buf: Uint8Array, ivs: Uint8Array): void {
    const ss = this.sectorSize;
    const bs = this.bs;
    if (this.key.cbcDecrypt) return this.key.cbcDecrypt(buf, ivs, ss);
    // Each block's plaintext is its decryption XOR the ciphertext block before it (the IV for a sector's first).
    const cipherText = aligned(buf, false);
    // An engine working in place gets a copy: the ciphertext is needed after.
    const out = aligned(this.key.decrypt(this.key.inPlace ? cipherText.slice() : cipherText), false);
    const o = new Uint32Array(out.buffer, out.byteOffset, out.length >> 2);
    const c = new Uint32Array(cipherText.buffer, cipherText.byteOffset, cipherText.length >> 2);
    const iv = new Uint32Array(ivs.buffer, ivs.byteOffset, ivs.length >> 2);
    const wps = ss >> 2;
    const wpb = bs >> 2;
    for (let s = 0, w = 0; w < o.length; s++, w += wps) {
      for (let i = 0; i < wpb; i++) o[w + i]! ^= iv[s * wpb + i]!;
      const end = Math.min(o.length, w + wps);
      for (let i = w + wpb; i < end; i++) o[i]! ^= c[i - wpb]!;
    }
    buf.set(out);
  }

  private xts(buf: Uint8Array, ivs: Uint8Array, encrypt: boolean): void {
    const ss = this.sectorSize;
    // T = E_K2(IV) per sector, then T·α^j for block j (GF(2^128), little-endian, x^128 + x^7 + x^2 + x + 1).
    const first = aligned(this.tweak!.encrypt(ivs), false);
    if (this.key.xts) return this.key.xts(buf, first, ss, encrypt);
    if (!this.scratch || this.scratch.length < buf.length >> 2) this.scratch = new Uint32Array(buf.length >> 2);
    const tw = this.scratch.subarray(0, buf.length >> 2);
    const f = new Uint32Array(first.buffer, first.byteOffset, first.length >> 2);
    const wordsPerSector = ss >> 2;
    for (let s = 0, w = 0; w < tw.length; s++, w += wordsPerSector) {
      let a = f[s * 4]!;
      let b = f[s * 4 + 1]!;
      let c = f[s * 4 + 2]!;
      let d = f[s * 4 + 3]!;
      const end = Math.min(tw.length, w + wordsPerSector);
      for (let i = w; i < end; i += 4) {
        tw[i] = a;
        tw[i + 1] = b;
        tw[i + 2] = c;
        tw[i + 3] = d;
        const carry = d >>> 31;
        d = (d << 1) | (c >>> 31);
        c = (c << 1) | (b >>> 31);
        b = (b << 1) | (a >>> 31);
        a = (a << 1) ^ (carry * 0x87);
      }
    }
    const tweaks = new Uint8Array(tw.buffer, 0, buf.length);
    const work = aligned(buf, false);
    xorInto(work, tweaks);
    ecbInPlace(this.key, work, encrypt);
    xorInto(work, tweaks);
    if (work !== buf) buf.set(work);
  }

  private ctr(buf: Uint8Array, ivs: Uint8Array): void {
    const ss = this.sectorSize;
    const bs = this.bs;
    const stream = new Uint8Array(buf.length);
    for (let s = 0, at = 0; at < buf.length; s++, at += ss) {
      const ctr = ivs.slice(s * bs, s * bs + bs);
      for (let b = at; b < Math.min(buf.length, at + ss); b += bs) {
        for (let i = 0; i < bs; i++) stream[b + i] = ctr[i]!;
        // The whole block is one big-endian counter (nettle's and gnutls's CTR).
        for (let i = bs - 1; i >= 0 && ++ctr[i]! === 256; i--) ctr[i] = 0;
      }
    }
    ecbInPlace(this.key, stream, true);
    const work = aligned(buf, false);
    xorInto(work, stream);
    if (work !== buf) buf.set(work);
  }

  release(): void {
    this.key.release();
    this.tweak?.release();
    this.ivKey?.release();
  }
}
