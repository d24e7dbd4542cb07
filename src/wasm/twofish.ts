/**
 * The Twofish module (assembly/twofish.ts): the rounds of two blocks
 * interleaved over the key's g tables in module memory, in ECB, CBC and XTS
 * over sectors. The TypeScript cipher (src/crypto/twofish.ts) computes the key
 * schedule (tables and subkeys) for both and serves where the module cannot
 * load (no WebAssembly SIMD, which moves the blocks) or TypeScript is forced
 * ({@link useTypeScriptTwofish}). The engine and its keys are the
 * block-cipher modules' (block-cipher-module.ts).
 */
import { twofishKeyWords } from '../crypto/twofish.js';
import { BlockCipherEngine, BlockCipherKey, type BlockCipherExports } from './block-cipher-module.js';
import { hasSimd, loadWasm } from './loader.js';

/** The loaded Twofish module. */
export type TwofishEngine = BlockCipherEngine;
/** A Twofish key in the module. */
export type TwofishWasmKey = BlockCipherKey;

let engine: Promise<TwofishEngine | undefined> | undefined;
let typescriptOnly = false;
let loaded: TwofishEngine | undefined;

/** Makes new Twofish keys use the TypeScript cipher (true) or the WASM module where it loads (false). */
export function useTypeScriptTwofish(on: boolean): void {
  typescriptOnly = on;
}

/** Which implementation new Twofish keys get. */
export function twofishImplementation(): 'wasm' | 'typescript' | 'not loaded' {
  if (typescriptOnly) return 'typescript';
  if (loaded) return 'wasm';
  return engine ? 'typescript' : 'not loaded';
}

/**
 * The WASM engine, loaded on first use; undefined when TypeScript is forced,
 * the engine has no WebAssembly SIMD or the module does not load (the
 * TypeScript cipher gives the same answers).
 */
export async function loadTwofish(): Promise<TwofishEngine | undefined> {
  engine ??= (hasSimd() ? loadWasm<BlockCipherExports>('twofish') : Promise.reject(new Error('no SIMD'))).then(
    (m) => (loaded = new BlockCipherEngine(m, 'Twofish', twofishKeyWords)),
    () => undefined,
  );
  const e = await engine;
  return typescriptOnly ? undefined : e;
}
