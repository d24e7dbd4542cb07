/**
 * Applying an internal snapshot while a mirror runs is refused, as QEMU's
 * bdrv_snapshot_goto refuses it: the job's dirty bitmap sits on the format
 * node under the job's filter, and a snapshot applied under it would leave
 * the copy behind the source ('Device has active dirty bitmaps', EBUSY).
 * Once the job is gone the same apply goes through.
 */
import { expect, it } from 'vitest';
import { createSnapshot, gotoSnapshot } from '../../src/core/snapshot.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { mirrorJob } from '../../src/jobs/mirror.js';
import { hasQemu } from '../cli/harness.js';
import { memoryChain } from './memory-chain.js';

it.skipIf(!hasQemu())('a snapshot is not applied under a running mirror, and is once the mirror is cancelled', async () => {
  const { graph, guest, content } = await memoryChain();
  const top = guest.node;
  await createSnapshot(top, { id: '', name: 's1', vmStateSize: 0, dateSec: 0, dateNsec: 0, vmClockNsec: 0 });
  const after = new Uint8Array(4096).fill(0x5a);
  await guest.write(0, after);
  const target = await graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } });
  const reg = new JobRegistry();
  const job = reg.create(mirrorJob({ graph, source: top, target }), { id: 'm0' });
  await target.unref();
  job.start();
  await job.waitFor((s) => s === 'ready');
  // The guest's backend now runs through the job's filter; the bitmap is on the qcow2 node under it.
  expect(guest.node).not.toBe(top);
  expect(top.dirtyBitmaps.length).toBe(1);
  await expect(gotoSnapshot(guest.node, 's1')).rejects.toMatchObject({ code: 'EBUSY', message: 'Device has active dirty bitmaps' });
  const seen = new Uint8Array(4096);
  await guest.pread(0, seen);
  expect(seen).toEqual(after);

  job.cancel();
  await job.settled();
  expect(guest.node).toBe(top);
  await gotoSnapshot(guest.node, 's1');
  await guest.pread(0, seen);
  expect(seen).toEqual(content.subarray(0, 4096));
  await guest.close();
  await graph.closeAll();
});
