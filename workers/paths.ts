/**
 * How the worker names the image behind a disk: one spelling of an image
 * path (the same image opened as `opfs:a.img`, `opfs:/a.img` or `a.img` is
 * one), and the image node below the filters of running jobs.
 */

/** `opfs:` paths (and plain ones, which live on OPFS) as `opfs:/a/b`; other back ends unchanged. */
export function canonicalPath(path: string): string {
  if (path.startsWith('opfs:')) return 'opfs:/' + path.slice(5).split('/').filter(Boolean).join('/');
  if (!path.includes(':')) return 'opfs:/' + path.split('/').filter(Boolean).join('/');
  return path;
}

/** The node a job's filter sits on: below the filters (mirror_top, copy-before-write) a disk's root may be. */
export function imageNodeOf<N extends { readonly filtered: { readonly node: N } | undefined }>(node: N): N {
  let n = node;
  for (let i = 0; i < 64 && n.filtered; i++) n = n.filtered.node;
  return n;
}
