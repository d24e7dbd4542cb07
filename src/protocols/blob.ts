/**
 * blob: read-only images from a Blob or File (a user-picked image), for
 * import. The page hands the Blob to the worker, which registers it under a
 * key; the image is then `blob:<key>`. An image of several files (a vmdk
 * descriptor and its extents) is registered as a set: its files share a
 * directory, `blob:<set>/<file name>`, so the names the image gives its other
 * files resolve against its own, as on a file system.
 */
import type { BlockDriver, DriverInstance } from '../core/driver.js';
import { BlockError, einval, toBlockError } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';

const PREFIX = 'blob:';
const blobs = new Map<string, Blob>();
/** The image file of each registered set, by the set's directory: named in errors about its other files. */
const setImages = new Map<string, string>();
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

/** One file of a set: its name (a File's name) and bytes. */
export interface NamedBlob {
  name: string;
  blob: Blob;
}

/** A registered set: the image's filename (`blob:<set>/<name>`) and the call that forgets the set. */
export interface BlobSet {
  filename: string;
  unregister(): void;
}

/**
 * Registers `image` and the files it names (`others`: a vmdk descriptor's
 * extents, a vmdk's parent) in a directory of their own, each under its file
 * name. A name that is empty, `.` or `..`, or holds a `/`, a backslash, `:` or NUL
 * cannot be a file beside the image (EINVAL naming it); two files of one name
 * are refused too (EINVAL).
 */
export function registerBlobSet(image: NamedBlob, others: readonly NamedBlob[]): BlobSet {
  const dir = `s${nextKey++}`;
  const seen = new Set<string>();
  for (const f of [image, ...others]) {
    if (f.name === '' || f.name === '.' || f.name === '..' || /[/\\:\0]/.test(f.name)) {
      throw einval(`Invalid file name '${f.name}': the files of an image are named as in one directory`);
    }
    if (seen.has(f.name)) throw einval(`Two files named '${f.name}' were given with the image '${image.name}'`);
    seen.add(f.name);
  }
  for (const f of [image, ...others]) blobs.set(`${dir}/${f.name}`, f.blob);
  setImages.set(dir, image.name);
  return {
    filename: `${PREFIX}${dir}/${image.name}`,
    unregister: () => {
      for (const name of seen) blobs.delete(`${dir}/${name}`);
      setImages.delete(dir);
    },
  };
}

/** Bytes a sequential reader fetches at once: each Blob read has a fixed cost (an IPC round trip in a browser). */
const READ_AHEAD = 16 << 20;

/** A piece of the Blob being fetched or fetched: [start, end) and its bytes. */
interface Window {
  start: number;
  end: number;
  data: Promise<Uint8Array>;
}

class BlobInstance implements DriverInstance {
  /** Where the last read ended: a read that starts there is sequential. */
  private lastEnd = 0;
  /** The pieces read ahead (at most two: the one being consumed and the next). */
  private windows: Window[] = [];

  constructor(
    private readonly blob: Blob,
    private readonly name: string,
  ) {}
  getLength(): number {
    return this.blob.size;
  }

  private fetch(start: number, end: number): Promise<Uint8Array> {
    return this.blob
      .slice(start, end)
      .arrayBuffer()
      .then(
        (b) => new Uint8Array(b),
        (e: unknown) => {
          const err = toBlockError(e, { offset: start });
          // A File changed or deleted after it was picked fails with NotReadableError.
          throw new BlockError('EIO', `Could not read '${this.name}' at offset ${start}: ${err.message}`, { offset: start }, { cause: e });
        },
      );
  }

  async preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const end = Math.min(offset + bytes, this.blob.size);
    let n = 0;
    if (end > offset) {
      let w = this.windows.find((x) => offset >= x.start && end <= x.end);
      // A sequential read (an import's copy) past what was read ahead fetches a large piece;
      // others (a format's table lookups) read just what they ask for.
      if (!w && offset === this.lastEnd && end - offset < READ_AHEAD) {
        w = { start: offset, end: Math.min(offset + READ_AHEAD, this.blob.size), data: Promise.resolve(new Uint8Array(0)) };
        w.data = this.fetch(w.start, w.end);
        this.windows = [...this.windows.slice(-1), w];
        w.data.catch(() => (this.windows = this.windows.filter((x) => x !== w)));
      }
      this.lastEnd = end;
      const data = w ? (await w.data).subarray(offset - w.start, end - w.start) : await this.fetch(offset, end);
      n = data.byteLength;
      buf.set(data, 0);
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
    if (!blob) {
      const slash = key.indexOf('/');
      const image = slash > 0 ? setImages.get(key.slice(0, slash)) : undefined;
      // A file an image of a set names (a vmdk extent) that was not given with it: named as the image names it.
      if (image !== undefined) {
        throw new BlockError('ENOENT', `Could not open '${key.slice(slash + 1)}': No such file or directory`, {}, { detail: `'${image}' names it; give it with the image` });
      }
      throw new BlockError('ENOENT', `Could not open '${PREFIX}${key}': no such Blob is registered`);
    }
    if (!node.readOnly) throw new BlockError('EROFS', `Could not open '${PREFIX}${key}' for writing: the blob back end is read-only`);
    node.filename = `${PREFIX}${key}`;
    return new BlobInstance(blob, node.filename);
  },
} satisfies BlockDriver;
