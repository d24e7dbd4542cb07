/**
 * VM state in qcow2 against QEMU 7.2: bytes saved with our saveVmState and
 * taken by a snapshot created with that VM state size are where QEMU keeps
 * them. QEMU's tools have no VM state command, so QEMU shows them another
 * way: after `qemu-img snapshot -a`, growing the disk with `qemu-img resize`
 * up to the end of the VM state area turns that area into guest data (a
 * qcow2 grow does not zero it), and `qemu-img convert` reads it out.
 * `qemu-img info` must list the VM state size, `qemu-img check` must be
 * clean after every step (ours and QEMU's apply / delete), and our
 * loadVmState must read the bytes back after our apply.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createSnapshot, gotoSnapshot } from '../../../src/core/snapshot.js';
import { loadSnapshotVmState, loadVmState, saveVmState } from '../../../src/core/vmstate.js';
import { BlockBackend } from '../../../src/node.js';
import { hasQemu } from '../../cli/harness.js';
import { fileGraph, openQcow2, pattern, qemuCheck, qemuImg, qemuIo, tempDir } from './helpers.js';

interface Kind {
  name: string;
  opts: string;
  size: number;
  cs: number;
  /** Bytes of one L2 entry. */
  entry: number;
  backing?: boolean;
}

const KINDS: Kind[] = [
  { name: '64 KiB clusters', opts: 'cluster_size=65536', size: 4 << 20, cs: 65536, entry: 8 },
  // One L2 table maps 32 KiB: the VM state spans several L1 entries, the L1 table grows.
  { name: '512-byte clusters', opts: 'cluster_size=512', size: (1 << 20) + 4096, cs: 512, entry: 8 },
  { name: 'extended L2', opts: 'extended_l2=on,cluster_size=65536', size: 3 << 20, cs: 65536, entry: 16 },
  { name: 'v2 (compat=0.10)', opts: 'compat=0.10,cluster_size=4096', size: 2 << 20, cs: 4096, entry: 8 },
  { name: 'overlay over qcow2', opts: 'cluster_size=4096', size: 2 << 20, cs: 4096, entry: 8, backing: true },
];

function vmOffset(k: Kind): number {
  const span = k.cs * (k.cs / k.entry);
  return Math.ceil(k.size / span) * span;
}

function checkClean(file: string, what: string): void {
  const c = qemuCheck(file);
  expect({ what, errors: c['check-errors'], corruptions: c.corruptions ?? 0, leaks: c.leaks ?? 0 }).toEqual({ what, errors: 0, corruptions: 0, leaks: 0 });
}

