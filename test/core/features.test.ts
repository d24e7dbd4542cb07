/**
 * Request-path features: error policies, detect-zeroes, copy-on-read, write
 * threshold, before-write hooks, probing safety, raw windows, block status
 * over a chain, statistics, flush generations, write-zeroes fallback.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  BlockError,
  Perm,
  ReqFlag,
  Status,
  blockStatusAbove,
  isAllocatedAbove,
  type StopEvent,
} from '../../src/node.js';
import { expectBlockError, memoryGraph } from './helpers.js';

describe('error policy', () => {
  it('reports by default, and stops then retries on ENOSPC with werror=enospc', async () => {
    const { graph, storage } = memoryGraph();
    const f = storage.create('d', 65536);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' }, { name: 'disk0' });
    f.faults = { failAfterWrites: 1, failCode: 'EIO' };
    await bb.write(0, new Uint8Array([1]));
    await expectBlockError(bb.write(1, new Uint8Array([2])), 'EIO', /Injected EIO/);
    expect(bb.stats.write.failed).toBe(1);

    // QEMU's BlockBackend default: ENOSPC is reported like any other error.
    f.faults = { failAfterWrites: f.writeCount, failCode: 'ENOSPC' };
    await expectBlockError(bb.write(2, new Uint8Array([3])), 'ENOSPC', /Injected ENOSPC/);
    expect(bb.isStopped).toBe(false);
    await bb.close();

    const bb2 = await BlockBackend.open(graph, 'memory:d', { format: 'raw' }, { name: 'disk0', werror: 'enospc' });
    const stops: StopEvent[] = [];
    bb2.onStop.push((e) => stops.push(e));
    const pending = bb2.write(2, new Uint8Array([3]));
    await new Promise((r) => setTimeout(r, 5));
    expect(bb2.isStopped).toBe(true);
    expect(stops[0]!.error.code).toBe('ENOSPC');
    // Space freed: resume retries the request, which now succeeds.
    f.faults = {};
    bb2.resume();
    await pending;
    expect(Array.from(await bb2.read(0, 3))).toEqual([1, 0, 3]);
    await bb2.close();
  });

  it('ignores errors with rerror=ignore and werror=ignore', async () => {
    const { graph, storage } = memoryGraph();
    const f = storage.create('d', 4096);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' }, { werror: 'ignore', rerror: 'ignore' });
    f.faults = { failAfterWrites: 0 };
    await bb.write(0, new Uint8Array([1]));
    expect(bb.stats.write.failed).toBe(1);
    await bb.close();
    await expect(BlockBackend.attach(graph, null as never, { rerror: 'enospc' })).rejects.toThrow(BlockError);
  });
});

describe('detect-zeroes', () => {
  it('turns zero buffers into zero writes, and unmaps with detect-zeroes=unmap', async () => {
    const { graph, storage } = memoryGraph();
    const f = storage.create('d', 1 << 20);
    f.writeRaw(0, new Uint8Array(1 << 20).fill(0xaa));
    const bb = await BlockBackend.open(graph, { driver: 'raw', 'detect-zeroes': 'unmap', discard: 'unmap', file: { driver: 'memory', filename: 'd' } });
    await bb.write(65536, new Uint8Array(65536));
    expect(bb.node.stats.zeroWrite.ops).toBe(1);
    expect(bb.node.stats.write.ops).toBe(0);
    const st = await bb.blockStatus(65536, 65536);
    expect(st.status & Status.ZERO).toBeTruthy();
    expect(f.allocatedBytes).toBe((1 << 20) - 65536);
    await bb.close();
  });
});

describe('copy-on-read', () => {
  /*
   *   bb ── top(stubfmt over memory:top; holes = unallocated) ──backing──> base(raw, memory:base)
   *   Reads with copy-on-read copy base data into top, once.
   */
  it('copies unallocated data from the backing file into the top layer', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('top', 1 << 20);
    storage.create('base', 1 << 20).writeRaw(0, new Uint8Array(1 << 20).fill(4));
    const base = await graph.open({ driver: 'raw', 'node-name': 'base', file: { driver: 'memory', filename: 'base' } }, { readOnly: true });
    const top = await graph.open({ driver: 'stubfmt', file: { driver: 'memory', filename: 'top' }, backing: 'base' });
    await base.unref();
    const bb = await BlockBackend.attach(graph, top);
    await bb.write(0, new Uint8Array(65536).fill(8));
    expect((await isAllocatedAbove(top, base, false, 65536, 65536)).allocated).toBe(false);
    top.copyOnRead++;
    const got = await bb.read(60000, 10000);
    expect(got[0]).toBe(8);
    expect(got[9999]).toBe(4);
    // The range from base is now stored in top; the top's own data was not rewritten.
    expect((await isAllocatedAbove(top, base, false, 65536, 3000)).allocated).toBe(true);
    expect(storage.get('top')!.toBytes()[65536]).toBe(4);
    const writes = storage.get('top')!.writeCount;
    await bb.read(60000, 10000);
    expect(storage.get('top')!.writeCount).toBe(writes);
    top.copyOnRead--;
    await bb.close();
    await top.unref();
    expect(graph.listNodes()).toEqual([]);
  });
});

