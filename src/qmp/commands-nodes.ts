/**
 * The node commands: blockdev-add, blockdev-del, query-named-block-nodes and
 * block_resize (QEMU 7.2's blockdev.c and block/qapi.c), on the graph.
 */
import { drainPulse } from '../core/drain.js';
import type { BlockNode } from '../core/node.js';
import { BlockBackend } from '../core/backend.js';
import { checkOp } from '../core/op-blockers.js';
import { Perm, PERM_ALL } from '../core/permissions.js';
import type { BlockQmp } from './block-qmp.js';
import { blockdevAddSchema, checkBlockdevOptions } from './blockdev-schema.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { blockDeviceInfo } from './node-info.js';
import { m, struct } from './schema.js';

/** The node commands of `q`. */
export function nodeCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'blockdev-add',
      args: blockdevAddSchema((driver) => q.graph.lookupDriver(driver) !== undefined),
      run: async (args) => {
        await addBlockdev(q, args);
      },
    },
    {
      name: 'blockdev-del',
      args: struct('blockdev-del', [m('node-name', 'str')]),
      run: async (args) => {
        const name = args['node-name'] as string;
        if (!q.graph.hasNode(name)) throw genericError(`Failed to find node with node-name='${name}'`);
        const node = q.graph.findNode(name);
        // A job's blocker first: our jobs attach their backends to the nodes they work on,
        // where QEMU's attach above them (to the job's filter), so QEMU meets the blocker first.
        checkOp(node, 'drive-del');
        if (node.parents.some((p) => p.parent.kind === 'root')) throw genericError(`Node ${name} is in use`);
        if (!q.monitorOwned.has(node)) throw genericError(`Node ${name} is not owned by the monitor`);
        if (node.refcnt > 1) throw genericError(`Block device ${name} is in use`);
        await q.releaseNode(node);
      },
    },
    {
      name: 'query-named-block-nodes',
      args: struct('query-named-block-nodes', [m('*flat', 'bool')]),
      run: async (args) => {
        const flat = args.flat === true;
        const out = [];
        for (const node of q.graph.listNodes()) if (node.isOpen) out.push(await blockDeviceInfo(node, flat));
        return out;
      },
    },
    {
      name: 'block_resize',
      args: struct('block_resize', [m('*device', 'str'), m('*node-name', 'str'), m('size', 'int')]),
      run: async (args) => {
        const node = q.lookupNode(args.device as string | undefined, args['node-name'] as string | undefined);
        const size = args.size as number;
        if (size < 0) throw genericError("Parameter 'size' expects a >0 size");
        try {
          checkOp(node, 'resize');
        } catch {
          // QEMU's QERR_DEVICE_IN_USE with the device argument (printed "(null)" when absent).
          throw genericError(`Device '${(args.device as string | undefined) ?? '(null)'}' is in use`);
        }
        const bb = await BlockBackend.attach(q.graph, node, { name: 'block_resize', perm: Perm.RESIZE, shared: PERM_ALL });
        try {
          await bb.truncate(size, { exact: false });
        } finally {
          await bb.close();
        }
      },
    },
  ];
}

/**
 * blockdev-add / --blockdev: opens the node and gives the monitor its
 * reference. `keyval`: options from key=value text (--blockdev a=b,...),
 * checked against the schema here (blockdev-add's are checked by the
 * dispatcher).
 */
export async function addBlockdev(q: BlockQmp, options: Record<string, unknown>, keyval?: 'keyval' | 'json'): Promise<void> {
  if (keyval !== undefined) checkBlockdevOptions(options, '', (driver) => q.graph.lookupDriver(driver) !== undefined, keyval === 'keyval');
  if (typeof options['node-name'] !== 'string') throw genericError("'node-name' must be specified for the root node");
  const existing = referencedNodes(q, options);
  let node;
  try {
    node = await q.graph.open(options);
  } finally {
    // qemu-storage-daemon drains an existing node twice as it attaches it to a new parent
    // (even when the attach is refused): jobs on it pause and resume each time.
    for (const n of existing) for (let k = 0; k < 2; k++) await drainPulse([n]);
  }
  q.monitorOwned.add(node);
}

/** The existing nodes `options` names as children (a string where a child's options go). */
function referencedNodes(q: BlockQmp, options: Record<string, unknown>): BlockNode[] {
  const out: BlockNode[] = [];
  const walk = (o: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(o)) {
      if (k === 'node-name' || k === 'driver' || k === 'filename') continue;
      if (typeof v === 'string' && q.graph.hasNode(v)) {
        const n = q.graph.findNode(v);
        if (!out.includes(n)) out.push(n);
      } else if (v && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>);
    }
  };
  walk(options);
  return out;
}
