/**
 * The AES module (assembly/aes.ts): bit-sliced, table-free AES-128/192/256 in ECB, CBC
 * and XTS over sectors, with the plain / plain64 / essiv IV generators. WebCrypto has
 * no XTS and no unpadded CBC, so disk encryption runs here; key material is expanded
 * into module memory and wiped when a key is released.
 *
 * Key contexts cannot be freed in the stub runtime: released ones are wiped and reused.
 * Where the module cannot load, {@link loadAes} hands out the TypeScript twin
 * (src/crypto/aes-ts.ts), which gives the same answers more slowly.
 */
import { BlockError } from '../core/errors.js';
import { loadWasm, loadWasmSync, statusError, type WasmBaseExports, type WasmModule } from './loader.js';
import { TsAesEngine } from '../crypto/aes-ts.js';

interface AesExports extends WasmBaseExports {
  CTX_BYTES: WebAssembly.Global;
  expandKey(ctx: number, key: number, keyLen: number): number;
  wipeKey(ctx: number): void;
  crypt(mode: number, ctx: number, tweakCtx: number, ivMode: number, ivCtx: number, ptr: number, len: number, sectorSize: number, sectorLo: number, sectorHi: number, encrypt: number): number;
}

/** Block cipher modes of {@link AesEngine.crypt}. */
export const AesMode = { ecb: 0, cbc: 1, xts: 2 } as const;
export type AesMode = keyof typeof AesMode;

/** IV generators of {@link AesEngine.crypt}. */
export const IvGen = { plain: 0, plain64: 1, essiv: 2 } as const;
export type IvGen = keyof typeof IvGen;

/** Bytes crossing into module memory per call (a multiple of every sector size). */
const CHUNK = 64 * 1024;

/** An expanded AES key living in module memory. */
export interface AesKey {
  readonly ctx: number;
  /** Wipes the key and returns its context to the engine. */
  release(): void;
}

/** The AES engine over one module instance. */
export class AesEngine {
  private readonly ctxBytes: number;
  private readonly free: number[] = [];
  private readonly keyBuf: number;
  private readonly dataBuf: number;

  constructor(private readonly module: WasmModule<AesExports>) {
    this.ctxBytes = Number(module.exports.CTX_BYTES.value);
    this.keyBuf = module.alloc(32);
    this.dataBuf = module.alloc(CHUNK);
  }

  /** Expands a 16, 24 or 32-byte key. */
  key(bytes: Uint8Array): AesKey {
    if (bytes.length !== 16 && bytes.length !== 24 && bytes.length !== 32) {
      throw new BlockError('EINVAL', `AES key length ${bytes.length} is not 16, 24 or 32 bytes`);
    }
    const ctx = this.free.pop() ?? this.module.alloc(this.ctxBytes);
    const m = this.module;
    m.u8.set(bytes, this.keyBuf);
    const st = m.exports.expandKey(ctx, this.keyBuf, bytes.length);
    m.u8.fill(0, this.keyBuf, this.keyBuf + 32);
    if (st < 0) throw statusError(st, 'AES key expansion');
    let live = true;
    return {
      ctx,
      release: () => {
        if (!live) return;
        live = false;
        m.exports.wipeKey(ctx);
        this.free.push(ctx);
      },
    };
  }

  /**
   * Encrypts or decrypts `buf` in place, `sectorSize` bytes per IV, the first
   * sector numbered `sector`. `tweak` is XTS's second key, `ivKey` ESSIV's key.
   * `buf.length` and `sectorSize` are multiples of 16.
   */
  crypt(mode: AesMode, key: AesKey, tweak: AesKey | undefined, ivgen: IvGen, ivKey: AesKey | undefined, buf: Uint8Array, sector: number, sectorSize: number, encrypt: boolean): void {
    if (buf.length % 16 !== 0 || sectorSize % 16 !== 0 || sectorSize <= 0 || CHUNK % sectorSize !== 0) {
      throw new BlockError('EINVAL', `AES ${mode}: length ${buf.length} or sector size ${sectorSize} is not a multiple of 16`);
    }
    const m = this.module;
    for (let off = 0; off < buf.length; off += CHUNK) {
      const n = Math.min(CHUNK, buf.length - off);
      const s = sector + off / sectorSize;
      m.u8.set(buf.subarray(off, off + n), this.dataBuf);
      const st = m.exports.crypt(AesMode[mode], key.ctx, tweak?.ctx ?? 0, IvGen[ivgen], ivKey?.ctx ?? 0, this.dataBuf, n, sectorSize, s >>> 0, Math.floor(s / 0x100000000) >>> 0, encrypt ? 1 : 0);
      if (st < 0) throw statusError(st, `AES ${mode}`);
      buf.set(m.u8.subarray(this.dataBuf, this.dataBuf + n), off);
    }
    m.u8.fill(0, this.dataBuf, this.dataBuf + Math.min(CHUNK, buf.length));
  }
}

/** What {@link loadAes} hands out: the WASM engine or its TypeScript twin (src/crypto/aes-ts.ts). */
export interface AesBackend {
  key(bytes: Uint8Array): AesKey;
  crypt(mode: AesMode, key: AesKey, tweak: AesKey | undefined, ivgen: IvGen, ivKey: AesKey | undefined, buf: Uint8Array, sector: number, sectorSize: number, encrypt: boolean): void;
}

let engine: AesEngine | undefined;
let twin: TsAesEngine | undefined;
let typescriptOnly = false;

/** Makes new ciphers use the TypeScript twin (true) or the WASM module when it loads (false). */
export function useTypeScriptAes(on: boolean): void {
  typescriptOnly = on;
}

/** Whether {@link useTypeScriptAes} forces the twin (then node:crypto is not used either: the twin is what runs). */
export function typeScriptAesForced(): boolean {
  return typescriptOnly;
}

/** Which implementation new ciphers get. */
export function aesImplementation(): 'wasm' | 'typescript' | 'not loaded' {
  if (typescriptOnly) return 'typescript';
  return engine ? 'wasm' : twin ? 'typescript' : 'not loaded';
}

/** The engine: the WASM module, loaded on first use, or the TypeScript twin where it cannot load. */
export async function loadAes(): Promise<AesBackend> {
  if (!typescriptOnly) {
    try {
      engine ??= new AesEngine(await loadWasm<AesExports>('aes'));
      return engine;
    } catch {
      // No module here (no WebAssembly, file missing): the twin gives the same answers.
    }
  }
  twin ??= new TsAesEngine();
  return twin;
}

/** The WASM engine, loaded synchronously (Node, or after setWasmSource). */
export function loadAesSync(): AesEngine {
  engine ??= new AesEngine(loadWasmSync<AesExports>('aes'));
  return engine;
}
