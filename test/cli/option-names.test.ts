/**
 * Option names in json: filenames, --image-opts strings and -o lists are taken
 * literally, as QEMU takes them: an abbreviated name is an unknown option,
 * never a prefix match; a child named by a string is looked up as a node
 * reference with QEMU's message. Golden: same lines, same exit code.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden } from './harness.js';

describe('literal option names vs qemu-img / qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f qcow2 ok.qcow2 1M'));
  });
  afterAll(() => fx.dispose());

  const img: string[][] = [
    ['info', 'json:{"driver":"qcow2","file":{"driver":"file","filen":"ok.qcow2"}}'],
    ['info', 'json:{"driv":"qcow2","file":{"driver":"file","filename":"ok.qcow2"}}'],
    ['info', 'json:{"driver":"qcow2","file":"ok.qcow2","detect-zero":"on"}'],
    ['info', '--image-opts', 'driver=qcow2,file.driver=file,file.filena=ok.qcow2'],
    ['info', '--image-opts', 'driver=qcow2,file.drive=file,file.filename=ok.qcow2'],
    ['info', '--image-opts', 'driver=qcow2,file.filename=ok.qcow2,cache.dir=off'],
    ['info', '--image-opts', 'driver=qcow2,file.filename=ok.qcow2,l2-cache-siz=1M'],
    ['info', '--image-opts', 'driver=qcow2,file.filename=ok.qcow2,read-on=on'],
    ['info', '--image-opts', 'file.filename=ok.qcow2,driver=qc'],
    ['info', '--image-opts', 'driver=qcow2,file=ok.qcow2,overlap-check=none'],
    ['create', '-f', 'qcow2', '-o', 'clust=64k', 'x.qcow2', '1M'],
    ['create', '-f', 'qcow2', '-o', 'lazy=on', 'x.qcow2', '1M'],
  ];
  for (const args of img) {
    it(`img ${args.join(' ')}`, async () => {
      const g = await golden(fx, { tool: 'img', args });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  const io: string[][] = [
    ['-c', 'quit', '--image-opts', 'driver=qcow2,file.filename=ok.qcow2,discar=unmap'],
    ['-c', 'quit', 'json:{"driver":"qcow2","fil":"ok.qcow2"}'],
    ['-c', 'quit', 'json:{"driver":"qcow2","file":"ok.qcow2","cache":{"dir":true}}'],
  ];
  for (const args of io) {
    it(`io ${args.join(' ')}`, async () => {
      const g = await golden(fx, { tool: 'io', args });
      expect(g.ours).toEqual(g.theirs);
    });
  }
});
