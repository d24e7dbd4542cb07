/**
 * What the copy engine moves: extents of the target, in target order, each
 * data (read from the source, then written), zero (reads as zeros, nothing
 * to read) or skip (left as the target has it: a backing file provides it,
 * or the range is unchanged).
 */

/** One range of a copy. */
export interface CopyExtent {
  /** Target offset in bytes. */
  offset: number;
  /** Bytes, > 0. */
  length: number;
  kind: 'data' | 'zero' | 'skip';
}
