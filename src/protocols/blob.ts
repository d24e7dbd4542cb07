/**
 * blob: read-only images from a Blob or File (a user-picked image), for
 * import. The page hands the Blob to the worker, which registers it under a
 * key; the image is then `blob:<key>`.
 */
import type { BlockDriver, DriverInstance } from '../core/driver.js';
import { BlockError, einval, toBlockError } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';

const PREFIX = 'blob:';
const blobs = new Map<string, Blob>();
let nextKey = 0;

/** Registers a Blob and returns its filename (`blob:<key>`). */
export function registerBlob(blob: Blob, key?: string): string {
  const k = key ?? `b${nextKey++}`;
  if (!/^[A-Za-z0-9_.-]+$/.test(k)) throw einval(`Invalid blob key '${k}'`);
  blobs.set(k, blob);
  return `${PREFIX}${k}`;
}

/** Forgets a registered Blob. */
export function unregisterBlob(filename: string): void {
  blobs.delete(filename.startsWith(PREFIX) ? filename.slice(PREFIX.length) : filename);
}

class BlobInstance implements DriverInstance {
  constructor(
    private readonly blob: Blob,
    private readonly name: string,
  ) {}
  getLength(): number {
    return this.blob.size;
  }
  async preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const end = Math.min(offset + bytes, this.blob.size);
    let n = 0;
    if (end > offset) {
      let data: ArrayBuffer;
      try {
        data = await this.blob.slice(offset, end).arrayBuffer();
      } catch (e) {
        const err = toBlockError(e, { offset });
        // A File changed or deleted after it was picked fails with NotReadableError.
        throw new BlockError('EIO', `Could not read '${this.name}' at offset ${offset}: ${err.message}`, { offset }, { cause: e });
      }
      n = data.byteLength;
      buf.set(new Uint8Array(data), 0);
    }
    if (n < bytes) buf.fill(0, n, bytes);
  }
}

export const blobDriver = {
  name: 'blob',
  kind: 'protocol',
  protocolPrefixes: [PREFIX],
  parseFilename: (filename: string) => ({ filename }),
  isAvailable: () => typeof Blob !== 'undefined',
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const filename = options.string('filename');
    if (!filename) throw einval("The 'blob' block driver requires a file name");
    const key = filename.startsWith(PREFIX) ? filename.slice(PREFIX.length) : filename;
    const blob = blobs.get(key);
    if (!blob) throw new BlockError('ENOENT', `Could not open '${PREFIX}${key}': no such Blob is registered`);
    if (!node.readOnly) throw new BlockError('EROFS', `Could not open '${PREFIX}${key}' for writing: the blob back end is read-only`);
    node.filename = `${PREFIX}${key}`;
    return new BlobInstance(blob, node.filename);
  },
} satisfies BlockDriver;
