/**
 * block-set-write-threshold (QEMU 7.2's block/write-threshold.c) and its
 * BLOCK_WRITE_THRESHOLD event, on the node's threshold of the request path
 * (core/request-write-hooks.ts), and query-block: the named BlockBackends,
 * of which the daemon has none (its exports' are anonymous).
 */
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { m, struct } from './schema.js';

/** The threshold and query-block commands of `q`. */
export function writeThresholdCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'block-set-write-threshold',
      args: struct('block-set-write-threshold', [m('node-name', 'str'), m('write-threshold', 'uint64')]),
      run: (args) => {
        const name = args['node-name'] as string;
        if (!q.graph.hasNode(name)) throw genericError(`Device '${name}' not found`);
        const node = q.graph.findNode(name);
        const threshold = args['write-threshold'] as number;
        // 0 turns the threshold off; the event fires once, for the first write that ends above it.
        node.writeThreshold = threshold;
        node.onWriteThreshold =
          threshold > 0
            ? (n, t, offset, bytes) => q.events.emit('BLOCK_WRITE_THRESHOLD', { 'node-name': n.nodeName, 'amount-exceeded': offset + bytes - t, 'write-threshold': t })
            : null;
      },
    },
    { name: 'query-block', args: null, run: () => [] },
  ];
}
