/**
 * The vpc driver through the library on the memory back end (what the
 * browser worker uses): create, concurrent writes into the same and other
 * unallocated blocks, reopen, probing, errors that name their values.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend, createImage } from '../../../src/node.js';
import { vpcDriver } from '../../../src/formats/vpc/vpc.js';
import { roundedImageSize } from '../../../src/formats/vpc/chs.js';
import { BAT_UNALLOCATED, DYN, FOOTER, vhdChecksum } from '../../../src/formats/vpc/footer.js';
import { blockStatus } from '../../../src/core/block-status.js';
import { Status } from '../../../src/core/driver.js';
import { expectBlockError, memoryGraph } from '../../core/helpers.js';
import { prng } from '../../prng.js';

const MiB = 1 << 20;

describe('vpc on the memory back end', () => {
  it('concurrent writes allocate each block once and read back after a reopen', async () => {
    const { graph, storage } = memoryGraph([vpcDriver]);
    await createImage(graph, 'vpc', 'memory:d.vhd', { size: 20 * MiB });
    const bb = await BlockBackend.open(graph, 'memory:d.vhd');
    expect(bb.node.driver.name).toBe('vpc');
    const length = bb.length;
    const model = new Uint8Array(length);
    const rnd = prng(7);
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < 40; i++) {
      // Several writes per block, some across block boundaries, all in flight at once.
      const len = 1 + Math.floor(rnd() * 300000);
      const off = Math.floor(rnd() * (length - len));
      const data = new Uint8Array(len).fill(1 + (i % 250));
      model.set(data, off);
      writes.push(bb.write(off, data));
    }
    // Overlapping writes complete in submission order here (the layer orders them).
    await Promise.all(writes);
    expect(Buffer.from(await bb.read(0, length)).equals(Buffer.from(model))).toBe(true);
    await bb.close();

    // The file: each allocated block at its own place, the footer at the end.
    const file = storage.get('d.vhd')!.toBytes();
    const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
    const entries = dv.getUint32(512 + DYN.maxTableEntries);
    const seen = new Set<number>();
    for (let i = 0; i < entries; i++) {
      const e = dv.getUint32(1536 + 4 * i);
      if (e === BAT_UNALLOCATED) continue;
      expect(seen.has(e)).toBe(false);
      seen.add(e);
    }
    expect(seen.size).toBeGreaterThan(0);
    expect(file.length).toBe(1536 + 512 + seen.size * (2 * MiB + 512) + 512);
    const footer = file.subarray(file.length - 512);
    expect(dv.getUint32(file.length - 512 + FOOTER.checksum)).toBe(vhdChecksum(footer, FOOTER.checksum));

    const again = await BlockBackend.open(graph, 'memory:d.vhd', { readOnly: true });
    expect(Buffer.from(await again.read(0, length)).equals(Buffer.from(model))).toBe(true);
    // Block status: allocated blocks are data, the rest zeros, block by block.
    for (let off = 0; off < length; ) {
      const st = await blockStatus(again.node, true, off, length - off);
      const allocated = model.subarray(off, off + st.pnum).some((x) => x !== 0);
      if (st.status & Status.DATA) expect(st.pnum).toBeLessThanOrEqual(2 * MiB);
      else expect(allocated, `zero range at ${off} holds data`).toBe(false);
      off += st.pnum;
    }
    await again.close();
  });

  it('fixed images write in place; resize is refused as QEMU refuses it', async () => {
    const { graph, storage } = memoryGraph([vpcDriver]);
    await createImage(graph, 'vpc', 'memory:f.vhd', { size: 3 * MiB, subformat: 'fixed' });
    const bb = await BlockBackend.open(graph, 'memory:f.vhd', { format: 'vpc' });
    await bb.write(12345, new Uint8Array(1000).fill(9));
    expect(storage.get('f.vhd')!.toBytes()[12345 + 999]).toBe(9);
    await expectBlockError(bb.truncate(4 * MiB), 'ENOTSUP');
    await bb.close();
    // Probed, a fixed image is raw (its footer is at the end), as in QEMU.
    const probed = await BlockBackend.open(graph, 'memory:f.vhd', { readOnly: true });
    expect(probed.node.driver.name).toBe('raw');
    await probed.close();
  });

  it('errors carry a code and name the value', async () => {
    const { graph, storage } = memoryGraph([vpcDriver]);
    await createImage(graph, 'vpc', 'memory:e.vhd', { size: MiB });
    const f = storage.get('e.vhd')!;
    const bytes = f.toBytes();
    // Block size 3000.
    const bad = bytes.slice();
    new DataView(bad.buffer).setUint32(512 + DYN.blockSize, 3000);
    storage.create('bs.vhd', bad.length).writeRaw(0, bad);
    await expectBlockError(BlockBackend.open(graph, 'memory:bs.vhd', { format: 'vpc' }), 'EINVAL', /Invalid block size 3000/);
    // Checksum: stored and computed values.
    const sum = bytes.slice();
    sum[FOOTER.savedState] = 1;
    storage.create('sum.vhd', sum.length).writeRaw(0, sum);
    await expectBlockError(BlockBackend.open(graph, 'memory:sum.vhd', { format: 'vpc' }), 'EINVAL', /Incorrect header checksum \(stored 0x[0-9a-f]+, computed 0x[0-9a-f]+\)/);
    // Unknown size calculation mode.
    await expectBlockError(
      BlockBackend.open(graph, { driver: 'vpc', force_size_calc: 'geometry', file: { driver: 'memory', filename: 'e.vhd' } }),
      'EINVAL',
      /Invalid size calculation mode: 'geometry'/,
    );
    // Creation past 2040 GiB.
    await expectBlockError(createImage(graph, 'vpc', 'memory:big.vhd', { size: 2041 * 2 ** 30, force_size: true }), 'EFBIG', new RegExp(`2040 GiB \\(${2041 * 2 ** 30} bytes\\)`));
  });
});

describe('vpc through the block worker service (the page API, run in Node)', () => {
  it('creates, converts to and imports VHD images; info and reads as the guest wrote', async () => {
    const { BlockWorkerService } = await import('../../../workers/service.js');
    const svc = new BlockWorkerService();
    try {
      await svc.create({ path: 'memory:w-src.qcow2', format: 'qcow2', size: 5 * MiB });
      const src = await svc.open({ path: 'memory:w-src.qcow2' });
      await src.write(MiB, new Uint8Array(3 * MiB).fill(0x5a));
      await src.close();
      await svc.convert({ from: 'memory:w-src.qcow2', to: 'memory:w.vhd', format: 'vpc', options: { subformat: 'dynamic' } });
      const info = await svc.info('memory:w.vhd');
      // The size rounded up to the CHS geometry, as qemu-img convert -O vpc does.
      expect(info).toMatchObject({ format: 'vpc', virtualSize: roundedImageSize(5 * MiB, false).totalSectors * 512 });
      expect(info.virtualSize).toBeGreaterThan(5 * MiB);
      const disk = await svc.open({ path: 'memory:w.vhd' });
      const got = await disk.read(MiB - 1, 3 * MiB + 2);
      expect(got[0]).toBe(0);
      expect(got.subarray(1, 3 * MiB + 1).every((x) => x === 0x5a)).toBe(true);
      expect(got[3 * MiB + 1]).toBe(0);
      await disk.close();
      // A VHD file brought in unchanged opens probed as vpc.
      const { defaultMemoryStorage } = await import('../../../src/node.js');
      const bytes = defaultMemoryStorage.get('w.vhd')!.toBytes();
      await svc.importBlob(new Blob([bytes.slice().buffer as ArrayBuffer]), { to: 'memory:copied.vhd', format: 'copy' });
      expect(await svc.info('memory:copied.vhd')).toMatchObject({ format: 'vpc' });
    } finally {
      await svc.shutdown();
    }
  });
});
