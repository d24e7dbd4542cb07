/**
 * The one error type of the block layer.
 *
 * Every failure that reaches a caller is a {@link BlockError} with a POSIX-style
 * `code`, a message that names the offending value, and optional context (node
 * name, offset). It survives the worker boundary (see src/client/transfer.ts).
 *
 * Where QEMU's wording names no value, the value goes in a `detail`: `message`
 * is `text (detail)` for library users and logs, `text` alone is QEMU's
 * wording, which the command-line tools print.
 */

/** errno-style codes, as QEMU returns them (`-EINVAL`, `-EIO`, ...). */
export const ErrorCode = {
  EINVAL: 'EINVAL',
  EIO: 'EIO',
  ENOSPC: 'ENOSPC',
  EPERM: 'EPERM',
  EACCES: 'EACCES',
  EBUSY: 'EBUSY',
  ENOTSUP: 'ENOTSUP',
  EFBIG: 'EFBIG',
  ENOENT: 'ENOENT',
  ECANCELED: 'ECANCELED',
  EEXIST: 'EEXIST',
  ENOMEDIUM: 'ENOMEDIUM',
  EROFS: 'EROFS',
  EAGAIN: 'EAGAIN',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const ERRNO_NUMBERS: Record<ErrorCode, number> = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ENOTSUP: 95,
  ECANCELED: 125,
  ENOMEDIUM: 123,
  EAGAIN: 11,
};

const CODES_BY_ERRNO = new Map<number, ErrorCode>(Object.entries(ERRNO_NUMBERS).map(([code, n]) => [n, code as ErrorCode]));

/**
 * The code of a positive errno number (Linux numbering), EIO for numbers
 * outside the table: the channels carry errors as negative errno results.
 */
export function codeOfErrno(errno: number): ErrorCode {
  return CODES_BY_ERRNO.get(errno) ?? 'EIO';
}

/** The strerror() text glibc prints for each code (qemu-img / qemu-io messages use it). */
export const STRERROR: Record<ErrorCode, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  EINVAL: 'Invalid argument',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  ENOTSUP: 'Operation not supported',
  ECANCELED: 'Operation canceled',
  ENOMEDIUM: 'No medium found',
  EAGAIN: 'Resource temporarily unavailable',
};

/** glibc's strerror() text of system errors outside {@link STRERROR} (sockets, paths), by errno name. */
const SYSTEM_STRERROR: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  ENOTSOCK: 'Socket operation on non-socket',
  ETIMEDOUT: 'Connection timed out',
  EHOSTUNREACH: 'No route to host',
  ENETUNREACH: 'Network is unreachable',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  ENAMETOOLONG: 'File name too long',
};

/**
 * What glibc's strerror() says for a host error (a Node error's `code`, such as
 * ECONNREFUSED), as QEMU prints it; the error's own message for names not known.
 */
export function systemErrorText(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') {
    const text = SYSTEM_STRERROR[code] ?? (STRERROR as Record<string, string>)[code];
    if (text) return text;
  }
  return e instanceof Error ? e.message : String(e);
}

/** Where an error happened, when known. */
export interface ErrorContext {
  /** node-name of the node the request was made on. */
  node?: string;
  /** Byte offset of the request or of the metadata being read. */
  offset?: number;
  /** What the layer expected to find (for malformed images). */
  expected?: string;
}

/** Options of the {@link BlockError} constructor. */
export interface BlockErrorOptions {
  cause?: unknown;
  /**
   * The offending value(s), where the text (QEMU's wording) names none:
   * `message` shows it in parentheses, `text` leaves it out.
   */
  detail?: string;
  /**
   * Advice printed on the lines after the message, each ending in a newline
   * (QEMU's error_append_hint: "You can use 'qemu-img rebase' instead.").
   */
  hint?: string;
}

