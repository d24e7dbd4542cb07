/**
 * Debug events (QEMU's BLKDBG_EVENT / bdrv_debug_*): named points in a
 * format driver's work (an L2 table loaded, a refcount block allocated,
 * guest data written) announced on one of its children. A node whose driver
 * has a {@link BlockDebugger} (blkdebug) acts on them: it injects errors into
 * the requests that follow, changes its state, or suspends the request at a
 * breakpoint. Like QEMU, an event reaches only the child it is announced on;
 * on any other driver it costs one property test and nothing else.
 */
import type { BdrvChild } from './child.js';
import type { BlockNode } from './node.js';
import { BlockError } from './errors.js';
import { ChildRole } from './permissions.js';

/** QEMU 7.2's BlkdebugEvent names, in its order. */
export const DEBUG_EVENTS = [
  'l1_update', 'l1_grow_alloc_table', 'l1_grow_write_table', 'l1_grow_activate_table',
  'l2_load', 'l2_update', 'l2_update_compressed', 'l2_alloc_cow_read', 'l2_alloc_write',
  'read_aio', 'read_backing_aio', 'read_compressed', 'write_aio', 'write_compressed',
  'vmstate_load', 'vmstate_save', 'cow_read', 'cow_write',
  'reftable_load', 'reftable_grow', 'reftable_update',
  'refblock_load', 'refblock_update', 'refblock_update_part', 'refblock_alloc',
  'refblock_alloc_hookup', 'refblock_alloc_write', 'refblock_alloc_write_blocks',
  'refblock_alloc_write_table', 'refblock_alloc_switch_table',
  'cluster_alloc', 'cluster_alloc_bytes', 'cluster_free', 'flush_to_os', 'flush_to_disk',
  'pwritev_rmw_head', 'pwritev_rmw_after_head', 'pwritev_rmw_tail', 'pwritev_rmw_after_tail',
  'pwritev', 'pwritev_zero', 'pwritev_done', 'empty_image_prepare',
  'l1_shrink_write_table', 'l1_shrink_free_l2_clusters', 'cor_write', 'cluster_alloc_space', 'none',
] as const;
export type DebugEvent = (typeof DEBUG_EVENTS)[number];

/** Whether `name` is one of {@link DEBUG_EVENTS}. */
export function isDebugEvent(name: string): name is DebugEvent {
  return (DEBUG_EVENTS as readonly string[]).includes(name);
}

/**
 * What a debugging driver (blkdebug) offers: event handling and the
 * breakpoints qemu-io's break / remove_break / resume / wait_break use.
 * Errors are BlockErrors with the errno QEMU returns (ENOENT for an unknown
 * event or tag).
 */
export interface BlockDebugger {
  /**
   * Acts on an event announced to this node. Returns a promise only when the
   * announcing request must wait (it was suspended at a breakpoint).
   */
  event(event: DebugEvent): Promise<void> | void;
  /** Suspends the next request that reaches `event`, tagging it `tag`. */
  breakpoint(event: string, tag: string): void;
  /**
   * Removes the breakpoints tagged `tag` and resumes the requests suspended
   * as `tag`; ENOENT unless a breakpoint was removed (a breakpoint that
   * suspended a request is gone already, as in QEMU).
   */
  removeBreakpoint(tag: string): void;
  /** Resumes one request suspended as `tag`. */
  resume(tag: string): void;
  /** Whether a request is suspended as `tag`. */
  isSuspended(tag: string): boolean;
  /** Resolves once some request is suspended as `tag` (now, if one is). */
  whenSuspended(tag: string): Promise<void>;
  /** Resolves when the next request is suspended, whatever its tag. */
  nextSuspension(): Promise<void>;
  /** How many requests are suspended now. */
  suspendedCount(): number;
  /**
   * Lets every suspended request go on, silently (a tool closing the disk:
   * QEMU's qemu-io would wait for ever instead).
   */
  resumeAll(): void;
  /** Where the lines QEMU prints on suspending and resuming go (qemu-io's stdout); null: nowhere. */
  output: ((line: string) => void) | null;
}

/**
 * Announces `event` on `child` (a format's file child). A no-op unless the
 * child node's driver debugs; the result needs awaiting only when it is a
 * promise (a breakpoint suspended the request).
 */
export function debugEvent(child: BdrvChild | undefined, event: DebugEvent): Promise<void> | void {
  const dbg = child?.node.instance.debug;
  return dbg ? dbg.event(event) : undefined;
}

/**
 * The debugging node at or below `node`, following primary children
 * (QEMU's bdrv_find_debug_node); ENOTSUP when there is none, as qemu-io's
 * breakpoint commands report it.
 */
export function findDebugger(node: BlockNode): BlockDebugger {
  for (let n: BlockNode | undefined = node; n; n = primaryChild(n)?.node) {
    if (n.instance.debug) return n.instance.debug;
  }
  throw new BlockError('ENOTSUP', 'Operation not supported');
}

function primaryChild(node: BlockNode): BdrvChild | undefined {
  return node.children.find((c) => (c.role & ChildRole.PRIMARY) !== 0);
}
