/**
 * Image creation through the format and protocol drivers (qemu-img create).
 */
import type { BlockGraph } from './graph.js';
import { OptionReader } from './options.js';
import { BlockError, einval, toBlockError } from './errors.js';

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

/** Largest extent size hint file systems take (QEMU's file driver limit: 32 bits). */
const MAX_EXTENT_SIZE_HINT = 0xffffffff;

/** Checks the extent_size_hint creation option as QEMU's file driver does. */
export function checkExtentSizeHint(hint: number | undefined): void {
  if (hint !== undefined && hint > MAX_EXTENT_SIZE_HINT) {
    // QEMU's words (qemu-img prints them after the file name).
    throw einval('Extent size hint is too large');
  }
}

/**
 * Deletes a file a failed create made (QEMU's bdrv_co_delete_file_noerr):
 * through the protocol's `deleteFile`, else its catalogue. A back end that
 * cannot delete is passed over in silence; another failure goes to the
 * graph's error reports.
 */
export async function deleteCreatedFile(graph: BlockGraph, filename: string): Promise<void> {
  const proto = graph.protocolFor(filename);
  try {
    if (proto.deleteFile) await proto.deleteFile(filename);
    else if (proto.catalogue) await proto.catalogue.remove(filename);
  } catch (e) {
    const err = toBlockError(e);
    if (err.code !== 'ENOTSUP') graph.report(err.message);
  }
}
