/**
 * QEMU's BDRV_O_SNAPSHOT (qemu-io -s, qemu-nbd -s): the image opens read-only
 * as the backing node of a new qcow2 overlay of its size, kept in memory
 * instead of a temporary file; writes land there and are gone at close.
 */
import { BlockBackend } from '../core/backend.js';
import { createImage } from '../core/create.js';
import type { BlockGraph } from '../core/graph.js';
import { ROLE_BACKING } from '../core/permissions.js';

/** Temporary overlays made by this process. */
let overlayCounter = 0;

/** Opens `spec` read-only under a fresh in-memory qcow2 overlay and attaches a backend to the overlay. */
export async function openWithTemporaryOverlay(
  graph: BlockGraph,
  spec: Record<string, unknown>,
  flags: { readOnly: boolean; format?: string },
  writeThrough: boolean,
  prefix: string,
): Promise<BlockBackend> {
  const base = await graph.open(spec, { ...flags, readOnly: true });
  try {
    const name = `${prefix}-snapshot-${typeof process !== 'undefined' ? process.pid : 0}-${++overlayCounter}`;
    await createImage(graph, 'qcow2', `memory:${name}`, { size: base.length });
    const overlay = await graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: name }, discard: spec['discard'] }, { noBacking: true });
    try {
      base.ref();
      await graph.attachChild(overlay, base, 'backing', ROLE_BACKING);
      return await BlockBackend.attach(graph, overlay, { name: '', writeThrough });
    } finally {
      await overlay.unref();
    }
  } finally {
    await base.unref();
  }
}
