/**
 * The one place that decides, for each hot path, whether WASM or TypeScript
 * serves it: start-up ({@link startHotPaths}), what each path uses now
 * ({@link hotPathState}) and a switch to force TypeScript for comparisons
 * ({@link forceTypeScript}). The worker and the benchmarks go through here
 * instead of reaching into the modules that use the hot paths.
 *
 * The paths: the qcow2 L2 walk (lookup.ts), the refcount scans
 * (refcount.ts), the all-zero check (core/zero-detect.ts), deflate / inflate
 * of compressed clusters and zstd (codec.ts), and the dirty-bitmap engine
 * (core/dirty-bitmap.ts; its TypeScript twin is core/hbitmap.ts), and the AES of encrypted
 * images (wasm/aes.ts; its twin is crypto/aes-ts.ts), and Serpent, Twofish and CAST5
 * (wasm/serpent.ts, wasm/twofish.ts, wasm/cast5.ts; the TypeScript ciphers are
 * crypto/serpent.ts, crypto/twofish.ts, crypto/cast5.ts). Each falls back to its
 * TypeScript (or platform) implementation when its module cannot load, with
 * the same answers; README's benchmark table says which one wins where.
 */
import { setZeroDetector, zeroDetectorKind, type ZeroDetectorKind } from '../core/zero-detect.js';
import { initL2Mapper, l2MapperState, setL2MapperEnabled } from '../formats/qcow2/lookup.js';
import { initRefcountWasm, refcountWasmState, setRefcountWasmEnabled } from '../formats/qcow2/refcount.js';
import { getClusterCodec, initZstd } from './codec.js';
import { loadZero, loadZeroSync, ZeroBufferPool, type WasmZero } from './zero.js';
import { bitmapEngineState, setBitmapEngine } from '../core/dirty-bitmap.js';
import { loadBitmapEngine, loadBitmapEngineSync, type BitmapEngine } from './bitmap.js';
import { aesImplementation, loadAes, useTypeScriptAes } from './aes.js';
import { loadSerpent, serpentImplementation, useTypeScriptSerpent } from './serpent.js';
import { loadTwofish, twofishImplementation, useTypeScriptTwofish } from './twofish.js';
import { cast5Implementation, loadCast5, useTypeScriptCast5 } from './cast5.js';

/** What serves each hot path (the page sees it as `Implementations`). */
export interface HotPathState {
  inflate: string;
  deflate: string;
  zstd: 'wasm' | 'unavailable';
  l2: 'wasm' | 'typescript' | 'not loaded';
  refcount: 'wasm' | 'typescript' | 'not loaded';
  /** detect-zeroes on write requests. */
  detectZeroes: ZeroDetectorKind;
  /** Zero checks of copies (convert, import, export) in buffers of the zero module. */
  copyZeroCheck: 'wasm' | 'plain JS';
  /** The dirty-bitmap engine of new bitmaps. */
  bitmap: 'wasm' | 'typescript';
  /** AES of encrypted images (the WASM module or its TypeScript twin). */
  aes: 'wasm' | 'typescript' | 'not loaded';
  /** Serpent of encrypted images (the WASM module, or the TypeScript cipher without SIMD). */
  serpent: 'wasm' | 'typescript' | 'not loaded';
  /** Twofish of encrypted images (the WASM module, or the TypeScript cipher without SIMD). */
  twofish: 'wasm' | 'typescript' | 'not loaded';
  /** CAST5 of encrypted images (the WASM module, or the TypeScript cipher where it cannot load). */
  cast5: 'wasm' | 'typescript' | 'not loaded';
}

let zeroModule: Promise<WasmZero | undefined> | undefined;
/** The WASM bitmap engine once loaded (null: it cannot load here). */
let bitmapModule: BitmapEngine | null | undefined;
let typescriptOnly = false;

/** The WASM zero module, loaded once (undefined without SIMD or when it cannot load). */
function zero(): Promise<WasmZero | undefined> {
  zeroModule ??= loadZero().then(
    (z) => z ?? undefined,
    () => undefined,
  );
  return zeroModule;
}

/**
 * Loads every WASM module that can load here and installs it; the paths
 * whose module does not load keep their TypeScript implementation.
 */
export async function startHotPaths(): Promise<void> {
  const z = await zero();
  if (z && !typescriptOnly) setZeroDetector(z.detector(), 'wasm');
  await Promise.all([initL2Mapper(), initRefcountWasm(), getClusterCodec().catch(() => undefined), initZstd().catch(() => undefined), initBitmaps()]);
}

