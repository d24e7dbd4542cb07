/**
 * The quorum driver (QEMU 7.2's block/quorum.c): a node over N children that
 * hold copies of the same disk.
 *
 * - Reads in `read-pattern=quorum` read every child and vote on the bytes:
 *   the version most children returned wins if it has at least
 *   `vote-threshold` votes, else the read fails with EIO. With
 *   `rewrite-corrupted` the children that voted otherwise get the winning
 *   bytes written back. With `blkverify` (two children, threshold 2) any
 *   difference is reported with its offset and fails the read.
 * - Reads in `read-pattern=fifo` try the children in order until one succeeds.
 * - Writes and zero writes go to every child and succeed when at least
 *   `vote-threshold` children succeed; otherwise the most common error wins.
 *   Flush counts the same way. Discard does nothing (QEMU 7.2's quorum has
 *   no discard), resize is not supported, and there is no backing file.
 * - The length is the children's, which must all be equal.
 *
 *   quorum ─children.0→ A
 *          ─children.1→ B
 *          ─children.2→ C
 */
import type { BlockDriver, BlockStatusResult, DriverInstance, ReqFlags } from '../core/driver.js';
import { ReqFlag, Status } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { BlockError, toBlockError } from '../core/errors.js';
import { OptionReader } from '../core/options.js';
import { ChildRole, PERM_ALL, Perm } from '../core/permissions.js';
import { blockStatusAbove } from '../core/block-status.js';
import { readQuorumOptions, type QuorumChildRef, type QuorumSettings } from './quorum-options.js';
import { QuorumReporter, type QuorumEventHook, type QuorumOpType } from './quorum-events.js';
import { countVotes, firstDifference, sameBytes, winner } from './quorum-vote.js';
import { childOptions } from '../core/filename.js';

/** Permissions the parents' use passes down to every child (QEMU's DEFAULT_PERM_PASSTHROUGH). */
const PASSTHROUGH = Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE;
/** What other users of a child may do: never write or resize, which would make the copies differ. */
const CHILD_SHARED = Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED;
/** Permissions nobody above cares about (QEMU's DEFAULT_PERM_UNCHANGED). */
const UNCHANGED = PERM_ALL & ~PASSTHROUGH;
/** Zero-write flags quorum passes on when every child takes them. */
const ZERO_FLAGS = ReqFlag.FUA | ReqFlag.MAY_UNMAP | ReqFlag.NO_FALLBACK;

/** The instance of a quorum node: the driver methods plus its settings and event hook. */
export interface QuorumInstance extends DriverInstance {
  readonly settings: Readonly<QuorumSettings>;
  /** Set `events.listener` to hear QUORUM_FAILURE and QUORUM_REPORT_BAD (see quorum-events.ts). */
  readonly events: QuorumEventHook;
  /**
   * QEMU's bdrv_dirname for this node: there is none, the children may live
   * in different directories, so a relative backing file name above a quorum
   * cannot be resolved. Always throws.
   */
  dirname(): never;
}

/** The event hook of a quorum node, undefined for nodes of other drivers. */
export function quorumEvents(node: BlockNode): QuorumEventHook | undefined {
  return node.driver === quorumDriver && node.isOpen ? (node.instance as QuorumInstance).events : undefined;
}

/** What one child's request ended with: undefined for success, else its error. */
type Outcome = BlockError | undefined;

/** Runs `op` on every child at once and collects each outcome, in child order. */
async function onAll(children: readonly BdrvChild[], op: (c: BdrvChild, i: number) => unknown): Promise<Outcome[]> {
  const settled = await Promise.allSettled(children.map(async (c, i) => op(c, i)));
  return settled.map((r) => (r.status === 'rejected' ? toBlockError(r.reason) : undefined));
}

/** The error most failed children agree on (QEMU's quorum_vote_error); its first occurrence is thrown. */
function votedError(outcomes: readonly Outcome[]): BlockError {
  const versions = countVotes(
    outcomes.map((e) => e?.code),
    (a, b) => a === b,
  );
  const w = winner(versions)!;
  return outcomes[w.voters[0]!]!;
}

/**
 * The bytes a node takes in storage: its driver's answer, else the sum of its
 * children's but the backing file (the contract's default, which qcow2 does
 * not apply to its file).
 */
async function allocatedSize(node: BlockNode): Promise<number> {
  if (node.instance.getAllocatedFileSize) return node.instance.getAllocatedFileSize();
  let sum = 0;
  for (const c of node.children) if (!(c.role & ChildRole.COW)) sum += await allocatedSize(c.node);
  return sum;
}

