/**
 * Request limits of a node (QEMU's `BlockLimits`).
 *
 * The generic request path (src/core/request-path.ts) guarantees every driver that the
 * requests it receives respect these: aligned to `requestAlignment`, at most
 * `maxTransfer` bytes, and so on. A value of 0 means "no limit".
 */
export interface BlockLimits {
  /** Alignment in bytes of offset and length of every read/write (power of two, >= 1). */
  requestAlignment: number;
  /** Largest read/write in bytes (multiple of requestAlignment), 0 = unlimited. */
  maxTransfer: number;
  /** Preferred transfer size in bytes, 0 = none. */
  optTransfer: number;
  /** Alignment of discard requests; unaligned head and tail are dropped (0 = requestAlignment). */
  pdiscardAlignment: number;
  /** Largest discard in bytes, 0 = unlimited. */
  maxPdiscard: number;
  /** Preferred alignment of write-zeroes (0 = requestAlignment). */
  pwriteZeroesAlignment: number;
  /** Largest write-zeroes in bytes, 0 = unlimited. */
  maxPwriteZeroes: number;
  /** Memory alignment that the buffers must have (bytes). */
  minMemAlignment: number;
  /** Memory alignment that is optimal. */
  optMemAlignment: number;
  /** Largest number of buffers in one vectored request, 0 = unlimited. */
  maxIov: number;
}

/** Limits of a node whose driver sets none: byte granularity, nothing capped. */
export function defaultLimits(): BlockLimits {
  return {
    requestAlignment: 1,
    maxTransfer: 0,
    optTransfer: 0,
    pdiscardAlignment: 0,
    maxPdiscard: 0,
    pwriteZeroesAlignment: 0,
    maxPwriteZeroes: 0,
    minMemAlignment: 1,
    optMemAlignment: 1,
    maxIov: 1024,
  };
}

function minNonZero(a: number, b: number): number {
  if (a === 0) return b;
  if (b === 0) return a;
  return Math.min(a, b);
}

/**
 * Folds a child's limits into a parent's (QEMU's `bdrv_merge_limits`): transfer
 * caps take the smaller non-zero value, preferences and memory alignment the larger.
 * Request alignment is not merged: the child's own request path handles its alignment.
 */
export function mergeLimits(into: BlockLimits, child: BlockLimits): void {
  into.optTransfer = Math.max(into.optTransfer, child.optTransfer);
  into.maxTransfer = minNonZero(into.maxTransfer, child.maxTransfer);
  into.minMemAlignment = Math.max(into.minMemAlignment, child.minMemAlignment);
  into.optMemAlignment = Math.max(into.optMemAlignment, child.optMemAlignment);
  into.maxIov = minNonZero(into.maxIov, child.maxIov);
}

/** Checks that limits are coherent (alignment a power of two, caps multiples of it). */
export function validateLimits(l: BlockLimits, nodeName: string): string | null {
  const isPow2 = (n: number) => Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!isPow2(l.requestAlignment) || l.requestAlignment > 1 << 30) {
    return `node '${nodeName}': request alignment ${l.requestAlignment} is not a power of two up to 1 GiB`;
  }
  if (l.maxTransfer !== 0 && l.maxTransfer % l.requestAlignment !== 0) {
    return `node '${nodeName}': max transfer ${l.maxTransfer} is not a multiple of the request alignment ${l.requestAlignment}`;
  }
  return null;
}
