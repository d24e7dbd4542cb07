/**
 * The channel tests' disk: a read-only raw BlockBackend over a memory file
 * filled with a position-dependent pattern, and that pattern to compare with.
 */
import { BlockBackend, BlockGraph, MemoryStorage, createMemoryDriver, rawDriver } from '../../src/node.js';

/** A `size`-byte disk whose byte i is `pattern(i)`; `expected` holds the same bytes. */
export async function patternedDisk(size: number, pattern: (i: number) => number): Promise<{ bb: BlockBackend; expected: Uint8Array }> {
  const storage = new MemoryStorage();
  const graph = new BlockGraph([createMemoryDriver(storage), rawDriver], 'memory');
  const f = storage.create('d', size);
  const expected = new Uint8Array(size);
  for (let i = 0; i < size; i++) expected[i] = pattern(i) & 0xff;
  f.writeRaw(0, expected);
  const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw', readOnly: true });
  return { bb, expected };
}

/** Node has SharedArrayBuffer and Atomics.waitAsync; the ring asks for isolation as pages must have it. */
export function pretendCrossOriginIsolated(): void {
  (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated = true;
}
