/**
 * qemu-nbd --fork in Node (which cannot fork itself): the parent starts the
 * same command again as a detached child, prints what the child writes to
 * stderr until the child reports that it is serving, then exits (1 if the
 * child printed anything, as qemu-nbd's parent does).
 */
import type { CliIo } from '../common.js';
import { PROG } from './options.js';

const FORKED_ENV = 'DISKWORKER_NBD_FORKED';

/** Whether this process is the server started by a --fork parent. */
export function isForkedChild(): boolean {
  return typeof process !== 'undefined' && process.env[FORKED_ENV] === '1' && typeof process.send === 'function';
}

/** In the child: tell the parent the server runs, and stop writing to its stderr pipe. */
export function signalForkParent(): void {
  process.stderr.on('error', () => undefined);
  process.send?.('ready');
  process.disconnect?.();
}

/** In the parent: start the detached server and wait until it serves or fails. */
export async function forkServer(args: string[], io: CliIo): Promise<number> {
  const script = process.argv[1];
  if (!script) {
    io.stderr(`${PROG}: Failed to fork: no script to run\n`);
    return 1;
  }
  // Loaded here, not up front: node:child_process costs every CLI command 2 MB.
  const { spawn } = await import('node:child_process');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, 'nbd', ...args], {
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, [FORKED_ENV]: '1' },
    });
    let errors = false;
    let settled = false;
    const finish = (code: number): void => {
      if (settled) return;
      settled = true;
      child.stderr?.destroy();
      if (child.connected) child.disconnect();
      child.unref();
      resolve(code);
    };
    child.stderr?.on('data', (chunk: Buffer) => {
      errors = true;
      io.stderr(chunk.toString());
    });
    child.on('message', (m) => {
      if (m === 'ready') finish(errors ? 1 : 0);
    });
    child.on('error', (e) => {
      io.stderr(`${PROG}: Failed to fork: ${e.message}\n`);
      finish(1);
    });
    // The child failed before serving: its messages are out once stderr closes.
    child.on('close', () => finish(1));
  });
}
