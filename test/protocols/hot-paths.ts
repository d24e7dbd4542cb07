/**
 * Switches the hot paths to WASM or TypeScript for a conformance run, in Node
 * and in a browser worker alike, through the one switch in
 * src/wasm/hot-paths.ts, and checks that what is really in use matches (so a
 * run that claims WASM cannot silently run TypeScript).
 */
import { forceTypeScript, hotPathState as libraryState, startHotPaths } from '../../src/wasm/hot-paths.js';

/** Which implementation of the hot paths a run uses. */
export type HotPaths = 'wasm' | 'typescript';

/** What the switched paths report after {@link useHotPaths}. */
export interface HotPathState {
  zero: string;
  l2: string;
  refcount: string;
}

/** Loads the WASM modules (once) and turns them on or off; returns what is in use. */
export async function useHotPaths(mode: HotPaths): Promise<HotPathState> {
  await startHotPaths();
  await forceTypeScript(mode === 'typescript');
  return hotPathState();
}

/** What the switched paths report now. */
export async function hotPathState(): Promise<HotPathState> {
  const s = await libraryState();
  return { zero: s.detectZeroes, l2: s.l2, refcount: s.refcount };
}

/** Throws unless every switched path reports `mode`. */
export async function checkHotPaths(mode: HotPaths, state?: HotPathState): Promise<void> {
  const now = state ?? (await hotPathState());
  const want = mode === 'wasm' ? { zero: 'wasm', l2: 'wasm', refcount: 'wasm' } : { zero: 'plain JS', l2: 'typescript', refcount: 'typescript' };
  if (now.zero !== want.zero || now.l2 !== want.l2 || now.refcount !== want.refcount) {
    throw new Error(`hot paths are ${JSON.stringify(now)}, wanted ${JSON.stringify(want)}`);
  }
}