/** A block-layer failure with an errno-style code. */
export class BlockError extends Error {
  override readonly name = 'BlockError';
  readonly code: ErrorCode;
  readonly context: ErrorContext;
  /** The wording without {@link detail} (what qemu-img / qemu-io print). */
  readonly text: string;
  /** The offending value(s) the text leaves out, if any. */
  readonly detail: string | undefined;
  /** Advice for the user after the message (see {@link BlockErrorOptions.hint}); '' when none. */
  readonly hint: string;

  constructor(code: ErrorCode, text: string, context: ErrorContext = {}, options: BlockErrorOptions = {}) {
    const { detail, hint, ...rest } = options;
    super(detail !== undefined && detail !== '' ? `${text} (${detail})` : text, rest);
    this.code = code;
    this.context = context;
    this.text = text;
    this.detail = detail !== '' ? detail : undefined;
    this.hint = hint ?? '';
  }

  /** The positive errno number of {@link code} (Linux numbering). */
  get errno(): number {
    return ERRNO_NUMBERS[this.code];
  }

  /** A new error with the same code and `prefix: text`, keeping context and detail. */
  withPrefix(prefix: string, context: ErrorContext = {}): BlockError {
    return new BlockError(this.code, `${prefix}: ${this.text}`, { ...this.context, ...context }, { cause: this, detail: this.detail, hint: this.hint });
  }
}

/** Is `e` a BlockError (also one rebuilt after crossing a worker boundary)? */
export function isBlockError(e: unknown): e is BlockError {
  return e instanceof BlockError;
}

/**
 * Turns anything thrown into a BlockError: keeps BlockErrors, maps Node fs
 * errors and DOM exceptions to their codes, and wraps the rest as EIO.
 */
export function toBlockError(e: unknown, context: ErrorContext = {}): BlockError {
  if (e instanceof BlockError) return e;
  if (e && typeof e === 'object') {
    const anyE = e as { code?: unknown; name?: unknown; message?: unknown };
    const message = typeof anyE.message === 'string' ? anyE.message : String(e);
    if (typeof anyE.code === 'string' && anyE.code in ERRNO_NUMBERS) {
      return new BlockError(anyE.code as ErrorCode, message, context, { cause: e });
    }
    if (anyE.code === 'EISDIR' || anyE.code === 'ENOTDIR') {
      return new BlockError('EINVAL', message, context, { cause: e });
    }
    if (anyE.code === 'EDQUOT' || anyE.name === 'QuotaExceededError') {
      return new BlockError('ENOSPC', message, context, { cause: e });
    }
    if (anyE.name === 'NotFoundError') return new BlockError('ENOENT', message, context, { cause: e });
    if (anyE.name === 'NoModificationAllowedError') return new BlockError('EBUSY', message, context, { cause: e });
    if (anyE.name === 'NotAllowedError' || anyE.name === 'SecurityError') {
      return new BlockError('EACCES', message, context, { cause: e });
    }
    if (anyE.name === 'AbortError') return new BlockError('ECANCELED', message, context, { cause: e });
    return new BlockError('EIO', message, context, { cause: e });
  }
  return new BlockError('EIO', String(e), context);
}

/**
 * Runs `fn`; any error it throws gets `what` as a prefix ("while reading L2 table
 * at 0x50000: ...") and the given context.
 */
export async function withContext<T>(what: string, context: ErrorContext, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toBlockError(e, context).withPrefix(what, context);
  }
}

/** Shorthand constructors used all over the layer (`detail`: see {@link BlockErrorOptions}). */
export const einval = (message: string, context?: ErrorContext, detail?: string) => new BlockError('EINVAL', message, context, { detail });
export const eio = (message: string, context?: ErrorContext, detail?: string) => new BlockError('EIO', message, context, { detail });
export const enotsup = (message: string, context?: ErrorContext, detail?: string) => new BlockError('ENOTSUP', message, context, { detail });
export const eperm = (message: string, context?: ErrorContext, detail?: string) => new BlockError('EPERM', message, context, { detail });
