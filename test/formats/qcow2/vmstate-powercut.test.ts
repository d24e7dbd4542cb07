/**
 * Power cut while a snapshot takes the VM state (create with a VM state size,
 * then the active table drops the area): the memory back end drops every
 * write after write N. Whatever N, `qemu-img check` finds nothing worse than
 * what QEMU's own ordering can leave (leaks, COPIED flags out of step with a
 * refcount), the snapshot table is the old or the new one, the guest data
 * reads as before, and when the new snapshot is there its VM state reads
 * back whole (through a temporary load of it, as `convert -l` opens one).
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, createImage } from '../../../src/node.js';
import { createSnapshot, listSnapshots, loadSnapshotTmp } from '../../../src/core/snapshot.js';
import { loadVmState, saveVmState } from '../../../src/core/vmstate.js';
import { hasQemu } from '../../cli/harness.js';
import { memGraph, pattern, qemuImgTry } from './helpers.js';

const SHAPES = [
  { name: '4 KiB clusters', size: 2 << 20, cs: 4096 },
  { name: '512-byte clusters', size: 1 << 20, cs: 512 },
];

describe.skipIf(!hasQemu())('power cut while a snapshot takes the VM state', () => {
  for (const shape of SHAPES) {
    it(`${shape.name}: every cut leaves a consistent image with the old table or the new one and its VM state`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dw-vmcut-'));
      const { graph, storage } = memGraph();
      const open = (name: string, readOnly = false) => BlockBackend.open(graph, { driver: 'qcow2', file: { filename: `memory:${name}` } }, { readOnly });
      const n = 6 * shape.cs + 11;
      const state = pattern(n, 3);
      const guest = pattern(shape.size, 4);
      try {
        await createImage(graph, 'qcow2', 'memory:img', { size: shape.size, cluster_size: shape.cs });
        const bb = await open('img');
        await bb.write(0, guest.slice(0, 8 * shape.cs));
        await saveVmState(bb.node, 0, state);
        await bb.close();
        const pristine = storage.get('img')!.clone();

        let uncut = -1;
        const seen = new Set<string>();
        for (let cut = 0; uncut < 0 || cut < uncut; cut++) {
          const file = pristine.clone();
          storage.files.set('img', file);
          const s = await open('img');
          const before = file.writeCount;
          file.faults = { dropAfterWrites: before + cut };
          try {
            await createSnapshot(s.node, { id: '', name: 'vm', vmStateSize: n, dateSec: 1_700_000_000, dateNsec: 0, vmClockNsec: 0 });
            await s.close();
          } catch (e) {
            if (file.writeCount - before <= cut) throw e;
          }
          file.faults = {};
          if (file.writeCount - before <= cut) uncut = file.writeCount - before;
          const where = { shape: shape.name, cut };
          writeFileSync(join(dir, 'cut.qcow2'), file.toBytes());
          const check = qemuImgTry('check', join(dir, 'cut.qcow2'));
          const errors = check.out.split('\n').filter((l) => l.startsWith('ERROR') && !/^ERROR OFLAG_COPIED (data|L2) cluster: /.test(l));
          expect({ ...where, errors }).toEqual({ ...where, errors: [] });
          expect(check.out, JSON.stringify(where)).not.toMatch(/internal errors|check errors/);

          storage.files.set('look', file.clone());
          const look = await open('look', true);
          const list = listSnapshots(look.node);
          expect(Buffer.from(await look.read(0, 8 * shape.cs)).equals(Buffer.from(guest.subarray(0, 8 * shape.cs))), JSON.stringify(where)).toBe(true);
          await look.close();
          expect([[], [['1', 'vm', n]]], JSON.stringify(where)).toContainEqual(list.map((x) => [x.id, x.name, x.vmStateSize]));
          if (list.length === 1) {
            storage.files.set('look', file.clone());
            const tmp = await open('look', true);
            await loadSnapshotTmp(tmp.node, '1', undefined);
            const back = new Uint8Array(n);
            await loadVmState(tmp.node, 0, back);
            expect(Buffer.from(back).equals(Buffer.from(state)), JSON.stringify(where)).toBe(true);
            await tmp.close();
          }
          seen.add(list.length === 1 ? 'new' : 'old');
        }
        expect([...seen].sort()).toEqual(['new', 'old']);
      } finally {
        await graph.closeAll();
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
  }
});
