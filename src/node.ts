/**
 * The Node.js entry (`diskworker/node`): a block graph with the node-file,
 * memory and null back ends and the raw and qcow2 formats.
 */
import { BlockGraph } from './core/graph.js';
import type { BlockDriver } from './core/driver.js';
import { nodeFileDriver } from './protocols/node-file.js';
import { memoryDriver } from './protocols/memory.js';
import { nullDriver } from './protocols/null.js';
import { rawDriver } from './formats/raw/raw.js';
import { qcow2Driver } from './formats/qcow2/qcow2.js';

export * from './core/index.js';
export { nodeFileDriver } from './protocols/node-file.js';
export { memoryDriver, createMemoryDriver, MemoryStorage, MemoryFile, defaultMemoryStorage } from './protocols/memory.js';
export { nullDriver } from './protocols/null.js';
export { rawDriver } from './formats/raw/raw.js';
export { qcow2Driver } from './formats/qcow2/qcow2.js';

/** Every driver usable in Node. */
export function nodeDrivers(): BlockDriver[] {
  return [nodeFileDriver, memoryDriver, nullDriver, rawDriver, qcow2Driver];
}

/** A graph for Node: plain filenames go to the local file system. */
export function createNodeGraph(): BlockGraph {
  return new BlockGraph(nodeDrivers(), 'file');
}
