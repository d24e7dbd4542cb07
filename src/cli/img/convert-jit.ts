/**
 * `img convert` copies without V8's optimising compiler (TurboFan) unless an
 * image of the copy is encrypted. Only in the command's own process
 * ({@link allowCopyWithoutOptimizer}, called by runAsProcess): a process that
 * imports the CLI (the tests, the iotests shim) keeps its compiler.
 *
 * Why: a convert's own JavaScript is a small share of a copy (the data moves
 * on libuv's threads and through WASM), yet a convert of a few seconds had
 * TurboFan optimise ~18 large async functions (20-100 ms of compiler CPU
 * each) on V8's worker threads, whose malloc arenas then kept 5-6 MB of the
 * compiler's memory: a 1 GiB zstd-compressed qcow2 peaked at 66-70 MB of RSS
 * with it and 60-63 MB without, in no more time (the goal is 64 MB).
 * An encrypted image is the exception: its XTS and CBC code runs per cipher
 * block in JavaScript and needs the compiler (a 256 MiB LUKS convert took 11 s
 * of CPU without it, 1.5 s with). The compiler is switched back on when the
 * copy ends, so the V8 flags are the launcher's again when it writes its code
 * cache (V8 checks a cache's flags).
 */
import v8 from 'node:v8';
import type { BlockNode } from '../../core/node.js';

let allowed = false;

/** Lets {@link copyWithoutOptimizer} switch the compiler off (this process is the command). */
export function allowCopyWithoutOptimizer(): void {
  allowed = true;
}

/**
 * Switches TurboFan off for a copy between `nodes` (every node of the graph)
 * unless one of them is encrypted or this process is not the command; returns
 * the function that switches it back on (a no-op when nothing was changed).
 */
export function copyWithoutOptimizer(nodes: readonly BlockNode[]): () => void {
  if (!allowed || nodes.some((n) => n.instance.isEncrypted?.() === true)) return () => undefined;
  v8.setFlagsFromString('--no-opt');
  return () => v8.setFlagsFromString('--opt');
}
