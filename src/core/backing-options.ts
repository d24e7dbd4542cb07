/**
 * Options for a backing child given by the user (`backing.node-name=x`,
 * `backing.driver=qcow2`) together with the backing file an image names
 * (QEMU's bdrv_open_backing_file): unless the user's options name a file
 * themselves, they apply to the file the image names.
 */
import type { BlockOptions } from './options.js';

/** Whether a value is a nested options object (not a node-name reference, not null). */
export function isOptionsObject(v: unknown): v is BlockOptions {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Whether backing options name their own file (QEMU: `filename` or `file.filename`), so the image's name is not used. */
export function namesItsFile(ref: BlockOptions): boolean {
  if (typeof ref.filename === 'string') return true;
  return isOptionsObject(ref.file) && typeof ref.file.filename === 'string';
}

/**
 * Puts the user's options for a backing child over the options resolved from
 * the name stored in the image. A protocol driver given for the backing child
 * opens the named file directly, without a format layer.
 */
export function mergeBackingOptions(resolved: BlockOptions, given: BlockOptions, isProtocol: (driver: string) => boolean): BlockOptions {
  if (typeof given.driver === 'string' && isProtocol(given.driver)) {
    let proto: BlockOptions = resolved;
    for (let i = 0; i < 16 && isOptionsObject(proto.file); i++) proto = proto.file;
    const { driver: _resolvedDriver, ...protoRest } = proto;
    void _resolvedDriver;
    return { ...protoRest, ...given };
  }
  const merged: BlockOptions = { ...resolved, ...given };
  if (given.driver === undefined) merged.driver = resolved.driver;
  if (merged.driver === undefined) delete merged.driver;
  if (isOptionsObject(given.file) && isOptionsObject(resolved.file)) merged.file = { ...resolved.file, ...given.file };
  else if (given.file === undefined && resolved.file !== undefined) merged.file = resolved.file;
  return merged;
}
