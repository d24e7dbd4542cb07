/**
 * NBD protocol numbers (the NBD project's doc/proto.md, with QEMU's
 * extensions from docs/interop/nbd.txt). Wire values only: no logic.
 */

/** "NBDMAGIC": the first 8 bytes the server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": newstyle negotiation; also the magic of every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Magic of every option reply. */
export const NBD_REP_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server, 16 bits). */
export const HandshakeFlag = { FIXED_NEWSTYLE: 1, NO_ZEROES: 2 } as const;
/** Client flags (32 bits). */
export const ClientFlag = { FIXED_NEWSTYLE: 1, NO_ZEROES: 2 } as const;

/** Transmission flags of an export (16 bits). */
export const ExportFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Options of the handshake phase. */
export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

/** Option names as QEMU prints them in its error replies (nbd_opt_lookup). */
export const OPT_NAMES: Readonly<Record<number, string>> = {
  1: 'export name',
  2: 'abort',
  3: 'list',
  4: 'peek export',
  5: 'starttls',
  6: 'info',
  7: 'go',
  8: 'structured reply',
  9: 'list meta context',
  10: 'set meta context',
};

/** Option reply types; errors have bit 31 set. */
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

/** NBD_REP_INFO item types. */
export const Info = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Commands of the transmission phase. */
export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

/** Command names as QEMU prints them (nbd_cmd_lookup). */
export const CMD_NAMES: Readonly<Record<number, string>> = {
  0: 'read',
  1: 'write',
  2: 'disconnect',
  3: 'flush',
  4: 'trim',
  5: 'cache',
  6: 'write zeroes',
  7: 'block status',
};

/** Command flags (16 bits). */
export const CmdFlag = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16 } as const;

/** Structured reply chunk types and flags. */
export const Reply = {
  FLAG_DONE: 1,
  TYPE_NONE: 0,
  TYPE_OFFSET_DATA: 1,
  TYPE_OFFSET_HOLE: 2,
  TYPE_BLOCK_STATUS: 5,
  TYPE_ERROR: 0x8001,
  TYPE_ERROR_OFFSET: 0x8002,
} as const;

/** Error numbers on the wire (not the host's errno values). */
export const NbdErr = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** base:allocation and qemu:dirty-bitmap extent flags. */
export const State = { HOLE: 1, ZERO: 2, DIRTY: 1 } as const;

/** The context ids this server hands out (as qemu-nbd: bitmaps last, one id each). */
export const MetaId = { BASE_ALLOCATION: 0, ALLOCATION_DEPTH: 1, DIRTY_BITMAP: 2 } as const;

/** Largest READ / WRITE payload and option length accepted (QEMU's NBD_MAX_BUFFER_SIZE). */
export const NBD_MAX_BUFFER_SIZE = 32 * 1024 * 1024;
/** Longest export name, description, or context name (NBD_MAX_STRING_SIZE). */
export const NBD_MAX_STRING_SIZE = 4096;
/** Extents in one BLOCK_STATUS chunk: 1 MiB of extent data, as qemu-nbd. */
export const NBD_MAX_BLOCK_STATUS_EXTENTS = (1024 * 1024) / 8;
/** Requests a client may have in flight before the server stops reading (QEMU's MAX_NBD_REQUESTS). */
export const NBD_MAX_REQUESTS = 16;
/** 124 bytes of zeroes after NBD_OPT_EXPORT_NAME's reply unless NO_ZEROES. */
export const EXPORT_NAME_PAD = 124;
