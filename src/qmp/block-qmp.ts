/**
 * One QMP instance over one block layer: the graph, its jobs, the nodes the
 * monitor owns (blockdev-add), the events, and the command table filled with
 * the block commands (commands-*.ts). The daemon makes one; the worker can
 * make one over its own graph.
 */
import type { BlockGraph } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import { JobRegistry } from '../jobs/job-registry.js';
import type { Job } from '../jobs/job.js';
import { QmpDispatcher } from './dispatcher.js';
import { QmpError, genericError } from './errors.js';
import { QmpEvents } from './events.js';
import { nodeCommands } from './commands-nodes.js';
import { bitmapCommands } from './commands-bitmaps.js';
import { snapshotCommands } from './commands-snapshots.js';
import { jobStartCommands } from './commands-job-start.js';
import { jobVerbCommands } from './commands-job-verbs.js';
import { ExportState, exportCommands } from './commands-exports.js';
import { externalSnapshotCommands } from './commands-external-snapshot.js';
import { transactionCommands } from './commands-transaction.js';
import { createCommands } from './commands-create.js';
import { writeThresholdCommands } from './commands-write-threshold.js';
import { reopenCommands } from './commands-reopen.js';
import { blockstatsCommands, type QmpDevice } from './commands-blockstats.js';
import { blockGraphCommands } from './commands-block-graph.js';
import { driveCommands } from './commands-drive.js';
import { ioThrottleCommands } from './commands-io-throttle.js';
import { objectCommands } from './commands-objects.js';

/** The version query-version reports: DiskWorker's own, in QEMU's VersionInfo shape. */
export interface QmpVersion {
  major: number;
  minor: number;
  micro: number;
  package: string;
}

/** The node-name of a device's root node, or undefined once its backend is closed. */
function nodeNameOf(d: QmpDevice): string | undefined {
  try {
    return d.backend.node.nodeName;
  } catch {
    return undefined;
  }
}

/** The block layer state the commands work on. */
export class BlockQmp {
  readonly dispatcher = new QmpDispatcher();
  readonly events = new QmpEvents();
  readonly jobs: JobRegistry;
  /** Nodes added with blockdev-add (or --blockdev): the monitor holds one reference on each. */
  readonly monitorOwned = new Set<BlockNode>();
  /** The NBD server and the block exports (commands-exports.ts); its host gives the sockets. */
  readonly exportState = new ExportState();
  private readonly stopListening: () => void;

  constructor(
    readonly graph: BlockGraph,
    readonly version: QmpVersion,
    jobs?: JobRegistry,
    /**
     * The host's named BlockBackends (QEMU's devices): the worker's open
     * disks. The daemon has none, as qemu-storage-daemon.
     */
    devices?: () => QmpDevice[],
  ) {
    const deviceList = devices ?? (() => []);
    this.jobs = jobs ?? new JobRegistry();
    const stopJobs = this.jobs.on((e) => this.events.emit(e.event, e.data));
    // The graph's own events: a corrupt image names the device whose backend is on its node.
    const graphEvent = (event: string, data: Record<string, unknown>) => {
      if (event === 'BLOCK_IMAGE_CORRUPTED' && data.device === '') {
        const dev = devices?.().find((d) => nodeNameOf(d) === data['node-name']);
        if (dev) data = { ...data, device: dev.name };
      }
      this.events.emit(event, data);
    };
    graph.eventListeners.add(graphEvent);
    this.stopListening = () => {
      stopJobs();
      graph.eventListeners.delete(graphEvent);
    };
    this.dispatcher.register(
      {
        name: 'query-version',
        args: null,
        // DiskWorker's version in QEMU's shape: it differs from the QEMU the commands follow (7.2).
        run: () => ({ qemu: { major: version.major, minor: version.minor, micro: version.micro }, package: version.package }),
      },
      { name: 'query-commands', args: null, run: () => ['qmp_capabilities', ...this.dispatcher.names()].map((name) => ({ name })) },
      ...nodeCommands(this),
      ...bitmapCommands(this),
      ...snapshotCommands(this),
      ...jobStartCommands(this),
      ...jobVerbCommands(this),
      ...exportCommands(this),
      ...externalSnapshotCommands(this),
      ...transactionCommands(this),
      ...createCommands(this),
      ...writeThresholdCommands(this),
      ...reopenCommands(this),
      ...blockstatsCommands(this, deviceList),
      ...blockGraphCommands(this, deviceList),
      ...driveCommands(this),
      ...objectCommands(this),
      // Only where there are devices: qemu-storage-daemon has no block_set_io_throttle.
      ...(devices ? ioThrottleCommands(this, devices) : []),
    );
  }

  /**
   * QEMU's bdrv_lookup_bs: `device` names a BlockBackend (there are none
   * with names here), `nodeName` a node; the error names both.
   */
  lookupNode(device: string | undefined, nodeName: string | undefined): BlockNode {
    if (nodeName !== undefined && this.graph.hasNode(nodeName)) return this.graph.findNode(nodeName);
    throw genericError(`Cannot find device='${device ?? ''}' nor node-name='${nodeName ?? ''}'`);
  }

  /** QEMU's qmp_get_root_bs: a node no other node has as child. */
  rootNode(name: string): BlockNode {
    const node = this.lookupNode(name, name);
    if (node.parents.some((p) => p.parent.kind !== 'root')) throw genericError('Need a root block node');
    return node;
  }

  /** A job by id for the job-* commands. */
  findJob(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw genericError('Job not found');
    return job;
  }

  /** A job by id for the block-job-* commands (DeviceNotActive when absent). */
  findBlockJob(id: string): Job {
    const job = this.jobs.get(id);
    if (!job || !job.isBlockJob) throw new QmpError('DeviceNotActive', `Block job '${id}' not found`);
    return job;
  }

  /**
   * Drops the monitor's reference to a node; if that closes it, what its
   * driver could not do on the way (lost persistent bitmaps, a cache it could
   * not write) is reported, as QEMU's drivers error_report it from their close.
   */
  async releaseNode(node: BlockNode): Promise<void> {
    this.monitorOwned.delete(node);
    if (!node.isOpen) return;
    const inst = node.instance;
    await node.unref();
    if (!node.isOpen) for (const line of inst.closeMessages?.() ?? []) this.graph.report(line);
  }

  /** Cancels every job, then closes the monitor's nodes (shutdown). */
  async close(): Promise<void> {
    await this.jobs.cancelAll();
    if (this.exportState.server) await this.exportState.stop(this);
    this.stopListening();
    for (const node of [...this.monitorOwned].reverse()) await this.releaseNode(node);
    await this.graph.closeAll();
  }
}
