/**
 * The worker's one spelling of an image path, so the same image opened as
 * `opfs:a.img`, `opfs:/a.img` or `a.img` is recognised as one.
 */

/** `opfs:` paths (and plain ones, which live on OPFS) as `opfs:/a/b`; other back ends unchanged. */
export function canonicalPath(path: string): string {
  if (path.startsWith('opfs:')) return 'opfs:/' + path.slice(5).split('/').filter(Boolean).join('/');
  if (!path.includes(':')) return 'opfs:/' + path.split('/').filter(Boolean).join('/');
  return path;
}
