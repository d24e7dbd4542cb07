/**
 * The synchronous channel's shared-memory layout: Int32 control words before
 * a data area. sync-server.ts is the block worker's side, sync-client.ts the
 * side of the worker (or page) that reads and writes through it.
 */

/** Layout of the synchronous channel's control words (Int32 indexes). */
export const SyncSlot = {
  /** State word: see {@link SyncState}. */
  STATE: 0,
  /** Operation: see {@link SyncOp}. */
  OP: 1,
  /** Request length in bytes. */
  LENGTH: 2,
  /** Result: 0 ok, or a negative errno. */
  RESULT: 3,
  /** Offset, low 32 bits (unsigned). */
  OFFSET_LO: 4,
  /** Offset, high bits. */
  OFFSET_HI: 5,
  /** Byte length of the error message stored in the data area on failure. */
  MESSAGE_LENGTH: 6,
} as const;

export const SyncState = { IDLE: 0, REQUEST: 1, DONE: 2, CLOSED: 3 } as const;
export const SyncOp = { READ: 1, WRITE: 2, FLUSH: 3, WRITE_ZEROES: 4 } as const;
/** Bytes of control words before the data area. */
export const SYNC_HEADER_BYTES = 64;
