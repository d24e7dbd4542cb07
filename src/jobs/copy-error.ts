/**
 * Errors of the copy engine: a failed read or write names the operation and
 * the target offset of the piece it was copying, and keeps the original error
 * (its code is the copy's code); a cancelled copy is ECANCELED.
 */
import { BlockError, toBlockError } from '../core/errors.js';

/** The side of a copy that failed ('status': the block status query that plans it). */
export type CopyOp = 'read' | 'write' | 'status';

/** QEMU's words for a failed step of a copy (qemu-img convert's messages). */
export function copyFailure(op: CopyOp, offset: number): string {
  if (op === 'status') return `error while reading block status at offset ${offset}`;
  return `error while ${op === 'read' ? 'reading' : 'writing'} at byte ${offset}`;
}

/** A read or write of a copy failed at `offset` (a target offset). */
export class CopyError extends BlockError {
  /**
   * @param op which side failed
   * @param offset target offset of the piece being copied
   * @param original what the read or write threw (kept for callers that print it their way)
   */
  constructor(
    readonly op: CopyOp,
    readonly offset: number,
    readonly original: unknown,
  ) {
    const b = toBlockError(original);
    super(b.code, `${copyFailure(op, offset)}: ${b.text}`, { ...b.context, offset }, { cause: original, detail: b.detail });
  }
}

/** The error a copy cancelled through `signal` rejects with (its reason when that is a BlockError). */
export function abortError(signal: AbortSignal): BlockError {
  const r: unknown = signal.reason;
  if (r instanceof BlockError) return r;
  return new BlockError('ECANCELED', 'Operation canceled', {}, { cause: r });
}
