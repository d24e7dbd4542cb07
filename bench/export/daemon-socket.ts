/**
 * What the daemon benchmarks share: waiting for a daemon (ours or
 * qemu-storage-daemon) to create its socket.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Resolves once `path` exists; rejects if `child` exits first or 10 s pass. */
export async function waitForSocket(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (existsSync(path)) return;
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode} before creating ${path}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${path} did not appear`);
}
