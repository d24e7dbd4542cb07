/**
 * File names with colons (iotest 126) against qemu-img / qemu-io 7.2: a
 * `file:` prefix names the protocol and the rest is the path, colons
 * included; a colon before any slash names a protocol, also in backing file
 * names stored in images; relative backing names resolve against the image.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';

describe('file names with colons vs QEMU 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 base.qcow2 1M');
      sh(`qemu-io -c 'write -P 5 0 4k' base.qcow2 >/dev/null`);
      sh(`qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 'file:image:top.qcow2'`);
      sh('mkdir sub');
      sh(`qemu-img create -q -f qcow2 'sub/image:base.qcow2' 1M`);
      sh(`qemu-img create -q -f qcow2 -b './image:base.qcow2' -F qcow2 'sub/image:top.qcow2'`);
      sh(`qemu-img create -q -f qcow2 -u -b 'image:base.qcow2' -F qcow2 sub/proto.qcow2 1M`);
      sh(`qemu-img create -q -f qcow2 -u -b 'file:image:base.qcow2' -F qcow2 sub/prefixed.qcow2 1M`);
    });
  });
  afterAll(() => fx.dispose());

  const creates: Array<[string, string]> = [
    ['create -f qcow2 file:a:b.qcow2 64M', 'a:b.qcow2'],
    ['create -f raw file:a:b.raw 1M', 'a:b.raw'],
    ['create -f qcow2 file:sub/c:d.qcow2 1M', 'sub/c:d.qcow2'],
    ['create -f qcow2 -b base.qcow2 -F qcow2 file:e:f.qcow2', 'e:f.qcow2'],
  ];
  for (const [line, out] of creates) {
    it(`qemu-img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line), sameImages: [out] });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }

  const img = [
    'info file:image:top.qcow2',
    'info --output=json file:image:top.qcow2',
    'info --backing-chain file:image:top.qcow2',
    'info ./image:top.qcow2',
    'info image:top.qcow2',
    'info sub/image:top.qcow2',
    'info --backing-chain sub/image:top.qcow2',
    'info sub/proto.qcow2',
    'info --backing-chain sub/proto.qcow2',
    'check file:image:top.qcow2',
    'map file:image:top.qcow2',
    'compare file:image:top.qcow2 base.qcow2',
  ];
  for (const line of img) {
    it(`qemu-img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  const io = [
    `-c 'read -P 5 0 4k' file:image:top.qcow2`,
    `-c 'read 0 4k' sub/proto.qcow2`,
    `-c 'read 0 4k' sub/prefixed.qcow2`,
    `-c 'read 0 4k' -c 'open file:sub/image:top.qcow2' -c 'read 0 4k'`,
  ];
  for (const line of io) {
    it(`qemu-io ${line}`, async () => {
      const g = await golden(fx, { tool: 'io', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }
});
