/**
 * Shared plumbing of the command-line tools: output streams, the error that
 * ends a command with an exit code, and turning block-layer errors into the
 * one-line messages qemu-img / qemu-io print.
 */
import { STRERROR, toBlockError } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import { refreshedFilename } from '../core/filename.js';
import { ReqFlag, type DriverInstance } from '../core/driver.js';
import type { BlockBackend } from '../core/backend.js';

/** Where a tool writes, and where the interactive prompt reads. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Lines typed at the interactive prompt (qemu-io without -c). */
  stdin?: () => AsyncIterable<string>;
  /** Whether stdout is a terminal (progress bars, prompt). */
  isTTY?: boolean;
  /**
   * Writes out what stdout holds back. A C program's stdout to a pipe or file
   * is block-buffered while stderr is not, so QEMU's tools show an error line
   * before the output that preceded it; the process streams copy that (see
   * {@link BlockBufferedOutput}) and the tools flush where QEMU's do.
   */
  flush?: () => void;
  /**
   * Ends the whole process with `code` at once, stdout flushed (C's exit()),
   * for the findings after which QEMU's tools exit in the middle of a command
   * (blkverify's mismatch). Absent (the tools run inside a test or a page),
   * the command goes on with the request failed.
   */
  exit?: (code: number) => void;
}

/**
 * The graph's fatal hook for a tool (see BlockGraph.onFatal): the line on
 * stderr as QEMU's fprintf prints it, then exit status 1 where the process
 * may end.
 */
export function fatalExit(io: CliIo): (text: string) => void {
  return (text) => {
    io.stderr(`${text}\n`);
    io.exit?.(1);
  };
}

/**
 * stdout as C's stdio keeps it when it is not a terminal: text is written in
 * whole blocks of `blockSize` bytes (glibc takes the pipe's or file's block
 * size, 4096), the rest when flushed. Writing the same blocks at the same
 * moments keeps the order of stdout and stderr lines QEMU's tools show.
 */
export class BlockBufferedOutput {
  private pending: Buffer[] = [];
  private length = 0;

  constructor(
    private readonly write: (chunk: Buffer) => void,
    private readonly blockSize = 4096,
  ) {}

  /** Adds `text`; writes every whole block held. */
  add(text: string): void {
    const b = Buffer.from(text);
    this.pending.push(b);
    this.length += b.length;
    if (this.length < this.blockSize) return;
    const all = Buffer.concat(this.pending, this.length);
    const cut = this.length - (this.length % this.blockSize);
    this.write(all.subarray(0, cut));
    this.pending = cut < all.length ? [all.subarray(cut)] : [];
    this.length -= cut;
  }

  /** Writes everything held. */
  flush(): void {
    if (this.length === 0) return;
    const all = Buffer.concat(this.pending, this.length);
    this.pending = [];
    this.length = 0;
    this.write(all);
  }
}

/** Ends the running command: `message` (if any) goes to stderr with the tool prefix. */
export class CliExit extends Error {
  constructor(
    readonly exitCode: number,
    message = '',
    /** Extra text after the message, printed as is (QEMU's error hints). */
    readonly hint = '',
  ) {
    super(message);
  }
}

/** The text of an error as QEMU words it: without the detail (see BlockError.text). */
export function errText(e: unknown): string {
  return toBlockError(e).text;
}

/** The hint lines QEMU prints after an error's message ('' when none). */
export function errHint(e: unknown): string {
  return toBlockError(e).hint;
}

/** strerror() of an error's code. */
export function strerror(e: unknown): string {
  const err = toBlockError(e);
  return STRERROR[err.code] ?? err.message;
}

/** The format node at the top of a node (skipping filters). */
export function formatNode(node: BlockNode): BlockNode {
  let n = node;
  while (n.driver.kind === 'filter' && n.filtered) n = n.filtered.node;
  return n;
}

/** The warning QEMU prints when a writable image was probed as raw. */
export function probedRawWarning(filename: string): string {
  return (
    `WARNING: Image format was not specified for '${filename}' and probing guessed raw.\n` +
    '         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n' +
    "         Specify the 'raw' format explicitly to remove the restrictions.\n"
  );
}

export function needsProbeWarning(node: BlockNode): boolean {
  const n = formatNode(node);
  return n.probed && n.driver.name === 'raw' && !n.readOnly;
}

/**
 * The warnings QEMU's raw driver prints while `top` opens: one for each
 * writable node probed as raw, the nodes below first (a blkverify or quorum
 * child opens before its parent). Each names its file as that node names
 * itself (QEMU's bs->file->bs->filename: `x.raw` for `file:x.raw`, the
 * server's URL for an NBD export); `name` when there is no file child.
 */
export function probeWarnings(top: BlockNode, name: string): string {
  const shownTop = formatNode(top);
  const seen = new Set<BlockNode>();
  let text = '';
  const visit = (n: BlockNode): void => {
    if (seen.has(n)) return;
    seen.add(n);
    for (const c of n.children) visit(c.node);
    if (n.probed && n.driver.name === 'raw' && !n.readOnly) text += probedRawWarning(n.file ? refreshedFilename(n.file.node) : n === shownTop ? name : n.filename);
  };
  visit(top);
  return text;
}

/** Parses a cache mode as bdrv_parse_cache_mode does; null when unknown. */
export function parseCacheMode(mode: string): { direct: boolean; noFlush: boolean; writeback: boolean } | null {
  switch (mode) {
    case 'off':
    case 'none':
      return { direct: true, noFlush: false, writeback: true };
    case 'directsync':
      return { direct: true, noFlush: false, writeback: false };
    case 'writeback':
      return { direct: false, noFlush: false, writeback: true };
    case 'unsafe':
      return { direct: false, noFlush: true, writeback: true };
    case 'writethrough':
      return { direct: false, noFlush: false, writeback: false };
    default:
      return null;
  }
}

/** Reads the contents of a text/binary file in Node (for write -s and similar). */
export async function readHostFile(path: string): Promise<Uint8Array> {
  const fs = await import('node:fs/promises');
  return new Uint8Array(await fs.readFile(path));
}

/**
 * Whether a format node takes compressed writes: its driver lists COMPRESSED
 * in supportedWriteFlags.
 */
export function supportsCompressed(node: BlockNode): boolean {
  return ((node.instance.supportedWriteFlags ?? 0) & ReqFlag.COMPRESSED) !== 0;
}

/**
 * A node's generic info, or null when its driver has none (getInfo throws
 * ENOTSUP, as QEMU's bdrv_get_info fails for the null and host_cdrom drivers).
 */
export function driverInfo(node: BlockNode): ReturnType<NonNullable<BlockNode['instance']['getInfo']>> | null {
  try {
    return node.instance.getInfo?.();
  } catch (e) {
    if (toBlockError(e).code === 'ENOTSUP') return null;
    throw e;
  }
}

/**
 * Closes a backend as qemu-img / qemu-io do: a failed close says nothing of
 * its own; the lines returned are what the driver could not do (a cache it
 * could not write, lost persistent bitmaps), to print after the tool's name.
 * A backend already closed gives none.
 */
export async function closeWithMessages(bb: BlockBackend): Promise<readonly string[]> {
  let inst: DriverInstance | undefined;
  try {
    inst = bb.node.instance;
  } catch {
    inst = undefined;
  }
  await bb.close().catch(() => undefined);
  return inst?.closeMessages?.() ?? [];
}
