/**
 * The memory back end's catalogue (list / remove), which the block worker
 * uses instead of switching on path prefixes.
 */
import { describe, it, expect } from 'vitest';
import { BlockGraph } from '../../src/core/graph.js';
import { createImage } from '../../src/core/create.js';
import { MemoryStorage, createMemoryDriver } from '../../src/protocols/memory.js';
import { rawDriver } from '../../src/formats/raw/raw.js';
import { BlockError } from '../../src/core/errors.js';

function setup() {
  const storage = new MemoryStorage();
  const driver = createMemoryDriver(storage, 'mem');
  const g = new BlockGraph([driver, rawDriver], 'mem');
  return { storage, catalogue: driver.catalogue!, g };
}

describe('memory catalogue', () => {
  it('lists images with the driver prefix and their sizes', async () => {
    const { catalogue, g } = setup();
    await createImage(g, 'raw', 'mem:a', { size: 4096 });
    await createImage(g, 'raw', 'mem:b', { size: 512 });
    expect(catalogue.storage).toBe('mem');
    expect(await catalogue.list()).toEqual([
      { path: 'mem:a', size: 4096 },
      { path: 'mem:b', size: 512 },
    ]);
  });

  it('removes an image, refuses a missing one (ENOENT) and one open for writing (EBUSY)', async () => {
    const { catalogue, g } = setup();
    await createImage(g, 'raw', 'mem:a', { size: 4096 });
    await createImage(g, 'raw', 'mem:b', { size: 4096 });
    await catalogue.remove('mem:a');
    expect((await catalogue.list()).map((e) => e.path)).toEqual(['mem:b']);
    const missing = await catalogue.remove('mem:a').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(BlockError);
    expect((missing as BlockError).code).toBe('ENOENT');
    expect((missing as BlockError).message).toContain("'mem:a'");
    const node = await g.open({ driver: 'raw', file: { driver: 'mem', filename: 'mem:b' } }, { readOnly: false });
    const busy = await catalogue.remove('mem:b').catch((e: unknown) => e);
    expect((busy as BlockError).code).toBe('EBUSY');
    await node.unref();
    await g.closeAll();
    await catalogue.remove('mem:b');
    expect(await catalogue.list()).toEqual([]);
  });
});
