/**
 * Drain (QEMU's bdrv_drained_begin / end): wait until no request is in flight
 * on a node, its parents and its children, and keep external users (block
 * backends, jobs) from starting new ones until the drained section ends.
 *
 * Requests that drivers issue internally to children while finishing
 * in-flight work still run; only root users hold their new requests. Drained
 * sections nest.
 */
import type { BlockNode } from './node.js';
import type { RootParent } from './child.js';
import { topologicalOrder } from './perm-update.js';

/** What a drained section quiesced, to be released by {@link drainEnd}. */
export interface DrainToken {
  readonly nodes: BlockNode[];
  readonly roots: RootParent[];
  ended: boolean;
}

function ancestors(node: BlockNode, nodes: Set<BlockNode>, roots: Set<RootParent>): void {
  for (const link of node.parents) {
    const p = link.parent;
    if (p.kind === 'root') roots.add(p);
    else if (!nodes.has(p)) {
      nodes.add(p);
      ancestors(p, nodes, roots);
    }
  }
}

/** Quiesces `node` and waits for it (and every node around it) to be idle. */
export async function drainBegin(node: BlockNode): Promise<DrainToken> {
  const nodes = new Set<BlockNode>([node]);
  const roots = new Set<RootParent>();
  ancestors(node, nodes, roots);
  for (const n of nodes) {
    n.quiesceCounter++;
    n.instance?.drainBegin?.();
  }
  for (const r of roots) r.drainedBegin?.();
  const token: DrainToken = { nodes: [...nodes], roots: [...roots], ended: false };
  await waitIdle([...nodes, ...topologicalOrder([node])]);
  return token;
}

/** Ends a drained section. */
export function drainEnd(token: DrainToken): void {
  if (token.ended) return;
  token.ended = true;
  for (const n of token.nodes) {
    n.quiesceCounter--;
    n.instance?.drainEnd?.();
  }
  for (const r of token.roots) r.drainedEnd?.();
}

/** Runs `fn` inside a drained section of `node`. */
export async function drained<T>(node: BlockNode, fn: () => Promise<T>): Promise<T> {
  const token = await drainBegin(node);
  try {
    return await fn();
  } finally {
    drainEnd(token);
  }
}

/** Resolves when every node in the list has no request in flight. */
export async function waitIdle(nodes: BlockNode[]): Promise<void> {
  for (;;) {
    const busy = nodes.find((n) => n.inFlight > 0);
    if (!busy) return;
    await new Promise<void>((resolve) => busy.idleWaiters.push(resolve));
  }
}

/**
 * One drained section over `nodes` together, ended as soon as they are
 * idle (QEMU's bdrv_drain / bdrv_drain_all): users above them, jobs among
 * them, pause once and resume.
 */
export async function drainPulse(nodes: Iterable<BlockNode>): Promise<void> {
  const tokens: DrainToken[] = [];
  try {
    for (const n of nodes) if (n.isOpen) tokens.push(await drainBegin(n));
  } finally {
    for (const t of tokens) drainEnd(t);
  }
}
