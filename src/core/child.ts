/**
 * A link in the block graph (QEMU's `BdrvChild`): a parent uses a child node in
 * a role, holding some permissions on it and sharing others.
 *
 * Drivers do all I/O on their children through these links, so the generic
 * request path sees (and checks) every request.
 */
import type { BlockNode } from './node.js';
import type { BlockStatusResult, IoResult, ReqFlags, PreallocMode } from './driver.js';
import type { ChildRoleMask, PermMask } from './permissions.js';
import { BlockError } from './errors.js';
import * as io from './request-path.js';
import { debugEvent, type DebugEvent } from './debug-event.js';

/**
 * A parent that is not a node: a BlockBackend or a job. It is told when its
 * node is drained so it can hold new requests.
 */
export interface RootParent {
  readonly kind: 'root';
  /** Name used in messages ("disk0", "job 'stream0'"). */
  readonly name: string;
  /**
   * How a permission conflict names this user (QEMU's get_parent_desc):
   * "block device 'disk0'"; default "an unnamed block device".
   */
  readonly description?: string;
  /**
   * The link stays on its node when the node is replaced in the graph
   * (QEMU's stay_at_node, which a job's links have): a job keeps holding
   * the very node it named, whatever goes above or in place of it.
   */
  readonly stayAtNode?: boolean;
  /** The node below is drained: stop sending requests until drainedEnd. */
  drainedBegin?(): void;
  /** The drain is over. */
  drainedEnd?(): void;
}

/** Either side of a link that can be a parent. */
export type ChildParent = BlockNode | RootParent;

/** Display name of a parent for messages. */
export function parentName(p: ChildParent): string {
  return p.kind === 'root' ? p.name : `node '${p.nodeName}'`;
}

/** A parent as a permission conflict names it (QEMU's get_parent_desc). */
export function parentDescription(p: ChildParent): string {
  return p.kind === 'root' ? (p.description ?? 'an unnamed block device') : `node '${p.nodeName}'`;
}

/** One parent → child link. */
export class BdrvChild {
  /** Permissions the parent holds on the child node. */
  perm: PermMask = 0;
  /** Permissions the parent lets other users hold. */
  shared: PermMask = 0;
  /** A frozen link refuses to be replaced or detached (jobs freeze their chains). */
  frozen = false;

  constructor(
    /** The child's name under its parent ("file", "backing", "data-file", "root"). */
    readonly name: string,
    /** Bit mask of ChildRole. */
    readonly role: ChildRoleMask,
    /** Who uses the node. */
    readonly parent: ChildParent,
    /** The node used; replaced by graph operations. */
    public node: BlockNode,
  ) {}

  /** Reads into `buf` (its length is the request size). May complete synchronously. */
  read(offset: number, buf: Uint8Array, flags: ReqFlags = 0): IoResult {
    return io.preadv(this, offset, buf.length, buf, flags);
  }

  /** Reads `bytes` at `offset` into `buf[0..bytes)`. May complete synchronously (returns undefined). */
  preadv(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags = 0): IoResult {
    return io.preadv(this, offset, bytes, buf, flags);
  }

  /** Writes `buf` (its whole length) at `offset`. */
  write(offset: number, buf: Uint8Array, flags: ReqFlags = 0): Promise<void> {
    return io.pwritev(this, offset, buf.length, buf, flags);
  }

  /** Writes `buf[0..bytes)` at `offset`. */
  pwritev(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags = 0): Promise<void> {
    return io.pwritev(this, offset, bytes, buf, flags);
  }

  /** Makes the range read as zeros. */
  pwriteZeroes(offset: number, bytes: number, flags: ReqFlags = 0): Promise<void> {
    return io.pwriteZeroes(this, offset, bytes, flags);
  }

  /** Discards the range. */
  pdiscard(offset: number, bytes: number): Promise<void> {
    return io.pdiscard(this, offset, bytes);
  }

  /** Flushes the child node and everything below it. */
  flush(): Promise<void> {
    return io.flush(this.node);
  }

  /** Resizes the child node. */
  truncate(offset: number, exact: boolean, prealloc: PreallocMode = 'off', flags: ReqFlags = 0): Promise<void> {
    return io.truncate(this, offset, exact, prealloc, flags);
  }

  /** Block status of the child node. */
  blockStatus(wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    return io.blockStatus(this.node, wantZero, offset, bytes);
  }

  /**
   * Announces a debug event on this link (QEMU's BLKDBG_EVENT): a no-op
   * unless the child debugs (blkdebug). Await the result only if it is a
   * promise: a breakpoint suspended the caller.
   */
  debugEvent(event: DebugEvent): Promise<void> | void {
    return debugEvent(this, event);
  }

  /** Current length of the child node in bytes. */
  get length(): number {
    return this.node.length;
  }

  /** Throws if the link is frozen (used before replace / detach). */
  assertNotFrozen(what: string): void {
    if (this.frozen) {
      throw new BlockError(
        'EPERM',
        `Cannot ${what} the '${this.name}' link from ${parentName(this.parent)} to node '${this.node.nodeName}': the link is frozen`,
      );
    }
  }
}
