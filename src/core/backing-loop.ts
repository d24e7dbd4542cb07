/**
 * Loops in backing chains (a backed by b backed by a). QEMU 7.2 has no check
 * at open time (qemu-img map / convert and qemu-io -r spin on such a chain;
 * only `qemu-img info --backing-chain` reports "Backing file 'x' creates an
 * infinite loop."). We detect the loop while opening and report it once,
 * instead of one "Could not open backing file" prefix per level.
 */
import { BlockError } from './errors.js';
import type { BlockNode } from './node.js';

/**
 * A loop (or a chain deeper than the policy allows) found while opening a
 * backing chain. `named` is set once the message names the backing file;
 * from then on the levels above pass it through unchanged.
 */
export class BackingLoopError extends BlockError {
  constructor(
    message: string,
    readonly named: boolean,
  ) {
    super('EINVAL', message);
  }
}

/** What identifies an image in a chain: its protocol driver and file name. */
export function chainKey(protocol: BlockNode): string {
  return `${protocol.driver.name}:${protocol.filename}`;
}

/**
 * The error the parent that opened `backingName` passes up for an error from
 * that open, or null when it is not a loop (the caller adds its own prefix).
 */
export function loopErrorFor(e: unknown, backingName: string | undefined, nodeName: string): BackingLoopError | null {
  if (!(e instanceof BackingLoopError)) return null;
  if (e.named) return e;
  // Backing options given as an object name no file: name the node instead.
  const message = backingName !== undefined
    ? `Backing file '${backingName}' creates an infinite loop`
    : `The backing file of node '${nodeName}' creates an infinite loop`;
  return new BackingLoopError(message, true);
}
