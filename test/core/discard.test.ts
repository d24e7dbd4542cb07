/**
 * Discard on the request path.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  BlockError,
} from '../../src/node.js';
import { memoryGraph } from './helpers.js';

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
