/**
 * No request succeeds whose data did not reach storage (a fixed sample of the
 * workload in write-errors-workload.ts; `npm run fuzz -- write-errors` runs
 * more seeds and cut points), and the `stop` / `enospc` error policies: the
 * stop is an event and a status, flush and close fail while requests are
 * held, and nothing held is dropped silently.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { BlockBackend, createImage, type StopEvent } from '../../src/node.js';
import type { ErrorCode } from '../../src/core/errors.js';
import { memGraph, pattern } from '../formats/qcow2/helpers.js';
import { KINDS, runKind, scratch } from './write-errors-workload.js';

afterAll(() => scratch.cleanup());
const SIZE = 2 << 20;

describe('no request succeeds whose data did not reach storage', () => {
  for (const kind of KINDS) {
    for (const code of ['ENOSPC', 'EIO'] as const) {
      it(`${kind.name}: ${code} at spread write counts`, async () => {
        const r = await runKind(kind, code, 8);
        expect(r.cuts).toBe(8);
        // The early cuts fail requests whose data is still in a cache at close.
        if (kind.format === 'qcow2') expect(r.closeFailed).toBeGreaterThan(0);
      });
    }
  }
});

describe('stop and enospc error policies', () => {
  async function stoppedDisk(werror: 'stop' | 'enospc', code: ErrorCode) {
    const { graph, storage } = memGraph();
    await createImage(graph, 'qcow2', 'memory:s', { size: SIZE });
    const file = storage.get('s')!;
    const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:s' } }, {}, { werror });
    const events: StopEvent[] = [];
    bb.onStop.push((e) => events.push(e));
    file.faults = { failAfterWrites: file.writeCount, failCode: code };
    return { bb, file, events, graph, storage };
  }

  it('enospc stops on ENOSPC: event, status, flush fails, resume completes the write', async () => {
    const { bb, file, events, graph } = await stoppedDisk('enospc', 'ENOSPC');
    const data = pattern(65536, 1);
    let settled = false;
    const w = bb.write(0, data).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    expect(bb.isStopped).toBe(true);
    expect(bb.stoppedBy?.code).toBe('ENOSPC');
    expect(events.map((e) => [e.operation, e.error.code])).toEqual([['write', 'ENOSPC']]);
    await expect(bb.flush()).rejects.toMatchObject({ code: 'ENOSPC', message: expect.stringContaining('stopped by the error policy') });
    file.faults = {};
    bb.resume();
    await w;
    expect(bb.isStopped).toBe(false);
    await bb.flush();
    await bb.close();
    const again = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:s' } }, { readOnly: true });
    expect(await again.read(0, 65536)).toEqual(data);
    await again.close();
  });

  it('enospc reports other errors at once; report never stops', async () => {
    const a = await stoppedDisk('enospc', 'EIO');
    await expect(a.bb.write(0, new Uint8Array(512))).rejects.toMatchObject({ code: 'EIO' });
    expect(a.bb.isStopped).toBe(false);
    const { graph, storage } = memGraph();
    await createImage(graph, 'qcow2', 'memory:r', { size: SIZE });
    const file = storage.get('r')!;
    const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:r' } });
    expect(bb.werror).toBe('report');
    file.faults = { failAfterWrites: file.writeCount, failCode: 'ENOSPC' };
    await expect(bb.write(0, new Uint8Array(65536))).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(bb.isStopped).toBe(false);
  });

  it('close while stopped fails the held requests and itself, and releases the image', async () => {
    const { bb, events, graph } = await stoppedDisk('stop', 'EIO');
    const w1 = bb.write(0, new Uint8Array(4096).fill(1));
    await new Promise((r) => setTimeout(r, 20));
    const w2 = bb.write(1 << 20, new Uint8Array(4096).fill(2));
    expect(events).toHaveLength(1);
    const results = Promise.allSettled([w1, w2]);
    await expect(bb.close()).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining("Cannot close") });
    const [r1, r2] = await results;
    expect(r1).toMatchObject({ status: 'rejected', reason: { code: 'EIO' } });
    expect(r2).toMatchObject({ status: 'rejected', reason: { code: 'EIO' } });
    // The image is free again: a new writer may open it.
    const again = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:s' } });
    await again.close();
  });
});
