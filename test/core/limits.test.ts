/**
 * Request limits: alignment, maximum transfer, bounds.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
} from '../../src/node.js';
import { expectBlockError, memoryGraph } from './helpers.js';

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