describe.skipIf(!hasQemu())('qcow2 VM state against qemu-img 7.2', () => {
  for (const k of KINDS) {
    it(`${k.name}: saved state is where QEMU keeps it, listed, applied and deleted cleanly`, async () => {
      const t = tempDir();
      try {
        const img = t.path('img.qcow2');
        if (k.backing) {
          qemuImg('create', '-q', '-f', 'qcow2', t.path('base.qcow2'), String(k.size));
          qemuIo(t.path('base.qcow2'), [`write -P 7 0 ${k.size}`]);
          qemuImg('create', '-q', '-f', 'qcow2', '-o', k.opts, '-b', t.path('base.qcow2'), '-F', 'qcow2', img, String(k.size));
        } else {
          qemuImg('create', '-q', '-f', 'qcow2', '-o', k.opts, img, String(k.size));
        }
        qemuIo(img, [`write -P 33 0 ${3 * k.cs + 100}`, `write -P 44 ${k.size - 2 * k.cs} ${2 * k.cs}`]);

        // An odd length over several clusters, the middle rewritten at a position.
        const n = 5 * k.cs + 77;
        const state = pattern(n, 1);
        const patch = pattern(k.cs + 3, 2);
        state.set(patch, 2 * k.cs - 1);
        const graph = fileGraph();
        let bb = await openQcow2(graph, img);
        await saveVmState(bb.node, 0, pattern(n, 1));
        await saveVmState(bb.node, 2 * k.cs - 1, patch);
        const back = new Uint8Array(n);
        await loadVmState(bb.node, 0, back);
        expect(Buffer.from(back).equals(Buffer.from(state))).toBe(true);
        // The guest does not see the VM state.
        expect(bb.length).toBe(k.size);
        await createSnapshot(bb.node, { id: '', name: 'vm1', vmStateSize: n, dateSec: 1_700_000_000, dateNsec: 0, vmClockNsec: 5 });
        // The active table let go of it: what the next snapshot would copy reads as zeros.
        const after = new Uint8Array(n);
        await loadVmState(bb.node, 0, after);
        expect(after.every((b) => b === 0)).toBe(true);
        // The guest writes on after the snapshot.
        await bb.write(0, new Uint8Array(k.cs).fill(99));
        // The snapshot's VM state reads back without applying it, in parts; the disk stays.
        const viaSnap = new Uint8Array(n);
        await loadSnapshotVmState(bb.node, '1', 0, viaSnap.subarray(0, 1000));
        await loadSnapshotVmState(bb.node, '1', 1000, viaSnap.subarray(1000));
        expect(Buffer.from(viaSnap).equals(Buffer.from(state))).toBe(true);
        expect((await bb.read(0, 1))[0]).toBe(99);
        await expect(loadSnapshotVmState(bb.node, '7', 0, new Uint8Array(1))).rejects.toMatchObject({ code: 'ENOENT' });
        await bb.close();

        checkClean(img, 'after create');
        const info = JSON.parse(qemuImg('info', '--output=json', '-U', img)) as { snapshots?: Array<{ name: string; 'vm-state-size': number }> };
        expect(info.snapshots?.map((s) => [s.name, s['vm-state-size']])).toEqual([['vm1', n]]);
        expect(qemuImg('snapshot', '-l', img)).toMatch(/vm1\s+\S+ \S+\s+\d{4}-/);

        // QEMU's view: apply, then grow the disk over the VM state area and read it as data.
        const copy = t.path('copy.qcow2');
        qemuImg('convert', '-f', 'raw', '-O', 'raw', img, copy);
        qemuImg('snapshot', '-a', 'vm1', copy);
        checkClean(copy, 'after qemu-img snapshot -a');
        // Deleted first: QEMU does not resize v2 images with snapshots.
        qemuImg('snapshot', '-d', 'vm1', copy);
        checkClean(copy, 'after qemu-img snapshot -a then -d');
        const off = vmOffset(k);
        qemuImg('resize', '-q', '-f', 'qcow2', copy, String(off + Math.ceil(n / k.cs) * k.cs));
        qemuImg('convert', '-f', 'qcow2', '-O', 'raw', copy, t.path('copy.raw'));
        const raw = readFileSync(t.path('copy.raw'));
        expect(Buffer.from(raw.subarray(off, off + n)).equals(Buffer.from(state))).toBe(true);
        // The snapshot's disk is the one from before the guest's last write.
        expect(raw[0]).toBe(33);

        checkClean(copy, 'after qemu-img resize');

        // Ours: apply, read the state back; then QEMU deletes the snapshot.
        bb = await openQcow2(graph, img);
        await gotoSnapshot(bb.node, 'vm1');
        const again = new Uint8Array(n);
        await loadVmState(bb.node, 0, again);
        expect(Buffer.from(again).equals(Buffer.from(state))).toBe(true);
        expect((await bb.read(0, 1))[0]).toBe(33);
        await bb.close();
        checkClean(img, 'after our apply');
        qemuImg('snapshot', '-d', 'vm1', img);
        checkClean(img, 'after qemu-img snapshot -d');
      } finally {
        t.cleanup();
      }
    });
  }

  it('refuses bad requests with codes: negative position, read-only node, a format without VM state', async () => {
    const t = tempDir();
    try {
      const img = t.path('img.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
      qemuImg('create', '-q', '-f', 'raw', t.path('img.raw'), '1M');
      const graph = fileGraph();
      const bb = await openQcow2(graph, img);
      await expect(saveVmState(bb.node, -1, new Uint8Array(1))).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(createSnapshot(bb.node, { id: '', name: 'x', vmStateSize: -5, dateSec: 0, dateNsec: 0, vmClockNsec: 0 })).rejects.toMatchObject({ code: 'EINVAL' });
      await bb.close();
      const ro = await openQcow2(graph, img, true);
      await expect(saveVmState(ro.node, 0, new Uint8Array(1))).rejects.toMatchObject({ code: 'EACCES' });
      await ro.close();
      const raw = await BlockBackend.open(graph, { driver: 'raw', file: { filename: t.path('img.raw') } });
      await expect(loadVmState(raw.node, 0, new Uint8Array(1))).rejects.toMatchObject({ code: 'ENOTSUP' });
      await raw.close();
      checkClean(img, 'after refused requests');
    } finally {
      t.cleanup();
    }
  });
});
