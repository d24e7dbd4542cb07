/**
 * The CAST5 module (assembly/cast5.ts): the rounds of two blocks interleaved
 * over S1..S4 in module memory, in ECB and CBC over sectors of 8-byte blocks.
 * The TypeScript cipher (src/crypto/cast5.ts) computes the key schedule for
 * both and serves where the module cannot load or TypeScript is forced
 * ({@link useTypeScriptCast5}). The module needs no SIMD. The engine and its
 * keys are the block-cipher modules' (block-cipher-module.ts).
 */
import { cast5KeyWords } from '../crypto/cast5.js';
import { BlockCipherEngine, BlockCipherKey, type BlockCipherExports } from './block-cipher-module.js';
import { loadWasm } from './loader.js';

/** The loaded CAST5 module. */
export type Cast5Engine = BlockCipherEngine;
/** A CAST5 key in the module. */
export type Cast5WasmKey = BlockCipherKey;

let engine: Promise<Cast5Engine | undefined> | undefined;
let typescriptOnly = false;
let loaded: Cast5Engine | undefined;

/** Makes new CAST5 keys use the TypeScript cipher (true) or the WASM module where it loads (false). */
export function useTypeScriptCast5(on: boolean): void {
  typescriptOnly = on;
}

/** Which implementation new CAST5 keys get. */
export function cast5Implementation(): 'wasm' | 'typescript' | 'not loaded' {
  if (typescriptOnly) return 'typescript';
  if (loaded) return 'wasm';
  return engine ? 'typescript' : 'not loaded';
}

/**
 * The WASM engine, loaded on first use; undefined when TypeScript is forced
 * or the module does not load (the TypeScript cipher gives the same answers).
 */
export async function loadCast5(): Promise<Cast5Engine | undefined> {
  engine ??= loadWasm<BlockCipherExports>('cast5').then(
    (m) => (loaded = new BlockCipherEngine(m, 'CAST5', cast5KeyWords, 8)),
    () => undefined,
  );
  const e = await engine;
  return typescriptOnly ? undefined : e;
}
