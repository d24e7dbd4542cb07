/**
 * Picked or dropped files sorted into images: a vmdk descriptor file
 * (twoGbMaxExtentSparse / Flat, monolithicFlat, ...) takes the files its
 * extent lines name as its companions, which `importFile` then needs
 * (`{ companions }`); every other file is an image of its own.
 *
 * ```ts
 * for (const g of await groupImageFiles([...input.files!])) {
 *   if (g.missing.length) console.warn(`${g.image.name} needs ${g.missing.join(', ')}`);
 *   await dw.importFile(g.image, { to: `opfs:/${g.image.name}`, companions: g.companions });
 * }
 * ```
 */
import { cString, DESC_READ_MAX, parseExtentLines, probeDescriptor } from '../formats/vmdk/descriptor.js';

/** One image among picked files. */
export interface ImageFileGroup {
  /** The image's own file (a descriptor, or a file that is an image by itself). */
  image: File;
  /** The files it names that were given too, in the order it names them. */
  companions: File[];
  /** Names it gives that no given file has (its import fails with ENOENT naming the first). */
  missing: string[];
}

/**
 * The extent file names of a vmdk descriptor file's text (`head`: its first
 * bytes), or null when the bytes are not a descriptor file. Names are as the
 * descriptor writes them, relative to it. A sparse vmdk (its descriptor
 * embedded, naming the file itself) is not a descriptor file.
 */
export function descriptorExtentNames(head: Uint8Array): string[] | null {
  if (!probeDescriptor(head)) return null;
  try {
    return [...new Set(parseExtentLines(cString(head)).map((l) => l.filename))];
  } catch {
    // A descriptor the vmdk driver refuses: its import reports why.
    return [];
  }
}

/**
 * Sorts `files` into images: each vmdk descriptor file with the files its
 * extents name (matched by file name), then each file no descriptor claims,
 * in the order given. A file two descriptors name goes with the first.
 */
export async function groupImageFiles(files: readonly File[]): Promise<ImageFileGroup[]> {
  const byName = new Map<string, File>();
  for (const f of files) if (!byName.has(f.name)) byName.set(f.name, f);
  const claimed = new Set<File>();
  const groups: ImageFileGroup[] = [];
  for (const f of files) {
    // A descriptor file is text of at most 1 MiB (what QEMU reads of one).
    if (f.size > DESC_READ_MAX) continue;
    const names = descriptorExtentNames(new Uint8Array(await f.arrayBuffer()));
    if (!names) continue;
    const group: ImageFileGroup = { image: f, companions: [], missing: [] };
    for (const n of names) {
      const c = byName.get(n);
      if (c && c !== f && !claimed.has(c)) {
        group.companions.push(c);
        claimed.add(c);
      } else if (!c) group.missing.push(n);
    }
    claimed.add(f);
    groups.push(group);
  }
  for (const f of files) if (!claimed.has(f)) groups.push({ image: f, companions: [], missing: [] });
  // Descriptors and lone files in the order given.
  return groups.sort((a, b) => files.indexOf(a.image) - files.indexOf(b.image));
}
