/**
 * A luks or encrypted qcow2 create that fails once the file exists deletes
 * the file again, as qemu-img 7.2 does (iotest 282): a secret that is not
 * UTF-8, an unknown secret, a file that was there before, a qcow2 data file
 * beside the image. The same lines, exit code and files as qemu-img; on the
 * memory back end the image is gone from the catalogue too.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs, words } from '../../cli/harness.js';
import { BlockError, createImage, createNodeGraph } from '../../../src/node.js';
import { addSecret } from '../../../src/core/secrets.js';

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

const BAD = '--object secret,id=sec0,file=non_utf8_secret';

describe('failed encrypted creates leave no file, as qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((dir) => {
      writeFileSync(join(dir, 'non_utf8_secret'), Buffer.from([0x3a, 0x3c, 0x3b, 0xff]));
      writeFileSync(join(dir, 'old.img'), 'was here before');
    });
  });
  afterAll(() => fx.dispose());

  const CASES = [
    `create -f luks ${BAD} -o key-secret=sec0,iter-time=10 vol.img 4M`,
    `create -f luks ${BAD} -o key-secret=sec0,iter-time=10 old.img 4M`,
    'create -f luks -o key-secret=nosuch vol.img 4M',
    `create -f qcow2 ${BAD} -o encrypt.format=luks,encrypt.key-secret=sec0 enc.qcow2 4M`,
    `create -f qcow2 ${BAD} -o encrypt.format=luks,encrypt.key-secret=sec0,data_file=enc.data enc.qcow2 4M`,
    'create -f qcow2 -o encrypt.format=luks,encrypt.key-secret=nosuch old.img 4M',
    // Refused before any file is made: nothing to delete, the old file stays.
    'create -f luks -o cipher-alg=rot13,key-secret=sec0 old.img 4M',
  ];
  for (const line of CASES) {
    it(line, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const t = theirs('img', words(line), dq);
      const o = await ours('img', words(line), dd);
      expect({ code: o.code, out: normalize(o.stdout + o.stderr) }).toEqual({ code: t.code, out: normalize(t.stdout + t.stderr) });
      expect(t.code).toBe(1);
      expect(readdirSync(dd).sort()).toEqual(readdirSync(dq).sort());
    });
  }

  it('the memory back end: the half-made image is removed', async () => {
    const graph = createNodeGraph();
    addSecret(graph, 'bad', new Uint8Array([0x3a, 0xff]));
    for (const [fmt, opts] of [['luks', { 'key-secret': 'bad' }], ['qcow2', { 'encrypt.format': 'luks', 'encrypt.key-secret': 'bad' }]] as const) {
      const err = await createImage(graph, fmt, `memory:x.${fmt}`, { size: 1 << 20, ...opts }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlockError);
      expect((err as BlockError).message).toBe('Data from secret bad is not valid UTF-8');
      expect((await graph.getDriver('memory').catalogue!.list()).map((e) => e.path)).not.toContain(`memory:x.${fmt}`);
    }
    await graph.closeAll();
  });
});
