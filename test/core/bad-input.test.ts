/**
 * Bad input: every malformed request or option gets a BlockError with a code
 * and a message that names the value.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend, BlockError, OptionReader, parseJsonFilename, normalizeOptions } from '../../src/node.js';
import { expectBlockError, memoryGraph } from './helpers.js';

async function disk(size = 1 << 20) {
  const { graph, storage } = memoryGraph();
  storage.create('d', size);
  const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' });
  return { graph, storage, bb };
}

describe('bad requests', () => {
  const badOffsets: Array<[string, number, RegExp]> = [
    ['negative', -1, /offset -1/],
    ['NaN', Number.NaN, /offset NaN/],
    ['fractional', 1.5, /offset 1.5/],
    ['infinite', Number.POSITIVE_INFINITY, /offset Infinity/],
    ['beyond 2^53', 2 ** 53 + 2, /offset 9007199254740994/],
  ];
  for (const [what, offset, re] of badOffsets) {
    it(`rejects a ${what} offset on read, write, zero write and discard`, async () => {
      const { bb } = await disk();
      await expectBlockError(bb.read(offset, 512), 'EINVAL', re);
      await expectBlockError(bb.write(offset, new Uint8Array(512)), 'EINVAL', re);
      await expectBlockError(bb.writeZeroes(offset, 512), 'EINVAL', re);
      await expectBlockError(bb.discard(offset, 512), 'EINVAL', re);
      await expectBlockError(bb.blockStatus(offset, 512), 'EINVAL', re);
      await bb.close();
    });
  }

  it('rejects bad lengths, naming them', async () => {
    const { bb } = await disk();
    await expectBlockError(bb.read(0, -5), 'EINVAL', /length -5/);
    await expectBlockError(bb.read(0, Number.NaN), 'EINVAL', /length NaN/);
    await expectBlockError(bb.read(0, 0.5), 'EINVAL', /length 0.5/);
    await expectBlockError(bb.writeZeroes(0, 2 ** 60), 'EINVAL', new RegExp(`length ${2 ** 60}`));
    await expectBlockError(bb.read(2 ** 52, 2 ** 52), 'EINVAL', /beyond 2\^53/);
    // A huge length never allocates: it is refused before.
    await expectBlockError(bb.read(0, 2 ** 40), 'EIO', /beyond the end/);
    await bb.close();
  });

  it('rejects requests beyond the end of the device with EIO naming offset and size', async () => {
    const { bb } = await disk(4096);
    await expectBlockError(bb.read(4096, 1), 'EIO', /offset 4096 of 1 bytes.*4096 bytes/);
    await expectBlockError(bb.write(4000, new Uint8Array(100)), 'EIO', /offset 4000 of 100 bytes/);
    await expectBlockError(bb.writeZeroes(5000, 1), 'EIO', /offset 5000/);
    // Nothing was written by the refused requests.
    expect((await bb.read(0, 4096)).every((b) => b === 0)).toBe(true);
    await bb.close();
  });

  it('rejects non-buffer data', async () => {
    const { bb } = await disk();
    await expectBlockError(bb.write(0, 'hello' as unknown as Uint8Array), 'EINVAL');
    await expectBlockError(bb.pread(0, [1, 2] as unknown as Uint8Array), 'EINVAL');
    await expectBlockError(bb.pread(0, null as unknown as Uint8Array), 'EINVAL', /not a Uint8Array/);
    await expectBlockError(bb.write(0, undefined as unknown as Uint8Array), 'EINVAL');
    await bb.close();
  });

  it('refuses requests after close with ENOMEDIUM', async () => {
    const { bb } = await disk();
    await bb.close();
    await expectBlockError(bb.read(0, 1), 'ENOMEDIUM', /closed/);
  });
});

describe('bad options', () => {
  it('refuses unknown drivers and options, naming them', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 512);
    await expectBlockError(graph.open({ driver: 'nosuch' }), 'EINVAL', /Unknown driver 'nosuch'/);
    await expectBlockError(
      graph.open({ driver: 'raw', colour: 'blue', file: { driver: 'memory', filename: 'd' } }),
      'EINVAL',
      /Block format 'raw' does not support the option 'colour'/,
    );
    await expectBlockError(
      graph.open({ driver: 'raw', file: { driver: 'memory', filename: 'd', bogus: 1 } }),
      'EINVAL',
      /Block protocol 'memory' doesn't support the option 'bogus'/,
    );
    await expectBlockError(graph.open({}), 'EINVAL', /Must specify either driver or file/);
    expect(graph.listNodes()).toEqual([]);
  });

  it('refuses values of the wrong type, naming key and value', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 4096);
    await expectBlockError(
      graph.open({ driver: 'raw', offset: 'lots', file: { driver: 'memory', filename: 'd' } }),
      'EINVAL',
      /'offset' expects a non-negative number below 2\^64 \(.*'lots'\)/,
    );
    await expectBlockError(
      graph.open({ driver: 'raw', 'read-only': 'perhaps', file: { driver: 'memory', filename: 'd' } }),
      'EINVAL',
      /'read-only' expects 'on' or 'off' \(got 'perhaps'\)/,
    );
    await expectBlockError(
      graph.open({ driver: 'raw', 'detect-zeroes': 'sometimes', file: { driver: 'memory', filename: 'd' } }),
      'EINVAL',
      /'detect-zeroes' does not accept value 'sometimes'/,
    );
    await expectBlockError(
      graph.open({ driver: 'raw', offset: 8192, file: { driver: 'memory', filename: 'd' } }),
      'EINVAL',
      /offset \(8192\)/,
    );
    await expectBlockError(
      graph.open({ driver: 'raw', 'detect-zeroes': 'unmap', file: { driver: 'memory', filename: 'd' } }),
      'EINVAL',
      /detect-zeroes to unmap/,
    );
    expect(graph.listNodes()).toEqual([]);
  });

  it('parses json: filenames and refuses broken ones', async () => {
    expect(parseJsonFilename('json:{"driver":"raw","file.driver":"memory","file":{"filename":"x"}}')).toEqual({
      driver: 'raw',
      file: { driver: 'memory', filename: 'x' },
    });
    expect(() => parseJsonFilename('json:{"driver":')).toThrow(BlockError);
    expect(() => parseJsonFilename('json:[1]')).toThrow(/Invalid JSON object given/);
    expect(() => normalizeOptions({ 'a.b': 1, a: 2 })).toThrow(/given both as a value and as an object|given twice/);
    expect(() => normalizeOptions({ 'a..b': 1 })).toThrow(/Invalid option name 'a..b'/);
  });

  it('reads sizes with suffixes and refuses nonsense', () => {
    const r = new OptionReader({ a: '64k', b: '1.5G', c: 512, d: '-1', e: '12Q', f: 3.5 }, 'test');
    expect(r.size('a')).toBe(65536);
    expect(r.size('b')).toBe(1.5 * 2 ** 30);
    expect(r.size('c')).toBe(512);
    expect(() => r.size('d')).toThrow(/'d' expects a non-negative number below 2\^64 \(.*'-1'\)/);
    expect(() => r.size('e')).toThrow(/'12Q'/);
    expect(() => r.size('f')).toThrow(/'f' expects a size \(got '3.5'\)/);
  });
});
