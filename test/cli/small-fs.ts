/**
 * A small file system for out-of-space tests: a tmpfs of a given size
 * mounted on a fresh directory (needs root, which CI has). Without root the
 * caller falls back to `prlimit --fsize` on a spawned process, see
 * {@link canMountTmpfs}.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Whether this process may mount a tmpfs (root). */
export function canMountTmpfs(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export interface SmallFs {
  dir: string;
  /** Unmounts and removes the directory. */
  dispose(): void;
}

/** Mounts a tmpfs of `bytes` bytes on a new directory. */
export function mountSmallFs(bytes: number): SmallFs {
  const dir = mkdtempSync(join(tmpdir(), 'dw-full-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`mount -t tmpfs failed (status ${r.status}): ${r.stderr}`);
  }
  return {
    dir,
    dispose() {
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