describe('write threshold and before-write hooks', () => {
  it('fires the threshold once and runs hooks before the write lands', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 1 << 20);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' });
    const proto = bb.node.file!.node;
    const fired: number[] = [];
    proto.writeThreshold = 100_000;
    proto.onWriteThreshold = (_n, threshold, offset) => fired.push(threshold, offset);
    const seen: string[] = [];
    bb.node.beforeWriteHooks.push(async (_n, kind, offset, bytes) => {
      // The old data is still there when the hook runs (what backup needs).
      const old = await bb.node.file!.node.instance.preadv!(offset, 1, new Uint8Array(1), 0);
      void old;
      seen.push(`${kind} ${offset} ${bytes}`);
    });
    await bb.write(0, new Uint8Array(10).fill(1));
    expect(fired).toEqual([]);
    await bb.write(99_999, new Uint8Array(10).fill(1));
    expect(fired).toEqual([100_000, 99_999]);
    await bb.write(200_000, new Uint8Array(10).fill(1));
    expect(fired.length).toBe(2);
    await bb.writeZeroes(0, 5);
    expect(seen).toEqual(['write 0 10', 'write 99999 10', 'write 200000 10', 'zero 0 5']);
    await bb.close();
  });
});

describe('probing', () => {
  it('refuses to make a probed raw image look like another format', async () => {
    const { graph, storage } = memoryGraph([
      {
        name: 'magicfmt',
        kind: 'format',
        probe: (h) => (h[0] === 0x51 && h[1] === 0x46 && h[2] === 0x49 && h[3] === 0xfb ? 100 : 0),
        async open() {
          throw new BlockError('ENOTSUP', 'not a real format');
        },
      },
    ]);
    storage.create('d', 4096);
    const bb = await BlockBackend.open(graph, 'memory:d');
    expect(bb.node.driver.name).toBe('raw');
    expect(bb.node.probed).toBe(true);
    await expectBlockError(bb.write(0, new Uint8Array([0x51, 0x46, 0x49, 0xfb])), 'EPERM', /look like 'magicfmt'/);
    await bb.write(0, new Uint8Array([1, 2, 3]));
    await bb.close();
    // With an explicit format the write is allowed.
    const bb2 = await BlockBackend.open(graph, 'memory:d', { format: 'raw' });
    await bb2.write(0, new Uint8Array([0x51, 0x46, 0x49, 0xfb]));
    await bb2.close();
    // Now the image probes as magicfmt.
    await expectBlockError(BlockBackend.open(graph, 'memory:d'), 'ENOTSUP', /not a real format/);
  });
});

describe('raw', () => {
  it('serves a window of its file with offset and size', async () => {
    const { graph, storage } = memoryGraph();
    const f = storage.create('d', 8192);
    for (let i = 0; i < 8192; i++) f.writeRaw(i, new Uint8Array([i & 0xff]));
    const bb = await BlockBackend.open(graph, { driver: 'raw', offset: 1000, size: 2000, file: { driver: 'memory', filename: 'd' } });
    expect(bb.length).toBe(2000);
    expect((await bb.read(0, 1))[0]).toBe(1000 & 0xff);
    await expectBlockError(bb.read(1999, 2), 'EIO', /beyond the end/);
    await bb.write(1999, new Uint8Array([0xee]));
    expect(f.toBytes()[2999]).toBe(0xee);
    await expectBlockError(bb.truncate(4000), 'ENOTSUP', /fixed size/);
    await bb.close();
  });

  it('truncates and zero-writes through to the file', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 4096);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' });
    await bb.truncate(1 << 20);
    expect(bb.length).toBe(1 << 20);
    expect(storage.get('d')!.length).toBe(1 << 20);
    await bb.write(500_000, new Uint8Array(100).fill(3));
    await bb.writeZeroes(500_010, 10, ReqFlag.MAY_UNMAP);
    const got = await bb.read(500_000, 100);
    expect(got[9]).toBe(3);
    expect(got[10]).toBe(0);
    expect(got[20]).toBe(3);
    await bb.close();
  });
});

describe('write zeroes fallback and flush generations', () => {
  it('writes zero buffers when the driver cannot, unless NO_FALLBACK', async () => {
    const writes: number[] = [];
    let flushes = 0;
    const data = new Uint8Array(1 << 16).fill(9);
    const { graph } = memoryGraph([
      {
        name: 'plain',
        kind: 'protocol',
        async open() {
          return {
            getLength: () => data.length,
            preadv: (o, b, buf) => void buf.set(data.subarray(o, o + b)),
            pwritev: (o, b, buf) => {
              writes.push(b);
              data.set(buf.subarray(0, b), o);
            },
            flushToDisk: async () => void flushes++,
          };
        },
      },
    ]);
    const bb = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'plain' } });
    await bb.writeZeroes(100, 30000);
    expect(data[99]).toBe(9);
    expect(data.subarray(100, 30100).every((b) => b === 0)).toBe(true);
    expect(data[30100]).toBe(9);
    await expectBlockError(bb.writeZeroes(0, 10, ReqFlag.NO_FALLBACK), 'ENOTSUP', /without a buffer/);
    await bb.flush();
    await bb.flush();
    expect(flushes).toBe(1);
    await bb.write(0, new Uint8Array(1), ReqFlag.FUA);
    expect(flushes).toBe(2);
    await bb.close();
  });
});

