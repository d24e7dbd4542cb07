/// <reference types="vite/client" />
/**
 * The e2e harness page: puts the page API and a few helpers on `window.harness`
 * for the Playwright specs (page.evaluate).
 */
import { wrap, type Remote } from 'comlink';
import { DiskWorker, connectV86Flush, toV86Buffer, isBlockError, saveMachine, restoreMachine, V86Cdrom, groupImageFiles } from '../../src/client/index.js';
import type { TestBlockWorker } from './test-worker.js';
import { V86 } from 'v86';
import v86WasmUrl from 'v86/build/v86.wasm?url';
import { bootLinux } from './linux-guest.js';

/** Deterministic bytes: byte i of a pattern with `seed`. */
function pattern(seed: number, length: number, offset = 0): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const x = offset + i;
    out[i] = (x * 31 + seed * 17 + (x >>> 8) * 7 + (x >>> 16) * 13) & 0xff;
  }
  return out;
}

/** First differing index of a and b, or -1. */
function diff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** An error as a plain object (code survives the worker boundary). */
function describeError(e: unknown): { code?: string; message: string; isBlockError: boolean } {
  const err = e as { code?: string; message?: string };
  return { ...(err.code ? { code: err.code } : {}), message: String(err.message ?? e), isBlockError: isBlockError(e) };
}

/** What `fn` fails with (as {@link describeError}), or null when it succeeds. */
async function failureOf(fn: () => Promise<unknown>): Promise<ReturnType<typeof describeError> | null> {
  try {
    await fn();
    return null;
  } catch (e) {
    return describeError(e);
  }
}

async function sha256(data: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', data as BufferSource));
  return [...h].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Starts a worker that reads through the sync channel (Atomics.wait). */
function syncReader(): Worker {
  return new Worker(new URL('./sync-reader.ts', import.meta.url), { type: 'module' });
}

/**
 * Runs the protocol conformance cases in a new dedicated worker (one per hot-path mode)
 * and returns their outcomes.
 */
function conformance(mode: 'wasm' | 'typescript'): Promise<unknown> {
  const w = new Worker(new URL('./conformance-worker.ts', import.meta.url), { type: 'module' });
  return new Promise((resolve, reject) => {
    w.onmessage = (ev) => {
      w.terminate();
      resolve(ev.data);
    };
    w.onerror = (ev) => {
      w.terminate();
      reject(new Error(`conformance worker: ${ev.message}`));
    };
    w.postMessage({ mode, origin: location.origin });
  });
}

const harness = {
  DiskWorker,
  toV86Buffer,
  V86Cdrom,
  connectV86Flush,
  saveMachine,
  restoreMachine,
  V86,
  v86WasmUrl,
  pattern,
  diff,
  describeError,
  failureOf,
  sha256,
  groupImageFiles,
  syncReader,
  conformance,
  bootLinux,
  dw: null as DiskWorker | null,
  hooks: null as Remote<TestBlockWorker> | null,
  /** Starts the harness's block worker (the service plus test hooks, test-worker.ts). */
  async start(): Promise<DiskWorker> {
    if (!harness.dw) {
      const worker = new Worker(new URL('./test-worker.ts', import.meta.url), { type: 'module', name: 'diskworker' });
      harness.dw = await DiskWorker.start({ worker });
      harness.hooks = wrap<TestBlockWorker>(worker);
    }
    return harness.dw;
  },
  /** Test hook: a smaller OPFS quota (undefined lifts it). */
  async setTestQuota(bytes: number | undefined): Promise<void> {
    await harness.start();
    await harness.hooks!.setTestQuota(bytes);
  },
};

declare global {
  interface Window {
    harness: typeof harness;
  }
}

window.harness = harness;
document.getElementById('log')!.textContent = 'ready';
document.title = 'harness ready';
