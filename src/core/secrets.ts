/**
 * Secrets of a graph (QEMU's `secret` objects): named byte strings that
 * options such as `key-secret` refer to by id. They stay inside the graph's
 * worker; nothing prints or logs them.
 */
import type { BlockGraph } from './graph.js';
import { BlockError } from './errors.js';

const REGISTRIES = new WeakMap<BlockGraph, Map<string, Uint8Array>>();

function registry(graph: BlockGraph): Map<string, Uint8Array> {
  let r = REGISTRIES.get(graph);
  if (!r) REGISTRIES.set(graph, (r = new Map()));
  return r;
}

/** Adds a secret; EEXIST when the id is taken. */
export function addSecret(graph: BlockGraph, id: string, data: Uint8Array): void {
  const r = registry(graph);
  if (r.has(id)) throw new BlockError('EEXIST', `attempt to add duplicate property '${id}' to object (type 'container')`);
  r.set(id, data.slice());
}

/** Whether a secret with this id exists. */
export function hasSecret(graph: BlockGraph, id: string): boolean {
  return registry(graph).has(id);
}

/** Removes a secret and wipes its bytes. */
export function removeSecret(graph: BlockGraph, id: string): boolean {
  const r = registry(graph);
  const s = r.get(id);
  if (!s) return false;
  s.fill(0);
  r.delete(id);
  return true;
}

/**
 * A secret's bytes as UTF-8 text bytes (QEMU's qcrypto_secret_lookup_as_utf8):
 * EINVAL "No secret with id '...'" when missing, or when not valid UTF-8.
 * The caller gets a copy it should wipe.
 */
export function lookupSecret(graph: BlockGraph, id: string): Uint8Array {
  const s = registry(graph).get(id);
  if (!s) throw new BlockError('EINVAL', `No secret with id '${id}'`);
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(s);
  } catch {
    throw new BlockError('EINVAL', `Data from secret ${id} is not valid UTF-8`);
  }
  return s.slice();
}
