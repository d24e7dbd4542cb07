/**
 * The browser entry for the block worker: the drivers usable in a dedicated
 * worker and a graph factory (the analogue of src/node.ts).
 */
import { BlockGraph } from './core/graph.js';
import type { BlockDriver } from './core/driver.js';
import { memoryDriver } from './protocols/memory.js';
import { nullDriver, nullAioDriver } from './protocols/null.js';
import { opfsDriver } from './protocols/opfs.js';
import { idbDriver } from './protocols/idb.js';
import { httpDriver } from './protocols/http.js';
import { blobDriver } from './protocols/blob.js';
import { rawDriver } from './formats/raw/raw.js';
import { luksDriver } from './formats/luks/luks.js';
import { qcow2Driver } from './formats/qcow2/qcow2.js';
import { vdiDriver } from './formats/vdi/vdi.js';
import { vpcDriver } from './formats/vpc/vpc.js';
import { qedDriver } from './formats/qed/qed.js';
import { qcowDriver } from './formats/qcow/qcow.js';
import { vmdkDriver } from './formats/vmdk/vmdk.js';
import { vhdxDriver } from './formats/vhdx/vhdx.js';
import { blkdebugDriver } from './filters/blkdebug.js';
import { copyOnReadDriver } from './filters/copy-on-read.js';
import { throttleDriver } from './filters/throttle.js';
import { compressDriver } from './filters/compress.js';
import { preallocateDriver } from './filters/preallocate.js';
import { blkLogWritesDriver } from './filters/blklogwrites.js';
import { quorumDriver } from './filters/quorum.js';
import { blkverifyDriver } from './filters/blkverify.js';

export * from './core/index.js';
export { opfsDriver, opfsTestHooks, listOpfs, removeOpfs } from './protocols/opfs.js';
export { idbDriver, listIdb, removeIdb } from './protocols/idb.js';
export { httpDriver } from './protocols/http.js';
export { blobDriver, registerBlob, unregisterBlob } from './protocols/blob.js';
export { memoryDriver, defaultMemoryStorage } from './protocols/memory.js';
export { rawDriver } from './formats/raw/raw.js';
export { luksDriver } from './formats/luks/luks.js';
export { qcow2Driver } from './formats/qcow2/qcow2.js';
export { vdiDriver } from './formats/vdi/vdi.js';
export { vpcDriver } from './formats/vpc/vpc.js';
export { qedDriver } from './formats/qed/qed.js';
export { qcowDriver } from './formats/qcow/qcow.js';
export { vmdkDriver } from './formats/vmdk/vmdk.js';
export { vhdxDriver } from './formats/vhdx/vhdx.js';
export { blkdebugDriver } from './filters/blkdebug.js';
export { copyOnReadDriver } from './filters/copy-on-read.js';
export { throttleDriver, THROTTLE_GROUP_OPTION } from './filters/throttle.js';
export { throttleGroups, ThrottleGroups, ThrottleGroup, ThrottleGroupMember, type ThrottleClock } from './filters/throttle-group.js';
export { ThrottleConfig, ThrottleState, type ThrottleLimits, type LeakyBucket } from './filters/throttle-config.js';
export { compressDriver } from './filters/compress.js';
export { preallocateDriver, type PreallocateOptions } from './filters/preallocate.js';
export { blkLogWritesDriver } from './filters/blklogwrites.js';
export { quorumDriver, quorumEvents, type QuorumInstance } from './filters/quorum.js';
export { blkverifyDriver } from './filters/blkverify.js';
export type { QuorumEvent, QuorumEventListener, QuorumEventHook } from './filters/quorum-events.js';

/** Every driver usable in a browser worker. */
export function browserDrivers(): BlockDriver[] {
  return [opfsDriver, idbDriver, httpDriver, blobDriver, memoryDriver, nullDriver, nullAioDriver, rawDriver, qcow2Driver, vdiDriver, vpcDriver, vmdkDriver, vhdxDriver, qedDriver, qcowDriver, luksDriver, blkdebugDriver, copyOnReadDriver, throttleDriver, compressDriver, quorumDriver, preallocateDriver, blkLogWritesDriver, blkverifyDriver];
}

/** A graph for the browser: plain filenames go to OPFS. */
export function createBrowserGraph(): BlockGraph {
  return new BlockGraph(browserDrivers(), 'opfs');
}
