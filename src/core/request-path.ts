/**
 * The generic request path (QEMU's block/io.c), implemented once for every
 * driver: bounds and overflow checks, request alignment with read-modify-write
 * of head and tail, splitting at maxTransfer, tracked requests and
 * serialising, in-flight counting for drain, flush generations, write-zeroes
 * fallback, discard alignment, detect-zeroes, copy-on-read, write threshold,
 * before-write hooks and I/O accounting.
 *
 * Requests are made on links (BdrvChild) so the permissions of the link can be
 * checked. Node-level requests may reach past the end of the node: reads return
 * zeros there and writes grow the node (formats append clusters that way);
 * BlockBackend refuses out-of-range requests before they get here.
 *
 * This module is the entry point (what BdrvChild calls); each stage lives in
 * its own file:
 * - request-checks.ts: offset, length, buffer, open and permission checks
 * - tracked-requests.ts: overlapping and serialising requests wait for each other
 * - request-accounting.ts: in-flight counting (drain) and I/O statistics
 * - request-read.ts: the fast and the tracked read
 * - request-write.ts: the write (detect-zeroes, FUA)
 * - request-zero-discard.ts: zero writes (with their fallback) and discards
 * - request-flush.ts, request-truncate.ts: flush generations; resize
 * - request-alignment.ts: alignment and read-modify-write through bounce buffers
 * - request-copy-on-read.ts: copy-on-read of ranges the node does not hold
 * - request-write-hooks.ts: before-write hooks, write threshold, dirty marking
 * - request-driver-calls.ts: the driver call, split at maxTransfer
 * - block-status.ts: block status of one layer and of a backing chain
 */
export { MAX_REQUEST_END, checkRequest } from './request-checks.js';
export { preadv } from './request-read.js';
export { pwritev } from './request-write.js';
export { pwriteZeroes, pdiscard } from './request-zero-discard.js';
export { flush } from './request-flush.js';
export { truncate } from './request-truncate.js';
export { blockStatus } from './block-status.js';
