/**
 * Errors of the copy engine: a failed read or write names the operation and
 * the target offset of the piece it was copying, and keeps the original error
 * (its code is the copy's code); a cancelled copy is ECANCELED.
 */
import { BlockError, toBlockError } from '../core/errors.js';

/** The side of a copy that failed. */
export type CopyOp = 'read' | 'write';

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
    super(b.code, `error while ${op === 'read' ? 'reading' : 'writing'} at byte ${offset}: ${b.text}`, { ...b.context, offset }, { cause: original, detail: b.detail });
  }
}

/** The error a copy cancelled through `signal` rejects with (its reason when that is a BlockError). */
export function abortError(signal: AbortSignal): BlockError {
  const r: unknown = signal.reason;
  if (r instanceof BlockError) return r;
  return new BlockError('ECANCELED', 'Operation canceled', {}, { cause: r });
}
