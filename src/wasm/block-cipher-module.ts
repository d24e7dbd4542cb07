/**
 * What the block-cipher modules (assembly/serpent.ts, assembly/twofish.ts,
 * assembly/cast5.ts) share on the TypeScript side: the module's data and IV buffers, key
 * contexts in module memory (wiped on release and reused), and a key that is
 * an {@link EcbEngine} with the sector modes' fast paths (ECB, CBC and XTS over
 * sectors, in place), so src/crypto/sector-modes.ts uses it as it uses a
 * TypeScript cipher. Data crosses into module memory in pieces of
 * {@link CHUNK} bytes and the module's copy is wiped after each call.
 */
import { BlockError } from '../core/errors.js';
import type { EcbEngine } from '../crypto/sector-modes.js';
import { statusError, type WasmBaseExports, type WasmModule } from './loader.js';

/** The exports every block-cipher module has (same names, same contract). */
export interface BlockCipherExports extends WasmBaseExports {
  KEY_BYTES: WebAssembly.Global;
  wipe(p: number, len: number): void;
  ecb(k: number, p: number, len: number, encrypt: number): number;
  cbcEncrypt(k: number, p: number, len: number, ivs: number, bps: number): number;
  cbcDecrypt(k: number, p: number, len: number, ivs: number, bps: number): number;
  xts(k: number, p: number, len: number, tweaks: number, bps: number, encrypt: number): number;
}

/** Bytes of data per call into the module (whole sectors of the usual sizes). */
const CHUNK = 64 * 1024;

/** One loaded module: its buffers and the key contexts of released keys, for reuse (the stub runtime frees nothing). */
export class BlockCipherEngine {
  private readonly keyBytes: number;
  private readonly free: number[] = [];
  /** The data buffer and the IV (tweak) buffer, each `capacity` bytes. */
  private data: number;
  private ivs: number;
  private capacity = CHUNK;

  /**
   * @param title the cipher's name in errors ("Serpent data of 20 bytes ...")
   * @param keyWords the key context of a key (the module's KEY_BYTES bytes, as words);
   *   the engine wipes the array once it is copied
   * @param blockSize the cipher's block (16, or CAST5's 8); IVs are one block per sector
   */
  constructor(
    private readonly module: WasmModule<BlockCipherExports>,
    readonly title: string,
    private readonly keyWords: (key: Uint8Array) => Int32Array,
    readonly blockSize: 8 | 16 = 16,
  ) {
    this.keyBytes = Number(module.exports.KEY_BYTES.value);
    this.data = module.alloc(CHUNK);
    this.ivs = module.alloc(CHUNK);
  }

  /** A key (its length checked by `keyWords`), its context in module memory. */
  key(bytes: Uint8Array): BlockCipherKey {
    const words = this.keyWords(bytes);
    try {
      if (words.byteLength !== this.keyBytes) throw new BlockError('EINVAL', `${this.title} key context of ${words.byteLength} bytes (the module takes ${this.keyBytes})`);
      const ctx = this.free.pop() ?? this.module.alloc(this.keyBytes);
      this.module.u8.set(new Uint8Array(words.buffer, words.byteOffset, this.keyBytes), ctx);
      return new BlockCipherKey(this, ctx);
    } finally {
      words.fill(0);
    }
  }

  /** Wipes a released key's context and keeps it for the next key. */
  releaseKey(ctx: number): void {
    this.module.exports.wipe(ctx, this.keyBytes);
    this.free.push(ctx);
  }

  /** Bytes per call for sectors of `sectorSize`: whole sectors, the buffers grown to one sector if they are smaller. */
  private step(sectorSize: number): number {
    if (sectorSize > this.capacity) {
      // Sectors beyond 64 KiB do not occur in QEMU's formats; the old buffers stay allocated (nothing is freed).
      this.data = this.module.alloc(sectorSize);
      this.ivs = this.module.alloc(sectorSize);
      this.capacity = sectorSize;
    }
    return Math.floor(this.capacity / sectorSize) * sectorSize;
  }

  /**
   * Runs `call` on each piece of `buf` copied into module memory (with its
   * sectors' 16 bytes of `ivs` when given), copies the result back and wipes
   * the module's copy.
   */
  run(buf: Uint8Array, ivs: Uint8Array | undefined, sectorSize: number, what: string, call: (e: BlockCipherExports, p: number, len: number, iv: number) => number): void {
    const bs = this.blockSize;
    if (buf.length % bs !== 0) throw new BlockError('EINVAL', `${this.title} data of ${buf.length} bytes is not a whole number of ${bs}-byte blocks`);
    if (sectorSize <= 0 || sectorSize % bs !== 0) throw new BlockError('EINVAL', `${this.title} sector size ${sectorSize} is not a multiple of ${bs}`);
    const step = this.step(sectorSize);
    const m = this.module;
    for (let at = 0; at < buf.length; at += step) {
      const n = Math.min(step, buf.length - at);
      const u8 = m.u8;
      u8.set(buf.subarray(at, at + n), this.data);
      if (ivs) {
        const first = (at / sectorSize) * bs;
        u8.set(ivs.subarray(first, first + Math.ceil(n / sectorSize) * bs), this.ivs);
      }
      const st = call(m.exports, this.data, n, this.ivs);
      if (st < 0) throw statusError(st, `${this.title} ${what}`);
      buf.set(m.u8.subarray(this.data, this.data + n), at);
    }
    m.exports.wipe(this.data, Math.min(step, buf.length));
  }
}

/** A key in a block-cipher module: ECB, and CBC and XTS over sectors, in place. */
export class BlockCipherKey implements EcbEngine {
  readonly blockSize: number;
  readonly inPlace = true;
  private live = true;

  constructor(
    private readonly engine: BlockCipherEngine,
    private readonly ctx: number,
  ) {
    this.blockSize = engine.blockSize;
  }

  encrypt(data: Uint8Array): Uint8Array {
    this.engine.run(data, undefined, CHUNK, 'ECB', (e, p, len) => e.ecb(this.use(), p, len, 1));
    return data;
  }

  decrypt(data: Uint8Array): Uint8Array {
    this.engine.run(data, undefined, CHUNK, 'ECB', (e, p, len) => e.ecb(this.use(), p, len, 0));
    return data;
  }

  cbcEncrypt(buf: Uint8Array, ivs: Uint8Array, sectorSize: number): void {
    this.engine.run(buf, ivs, sectorSize, 'CBC', (e, p, len, iv) => e.cbcEncrypt(this.use(), p, len, iv, sectorSize / this.blockSize));
  }

  cbcDecrypt(buf: Uint8Array, ivs: Uint8Array, sectorSize: number): void {
    this.engine.run(buf, ivs, sectorSize, 'CBC', (e, p, len, iv) => e.cbcDecrypt(this.use(), p, len, iv, sectorSize / this.blockSize));
  }

  xts(buf: Uint8Array, tweaks: Uint8Array, sectorSize: number, encrypt: boolean): void {
    this.engine.run(buf, tweaks, sectorSize, 'XTS', (e, p, len, tw) => e.xts(this.use(), p, len, tw, sectorSize / 16, encrypt ? 1 : 0));
  }

  release(): void {
    if (!this.live) return;
    this.live = false;
    this.engine.releaseKey(this.ctx);
  }

  /** The key context; a released key (its context maybe another key's now) refuses to run. */
  private use(): number {
    if (!this.live) throw new BlockError('EINVAL', `${this.engine.title} key used after release`);
    return this.ctx;
  }
}