describe('block status over a chain', () => {
  /*
   *   top(stubfmt, allocated everywhere) ──backing──> base(raw over sparse memory)
   */
  it('answers depth and allocation through the chain', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('base', 1 << 20).writeRaw(65536, new Uint8Array(10).fill(1));
    const base = await graph.open({ driver: 'raw', 'node-name': 'base', file: { driver: 'memory', filename: 'base' } }, { readOnly: true });
    const st = await blockStatusAbove(base, undefined, true, 0, 1 << 20);
    expect(st.status & Status.ZERO).toBeTruthy();
    expect(st.pnum).toBe(65536);
    const st2 = await blockStatusAbove(base, undefined, true, 65536, 1 << 20);
    expect(st2.status & Status.DATA).toBeTruthy();
    expect(st2.map).toBe(65536);
    const alloc = await isAllocatedAbove(base, undefined, false, 0, 4096);
    expect(alloc.allocated).toBe(true);
    await base.unref();
  });
});

describe('statistics', () => {
  it('counts operations, bytes and failures per type', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 65536);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' }, { perm: Perm.CONSISTENT_READ | Perm.WRITE });
    for (let i = 0; i < 16; i++) await bb.read(i * 512, 512);
    await bb.write(0, new Uint8Array(1000));
    await bb.flush();
    expect(bb.stats.read.ops).toBe(16);
    expect(bb.stats.read.bytes).toBe(16 * 512);
    expect(bb.stats.read.timeMs).toBeGreaterThanOrEqual(0);
    expect(bb.stats.write.bytes).toBe(1000);
    expect(bb.stats.flush.ops).toBe(1);
    expect(bb.node.stats.read.ops).toBe(16);
    await bb.close();
  });
});

describe('limits', () => {
  it('merges transfer and memory limits from the children', async () => {
    const { graph } = memoryGraph([
      {
        name: 'limited',
        kind: 'protocol',
        async open() {
          return {
            getLength: () => 1 << 20,
            preadv: (_o, _b, buf) => void buf.fill(2),
            refreshLimits(l) {
              l.requestAlignment = 4096;
              l.maxTransfer = 65536;
              l.optTransfer = 8192;
              l.minMemAlignment = 64;
              l.maxIov = 16;
            },
          };
        },
      },
    ]);
    const bb = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'limited' } }, { readOnly: true });
    const l = bb.node.limits;
    expect(l.maxTransfer).toBe(65536);
    expect(l.optTransfer).toBe(8192);
    expect(l.minMemAlignment).toBe(64);
    expect(l.maxIov).toBe(16);
    // The format itself is byte-granular; the protocol's own request path aligns.
    expect(l.requestAlignment).toBe(1);
    expect(bb.node.file!.node.limits.requestAlignment).toBe(4096);
    expect((await bb.read(10, 200000)).every((b) => b === 2)).toBe(true);
    await bb.close();
  });

  it('refuses incoherent limits from a driver', async () => {
    const { graph } = memoryGraph([
      {
        name: 'odd',
        kind: 'protocol',
        async open() {
          return { getLength: () => 4096, refreshLimits: (l) => void (l.requestAlignment = 3) };
        },
      },
    ]);
    await expectBlockError(graph.open({ driver: 'odd' }), 'EINVAL', /request alignment 3 is not a power of two/);
  });
});

describe('discard', () => {
  it('is ignored without discard=unmap and fragments at the discard alignment otherwise', async () => {
    const seen: Array<[number, number]> = [];
    const { graph } = memoryGraph([
      {
        name: 'disc',
        kind: 'protocol',
        async open() {
          return {
            getLength: () => 1 << 20,
            pwritev: () => undefined,
            refreshLimits: (l) => {
              l.requestAlignment = 512;
              l.pdiscardAlignment = 4096;
              l.maxPdiscard = 65536;
            },
            async pdiscard(o: number, b: number) {
              seen.push([o, b]);
              if (o % 4096 || b % 4096) throw new BlockError('ENOTSUP', 'unaligned discard');
            },
          };
        },
      },
    ]);
    const off = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'disc' } });
    await off.discard(0, 100_000);
    expect(seen).toEqual([]);
    await off.close();
    const bb = await BlockBackend.open(graph, { driver: 'raw', discard: 'unmap', file: { driver: 'disc' } });
    await bb.discard(1000, 140_000);
    // Sub-sector head dropped; unaligned head / tail fragments passed (and their ENOTSUP ignored).
    expect(seen).toEqual([
      [1024, 3072],
      [4096, 65536],
      [69632, 65536],
      [135168, 4096],
      [139264, 1536],
    ]);
    await bb.close();
  });
});
