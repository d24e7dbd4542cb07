/**
 * The Serpent module (assembly/serpent.ts): four blocks at a time in 128-bit
 * SIMD vectors, in ECB, CBC and XTS over sectors. Several times the speed of
 * the TypeScript cipher (src/crypto/serpent.ts), which computes the key
 * schedule for both and serves where the module cannot load (no WebAssembly
 * SIMD) or TypeScript is forced ({@link useTypeScriptSerpent}). The engine and
 * its keys are the block-cipher modules' (block-cipher-module.ts).
 */
import { serpentRoundKeys } from '../crypto/serpent.js';
import { BlockCipherEngine, BlockCipherKey, type BlockCipherExports } from './block-cipher-module.js';
import { hasSimd, loadWasm } from './loader.js';

/** The loaded Serpent module. */
export type SerpentEngine = BlockCipherEngine;
/** A Serpent key in the module. */
export type SerpentWasmKey = BlockCipherKey;

let engine: Promise<SerpentEngine | undefined> | undefined;
let typescriptOnly = false;
let loaded: SerpentEngine | undefined;

/** Makes new Serpent keys use the TypeScript cipher (true) or the WASM module where it loads (false). */
export function useTypeScriptSerpent(on: boolean): void {
  typescriptOnly = on;
}

/** Which implementation new Serpent keys get. */
export function serpentImplementation(): 'wasm' | 'typescript' | 'not loaded' {
  if (typescriptOnly) return 'typescript';
  if (loaded) return 'wasm';
  return engine ? 'typescript' : 'not loaded';
}

/**
 * The WASM engine, loaded on first use; undefined when TypeScript is forced,
 * the engine has no WebAssembly SIMD or the module does not load (the
 * TypeScript cipher gives the same answers).
 */
export async function loadSerpent(): Promise<SerpentEngine | undefined> {
  engine ??= (hasSimd() ? loadWasm<BlockCipherExports>('serpent') : Promise.reject(new Error('no SIMD'))).then(
    (m) => (loaded = new BlockCipherEngine(m, 'Serpent', serpentRoundKeys)),
    () => undefined,
  );
  const e = await engine;
  return typescriptOnly ? undefined : e;
}
