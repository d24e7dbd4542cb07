/**
 * One interpreter, two disks: the same qemu-io command list through the
 * shared interpreter over a BlockBackend (what `diskworker io` runs on) and
 * over the page's Disk class (what the demo's console runs on, here wired to
 * the worker's DiskService directly instead of through postMessage) gives the
 * same output, line for line, on the memory back end.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend } from '../../src/core/backend.js';
import { BlockGraph } from '../../src/core/graph.js';
import { createImage } from '../../src/core/create.js';
import { createMemoryDriver, MemoryStorage, nullDriver, rawDriver, qcow2Driver } from '../../src/node.js';
import { Disk } from '../../src/client/index.js';
import type { DiskApi } from '../../src/client/api.js';
import type { Remote } from 'comlink';
import { DiskService } from '../../workers/disk-service.js';
import { IoSession } from '../../src/cli/io/session.js';
import { CORE_COMMANDS } from '../../src/cli/io/commands/index.js';
import { BackendDisk } from '../../src/cli/io/backend-disk.js';
import { PageDisk } from '../../src/cli/io/page-disk.js';
import type { IoDisk } from '../../src/cli/io/disk.js';
import { normalize } from './harness.js';

const COMMANDS = [
  'length',
  'write -P 0xab 0 64k',
  'read -P 0xab 0 64k',
  'read -P 0xac 0 4k',
  'read -v 0 32',
  'read -C 512 512',
  'write -z 1M 256k',
  'write -z -u 2M 128k',
  'write -f -P 7 3M 4k',
  'map',
  'alloc 0 128k',
  'alloc 1M 512k',
  'alloc 7M 4M',
  'discard 0 64k',
  'map',
  'readv -P 0 0 4k 4k',
  'writev -P 0x11 3M 4k 8k',
  'readv -v 3M 16 16',
  'aio_write -P 3 5M 4k',
  'aio_read -P 3 5M 4k',
  'aio_flush',
  'read 9M 4k',
  'write 0 99999999999999',
  'read -x 0 1',
  'read 0',
  'write -z -P 1 0 1',
  'write -u 0 1',
  'read 1x 1',
  'read -P 0x100 0 1',
  'truncate 16M',
  'length',
  'truncate -m bogus 1M',
  'flush',
  'nosuch',
  'help',
  'help read',
  'help nosuch',
  'sleep 1',
  'break a b',
];

async function run(disk: IoDisk, commands: string[]): Promise<string> {
  let text = '';
  const s = new IoSession({ stdout: (x) => (text += x), stderr: (x) => (text += x) }, CORE_COMMANDS);
  s.disk = disk;
  for (const c of commands) {
    text += `> ${c}\n`;
    const rc = await s.command(c);
    text += `= ${rc}\n`;
  }
  await s.close();
  return normalize(text);
}

async function fresh(format: 'raw' | 'qcow2'): Promise<BlockBackend> {
  const storage = new MemoryStorage();
  const graph = new BlockGraph([createMemoryDriver(storage), nullDriver, rawDriver, qcow2Driver], 'memory');
  await createImage(graph, format, 'img', { size: 8 << 20 });
  return BlockBackend.open(graph, { driver: format, file: { driver: 'memory', filename: 'img' } }, { readOnly: false }, { name: '', writeThrough: true });
}

describe('the qemu-io interpreter over a BlockBackend and over the page Disk', () => {
  for (const format of ['raw', 'qcow2'] as const) {
    it(`${format}: same output for the same commands`, async () => {
      const cli = await run(new BackendDisk(await fresh(format)), COMMANDS);
      const bb = await fresh(format);
      const service = new DiskService(bb, 'img', () => undefined);
      const disk = new Disk(service as unknown as Remote<DiskApi>, 'img', bb.length, bb.readOnly, format);
      const page = await run(new PageDisk(disk), COMMANDS);
      expect(page).toBe(cli);
      // The run did something: data went in and came back checked.
      expect(cli).toContain('read 65536/65536 bytes at offset 0');
      expect(cli).toContain('Pattern verification failed at offset 0, 4096 bytes');
      if (format === 'qcow2') expect(cli).toContain('65536/131072 bytes allocated at offset 0 bytes');
    });
  }
});
