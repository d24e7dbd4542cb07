/**
 * A BlockError as one line of text for the shared-memory channels (the sync
 * channel and the bulk reader), which pass failures as bytes beside an errno
 * result: `CODE: text`, then the detail after a NUL when there is one.
 */
import { BlockError, type ErrorCode, type ErrorContext } from '../core/errors.js';

/** The text a channel stores for `err`. */
export function encodeErrorText(err: BlockError): string {
  return `${err.code}: ${err.text}${err.detail !== undefined ? `\u0000${err.detail}` : ''}`;
}

/** Rebuilds the error from {@link encodeErrorText}'s text (a truncated one too) and the errno's code. */
export function decodeErrorText(code: ErrorCode, raw: string, context: ErrorContext): BlockError {
  const body = raw.startsWith(`${code}: `) ? raw.slice(code.length + 2) : raw;
  const nul = body.indexOf('\u0000');
  if (nul < 0) return new BlockError(code, body, context);
  return new BlockError(code, body.slice(0, nul), context, { detail: body.slice(nul + 1) });
}
