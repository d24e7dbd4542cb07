/**
 * A block job blocks operations on the nodes it works on, as QEMU's
 * bdrv_op_block_all does: internal snapshot create / delete, another job on
 * the same nodes and a resize from the page are refused with EBUSY and
 * QEMU's "Node 'x' is busy: block device is in use by block job: <type>",
 * while the job's own work goes on; once the job concludes they work again.
 * (Applying a snapshot is refused by the job's dirty bitmap instead, as in
 * QEMU: see mirror-snapshot.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { createSnapshot, deleteSnapshot } from '../../src/core/snapshot.js';
import { checkOp } from '../../src/core/op-blockers.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { mirrorJob } from '../../src/jobs/mirror.js';
import { streamJob } from '../../src/jobs/stream.js';
import { backupJob } from '../../src/jobs/backup.js';
import { commitJob } from '../../src/jobs/commit.js';
import { hasQemu } from '../cli/harness.js';
import { memoryChain } from './memory-chain.js';

const snap = (name: string) => ({ id: '', name, vmStateSize: 0, dateSec: 0, dateNsec: 0, vmClockNsec: 0 });
const busy = (node: string, type: string) => ({ code: 'EBUSY', message: `Node '${node}' is busy: block device is in use by block job: ${type}` });

describe.skipIf(!hasQemu())('operation blockers of block jobs', () => {
  it('a mirror blocks snapshots, a second job and resize on its nodes until it concludes', async () => {
    const { graph, guest } = await memoryChain();
    const top = guest.node;
    await createSnapshot(top, snap('before'));
    const target = await graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } });
    const reg = new JobRegistry();
    const job = reg.create(mirrorJob({ graph, source: top, target }), { id: 'm0' });
    job.start();
    await job.waitFor((s) => s === 'ready');
    // The guest's node is now the job's filter; the refusal names the node the job holds.
    await expect(createSnapshot(guest.node, snap('during'))).rejects.toMatchObject(busy(top.nodeName, 'mirror'));
    await expect(deleteSnapshot(guest.node, undefined, 'before')).rejects.toMatchObject(busy(top.nodeName, 'mirror'));
    expect(() => mirrorJob({ graph, source: top, target })).toThrow(expect.objectContaining(busy(top.nodeName, 'mirror')));
    expect(() => checkOp(target, 'resize')).toThrow(expect.objectContaining(busy(target.nodeName, 'mirror')));
    await expect(backupJob({ graph, source: top, target, sync: 'full' })).rejects.toMatchObject(busy(top.nodeName, 'mirror'));
    // The guest still writes through the job.
    await guest.write(0, new Uint8Array(4096).fill(7));
    job.cancel();
    await job.settled();
    expect(top.opBlockers.size).toBe(0);
    expect(target.opBlockers.size).toBe(0);
    await createSnapshot(guest.node, snap('after'));
    await deleteSnapshot(guest.node, undefined, 'before');
    await target.unref();
    await guest.close();
    await graph.closeAll();
  });

  it('stream and commit block the chain they work on; a paused job keeps its blockers', async () => {
    const { graph, guest } = await memoryChain();
    const top = guest.node;
    const mid = top.backing!.node;
    const base = mid.backing!.node;
    const reg = new JobRegistry();
    const job = reg.create(streamJob({ graph, top, base }), { id: 's0' });
    job.pause();
    job.start();
    expect(() => streamJob({ graph, top, base })).toThrow(expect.objectContaining(busy(top.nodeName, 'stream')));
    // The commit source QEMU checks is the chain's active layer (the command's device), which the stream holds.
    expect(() => commitJob({ graph, top: mid, base })).toThrow(expect.objectContaining(busy(top.nodeName, 'stream')));
    // base is not the stream's: only its overlay's backing blocker holds it, and that lets a backup through.
    expect(() => checkOp(base, 'internal-snapshot')).toThrow(`Node '${base.nodeName}' is busy: node is used as backing hd of '${mid.nodeName}'`);
    expect(() => checkOp(base, 'backup-source')).not.toThrow();
    job.resume();
    await job.settled();
    expect(job.error).toBeUndefined();
    expect(top.opBlockers.size + mid.opBlockers.size).toBe(0);
    await guest.close();
    await graph.closeAll();
  });
});
