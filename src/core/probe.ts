/**
 * Format probing by magic (QEMU's bdrv_probe_all / find_image_format).
 *
 * Every format driver scores the first sector; the highest score wins. raw
 * always answers 1, so it wins only when nothing else matches. Images opened
 * with an explicit format are never probed (see src/core/graph.ts).
 */
import type { BlockDriver } from './driver.js';
import type { BlockGraph } from './graph.js';
import { BlockError } from './errors.js';

/** The best-matching format driver for `header`; ENOTSUP when none (not even raw) is registered. */
export function probeFormat(graph: BlockGraph, header: Uint8Array, filename?: string): BlockDriver {
  let best: BlockDriver | null = null;
  let bestScore = 0;
  for (const d of graph.listDrivers()) {
    if (d.kind !== 'format' || !d.probe) continue;
    const score = d.probe(header, filename);
    if (score > bestScore) {
      best = d;
      bestScore = score;
    }
  }
  if (!best) {
    throw new BlockError('ENOTSUP', `Could not determine the image format of '${filename ?? ''}'`);
  }
  return best;
}

/** Name of the probed format, or null when nothing is registered. */
export function probeFormatName(graph: BlockGraph, header: Uint8Array, filename?: string): string | null {
  try {
    return probeFormat(graph, header, filename).name;
  } catch {
    return null;
  }
}
