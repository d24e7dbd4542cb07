/**
 * Images created and written by DiskWorker with every creation option:
 * qemu-img check finds no errors and no leaks, qemu-io reads the patterns
 * back, and for the same random operations QEMU produces the same content.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { createImage, ReqFlag } from '../../../src/node.js';
import { tempDir, qemuImg, qemuImgTry, qemuIo, qemuCheck, fileGraph, openQcow2, prng, qemuIoCommand, type Op } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());


function randomOps(seed: number, size: number, cs: number, count: number): Op[] {
  const r = prng(seed);
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) {
    const k = r();
    const kind: Op['kind'] = k < 0.55 ? 'write' : k < 0.7 ? 'zero' : k < 0.85 ? 'zero-unmap' : 'discard';
    const unit = kind === 'discard' ? cs : 512;
    const maxLen = Math.min(size, cs * 4);
    let off = Math.floor((r() * size) / unit) * unit;
    let len = Math.max(unit, Math.floor((r() * maxLen) / unit) * unit);
    if (off + len > size) len = size - off;
    if (len <= 0) {
      off = 0;
      len = unit;
    }
    ops.push({ kind, off, len, val: 1 + Math.floor(r() * 250) });
  }
  return ops;
}


async function runOurs(file: string, ops: Op[], backing = false) {
  const g = fileGraph();
  const bb = await openQcow2(g, file, false, { discard: 'unmap' });
  try {
    for (const op of ops) {
      if (op.kind === 'write') await bb.write(op.off, new Uint8Array(op.len).fill(op.val));
      else if (op.kind === 'zero') await bb.writeZeroes(op.off, op.len, 0);
      else if (op.kind === 'zero-unmap') await bb.writeZeroes(op.off, op.len, ReqFlag.MAY_UNMAP);
      else await bb.discard(op.off, op.len);
    }
    await bb.flush();
  } finally {
    await bb.close();
  }
  void backing;
}

function expectClean(file: string) {
  const c = qemuCheck(file);
  expect(c['check-errors']).toBe(0);
  expect(c.corruptions ?? 0).toBe(0);
  expect(c.leaks ?? 0).toBe(0);
}

describe('qcow2 images written by DiskWorker', () => {
  const variants: Array<[string, Record<string, string | number | boolean>, number]> = [
    ['default', {}, 65536],
    ['512 byte clusters, refcount 1', { cluster_size: 512, refcount_bits: 1 }, 512],
    ['4k clusters, refcount 64', { cluster_size: 4096, refcount_bits: 64 }, 4096],
    ['2M clusters', { cluster_size: 2 << 20 }, 2 << 20],
    ['v2', { compat: '0.10' }, 65536],
    ['extended L2', { extended_l2: true }, 65536],
    ['extended L2 32k refcount 2', { extended_l2: true, cluster_size: 32768, refcount_bits: 2 }, 32768],
    ['lazy refcounts', { lazy_refcounts: true }, 65536],
    ['metadata preallocation', { preallocation: 'metadata', cluster_size: 4096 }, 4096],
    ['full preallocation', { preallocation: 'full', cluster_size: 16384, refcount_bits: 8 }, 16384],
  ];
  for (const [name, opts, cs] of variants) {
    it(`creates and writes: ${name}; same content as QEMU for the same operations`, async () => {
      const size = cs * 48;
      const ours = t.path(`ours-${name.replace(/\W/g, '_')}.qcow2`);
      const theirs = t.path(`theirs-${name.replace(/\W/g, '_')}.qcow2`);
      await createImage(fileGraph(), 'qcow2', ours, { size, ...opts });
      expect(JSON.parse(qemuImg('info', '--output=json', ours))['virtual-size']).toBe(size);
      expectClean(ours);
      const o = Object.entries(opts).map(([k, v]) => `${k}=${v === true ? 'on' : v === false ? 'off' : v}`);
      qemuImg('create', '-q', '-f', 'qcow2', ...(o.length ? ['-o', o.join(',')] : []), theirs, String(size));
      const ops = randomOps(cs + 7, size, cs, 60);
      await runOurs(ours, ops);
      qemuIo(theirs, ops.map(qemuIoCommand));
      expectClean(ours);
      const cmp = qemuImgTry('compare', '-f', 'qcow2', '-F', 'qcow2', ours, theirs);
      expect(cmp.out).toContain('Images are identical');
      // qemu-io reads our last write back.
      const last = [...ops].reverse().find((x) => x.kind === 'write')!;
      const covered = ops.slice(ops.lastIndexOf(last) + 1).every((x) => x.off >= last.off + last.len || x.off + x.len <= last.off);
      if (covered) expect(qemuIo(ours, [`read -P ${last.val} ${last.off} ${last.len}`])).not.toContain('Pattern verification failed');
    });
  }

  it('writes over a backing chain (COW of partial clusters, per subcluster with extended L2)', async () => {
    const base = t.path('wb-base.raw');
    const data = new Uint8Array(1 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
    writeFileSync(base, data);
    for (const ext of [false, true]) {
      const ours = t.path(`wb-ours-${ext}.qcow2`);
      const theirs = t.path(`wb-theirs-${ext}.qcow2`);
      await createImage(fileGraph(), 'qcow2', ours, { size: 2 << 20, backing_file: base, backing_fmt: 'raw', extended_l2: ext });
      qemuImg('create', '-q', '-f', 'qcow2', '-o', `extended_l2=${ext ? 'on' : 'off'}`, '-b', base, '-F', 'raw', theirs, '2M');
      const ops = randomOps(ext ? 11 : 12, 2 << 20, 65536, 50);
      await runOurs(ours, ops, true);
      qemuIo(theirs, ops.map(qemuIoCommand));
      expectClean(ours);
      expect(qemuImgTry('compare', ours, theirs).out).toContain('Images are identical');
    }
  });

  it('compressed writes are read by qemu-img (deflate with a 4 KiB window)', async () => {
    const f = t.path('cw.qcow2');
    await createImage(fileGraph(), 'qcow2', f, { size: 1 << 20, cluster_size: 65536 });
    const g = fileGraph();
    const bb = await openQcow2(g, f);
    const cluster = new Uint8Array(65536);
    const block = new Uint8Array(8192);
    const r = prng(5);
    for (let i = 0; i < block.length; i++) block[i] = (r() * 256) | 0;
    for (let i = 0; i < 8; i++) cluster.set(block, i * 8192);
    const text = new Uint8Array(65536).map((_, i) => 97 + ((i * i) % 26));
    await bb.writeCompressed(0, cluster);
    await bb.writeCompressed(65536, text);
    await bb.writeCompressed(131072, new Uint8Array(65536).fill(3));
    await bb.close();
    expectClean(f);
    const c = qemuCheck(f);
    // The first cluster repeats 8 KiB of noise: a 4 KiB window cannot compress it, so it is stored plainly (as QEMU does).
    expect(c['compressed-clusters']).toBe(2);
    qemuImg('convert', '-O', 'raw', f, t.path('cw.raw'));
    const raw = new Uint8Array(readFileSync(t.path('cw.raw')));
    expect(raw.subarray(0, 65536)).toEqual(cluster);
    expect(raw.subarray(65536, 131072)).toEqual(text);
    expect(raw.subarray(131072, 196608).every((b) => b === 3)).toBe(true);
  });

  it('refuses invalid option combinations with QEMU messages', async () => {
    const g = fileGraph();
    await expect(createImage(g, 'qcow2', t.path('bad.qcow2'), { size: 1 << 20, compat: '0.10', lazy_refcounts: true })).rejects.toThrow(
      /Lazy refcounts only supported with compatibility level 1.1/,
    );
    await expect(createImage(g, 'qcow2', t.path('bad.qcow2'), { size: 1 << 20, cluster_size: 1000 })).rejects.toThrow(/Cluster size must be a power of two/);
    await expect(createImage(g, 'qcow2', t.path('bad.qcow2'), { size: 1 << 20, data_file_raw: true })).rejects.toThrow(/data-file-raw requires data-file/);
  });

  it('zstd compressed writes are read by qemu-img', async () => {
    const g = fileGraph();
    const f = t.path('z.qcow2');
    await createImage(g, 'qcow2', f, { size: 1 << 20, compression_type: 'zstd' });
    const bb = await openQcow2(g, f);
    const text = new Uint8Array(65536).map((_, i) => 97 + ((i * 7 + (i >> 9)) % 26));
    await bb.writeCompressed(0, text);
    await bb.writeCompressed(65536, new Uint8Array(65536).fill(1));
    await bb.close();
    expectClean(f);
    expect(qemuCheck(f)['compressed-clusters']).toBe(2);
    qemuImg('convert', '-O', 'raw', f, t.path('z.raw'));
    const raw = new Uint8Array(readFileSync(t.path('z.raw')));
    expect(raw.subarray(0, 65536)).toEqual(text);
    expect(raw.subarray(65536, 131072).every((b) => b === 1)).toBe(true);
    expect(qemuIo(f, ['read -P 1 64k 64k'])).not.toContain('Pattern verification failed');
  });

  it('writes with an external data file', async () => {
    for (const raw of [false, true]) {
      const f = t.path(`wdf-${raw}.qcow2`);
      await createImage(fileGraph(), 'qcow2', f, { size: 2 << 20, data_file: t.path(`wdf-${raw}.data`), data_file_raw: raw });
      const ops = randomOps(21, 2 << 20, 65536, 30);
      await runOurs(f, ops);
      expectClean(f);
      const theirs = t.path(`wdf-theirs-${raw}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', theirs, '2M');
      qemuIo(theirs, ops.map(qemuIoCommand));
      expect(qemuImgTry('compare', f, theirs).out).toContain('Images are identical');
    }
  });
});
