/**
 * Probing safety: what a probed raw image may not do.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  BlockError,
} from '../../src/node.js';
import { expectBlockError, memoryGraph } from './helpers.js';

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
