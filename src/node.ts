/**
 * The Node.js entry (`diskworker/node`): a block graph with the node-file,
 * host device, memory and null back ends, the raw, qcow2, vdi, vpc, vmdk and vhdx formats, the
 * blkdebug, copy-on-read, compress, throttle, quorum, preallocate,
 * blklogwrites and blkverify filters, and
 * the block jobs (stream, commit, mirror, backup) with the copy engine.
 */
import { BlockGraph } from './core/graph.js';
import type { BlockDriver } from './core/driver.js';
import { nodeFileDriver } from './protocols/node-file.js';
import { hostDeviceDriver, hostCdromDriver } from './protocols/node-device.js';
import { memoryDriver } from './protocols/memory.js';
import { nullDriver, nullAioDriver } from './protocols/null.js';
import { nbdDriver, nbdTcpDriver, nbdUnixDriver } from './protocols/nbd.js';
import { rawDriver } from './formats/raw/raw.js';
import { luksDriver } from './formats/luks/luks.js';
import { qcow2Driver } from './formats/qcow2/qcow2.js';
import { vdiDriver } from './formats/vdi/vdi.js';
import { vpcDriver } from './formats/vpc/vpc.js';
import { qedDriver } from './formats/qed/qed.js';
import { qcowDriver } from './formats/qcow/qcow.js';
import { vmdkDriver } from './formats/vmdk/vmdk.js';
import { vhdxDriver } from './formats/vhdx/vhdx.js';
import { createBlkdebugDriver } from './filters/blkdebug.js';
import { copyOnReadDriver } from './filters/copy-on-read.js';
import { throttleDriver } from './filters/throttle.js';
import { compressDriver } from './filters/compress.js';
import { preallocateDriver } from './filters/preallocate.js';
import { blkLogWritesDriver } from './filters/blklogwrites.js';
import { quorumDriver } from './filters/quorum.js';
import { blkverifyDriver } from './filters/blkverify.js';
import { fs } from './protocols/node-file.js';
import { startHotPathsSync } from './wasm/hot-paths.js';

// The Node entry serves requests with the measured-faster WASM zero check from the start.
startHotPathsSync();

export * from './core/index.js';
export * from './jobs/index.js';
export { nodeFileDriver } from './protocols/node-file.js';
export { hostDeviceDriver, hostCdromDriver } from './protocols/node-device.js';
export { memoryDriver, createMemoryDriver, MemoryStorage, MemoryFile, defaultMemoryStorage } from './protocols/memory.js';
export { nullDriver, nullAioDriver } from './protocols/null.js';
export { nbdDriver, nbdTcpDriver, nbdUnixDriver } from './protocols/nbd.js';
export { rawDriver } from './formats/raw/raw.js';
export { luksDriver } from './formats/luks/luks.js';
export { qcow2Driver } from './formats/qcow2/qcow2.js';
export { vdiDriver } from './formats/vdi/vdi.js';
export { vpcDriver } from './formats/vpc/vpc.js';
export { qedDriver } from './formats/qed/qed.js';
export { qcowDriver } from './formats/qcow/qcow.js';
export { vmdkDriver } from './formats/vmdk/vmdk.js';
export { vhdxDriver } from './formats/vhdx/vhdx.js';
export { createBlkdebugDriver, blkdebugDriver, type BlkdebugHost } from './filters/blkdebug.js';
export { copyOnReadDriver } from './filters/copy-on-read.js';
export { throttleDriver, THROTTLE_GROUP_OPTION } from './filters/throttle.js';
export { throttleGroups, ThrottleGroups, ThrottleGroup, ThrottleGroupMember, type ThrottleClock } from './filters/throttle-group.js';
export { ThrottleConfig, ThrottleState, type ThrottleLimits, type LeakyBucket } from './filters/throttle-config.js';
export { compressDriver } from './filters/compress.js';
export { preallocateDriver, type PreallocateOptions } from './filters/preallocate.js';
export { blkLogWritesDriver } from './filters/blklogwrites.js';
export { quorumDriver, quorumEvents, type QuorumInstance } from './filters/quorum.js';
export { blkverifyDriver } from './filters/blkverify.js';
export * from './export/nbd/index.js';
export { listenNbd, serveSocket, socketTransport, type ListenAddress } from './export/nbd/node-listen.js';
export type { QuorumEvent, QuorumEventListener, QuorumEventHook } from './filters/quorum-events.js';

/** blkdebug reading its config files from the local file system (relative to the working directory). */
export const nodeBlkdebugDriver = createBlkdebugDriver({ readConfig: async (path) => (await fs()).readFile(path, 'utf8') });

/** Every driver usable in Node. */
export function nodeDrivers(): BlockDriver[] {
  return [nodeFileDriver, hostDeviceDriver, hostCdromDriver, memoryDriver, nullDriver, nullAioDriver, nbdDriver, nbdTcpDriver, nbdUnixDriver, rawDriver, qcow2Driver, vdiDriver, vpcDriver, vmdkDriver, vhdxDriver, qedDriver, qcowDriver, luksDriver, nodeBlkdebugDriver, copyOnReadDriver, throttleDriver, compressDriver, quorumDriver, preallocateDriver, blkLogWritesDriver, blkverifyDriver];
}

/** A graph for Node: plain filenames go to the local file system. */
export function createNodeGraph(): BlockGraph {
  return new BlockGraph(nodeDrivers(), 'file');
}
