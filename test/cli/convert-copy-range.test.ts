/**
 * `img convert -C` (copy offloading, QEMU's blk_co_copy_range) against
 * qemu-img 7.2: the same images and allocation maps (data pieces copied
 * whole, zero-filled ones included, where a plain convert leaves holes),
 * through raw, qcow2 and a qcow2 overlay over its backing file; compressed
 * sources fall back to reads and writes; the option conflicts' messages.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, hasQemu, words } from './harness.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f raw s.raw 4M');
  sh(`qemu-io -f raw -c 'write -P 5 0 1M' -c 'write -P 0 1M 1M' -c 'write -P 7 3M 64k' s.raw >/dev/null`);
  sh('qemu-img convert -f raw -O qcow2 s.raw q.qcow2');
  sh(`qemu-io -f qcow2 -c 'write -P 0 2M 64k' -c 'write -z 128k 64k' q.qcow2 >/dev/null`);
  sh('qemu-img create -q -f qcow2 -b q.qcow2 -F qcow2 ov.qcow2');
  sh(`qemu-io -f qcow2 -c 'write -P 9 512k 64k' ov.qcow2 >/dev/null`);
  sh('qemu-img convert -c -f raw -O qcow2 s.raw c.qcow2');
}

describe.skipIf(!hasQemu())('img convert -C vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  const cases: Array<[string, string[]]> = [
    ['convert -C -f raw -O raw s.raw o.raw', ['o.raw']],
    ['convert -C -f raw -O qcow2 s.raw o.qcow2', ['o.qcow2']],
    ['convert -C -O qcow2 q.qcow2 o.qcow2', ['o.qcow2']],
    ['convert -C -O raw q.qcow2 o.raw', ['o.raw']],
    ['convert -C -O qcow2 ov.qcow2 o.qcow2', ['o.qcow2']],
    ['convert -C -O qcow2 -B q.qcow2 -F qcow2 ov.qcow2 o.qcow2', ['o.qcow2']],
    ['convert -C -O qcow2 -o cluster_size=4k q.qcow2 o.qcow2', ['o.qcow2']],
    ['convert -C -O qcow2 c.qcow2 o.qcow2', ['o.qcow2']],
    ['convert -C -O qcow2 q.qcow2 s.raw o.qcow2', ['o.qcow2']],
    ['convert -C -c -O qcow2 q.qcow2 o.qcow2', []],
    ['convert -C -S 4k -O qcow2 q.qcow2 o.qcow2', []],
    ['convert -C --salvage -O qcow2 q.qcow2 o.qcow2', []],
  ];
  for (const [line, images] of cases) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line), sameImages: images });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});
