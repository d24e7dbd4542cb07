/**
 * The WASM zero detector and read-buffer pool that convert, compare and other copy loops share.
 */
import { setZeroDetector } from '../../core/zero-detect.js';
import { loadZeroSync, ZeroBufferPool, type WasmZero } from '../../wasm/zero.js';
import { IO_BUF_SIZE } from './context.js';

/** Convert's read buffers in flight at most: WINDOW reads queued + WRITE_DEPTH writes + one. */
const CONVERT_BUFFERS = 8 + 4 + 1;

/** The WASM zero module with convert's read buffers in its memory (made once per process). */
interface ZeroState {
  zero: WasmZero;
  detect: (buf: Uint8Array) => boolean;
  pool?: ZeroBufferPool;
}
let zeroState: ZeroState | undefined;

/**
 * The WASM zero module for this command, or undefined for the plain-JS path (no SIMD, the
 * module does not load, or DISKWORKER_ZERO=js). Installs its detector for isZeroBuffer
 * (3-8x the JS loop in Node, even with the copy into module memory: bench/wasm/zero.ts);
 * with `pool`, also allocates convert's read buffers in module memory, once, so the sparse
 * check reads them in place (bench/cli/convert-zero.ts).
 */
export function useWasmZero(pool: boolean): ZeroState | undefined {
  let z: WasmZero | undefined;
  try {
    z = loadZeroSync();
  } catch {
    z = undefined;
  }
  if (!z) {
    setZeroDetector(undefined);
    return undefined;
  }
  zeroState ??= { zero: z, detect: z.detector() };
  if (pool) zeroState.pool ??= new ZeroBufferPool(z, CONVERT_BUFFERS, IO_BUF_SIZE);
  setZeroDetector(zeroState.detect);
  return zeroState;
}