/**
 * Whether a child will be read-only: an existing node as it is, a new one as
 * its options say, else like the quorum node (children inherit it).
 */
function childIsReadOnly(node: BlockNode, ref: QuorumChildRef | undefined): boolean {
  if (typeof ref === 'string') return node.graph.hasNode(ref) && node.graph.findNode(ref).readOnly;
  if (ref) {
    try {
      const own = new OptionReader(ref, '').bool('read-only');
      if (own !== undefined) return own;
    } catch {
      // A bad value: the child's own open reports it.
    }
  }
  return node.readOnly;
}

async function openQuorum(node: BlockNode, options: OptionReader): Promise<QuorumInstance> {
  const { children: refs, settings } = readQuorumOptions(options);
  const children: BdrvChild[] = [];
  for (let i = 0; i < refs.length; i++) {
    // QEMU names the links children.0, children.1, ...
    const key = `children.${i}`;
    if (settings.rewriteCorrupted && childIsReadOnly(node, refs[i])) {
      // Rewriting takes WRITE on every child (QEMU's wording of the refused permission).
      throw new BlockError('EPERM', 'Block node is read-only', { node: node.nodeName }, { detail: `${key} is read-only, rewrite-corrupted=on writes to it` });
    }
    const one = new OptionReader({ [key]: refs[i] ?? null }, options.owner, options.prefix);
    children.push((await node.openChild(one, key, ChildRole.DATA))!);
  }
  const events: QuorumEventHook = { listener: null };
  const report = new QuorumReporter(node, events);
  const { threshold } = settings;

  /** Fails the request unless enough children succeeded (QEMU's quorum_has_too_much_io_failed). */
  function checkSuccesses(outcomes: readonly Outcome[], offset: number, bytes: number): void {
    const ok = outcomes.filter((e) => !e).length;
    if (ok >= threshold) return;
    report.failure(offset, bytes);
    throw votedError(outcomes);
  }

  function reportFailures(type: QuorumOpType, outcomes: readonly Outcome[], offset: number, bytes: number): void {
    outcomes.forEach((e, i) => {
      if (e) report.bad(type, offset, bytes, children[i]!.node, e);
    });
  }

  /** blkverify: the two copies must be equal; QEMU prints the first difference and exits. */
  function verify(a: Uint8Array, b: Uint8Array, offset: number, bytes: number): void {
    const at = firstDifference(a, b);
    if (at < 0) return;
    throw node.graph.fatal(`quorum: offset=${offset} bytes=${bytes} contents mismatch at offset ${offset + at}`, { node: node.nodeName, offset: offset + at });
  }

  async function readVoting(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const copies = children.map(() => new Uint8Array(bytes));
    const outcomes = await onAll(children, (c, i) => c.preadv(offset, bytes, copies[i]!, 0));
    reportFailures('read', outcomes, offset, bytes);
    checkSuccesses(outcomes, offset, bytes);
    const good = copies.filter((_, i) => !outcomes[i]);
    // The common case: every successful read returned the same bytes.
    let agree = true;
    for (let j = 1; j < good.length && agree; j++) {
      if (settings.blkverify) verify(good[0]!, good[j]!, offset, bytes);
      else agree = sameBytes(good[0]!, good[j]!);
    }
    if (agree) {
      buf.set(good[0]!);
      return;
    }
    const versions = countVotes(
      copies.map((b, i) => (outcomes[i] ? undefined : b)),
      sameBytes,
    );
    const best = winner(versions)!;
    if (best.voters.length < threshold) {
      report.failure(offset, bytes);
      throw new BlockError('EIO', 'Quorum not reached', { node: node.nodeName, offset }, {
        detail: `the most common version of ${bytes} bytes at ${offset} has ${best.voters.length} of the ${threshold} votes needed`,
      });
    }
    buf.set(best.value);
    // QEMU reports the losers newest version first, newest voter first.
    const losers: number[] = [];
    for (const v of [...versions].reverse()) {
      if (v === best) continue;
      for (const i of [...v.voters].reverse()) {
        report.bad('read', offset, bytes, children[i]!.node);
        losers.push(i);
      }
    }
    if (settings.rewriteCorrupted) {
      // A repair attempt: its failures change nothing for the read.
      await onAll(
        losers.map((i) => children[i]!),
        (c) => c.pwritev(offset, bytes, best.value, 0),
      );
    }
  }

  async function readFifo(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    let last: BlockError | undefined;
    for (const c of children) {
      try {
        await c.preadv(offset, bytes, buf, 0);
        return;
      } catch (e) {
        last = toBlockError(e);
        report.bad('read', offset, bytes, c.node, last);
      }
    }
    throw last!;
  }

  async function writeAll(offset: number, bytes: number, op: (c: BdrvChild) => Promise<void>): Promise<void> {
    const outcomes = await onAll(children, op);
    reportFailures('write', outcomes, offset, bytes);
    checkSuccesses(outcomes, offset, bytes);
  }

  return {
    settings,
    events,
    dirname(): never {
      throw new BlockError('ENOTSUP', 'Cannot generate a base directory for quorum nodes', { node: node.nodeName });
    },
    getLength() {
      const len = children[0]!.length;
      for (const c of children.slice(1)) {
        if (c.length !== len) {
          throw new BlockError('EIO', 'Could not refresh total sector count: Input/output error', { node: node.nodeName }, {
            detail: `child '${c.node.nodeName}' is ${c.length} bytes, child '${children[0]!.node.nodeName}' ${len} bytes`,
          });
        }
      }
      return len;
    },
    async getAllocatedFileSize() {
      // Every copy counts, as QEMU's bdrv_sum_allocated_file_size counts them.
      let sum = 0;
      for (const c of children) sum += await allocatedSize(c.node);
      return sum;
    },
    supportedWriteFlags: ReqFlag.WRITE_UNCHANGED,
    get supportedZeroFlags(): ReqFlags {
      let flags: ReqFlags = ZERO_FLAGS;
      for (const c of children) flags &= c.node.instance.supportedZeroFlags ?? 0;
      return flags | ReqFlag.WRITE_UNCHANGED;
    },
    preadv: (offset, bytes, buf) => (settings.readPattern === 'fifo' ? readFifo(offset, bytes, buf) : readVoting(offset, bytes, buf)),
    pwritev: (offset, bytes, buf, flags) => writeAll(offset, bytes, (c) => c.pwritev(offset, bytes, buf, flags)),
    pwriteZeroes: (offset, bytes, flags) => writeAll(offset, bytes, (c) => c.pwriteZeroes(offset, bytes, flags)),
    async flush() {
      // One child after the other, as QEMU; enough successes make the flush succeed.
      const outcomes: Outcome[] = [];
      for (const c of children) {
        try {
          await c.flush();
          outcomes.push(undefined);
        } catch (e) {
          const err = toBlockError(e);
          report.bad('flush', 0, 0, c.node, err);
          outcomes.push(err);
        }
      }
      if (outcomes.filter((e) => !e).length < threshold) throw votedError(outcomes);
    },
    async blockStatus(wantZero, offset, bytes): Promise<BlockStatusResult> {
      // Zeros only where every child says zeros (the shortest such run); data otherwise (the longest run).
      let zeroRun = bytes;
      let dataRun = 0;
      for (const c of children) {
        try {
          const st = await blockStatusAbove(c.node, undefined, wantZero, offset, bytes);
          if (st.status & Status.ZERO) zeroRun = Math.min(zeroRun, st.pnum);
          else dataRun = Math.max(dataRun, st.pnum);
        } catch (e) {
          report.bad('read', offset, bytes, c.node, toBlockError(e));
          dataRun = bytes;
          break;
        }
      }
      return dataRun > 0 ? { status: Status.DATA, pnum: dataRun } : { status: Status.ZERO, pnum: zeroRun };
    },
    getInfo(): never {
      // QEMU's quorum has no bdrv_get_info: qemu-io's info stops after the format name.
      throw new BlockError('ENOTSUP', 'Driver \'quorum\' has no image information', { node: node.nodeName });
    },
    async reopenPrepare(): Promise<never> {
      // QEMU's quorum has no bdrv_reopen_prepare.
      throw new BlockError('ENOTSUP', `Block format 'quorum' used by node '${node.nodeName}' does not support reopening files`, { node: node.nodeName });
    },
    childPerm: (_child, _role, perm, shared) => ({
      perm: (perm & PASSTHROUGH) | (settings.rewriteCorrupted ? Perm.WRITE : 0),
      shared: (shared & CHILD_SHARED) | UNCHANGED,
    }),
  };
}

/** The quorum driver. */
export const quorumDriver: BlockDriver = {
  name: 'quorum',
  kind: 'format',
  strongOptions: ['vote-threshold', 'blkverify', 'rewrite-corrupted', 'read-pattern'],
  // The children as a list without gaps, whatever indexes their links carry (QEMU's quorum).
  gatherChildOptions(node, target) {
    const index = (name: string) => Number(name.slice('children.'.length));
    const links = node.children.filter((c) => c.name.startsWith('children.')).sort((a, b) => index(a.name) - index(b.name));
    target.push(['children', links.map((c) => childOptions(c.node))]);
  },
  open: openQuorum,
};
