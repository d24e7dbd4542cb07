/**
 * Options given for the backing child (`open -o backing.x=y`) and backing
 * formats stored in the image, against qemu-io / qemu-img 7.2 (iotests 114
 * and 133): options for the backing child still open the file the image
 * names, an unknown backing format is an unknown driver.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';

/** Rewrites the 3-byte backing format "raw" stored in a qcow2 header extension to `fmt`. */
const SET_FMT = (file: string, fmt: string) =>
  `node -e "const fs=require('fs');const b=fs.readFileSync('${file}');` +
  `const i=b.indexOf(Buffer.from([0xe2,0x79,0x2a,0xca,0,0,0,3,0x72,0x61,0x77]));` +
  `if(i<0)process.exit(1);b.write('${fmt}',i+8,'latin1');fs.writeFileSync('${file}',b)"`;

describe('backing child options and backing formats vs QEMU 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 base.qcow2 1M');
      sh(`qemu-io -c 'write -P 7 0 4k' base.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2');
      sh('qemu-img create -q -f qcow2 -b base.qcow2 -F raw foo.qcow2');
      sh(SET_FMT('foo.qcow2', 'foo'));
    });
  });
  afterAll(() => fx.dispose());

  const io = [
    // iotest 114: an unknown backing format fails, a given backing driver overrides it.
    `-c 'open foo.qcow2' -c 'read 0 4k'`,
    `-c 'open -o backing.driver=qcow2 foo.qcow2' -c 'read -P 7 0 4k'`,
    `-c 'open -o backing.driver=raw foo.qcow2' -c 'read -P 81 0 1'`,
    `-c 'open -o backing.driver=file foo.qcow2' -c 'read -P 81 0 1'`,
    `-c 'open -o backing.driver=bar foo.qcow2' -c 'read 0 1'`,
    // iotest 133: the node-name of the backing child (and of its file) may be repeated on reopen.
    `-c 'open -o backing.node-name=foo top.qcow2' -c 'reopen -o backing.node-name=foo' -c 'read -P 7 0 4k'`,
    `-c 'open -o backing.node-name=foo top.qcow2' -c 'reopen' -c 'read -P 7 0 4k'`,
    `-c 'open -o backing.file.node-name=x top.qcow2' -c 'reopen -o backing.file.node-name=x' -c 'read -P 7 0 4k'`,
    `-c 'open -o backing.node-name=foo top.qcow2' -c 'reopen -o backing.node-name=bar'`,
    `-c 'open -o backing.file.driver=file top.qcow2' -c 'read -P 7 0 4k'`,
    `-c 'open -o backing.file.filename=base.qcow2 top.qcow2' -c 'read -P 7 0 4k'`,
    `-c 'open -o backing.read-only=on top.qcow2' -c 'read -P 7 0 4k'`,
  ];
  for (const line of io) {
    it(`qemu-io ${line}`, async () => {
      const g = await golden(fx, { tool: 'io', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  for (const line of ['info foo.qcow2', 'info --backing-chain top.qcow2', 'check foo.qcow2']) {
    it(`qemu-img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }
});
