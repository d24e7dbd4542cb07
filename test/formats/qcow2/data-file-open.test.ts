/**
 * External data files against qemu-img / qemu-io 7.2 (iotest 244's open
 * cases): `amend -o data_file=` removes the name from the image (then an open
 * without a data-file option is refused), data_file_raw=on is refused on an
 * existing image,
 * and a data-file option on an image with internal data opens the child first,
 * so its own open error wins over "can only be set".
 */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, normalize, ours, theirs } from '../../cli/harness.js';

const fx = new Fixture((_dir, sh) => {
  sh('qemu-img create -q -f qcow2 -o data_file=ext.qcow2.data ext.qcow2 64M');
  sh('qemu-img create -q -f qcow2 int.qcow2 64M');
  sh('qemu-img create -q -f raw other.raw 64M');
});
afterAll(() => fx.dispose());

async function same(tool: 'img' | 'io', args: string[], dirs = { q: fx.copy(), d: fx.copy() }): Promise<{ q: string; d: string }> {
  const q = theirs(tool, args, dirs.q);
  const d = await ours(tool, args, dirs.d);
  const out = { q: `${q.code} ${normalize(q.stdout + q.stderr)}`, d: `${d.code} ${normalize(d.stdout + d.stderr)}` };
  expect(out.d).toBe(out.q);
  return out;
}

describe('external data file opens and amends, as QEMU', () => {
  for (const [name, amend] of [
    ['data_file= removes the name', 'data_file='],
    ['data_file=other.raw renames it', 'data_file=other.raw'],
    ['data_file_raw=on is refused on an existing image', 'data_file_raw=on'],
  ] as const) {
    it(`amend -o ${amend}: ${name}; the header and then opens agree`, async () => {
      const dirs = { q: fx.copy(), d: fx.copy() };
      await same('img', ['amend', '-o', amend, 'ext.qcow2'], dirs);
      // The whole header cluster: same extensions, same bits.
      const head = (dir: string) => readFileSync(join(dir, 'ext.qcow2')).subarray(0, 65536);
      expect(Buffer.compare(head(dirs.d), head(dirs.q))).toBe(0);
      await same('io', ['-c', 'open ext.qcow2', '-c', 'read -P 0 0 64k'], dirs);
      await same('io', ['-c', 'open -odata-file.filename=ext.qcow2.data ext.qcow2', '-c', 'read -P 0 0 64k'], dirs);
    });
  }

  it('a data-file option on an image with internal data: the child opens first', async () => {
    await same('io', ['-c', 'open -odata-file.filename=inexistent int.qcow2', '-c', 'read -P 0 0 64k']);
    await same('io', ['-c', 'open -odata-file.filename=other.raw int.qcow2', '-c', 'read -P 0 0 64k']);
  });
});
