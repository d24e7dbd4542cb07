/**
 * Block-layer errors as NBD error numbers, mapped the way qemu-nbd maps host
 * errno values (QEMU's system_errno_to_nbd_errno): anything without its own
 * NBD number is EINVAL.
 */
import { type ErrorCode, toBlockError } from '../../core/errors.js';
import { NbdErr } from './constants.js';

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  EPERM: NbdErr.EPERM,
  EROFS: NbdErr.EPERM,
  EIO: NbdErr.EIO,
  ENOSPC: NbdErr.ENOSPC,
  EFBIG: NbdErr.ENOSPC,
  ENOTSUP: NbdErr.ENOTSUP,
  EINVAL: NbdErr.EINVAL,
};

/** The NBD error number for a block-layer error code. */
export function nbdErrnoOfCode(code: ErrorCode): number {
  return BY_CODE[code] ?? NbdErr.EINVAL;
}

/** The NBD error number for anything thrown by the block layer. */
export function nbdErrno(e: unknown): number {
  return nbdErrnoOfCode(toBlockError(e).code);
}
