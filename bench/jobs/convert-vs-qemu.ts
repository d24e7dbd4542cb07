/**
 * `diskworker img convert` (on the copy engine) against qemu-img on the same
 * files, start-up subtracted, page cache warm: the four cases of the CLI
 * benchmark (bench/cli/convert.ts) against the jobs issue's goal of at most
 * 1.2× qemu-img's time, and the peak RSS of our converts against 64 MB.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, benchRoot, convertCases, makeConvertImages, startupMs } from '../cli/convert.js';
import type { BenchResult } from '../types.js';
import { SIZE_MB } from './common.js';

export async function run(): Promise<BenchResult[]> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build first (tsc -p tsconfig.build.json)`);
  const dir = mkdtempSync(join(benchRoot(SIZE_MB * 5), 'dw-bench-jobs-convert-'));
  try {
    const startup = await startupMs(dir);
    makeConvertImages(dir, SIZE_MB);
    return await convertCases(dir, SIZE_MB, startup, { plain: 1 / 1.2, zstd: 1 / 1.2 }, 64);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
