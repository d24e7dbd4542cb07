/**
 * Format probing by magic (QEMU's bdrv_probe_all / find_image_format).
 *
 * Every format driver scores the first sector; the highest score wins. raw
 * always answers 1, so it wins only when nothing else matches. Formats that
 * QEMU reads and we do not are recognised too and refused by name (ENOTSUP),
 * never opened as raw (see probe-foreign.ts). Images opened
 * with an explicit format are never probed (see src/core/graph.ts).
 */
import type { BlockDriver } from './driver.js';
import type { BlockGraph } from './graph.js';
import { BlockError } from './errors.js';
import { FOREIGN_FORMATS } from './probe-foreign.js';

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
  // A format we know by its magic but do not read beats a weaker match (raw):
  // opening it as raw would show its metadata as guest data.
  // An empty file is raw without probing, as in QEMU.
  for (const f of header.length > 0 ? FOREIGN_FORMATS : []) {
    if (graph.listDrivers().some((d) => d.name === f.name)) continue;
    const score = f.probe(header, filename);
    if (score > bestScore) {
      throw new BlockError('ENOTSUP', `Image format '${f.name}' is not supported`);
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
