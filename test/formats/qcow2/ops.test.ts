/**
 * Image-level operations against qemu-img: check and repair, dirty images,
 * info, truncate, measure, amend, make-empty, backing file change, bad input.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { BlockBackend, OptionReader, createImage, type BlockNode } from '../../../src/node.js';
import { tempDir, qemuImg, qemuImgTry, qemuIo, qemuCheck, fileGraph, openQcow2, pattern } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

function u16(buf: Uint8Array, off: number, v: number) {
  buf[off] = v >> 8;
  buf[off + 1] = v & 0xff;
}

describe('qcow2 image operations', () => {
  it('check finds and repairs leaks and refcount corruptions like qemu-img', async () => {
    const f = t.path('chk.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', f, '4M');
    qemuIo(f, ['write -P 1 0 196608']);
    const img = new Uint8Array(readFileSync(f));
    // Refcount block at 0x20000 (16-bit entries): leak cluster 7 (a data cluster counted twice), corrupt data cluster 4.
    u16(img, 0x20000 + 7 * 2, 2);
    u16(img, 0x20000 + 4 * 2, 0);
    writeFileSync(f, img);
    const q = qemuCheck(f);
    const g = fileGraph();
    let bb = await openQcow2(g, f);
    const r = await bb.node.instance.check!({ leaks: false, errors: false });
    expect([r.leaks, r.corruptions, r.imageEndOffset, r.allocatedClusters, r.totalClusters, r.fragmentedClusters]).toEqual([
      q.leaks ?? 0,
      q.corruptions,
      q['image-end-offset'],
      q['allocated-clusters'],
      q['total-clusters'],
      q['fragmented-clusters'] ?? 0,
    ]);
    const fixed = await bb.node.instance.check!({ leaks: true, errors: true });
    expect(fixed.corruptionsFixed).toBeGreaterThan(0);
    expect(fixed.corruptions).toBe(0);
    await bb.close();
    const after = qemuCheck(f);
    expect([after.corruptions ?? 0, after.leaks ?? 0]).toEqual([0, 0]);
    bb = await openQcow2(g, f, true);
    expect((await bb.read(0, 196608)).every((b) => b === 1)).toBe(true);
    await bb.close();
  });

  it('a read-write open rebuilds the refcounts of a dirty (lazy refcounts) image', async () => {
    const f = t.path('dirty.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', f, '4M');
    qemuIoTry(f, ['write -P 5 0 300000', 'sigraise 9']);
    const g = fileGraph();
    let bb = await openQcow2(g, f, true);
    expect(bb.node.instance.getInfo!()!.dirty).toBe(true);
    await bb.close();
    bb = await openQcow2(g, f);
    expect(bb.node.instance.getInfo!()!.dirty).toBe(false);
    await bb.write(400000, new Uint8Array(5000).fill(6));
    await bb.close();
    const c = qemuCheck(f);
    expect([c.corruptions ?? 0, c.leaks ?? 0]).toEqual([0, 0]);
    expect(qemuIo(f, ['read -P 5 0 300000', 'read -P 6 400000 5000'])).not.toContain('fail');
  });

  it('info matches qemu-img info format-specific data', async () => {
    for (const o of ['compat=0.10', 'compression_type=zstd,lazy_refcounts=on,refcount_bits=4', 'extended_l2=on']) {
      const f = t.path('info.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', '-o', o, f, '1G');
      const info = JSON.parse(qemuImg('info', '--output=json', f));
      const g = fileGraph();
      const bb = await openQcow2(g, f, true);
      expect(bb.node.instance.getSpecificInfo!()).toEqual(info['format-specific']);
      // qemu-io's info prints the VM state offset: the first L1 entry past the disk (1 GiB here).
      // -r -U: the image is open here (QEMU sees our locks).
      const vm = /vm state offset: (.*)/.exec(qemuIo(f, ['info'], 'qcow2', ['-r', '-U']))?.[1];
      expect(vm).toBeDefined();
      const { vmStateOffset, ...rest } = bb.node.instance.getInfo!() as { vmStateOffset: number; clusterSize: number; dirty: boolean };
      expect(rest).toEqual({ clusterSize: info['cluster-size'], dirty: info['dirty-flag'] });
      expect(`${vmStateOffset / 2 ** 30} GiB`).toBe(vm);
      await bb.close();
    }
  });

  it('truncate grows (with L1 growth) and shrinks like qemu-img resize', async () => {
    const f = t.path('tr.qcow2');
    await createImage(fileGraph(), 'qcow2', f, { size: 1 << 20, cluster_size: 4096 });
    const g = fileGraph();
    const bb = await openQcow2(g, f);
    await bb.write(0, pattern(1 << 20, 2));
    await bb.truncate(64 << 20);
    await bb.write(60 << 20, new Uint8Array(4096).fill(9));
    await bb.truncate(512 << 10);
    await bb.close();
    const c = qemuCheck(f);
    expect([c.corruptions ?? 0, c.leaks ?? 0]).toEqual([0, 0]);
    expect(JSON.parse(qemuImg('info', '--output=json', f))['virtual-size']).toBe(512 << 10);
    qemuImg('convert', '-O', 'raw', f, t.path('tr.raw'));
    expect(new Uint8Array(readFileSync(t.path('tr.raw')))).toEqual(pattern(1 << 20, 2).subarray(0, 512 << 10));
  });

  it('measure agrees with qemu-img measure', async () => {
    const src = t.path('m.raw');
    const d = new Uint8Array(8 << 20);
    d.set(pattern(1 << 20, 4), 1 << 20);
    writeFileSync(src, d);
    const g = fileGraph();
    const node: BlockNode = await g.open({ driver: 'raw', file: { filename: src } }, { readOnly: true });
    const q = JSON.parse(qemuImg('measure', '--output=json', '-O', 'qcow2', '-o', 'cluster_size=64k', '-f', 'raw', src));
    const qcow2 = g.getDriver('qcow2');
    const m = await qcow2.measure!(new OptionReader({ cluster_size: 65536 }, 'qcow2'), node);
    await node.unref();
    // node-file reports every byte as data (no SEEK_HOLE); qemu-img sees the holes.
    expect(m.fullyAllocated).toBe(BigInt(q['fully-allocated']));
    expect(m.required).toBeGreaterThanOrEqual(BigInt(q.required));
    const q2 = JSON.parse(qemuImg('measure', '--output=json', '-O', 'qcow2', '-o', 'cluster_size=4k,refcount_bits=1', '--size', '1G'));
    const m2 = await qcow2.measure!(new OptionReader({ cluster_size: 4096, refcount_bits: 1, size: 1 << 30 }, 'qcow2'));
    expect([m2.required, m2.fullyAllocated]).toEqual([BigInt(q2.required), BigInt(q2['fully-allocated'])]);
    await g.closeAll();
  });

  it('amend changes lazy_refcounts, refcount_bits and compat; changes the backing file; make-empty', async () => {
    const f = t.path('am.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', f, '2M');
    qemuIo(f, ['write -P 7 0 100000', 'write -z 200000 65536']);
    const g = fileGraph();
    let bb = await openQcow2(g, f);
    await bb.node.instance.amend!(new OptionReader({ refcount_bits: 4, lazy_refcounts: 'on' }, 'qcow2'), false);
    await bb.close();
    let info = JSON.parse(qemuImg('info', '--output=json', f));
    expect(info['format-specific'].data['refcount-bits']).toBe(4);
    expect(info['format-specific'].data['lazy-refcounts']).toBe(true);
    expect(qemuCheck(f).corruptions ?? 0).toBe(0);
    bb = await openQcow2(g, f);
    await bb.node.instance.amend!(new OptionReader({ refcount_bits: 16, lazy_refcounts: 'off' }, 'qcow2'), false);
    await bb.node.instance.amend!(new OptionReader({ compat: '0.10' }, 'qcow2'), false);
    await bb.close();
    info = JSON.parse(qemuImg('info', '--output=json', f));
    expect(info['format-specific'].data.compat).toBe('0.10');
    const c = qemuCheck(f);
    expect([c.corruptions ?? 0, c.leaks ?? 0]).toEqual([0, 0]);
    expect(qemuIo(f, ['read -P 7 0 100000', 'read -P 0 200000 65536'])).not.toContain('fail');
    const base = t.path('am-base.raw');
    writeFileSync(base, new Uint8Array(2 << 20).fill(0xaa));
    bb = await openQcow2(g, f);
    await bb.node.instance.changeBackingFile!('am-base.raw', 'raw');
    await bb.node.instance.makeEmpty!();
    await bb.close();
    info = JSON.parse(qemuImg('info', '--output=json', f));
    expect(info['backing-filename']).toBe('am-base.raw');
    expect(qemuIo(f, ['read -P 0xaa 0 2097152'])).not.toContain('fail');
    expect(qemuCheck(f).leaks ?? 0).toBe(0);
  });

  it('refuses bad images with named fields, and corrupt images read-write', async () => {
    const f = t.path('bad.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', f, '1M');
    const good = new Uint8Array(readFileSync(f));
    const g = fileGraph();
    const tryOpen = async (mut: (b: Uint8Array, dv: DataView) => void, ro = true) => {
      const b = good.slice();
      mut(b, new DataView(b.buffer));
      writeFileSync(f, b);
      try {
        const bb = await openQcow2(g, f, ro);
        await bb.close();
        return 'ok';
      } catch (e) {
        return `${(e as { code: string }).code}: ${(e as Error).message}`;
      }
    };
    expect(await tryOpen((_, dv) => dv.setUint32(20, 30))).toMatch(/^EINVAL: .*cluster size: 2\^30/);
    expect(await tryOpen((_, dv) => dv.setUint32(36, 0x10000000))).toMatch(/^EFBIG: .*L1 table too large/);
    expect(await tryOpen((_, dv) => dv.setUint32(56, 5000))).toMatch(/^EFBIG: .*Reference count table too large/);
    expect(await tryOpen((_, dv) => dv.setBigUint64(40, 0x12345n))).toMatch(/^EINVAL: .*Active L1 table offset invalid \(0x12345\)/);
    expect(await tryOpen((_, dv) => dv.setBigUint64(72, 1n << 40n))).toMatch(/^ENOTSUP: Unsupported qcow2 feature/);
    expect(await tryOpen((_, dv) => dv.setBigUint64(72, 2n), false)).toMatch(/^EACCES: .*corrupt/);
    expect(await tryOpen((_, dv) => dv.setBigUint64(72, 2n), true)).toBe('ok');
    void BlockBackend;
  });
});

function qemuIoTry(file: string, cmds: string[]) {
  try {
    qemuIo(file, cmds);
  } catch {
    // sigraise kills qemu-io on purpose.
  }
}
void qemuImgTry;