async function initBitmaps(): Promise<void> {
  if (bitmapModule === undefined) {
    try {
      bitmapModule = await loadBitmapEngine();
    } catch {
      bitmapModule = null;
    }
  }
  if (!typescriptOnly) setBitmapEngine(bitmapModule ?? undefined);
}

/**
 * Installs what can load synchronously (Node: the zero detector), so that the
 * first requests already use it; the Node entry (src/node.ts) calls this.
 */
export function startHotPathsSync(): void {
  if (typescriptOnly) return;
  try {
    bitmapModule ??= loadBitmapEngineSync();
    setBitmapEngine(bitmapModule ?? undefined);
  } catch {
    bitmapModule = null;
  }
  try {
    const z = loadZeroSync();
    if (z) {
      zeroModule ??= Promise.resolve(z);
      setZeroDetector(z.detector(), 'wasm');
    }
  } catch {
    // The module did not load: the plain loop gives the same answers.
  }
}

/**
 * The zero module loaded synchronously (Node) with a pool of `count` copy
 * buffers of `bytes` in its memory, made once per process, for copy loops that
 * check their buffers in place (qemu-img convert); undefined when it cannot
 * load or TypeScript is forced. Installs its detector too.
 */
export function zeroModuleWithPoolSync(count: number, bytes: number): { zero: WasmZero; pool: ZeroBufferPool } | undefined {
  // Asked each time: DISKWORKER_ZERO=js (read by loadZeroSync) may change between commands.
  let z: WasmZero | undefined;
  try {
    z = typescriptOnly ? undefined : loadZeroSync();
  } catch {
    z = undefined;
  }
  if (!z) {
    setZeroDetector(undefined);
    return undefined;
  }
  // The detector's scratch is allocated before the pool (see zeroBufferPool).
  syncPool ??= { zero: z, detect: z.detector(), pool: new ZeroBufferPool(z, count, bytes) };
  setZeroDetector(syncPool.detect, 'wasm');
  return syncPool;
}
let syncPool: { zero: WasmZero; detect: (buf: Uint8Array) => boolean; pool: ZeroBufferPool } | undefined;

/**
 * A pool of `count` copy buffers of `bytes` in the zero module's memory, so
 * the all-zero check of a copy reads them in place; undefined when the
 * module is not available (copies then use ordinary buffers).
 */
export async function zeroBufferPool(count: number, bytes: number): Promise<ZeroBufferPool | undefined> {
  const z = await zero();
  if (!z || typescriptOnly) return undefined;
  // The detector's scratch is allocated before the pool, so nothing allocates in that
  // memory afterwards (a growth would detach the buffers' views).
  z.detector();
  return new ZeroBufferPool(z, count, bytes);
}

/** What each hot path uses now (loads the modules that have not loaded yet). */
export async function hotPathState(): Promise<HotPathState> {
  await startHotPaths();
  const codec = await getClusterCodec().catch(() => undefined);
  const zstd = await initZstd().then(
    () => 'wasm' as const,
    () => 'unavailable' as const,
  );
  const z = await zero();
  return {
    copyZeroCheck: z && !typescriptOnly ? 'wasm' : 'plain JS',
    inflate: codec?.inflateImpl ?? 'unavailable',
    deflate: codec?.deflateImpl ?? 'unavailable',
    zstd,
    l2: l2MapperState(),
    refcount: refcountWasmState(),
    detectZeroes: zeroDetectorKind(),
    bitmap: bitmapEngineState(),
    aes: await loadAes().then(() => aesImplementation()),
    serpent: await loadSerpent().then(() => serpentImplementation()),
    twofish: await loadTwofish().then(() => twofishImplementation()),
    cast5: await loadCast5().then(() => cast5Implementation()),
  };
}

/**
 * Forces the TypeScript implementation of the L2 walk, the refcount scans,
 * the zero check, the bitmap engine of new bitmaps and the AES, Serpent,
 * Twofish and CAST5 of new ciphers (on), or lets WASM
 * serve them again (off), so tests and benchmarks can compare the two on the
 * same data.
 */
export async function forceTypeScript(on: boolean): Promise<void> {
  typescriptOnly = on;
  useTypeScriptAes(on);
  useTypeScriptSerpent(on);
  useTypeScriptTwofish(on);
  useTypeScriptCast5(on);
  setL2MapperEnabled(!on);
  setRefcountWasmEnabled(!on);
  if (on) setBitmapEngine(undefined);
  else await initBitmaps();
  const z = on ? undefined : await zero();
  setZeroDetector(z ? z.detector() : undefined, z ? 'wasm' : 'custom');
}
