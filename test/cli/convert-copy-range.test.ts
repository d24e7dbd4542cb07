/**
 * `img convert -C` (copy offloading, QEMU's blk_co_copy_range) against
 * qemu-img 7.2: the same images and allocation maps (data pieces copied
 * whole, zero-filled ones included, where a plain convert leaves holes),
 * through raw, qcow2 and a qcow2 overlay over its backing file; compressed
 * sources fall back to reads and writes; the option conflicts' messages.
 * Where offloading is not possible (a vmdk target, a null-co, blkdebug or
 * source, an existing target, an offset target) qemu-img
 * 7.2 falls back to reads and writes without a message: the same output,
 * exit code and bytes; so is a copy from another file system (tmpfs to the
 * fixture's: copy_file_range's EXDEV).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, golden, hasQemu, words } from './harness.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f raw s.raw 4M');
  sh(`qemu-io -f raw -c 'write -P 5 0 1M' -c 'write -P 0 1M 1M' -c 'write -P 7 3M 64k' s.raw >/dev/null`);
  sh('qemu-img convert -f raw -O qcow2 s.raw q.qcow2');
  sh(`qemu-io -f qcow2 -c 'write -P 0 2M 64k' -c 'write -z 128k 64k' q.qcow2 >/dev/null`);
  sh('qemu-img create -q -f qcow2 -b q.qcow2 -F qcow2 ov.qcow2');
  sh(`qemu-io -f qcow2 -c 'write -P 9 512k 64k' ov.qcow2 >/dev/null`);
  sh('qemu-img convert -c -f raw -O qcow2 s.raw c.qcow2');
  sh('qemu-img create -q -f raw pre.raw 5M && qemu-img create -q -f qcow2 pre.qcow2 4M');
  sh(`qemu-io -f raw -c 'write -P 3 0 5M' pre.raw >/dev/null`);
}

describe.skipIf(!hasQemu())('img convert -C vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  it.skipIf(!existsSync('/dev/shm'))('img convert -C from another file system (tmpfs)', async () => {
    const shm = mkdtempSync('/dev/shm/dw-copy-range-');
    try {
      copyFileSync(join(fx.copy(), 's.raw'), join(shm, 's.raw'));
      for (const line of [`convert -C -f raw -O raw ${shm}/s.raw o.raw`, `convert -C -f raw -O qcow2 ${shm}/s.raw o.qcow2`]) {
        const g = await golden(fx, { tool: 'img', args: words(line), sameImages: [line.endsWith('raw') ? 'o.raw' : 'o.qcow2'] });
        expect(g.ours, line).toEqual(g.theirs);
        expect(g.imageDiffs, line).toEqual([]);
      }
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });

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
    // Where offloading is not possible qemu-img falls back to reads and writes without a word:
    // a target format without copy_range (vmdk), a source without it (null-co, a filter), an existing target.
    ['convert -C -O vmdk q.qcow2 o.vmdk', ['o.vmdk']],
    ['convert -C -f raw -O vmdk s.raw o.vmdk', ['o.vmdk']],
    ['convert -C -O raw json:{"driver":"null-co","size":4194304,"read-zeroes":true} o.raw', ['o.raw']],
    // Refused before any copy: copy-on-read wants to write its read-only source.
    ['convert -C -O qcow2 json:{"driver":"copy-on-read","file":{"driver":"qcow2","file":{"driver":"file","filename":"q.qcow2"}}} o.qcow2', []],
    ['convert -C -O raw json:{"driver":"blkdebug","image":{"driver":"raw","file":{"driver":"file","filename":"s.raw"}}} o.raw', ['o.raw']],
    ['convert -C -n -f raw -O raw s.raw pre.raw', ['pre.raw']],
    ['convert -C -n -O qcow2 q.qcow2 pre.qcow2', ['pre.qcow2']],
    ['convert -C -W -O qcow2 q.qcow2 o.qcow2', ['o.qcow2']],
    ['convert -C -O qcow2 -o preallocation=metadata q.qcow2 o.qcow2', ['o.qcow2']],
    ['convert -C --target-image-opts -n -f raw s.raw driver=raw,offset=65536,file.filename=pre.raw', ['pre.raw']],
    // A read error under an offloaded copy (blkdebug below the source): the fallback's read reports it
    // (one coroutine: with more, QEMU reports as many errors as reads were in flight).
    ['convert -C -m 1 -O raw json:{"driver":"raw","file":{"driver":"blkdebug","inject-error":[{"event":"read_aio","errno":5}],"image":{"driver":"file","filename":"s.raw"}}} o.raw', []],
  ];
  for (const [line, images] of cases) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line), sameImages: images });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});
