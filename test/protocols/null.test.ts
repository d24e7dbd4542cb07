/**
 * The null-co / null-aio protocol drivers (QEMU's null block drivers) through
 * the block layer: size, read-zeroes, dropped writes, block status, latency,
 * options and filenames.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend, BlockGraph, Status, nullDriver, nullAioDriver, rawDriver } from '../../src/node.js';
import { expectBlockError } from '../core/helpers.js';

const graph = () => new BlockGraph([nullDriver, nullAioDriver, rawDriver], 'null-co');

describe.each(['null-co', 'null-aio'])('%s', (driver) => {
  it('has the given size (1 GiB by default) and cannot be resized', async () => {
    const g = graph();
    const a = await BlockBackend.open(g, { driver });
    expect(a.length).toBe(1 << 30);
    const b = await BlockBackend.open(g, { driver, size: '64k' });
    expect(b.length).toBe(65536);
    await expectBlockError(b.truncate(131072), 'ENOTSUP', /^Image format driver does not support resize$/);
    expect(b.length).toBe(65536);
    await g.closeAll();
  });

  it('leaves read buffers untouched by default and zeroes them with read-zeroes', async () => {
    const g = graph();
    const plain = await BlockBackend.open(g, { driver, size: 4096 });
    const buf = new Uint8Array(512).fill(0xab);
    await plain.pread(0, buf);
    expect(buf.every((b) => b === 0xab)).toBe(true);
    const zeroes = await BlockBackend.open(g, { driver, size: 4096, 'read-zeroes': true });
    await zeroes.pread(512, buf);
    expect(buf.every((b) => b === 0)).toBe(true);
    await g.closeAll();
  });

  it('drops writes: what was written does not read back', async () => {
    const g = graph();
    const bb = await BlockBackend.open(g, { driver, size: 4096, 'read-zeroes': 'on' });
    await bb.write(0, new Uint8Array(4096).fill(7));
    await bb.writeZeroes(0, 4096);
    await bb.discard(0, 4096);
    await bb.flush();
    expect((await bb.read(0, 4096)).every((b) => b === 0)).toBe(true);
    await g.closeAll();
  });

  it('says "not allocated" (zero with read-zeroes), also through raw', async () => {
    const g = graph();
    for (const [rz, zero] of [[false, 0], [true, Status.ZERO]] as const) {
      const bb = await BlockBackend.open(g, { driver: 'raw', file: { driver, size: 8192, 'read-zeroes': rz } });
      const st = await bb.blockStatus(0, 8192);
      expect(st.pnum).toBe(8192);
      expect(st.status & (Status.DATA | Status.ZERO | Status.ALLOCATED)).toBe(zero ? Status.ZERO | Status.ALLOCATED : 0);
      expect(st.map).toBe(0);
      await bb.close();
    }
  });

  it('completes requests after latency-ns', async () => {
    const g = graph();
    const bb = await BlockBackend.open(g, { driver, size: 4096, 'latency-ns': 20_000_000 });
    const start = Date.now();
    await bb.read(0, 512);
    // Timers may fire a little early; 20 ms asked, 10 ms is a safe floor.
    expect(Date.now() - start).toBeGreaterThanOrEqual(10);
    await g.closeAll();
  });

  it('refuses bad options and filenames, naming them', async () => {
    const g = graph();
    await expectBlockError(BlockBackend.open(g, { driver, 'latency-ns': -1 }), 'EINVAL', /latency-ns is invalid/);
    await expectBlockError(BlockBackend.open(g, { driver, 'latency-ns': '-5' }), 'EINVAL', /latency-ns is invalid/);
    await expectBlockError(BlockBackend.open(g, { driver, 'latency-ns': 'x' }), 'EINVAL', /latency-ns.*'x'/);
    await expectBlockError(BlockBackend.open(g, { driver, 'latency-ns': 7.2e15 }), 'EINVAL', /latency-ns 7200000000000000/);
    await expectBlockError(BlockBackend.open(g, { driver, 'read-zeroes': 'maybe' }), 'EINVAL', /read-zeroes.*'maybe'/);
    await expectBlockError(BlockBackend.open(g, { driver, size: 'x' }), 'EINVAL', /size.*'x'/);
    await expectBlockError(BlockBackend.open(g, { driver, bogus: 1 }), 'EINVAL', /bogus/);
    await expectBlockError(BlockBackend.open(g, `${driver}://x`, { format: 'raw' }), 'EINVAL', new RegExp(`only allowed filename for this driver is '${driver}://'`));
    const bb = await BlockBackend.open(g, `${driver}://`, { format: 'raw' });
    expect(bb.node.file?.node.driver.name).toBe(driver);
    expect(bb.node.file?.node.filename).toBe(`${driver}://`);
    await g.closeAll();
  });

  it('has no image information (qemu-io info fails) and uses no space', async () => {
    const g = graph();
    const bb = await BlockBackend.open(g, { driver });
    expect(() => bb.node.instance.getInfo?.()).toThrow(/no image information/);
    expect(await bb.node.instance.getAllocatedFileSize?.()).toBe(0);
    await g.closeAll();
  });
});
