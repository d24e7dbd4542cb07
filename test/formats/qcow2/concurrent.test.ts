/**
 * Concurrent requests: writes to different clusters overlap their data I/O
 * (allocation and L2 updates stay under the image lock). Many random writes,
 * zero writes and discards are issued at once; overlapping ones are ordered
 * by the generic layer in submission order, so the result must be what QEMU
 * produces running the same operations one by one, and qemu-img check must
 * find no corruptions and no leaks.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { createImage, ReqFlag, type BlockBackend } from '../../../src/node.js';
import type { Qcow2Image } from '../../../src/formats/qcow2/qcow2.js';
import { tempDir, qemuImg, qemuIo, qemuCheck, fileGraph, openQcow2, prng, qemuIoCommand, type Op } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());


/** Mostly small writes packed into few clusters, so that many share a cluster without sharing bytes. */
function randomOps(seed: number, size: number, cs: number, count: number): Op[] {
  const r = prng(seed);
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) {
    const k = r();
    const kind: Op['kind'] = k < 0.75 ? 'write' : k < 0.85 ? 'zero' : k < 0.93 ? 'zero-unmap' : 'discard';
    const unit = kind === 'discard' ? cs : 512;
    const maxLen = r() < 0.8 ? 2048 : cs * 3;
    const off = Math.floor((r() * (size - cs * 3)) / unit) * unit;
    const len = Math.max(unit, Math.floor((r() * maxLen) / unit) * unit);
    ops.push({ kind, off, len, val: 1 + Math.floor(r() * 250) });
  }
  return ops;
}


function submit(bb: BlockBackend, op: Op): Promise<void> {
  if (op.kind === 'write') return bb.write(op.off, new Uint8Array(op.len).fill(op.val));
  if (op.kind === 'zero') return bb.writeZeroes(op.off, op.len, 0);
  if (op.kind === 'zero-unmap') return bb.writeZeroes(op.off, op.len, ReqFlag.MAY_UNMAP);
  return bb.discard(op.off, op.len);
}

describe('qcow2 concurrent writes', () => {
  const variants: Array<[string, string]> = [
    ['4k clusters over a backing file', 'cluster_size=4096'],
    ['extended L2 over a backing file', 'cluster_size=65536,extended_l2=on'],
    ['64k clusters, lazy refcounts', 'cluster_size=65536,lazy_refcounts=on'],
  ];
  for (const [name, opts] of variants) {
    it(`gives QEMU's sequential result for concurrent requests: ${name}`, async () => {
      const size = 4 << 20;
      const cs = Number(/cluster_size=(\d+)/.exec(opts)![1]);
      const tag = name.replace(/\W/g, '_');
      const base = t.path(`${tag}-base.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', base, String(size));
      qemuIo(base, [`write -P 0x5a 0 ${size}`]);
      const ours = t.path(`${tag}-ours.qcow2`);
      const theirs = t.path(`${tag}-theirs.qcow2`);
      for (const f of [ours, theirs]) {
        qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, '-b', base, '-F', 'qcow2', f, String(size));
      }
      const ops = randomOps(cs + opts.length, size, cs, 600);
      qemuIo(theirs, ops.map(qemuIoCommand));

      const bb = await openQcow2(fileGraph(), ours, false, { discard: 'unmap' });
      const img = bb.node.instance as unknown as Qcow2Image;
      let maxInFlight = 0;
      let sampling = true;
      const sample = () => {
        maxInFlight = Math.max(maxInFlight, img.inFlight.size);
        if (sampling) setImmediate(sample);
      };
      sample();
      try {
        for (let i = 0; i < ops.length; i += 64) await Promise.all(ops.slice(i, i + 64).map((op) => submit(bb, op)));
        await bb.flush();
      } finally {
        sampling = false;
        await bb.close();
      }
      // Writes did overlap (more than one run between allocation and L2 update).
      expect(maxInFlight).toBeGreaterThan(1);
      const c = qemuCheck(ours);
      expect({ corruptions: c.corruptions ?? 0, leaks: c.leaks ?? 0, errors: c['check-errors'] }).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
      const a = t.path(`${tag}-ours.raw`);
      const b = t.path(`${tag}-theirs.raw`);
      qemuImg('convert', '-O', 'raw', ours, a);
      qemuImg('convert', '-O', 'raw', theirs, b);
      expect(Buffer.compare(readFileSync(a), readFileSync(b))).toBe(0);
    });
  }

  it('keeps image-wide operations away from writes in flight (check and truncate wait for them)', async () => {
    const f = t.path('wide.qcow2');
    const g = fileGraph();
    await createImage(g, 'qcow2', f, { size: 8 << 20, cluster_size: 4096 });
    const bb = await openQcow2(g, f);
    try {
      const writes: Array<Promise<void>> = [];
      for (let i = 0; i < 64; i++) writes.push(bb.write(i * 65536 + 512, new Uint8Array(1024).fill(i + 1)));
      // Start the check while clusters are allocated but not yet in an L2 table
      // (a check then would take them for leaks and free them).
      const img = bb.node.instance as unknown as Qcow2Image;
      while (img.inFlight.size === 0) await new Promise((r) => setImmediate(r));
      const check = bb.node.instance.check!({ leaks: true, errors: true });
      const grow = bb.truncate(16 << 20);
      await Promise.all([...writes, check, grow]);
      const res = await check;
      expect({ corruptions: res.corruptions, leaks: res.leaks - res.leaksFixed }).toEqual({ corruptions: 0, leaks: 0 });
      for (let i = 0; i < 64; i++) {
        const got = await bb.read(i * 65536 + 512, 1024);
        expect(got.every((x) => x === i + 1)).toBe(true);
      }
    } finally {
      await bb.close();
    }
    const c = qemuCheck(f);
    expect({ corruptions: c.corruptions ?? 0, leaks: c.leaks ?? 0 }).toEqual({ corruptions: 0, leaks: 0 });
  });
});
