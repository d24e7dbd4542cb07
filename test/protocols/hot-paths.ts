/**
 * Switches the WASM hot paths on or off for a conformance run, in Node and in a
 * browser worker alike.
 *
 * There is no single switch in src/ yet: the zero detector (src/core/zero-detect.ts,
 * setZeroDetector), the qcow2 L2 run counter (setL2MapperEnabled) and the refcount
 * loops (setRefcountWasmEnabled) each have their own. DISKWORKER_ZERO=js only affects
 * loadZero / loadZeroSync in Node. This module flips the three module-level switches and
 * reports what is really in use, so a run that claims WASM can be checked to use it.
 */
import { setZeroDetector, zeroDetectorKind } from '../../src/core/zero-detect.js';
import { initL2Mapper, l2MapperState, setL2MapperEnabled } from '../../src/formats/qcow2/lookup.js';
import { initRefcountWasm, refcountWasmState, setRefcountWasmEnabled } from '../../src/formats/qcow2/refcount.js';
import { loadZero } from '../../src/wasm/zero.js';

/** Which implementation of the hot paths a run uses. */
export type HotPaths = 'wasm' | 'typescript';

/** What each switch reports after {@link useHotPaths}. */
export interface HotPathState {
  zero: string;
  l2: string;
  refcount: string;
}

/** Loads the WASM modules (once) and turns them on or off; returns what is in use. */
export async function useHotPaths(mode: HotPaths): Promise<HotPathState> {
  await initL2Mapper();
  await initRefcountWasm();
  const on = mode === 'wasm';
  setL2MapperEnabled(on);
  setRefcountWasmEnabled(on);
  if (on) {
    const z = await loadZero();
    if (!z) throw new Error('the WASM zero module does not load here (no SIMD?)');
    setZeroDetector(z.detector(), 'wasm');
  } else {
    setZeroDetector(undefined);
  }
  return hotPathState();
}

/** What the three switches report now. */
export function hotPathState(): HotPathState {
  return { zero: zeroDetectorKind(), l2: l2MapperState(), refcount: refcountWasmState() };
}

/** Throws unless every switch reports `mode` (so a "WASM run" cannot silently run TypeScript). */
export function checkHotPaths(mode: HotPaths, state: HotPathState = hotPathState()): void {
  const want = mode === 'wasm' ? { zero: 'wasm', l2: 'wasm', refcount: 'wasm' } : { zero: 'plain JS', l2: 'typescript', refcount: 'typescript' };
  if (state.zero !== want.zero || state.l2 !== want.l2 || state.refcount !== want.refcount) {
    throw new Error(`hot paths are ${JSON.stringify(state)}, wanted ${JSON.stringify(want)}`);
  }
}
