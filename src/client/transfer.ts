/**
 * Keeps BlockError's `code`, message (text and detail) and context across the
 * worker boundary.
 *
 * Comlink's built-in "throw" handler turns every thrown Error into a plain
 * Error with name / message / stack, which drops `code`. This module replaces
 * that handler with one that recognises BlockErrors (and anything carrying an
 * errno-style `code`) and rebuilds a real BlockError on the other side; other
 * values go through Comlink's original handler unchanged.
 *
 * Both sides must call {@link installErrorTransfer} (the worker entry and the
 * page client do it on import).
 */
import { transferHandlers, type TransferHandler } from 'comlink';
import { BlockError, ErrorCode, type ErrorContext } from '../core/errors.js';

/** The cloneable form of a BlockError (also the bulk-read port's error answer). */
export interface SerializedBlockError {
  code: ErrorCode;
  /** The full message (text and detail), for peers that know only `message`. */
  message: string;
  /** The wording without the detail; absent from older peers. */
  text?: string;
  detail?: string;
  /** Advice after the message (QEMU's hint); absent when none. */
  hint?: string;
  context: ErrorContext;
  stack?: string;
}

interface ThrownWrapper {
  value: unknown;
}

const CODES = new Set<string>(Object.values(ErrorCode));

/** A plain, cloneable description of a BlockError. */
export function serializeBlockError(e: BlockError): SerializedBlockError {
  const context: ErrorContext = {};
  if (e.context.node !== undefined) context.node = String(e.context.node);
  if (typeof e.context.offset === 'number') context.offset = e.context.offset;
  if (e.context.expected !== undefined) context.expected = String(e.context.expected);
  return {
    code: e.code,
    message: e.message,
    text: e.text,
    ...(e.detail !== undefined ? { detail: e.detail } : {}),
    ...(e.hint !== '' ? { hint: e.hint } : {}),
    context,
    ...(e.stack ? { stack: e.stack } : {}),
  };
}

/** Rebuilds a BlockError from {@link serializeBlockError}'s output. */
export function deserializeBlockError(s: SerializedBlockError): BlockError {
  const code: ErrorCode = CODES.has(s.code) ? s.code : 'EIO';
  // Without a text (an older peer) the message is all there is.
  const plain = typeof s.text !== 'string';
  const detail = !plain && typeof s.detail === 'string' ? s.detail : undefined;
  const hint = typeof s.hint === 'string' ? s.hint : undefined;
  const e = new BlockError(code, plain ? String(s.message) : (s.text as string), s.context ?? {}, { detail, hint });
  if (s.stack) e.stack = s.stack;
  return e;
}

function asBlockError(v: unknown): BlockError | null {
  if (v instanceof BlockError) return v;
  if (v && typeof v === 'object') {
    const o = v as { code?: unknown; message?: unknown; text?: unknown; detail?: unknown };
    if (typeof o.code === 'string' && CODES.has(o.code) && typeof o.message === 'string') {
      if (typeof o.text === 'string') {
        return new BlockError(o.code as ErrorCode, o.text, {}, { detail: typeof o.detail === 'string' ? o.detail : undefined });
      }
      return new BlockError(o.code as ErrorCode, o.message);
    }
  }
  return null;
}

let installed = false;

/** Installs the BlockError-aware "throw" transfer handler (idempotent). */
export function installErrorTransfer(): void {
  if (installed) return;
  installed = true;
  const original = transferHandlers.get('throw') as TransferHandler<ThrownWrapper, unknown>;
  const handler: TransferHandler<ThrownWrapper, unknown> = {
    canHandle: (value: unknown): value is ThrownWrapper => original.canHandle(value),
    serialize(wrapper: ThrownWrapper) {
      const be = asBlockError(wrapper.value);
      if (be) return [{ isBlockError: true, value: serializeBlockError(be) }, []];
      return original.serialize(wrapper);
    },
    deserialize(serialized: unknown): ThrownWrapper {
      const s = serialized as { isBlockError?: boolean; value: SerializedBlockError };
      if (s && s.isBlockError) throw deserializeBlockError(s.value);
      return original.deserialize(serialized);
    },
  };
  transferHandlers.set('throw', handler);
}

installErrorTransfer();
