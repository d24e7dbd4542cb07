/**
 * host_device / host_cdrom (src/protocols/node-device.ts): which files they
 * accept, the device size search, medium checks, and protocol probing of
 * plain device names. No real block device is needed: /dev/null is a
 * character device, and the size search is checked against simulated ends.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, createImage, createNodeGraph } from '../../src/node.js';
import { findDeviceEnd } from '../../src/protocols/node-device.js';
import { expectBlockError } from '../core/helpers.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dw-device-'));
  writeFileSync(join(dir, 'reg.img'), new Uint8Array(4096));
  mkdirSync(join(dir, 'sub'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('findDeviceEnd', () => {
  const sizes = [0, 512, 1024, 1536, 512 * 1000003, 2 ** 40, 2 ** 40 + 512, 2 ** 53 - 512];
  for (const size of sizes) {
    it(`finds the end of a ${size}-byte device in few reads`, async () => {
      let reads = 0;
      const end = await findDeviceEnd(async (offset) => {
        reads++;
        expect(offset % 512).toBe(0);
        return offset < size;
      });
      expect(end).toBe(size);
      expect(reads).toBeLessThanOrEqual(2 * 45 + 2);
    });
  }

  it('refuses a device that never ends', async () => {
    await expect(findDeviceEnd(async () => true)).rejects.toThrow(/larger than/);
  });
});

describe('host_device / host_cdrom / file', () => {
  for (const driver of ['host_device', 'host_cdrom']) {
    it(`${driver} refuses a regular file and a directory, read-only and read-write`, async () => {
      const g = createNodeGraph();
      for (const readOnly of [true, false]) {
        await expectBlockError(
          BlockBackend.open(g, { driver, filename: join(dir, 'reg.img'), 'read-only': readOnly }),
          'EINVAL',
          new RegExp(`'${driver}' driver requires '.*reg\\.img' to be either a character or block device`),
        );
      }
      await expectBlockError(BlockBackend.open(g, { driver, filename: join(dir, 'sub'), 'read-only': true }), 'EINVAL', /to be either a character or block device/);
      await expectBlockError(BlockBackend.open(g, { driver, filename: join(dir, 'sub') }), 'EINVAL', /^Could not open '.*sub': Is a directory$/);
      await g.closeAll();
    });
  }

  it('file refuses /dev/null; host_device opens it with size 0 and cannot grow it', async () => {
    const g = createNodeGraph();
    await expectBlockError(BlockBackend.open(g, { driver: 'file', filename: '/dev/null', 'read-only': true }), 'EINVAL', /'file' driver requires '\/dev\/null' to be a regular file/);
    const bb = await BlockBackend.open(g, { driver: 'host_device', filename: '/dev/null' });
    expect(bb.length).toBe(0);
    expect(bb.isAvailable).toBe(true);
    await expectBlockError(bb.truncate(1 << 20), 'EINVAL', /Cannot grow device files/);
    await bb.truncate(0);
    await expectBlockError(bb.truncate(0, { prealloc: 'full' }), 'ENOTSUP', /Preallocation mode 'full' unsupported/);
    // After a (no-op) truncate the close flushes, and /dev/null refuses fdatasync, as it does QEMU's.
    await expectBlockError(bb.close(), 'EINVAL');
    await g.closeAll();
  });

  it('host_cdrom on a character device has no medium: requests fail with ENOMEDIUM, raw above too', async () => {
    const g = createNodeGraph();
    const bb = await BlockBackend.open(g, { driver: 'raw', file: { driver: 'host_cdrom', filename: '/dev/null' } });
    expect(bb.isAvailable).toBe(false);
    expect(() => bb.getLength()).toThrow(/No medium found/);
    await expectBlockError(bb.read(0, 512), 'ENOMEDIUM');
    await expectBlockError(bb.write(0, new Uint8Array(512)), 'ENOMEDIUM');
    await expectBlockError(bb.flush(), 'ENOMEDIUM');
    await expectBlockError(bb.truncate(0), 'ENOMEDIUM', /No medium inserted/);
    await g.closeAll();
  });

  it('creating a raw image on a device checks its size and does not resize it', async () => {
    const g = createNodeGraph();
    await createImage(g, 'raw', '/dev/null', { size: 0 });
    await expectBlockError(createImage(g, 'raw', '/dev/null', { size: '1M' }), 'EINVAL', /Cannot grow device files/);
    await expectBlockError(createImage(g, 'raw', '/dev/null', { size: 0, preallocation: 'falloc' }), 'EINVAL', /Unsupported preallocation mode 'falloc'/);
    await expectBlockError(createImage(g, 'raw', join(dir, 'sub', 'x'), { size: 0 }).then(() => BlockBackend.open(g, { driver: 'host_device', filename: join(dir, 'sub', 'x') })), 'EINVAL', /either a character or block device/);
    await g.closeAll();
  });

  it('a plain device name opens with host_device, a plain file name with file', async () => {
    const g = createNodeGraph();
    const dev = await BlockBackend.open(g, '/dev/null', { format: 'raw', readOnly: true });
    expect(dev.node.file?.node.driver.name).toBe('host_device');
    const reg = await BlockBackend.open(g, join(dir, 'reg.img'), { format: 'raw', readOnly: true });
    expect(reg.node.file?.node.driver.name).toBe('file');
    // An explicit file: prefix means the file driver, which refuses a device.
    await expectBlockError(BlockBackend.open(g, 'file:/dev/null', { format: 'raw', readOnly: true }), 'EINVAL', /to be a regular file/);
    await g.closeAll();
  });
});
