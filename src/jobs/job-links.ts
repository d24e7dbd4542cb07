/**
 * The links a block job holds on the nodes it uses (QEMU's BlockJob.nodes,
 * made by block_job_add_bdrv): each is a graph link from the job, named for
 * what the node is to the job ("main node", "source", "target", "active
 * node", "intermediate node", "base"), with the permissions the job takes
 * and shares there. They show as the job's edges in
 * x-debug-query-block-graph, name the job in permission conflicts ("mirror
 * job 'j0'"), stay on their node when a filter goes above it, and pause the
 * job while one of their nodes is drained.
 */
import type { BdrvChild, RootParent } from '../core/child.js';
import type { DrainListener } from '../core/backend.js';
import type { BlockGraph } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import type { PermMask } from '../core/permissions.js';
import type { JobType } from './job-types.js';

/** The job as the parent of its links. */
export class JobLinks implements RootParent {
  readonly kind = 'root' as const;
  readonly stayAtNode = true;
  readonly name: string;
  readonly description: string;
  private readonly held: BdrvChild[] = [];
  private listener: DrainListener | undefined;
  /** The listener told of the current drain's begin, so the same one hears its end. */
  private told: DrainListener | undefined;
  private quiesced = 0;

  constructor(
    private readonly graph: BlockGraph,
    type: JobType,
    id: string | undefined,
  ) {
    this.name = id ?? type;
    this.description = `${type} job '${id ?? ''}'`;
  }

  /**
   * Adds a link to `node` (QEMU's block_job_add_bdrv); takes a reference on
   * the node. A permission conflict throws and adds nothing.
   */
  add(name: string, node: BlockNode, perm: PermMask, shared: PermMask, opts: { first?: boolean } = {}): BdrvChild {
    const link = this.graph.attachRootNow(this, node, perm, shared, name);
    // `first`: a link QEMU's job would have made before those the job already holds.
    if (opts.first) this.held.unshift(link);
    else this.held.push(link);
    return link;
  }

  /** The links in QEMU's order: the newest first (it prepends them). */
  get links(): readonly BdrvChild[] {
    return [...this.held].reverse();
  }

  /** Drops every link, newest first (QEMU's block_job_remove_all_bdrv). */
  async removeAll(): Promise<void> {
    for (const link of this.held.splice(0).reverse()) await this.graph.detachRoot(link);
  }

  /** Who is told when a node of the job is drained (the job: it pauses meanwhile). */
  setDrainListener(listener: DrainListener): void {
    this.listener = listener;
  }

  drainedBegin(): void {
    if (this.quiesced++ === 0) {
      this.told = this.listener;
      this.told?.begin();
    }
  }

  drainedEnd(): void {
    if (--this.quiesced === 0) {
      const told = this.told;
      this.told = undefined;
      told?.end();
    }
  }
}
