/**
 * QMP errors: the error classes QEMU 7.2 answers with (QapiErrorClass) and
 * the one conversion from a block-layer failure to a QMP error reply.
 */
import { isBlockError } from '../core/errors.js';

/** QEMU's error classes; almost everything is GenericError. */
export type QmpErrorClass = 'GenericError' | 'CommandNotFound' | 'DeviceNotActive' | 'DeviceNotFound' | 'KVMMissingCap';

/** A failed command: the class and the text QEMU's `desc` carries. */
export class QmpError extends Error {
  override readonly name = 'QmpError';
  constructor(
    readonly errorClass: QmpErrorClass,
    desc: string,
  ) {
    super(desc);
  }
}

/** A GenericError with `desc`. */
export function genericError(desc: string): QmpError {
  return new QmpError('GenericError', desc);
}

/**
 * The QMP error for anything a command threw: QmpErrors pass, a BlockError
 * becomes a GenericError with its text (QEMU's error_setg with the same
 * wording, BlockError.text), anything else a GenericError with its message.
 */
export function toQmpError(e: unknown): QmpError {
  if (e instanceof QmpError) return e;
  // QEMU's wording: without the offending value DiskWorker adds to some texts.
  if (isBlockError(e)) return genericError(e.text);
  if (e instanceof Error) return genericError(e.message);
  return genericError(String(e));
}
