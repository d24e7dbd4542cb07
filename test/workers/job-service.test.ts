/**
 * The worker's job service on memory images (the block worker's service run
 * in Node): jobs start on open disks by path, refusals carry QEMU's
 * messages, events reach a subscriber, a mirror's pivot moves the disk (the
 * old image can be opened again, the new one is busy), and closing a disk
 * or the worker cancels its jobs first.
 */
import { describe, expect, it } from 'vitest';
import { BlockWorkerService } from '../../workers/service.js';
import type { JobWireEvent } from '../../src/client/jobs-protocol.js';

const MiB = 1 << 20;

async function setup(name: string) {
  const svc = new BlockWorkerService();
  const src = `memory:${name}-src.qcow2`;
  await svc.create({ path: src, format: 'qcow2', size: 4 * MiB });
  const disk = await svc.open({ path: src });
  await disk.write(0, new Uint8Array(2 * MiB).fill(0x33));
  const events: JobWireEvent[] = [];
  svc.jobSubscribe((e) => void events.push(e));
  return { svc, src, disk, events };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe('worker job service', () => {
  it('mirror: ready, complete pivots the disk onto the target; the old image is free, the new one busy', async () => {
    const { svc, src, disk, events } = await setup('pivot');
    const dst = 'memory:pivot-dst.qcow2';
    const info = await svc.jobStart({ kind: 'mirror', device: src, options: { id: 'm0', target: { path: dst, create: true } } });
    expect(info).toMatchObject({ id: 'm0', type: 'mirror', status: 'running' });
    await expect(svc.jobVerb('m0', 'complete')).rejects.toThrow("Job 'm0' in state 'running' cannot accept command verb 'complete'");
    for (let i = 0; i < 200 && svc.jobInfo('m0')[0]!.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 5));
    expect(svc.jobBlockInfo('m0')[0]).toMatchObject({ ready: true, status: 'ready', len: 2 * MiB, offset: 2 * MiB });
    await svc.jobVerb('m0', 'complete');
    for (let i = 0; i < 200 && svc.jobInfo().length > 0; i++) await new Promise((r) => setTimeout(r, 5));
    await settle();
    expect(disk.image()).toBe(dst);
    expect(events.filter((e) => e.type === 'status').map((e) => (e as { status: string }).status)).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    expect(events.some((e) => e.type === 'ready')).toBe(true);
    expect(events.find((e) => e.type === 'completed')).toMatchObject({ id: 'm0', current: 2 * MiB, total: 2 * MiB });
    // The disk runs on the target: opening the target for writing is refused, the old source is free.
    await expect(svc.open({ path: dst })).rejects.toMatchObject({ code: 'EBUSY' });
    const old = await svc.open({ path: src });
    expect(Array.from(await old.read(0, 4))).toEqual([0x33, 0x33, 0x33, 0x33]);
    await old.close();
    // The disk is still known by the path it was opened with.
    await expect(svc.jobStart({ kind: 'stream', device: src, options: { id: 's0' } })).resolves.toMatchObject({ id: 's0' });
    await svc.shutdown();
  });

  it('refuses unknown disks, bad or taken ids, open targets and images outside the chain', async () => {
    const { svc, src } = await setup('refuse');
    await svc.create({ path: 'memory:refuse-other.qcow2', format: 'qcow2', size: 4 * MiB });
    const other = await svc.open({ path: 'memory:refuse-other.qcow2' });
    await expect(svc.jobStart({ kind: 'stream', device: 'memory:nope', options: { id: 'a' } })).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(svc.jobStart({ kind: 'stream', device: src, options: { id: '1a' } })).rejects.toThrow("Invalid job ID '1a'");
    await expect(
      svc.jobStart({ kind: 'mirror', device: src, options: { id: 'b', target: { path: 'memory:refuse-other.qcow2' } } }),
    ).rejects.toThrow("Cannot use 'memory:refuse-other.qcow2' as a job target: the image is open in this worker");
    await expect(svc.jobStart({ kind: 'commit', device: src, options: { id: 'c' } })).rejects.toThrow('has no backing file: nothing to commit');
    await expect(svc.jobStart({ kind: 'stream', device: src, options: { id: 'd', base: 'memory:elsewhere' } })).rejects.toThrow(
      "Image 'memory:elsewhere' is not in the backing chain of 'memory:refuse-src.qcow2'",
    );
    await svc.jobStart({ kind: 'backup', device: src, options: { id: 'e', target: { path: 'memory:refuse-b.qcow2', create: true }, speed: 64 * 1024 } });
    await expect(svc.jobStart({ kind: 'backup', device: src, options: { id: 'e', target: { path: 'memory:refuse-c.qcow2', create: true } } })).rejects.toThrow(
      "Job ID 'e' already in use",
    );
    await expect(svc.jobVerb('zz', 'pause')).rejects.toThrow("Job 'zz' not found");
    await other.close();
    await svc.shutdown();
  });

  it('closing a disk cancels its running job first; shutdown cancels the rest', async () => {
    const { svc, src, disk, events } = await setup('close');
    await svc.jobStart({ kind: 'backup', device: src, options: { id: 'slow', target: { path: 'memory:close-b.qcow2', create: true }, speed: 64 * 1024 } });
    expect(svc.jobInfo('slow')[0]!.status).toBe('running');
    await disk.close();
    expect(svc.jobInfo()).toEqual([]);
    await settle();
    const concluded = events.find((e) => e.type === 'status' && e.status === 'concluded') as { error?: { code: string } } | undefined;
    expect(concluded?.error?.code).toBe('ECANCELED');
    expect(events.some((e) => e.type === 'cancelled')).toBe(true);
    // The image closed cleanly: it opens again with its data.
    const again = await svc.open({ path: src });
    expect(Array.from(await again.read(2 * MiB - 2, 2))).toEqual([0x33, 0x33]);
    await svc.jobStart({ kind: 'backup', device: src, options: { id: 'slow2', target: { path: 'memory:close-c.qcow2', create: true }, speed: 64 * 1024 } });
    await svc.shutdown();
    expect(svc.jobInfo()).toEqual([]);
  });
});
