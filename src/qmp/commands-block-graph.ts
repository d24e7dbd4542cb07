/**
 * x-debug-query-block-graph (QEMU 7.2's bdrv_get_xdbg_block_graph): the
 * BlockBackends, the block jobs, then the nodes, each with an id numbered
 * from 1 in the order first met, and an edge per link with its permissions and the permissions
 * it shares, named as QEMU's BlockPermission values. Lists are built by
 * prepending, as QEMU's, so the last met comes first.
 */
import { BlockBackend } from '../core/backend.js';
import type { BdrvChild } from '../core/child.js';
import { Perm, type PermMask } from '../core/permissions.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpDevice } from './commands-blockstats.js';
import type { QmpCommand } from './dispatcher.js';

/** QEMU's BlockPermission enum, in its order. */
const PERMISSIONS: ReadonlyArray<readonly [string, PermMask]> = [
  ['consistent-read', Perm.CONSISTENT_READ],
  ['write', Perm.WRITE],
  ['write-unchanged', Perm.WRITE_UNCHANGED],
  ['resize', Perm.RESIZE],
];

/** The names of the permissions in `mask`, last enum value first (QEMU prepends them). */
function permNames(mask: PermMask): string[] {
  return PERMISSIONS.filter(([, bit]) => mask & bit).map(([name]) => name).reverse();
}

/** x-debug-query-block-graph of `q`; `devices` names the host's BlockBackends. */
export function blockGraphCommands(q: BlockQmp, devices: () => QmpDevice[]): QmpCommand[] {
  return [
    {
      name: 'x-debug-query-block-graph',
      args: null,
      run: () => {
        const ids = new Map<object, number>();
        const id = (o: object) => {
          let n = ids.get(o);
          if (n === undefined) ids.set(o, (n = ids.size + 1));
          return n;
        };
        const nodes: Array<{ id: number; type: string; name: string }> = [];
        const edges: Array<{ parent: number; child: number; name: string; perm: string[]; 'shared-perm': string[] }> = [];
        const addEdge = (parent: object, link: BdrvChild) => {
          edges.unshift({ parent: id(parent), child: id(link.node), name: link.name, perm: permNames(link.perm), 'shared-perm': permNames(link.shared) });
        };
        const open = q.graph.listNodes().filter((n) => n.isOpen);
        // Every BlockBackend on the graph in the order they were made (QEMU's blk_all_next):
        // the host's named ones by name, the others (exports, jobs' own) unnamed.
        const names = new Map(devices().map((d) => [d.backend as object, d.name]));
        const backends = new Set<BlockBackend>();
        for (const n of open) for (const link of n.parents) if (link.parent instanceof BlockBackend) backends.add(link.parent);
        for (const b of [...backends].sort((x, y) => x.seq - y.seq)) {
          nodes.unshift({ id: id(b), type: 'block-backend', name: names.get(b) ?? '' });
          addEdge(b, b.root);
        }
        // The block jobs, newest first (QEMU keeps its job list so), each with its links to its nodes.
        for (const job of [...q.jobs.list()].reverse()) {
          if (!job.isBlockJob) continue;
          nodes.unshift({ id: id(job), type: 'block-job', name: job.id ?? '' });
          for (const link of job.links) addEdge(job, link);
        }
        // A node's children newest first, as QEMU's list of them (it inserts at the head).
        for (const n of open) {
          nodes.unshift({ id: id(n), type: 'block-driver', name: n.nodeName });
          for (const link of [...n.children].reverse()) addEdge(n, link);
        }
        return { nodes, edges };
      },
    },
  ];
}
