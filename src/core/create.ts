/**
 * Image creation through the format and protocol drivers (qemu-img create).
 */
import type { BlockGraph } from './graph.js';
import { OptionReader } from './options.js';
import { BlockError } from './errors.js';

/**
 * Creates an image `filename` of `format` with creation options (the `-o`
 * list, `size` included).
 */
export async function createImage(
  graph: BlockGraph,
  format: string,
  filename: string,
  options: Record<string, string | number | boolean>,
  progress?: (done: number, total: number) => void,
): Promise<void> {
  const driver = graph.getDriver(format);
  if (!driver.create) {
    throw new BlockError('ENOTSUP', `Format driver '${format}' does not support image creation`);
  }
  const reader = new OptionReader({ ...options }, `Block format '${format}'`);
  await driver.create({ graph, filename, options: reader, ...(progress ? { progress } : {}) });
}
