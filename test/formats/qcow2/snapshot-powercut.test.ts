/**
 * Power cut during snapshot create, apply and delete, at every write: the
 * memory back end drops every write after write N of the operation. The
 * survivor has its snapshot table whole (the old one or the new one), and
 * reads, active image and snapshots alike, either what it held before the
 * operation or what the uncut operation left. For QEMU's check it may hold
 * what QEMU's own ordering leaves when cut, leaked clusters and COPIED flags
 * that disagree with a refcount (flags and counts are separate writes), but
 * never a refcount below the references (data loss); `check -r all` then
 * repairs it to a clean image that still reads the same.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, createImage, type MemoryFile } from '../../../src/node.js';
import { createSnapshot, deleteSnapshot, findSnapshotByName, gotoSnapshot, listSnapshots, loadSnapshotTmp } from '../../../src/core/snapshot.js';
import { hasQemu } from '../../cli/harness.js';
import { memGraph, prng, qemuCheck, qemuImgTry } from './helpers.js';

type Scenario = 'create' | 'apply' | 'delete';

const SHAPES = [
  { name: '4 KiB clusters', size: 2 << 20, cs: 4096 },
  { name: '64 KiB clusters', size: 8 << 20, cs: 65536 },
];

/** What an image holds: the snapshot list (id:name) and a hash of the active data and of each snapshot's. */
interface State {
  table: string;
  active: string;
  snaps: Record<string, string>;
}

const hash = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);

async function writes(bb: BlockBackend, seed: number, n: number, size: number, cs: number): Promise<void> {
  const r = prng(seed);
  for (let i = 0; i < n; i++) {
    const off = Math.floor(r() * (size - 4 * cs));
    const len = 1 + Math.floor(r() * 3 * cs);
    const k = r();
    if (k < 0.7) await bb.write(off, new Uint8Array(len).fill(1 + (i % 250)));
    else if (k < 0.85) await bb.writeZeroes(off, len);
    else await bb.discard(off, len);
  }
}

describe.skipIf(!hasQemu())('power cut during snapshot operations', () => {
  for (const shape of SHAPES) {
    for (const scenario of ['create', 'apply', 'delete'] as Scenario[]) {
      it(`${scenario}, ${shape.name}: every cut leaves a clean image, old or new`, async () => {
        const dir = mkdtempSync(join(tmpdir(), 'dw-snapcut-'));
        const { graph, storage } = memGraph();
        const spec = (name: string) => ({ driver: 'qcow2', file: { filename: `memory:${name}` }, discard: 'unmap' });
        const open = (name: string, readOnly = false) => BlockBackend.open(graph, spec(name), { readOnly });
        const info = (name: string) => ({ id: '', name, vmStateSize: 0, dateSec: 1_700_000_000, dateNsec: 0, vmClockNsec: 0 });
        try {
          // A snapshot s0 of some data, more data written after it.
          await createImage(graph, 'qcow2', 'memory:img', { size: shape.size, cluster_size: shape.cs });
          const bb = await open('img');
          await writes(bb, 1, 10, shape.size, shape.cs);
          await createSnapshot(bb.node, info('s0'));
          await writes(bb, 2, 10, shape.size, shape.cs);
          await bb.close();
          const pristine = storage.get('img')!.clone();

          const stateOf = async (file: MemoryFile): Promise<State> => {
            storage.files.set('look', file.clone());
            const look = await open('look', true);
            const list = listSnapshots(look.node);
            const out: State = { table: list.map((s) => `${s.id}:${s.name}`).join(','), active: hash(await look.read(0, shape.size)), snaps: {} };
            await look.close();
            for (const s of list) {
              storage.files.set('look', file.clone());
              const tmp = await open('look', true);
              await loadSnapshotTmp(tmp.node, s.id, undefined);
              out.snaps[s.id] = hash(await tmp.read(0, shape.size));
              await tmp.close();
            }
            return out;
          };

          const session = async (cut: number): Promise<{ file: MemoryFile; writes: number }> => {
            const file = pristine.clone();
            storage.files.set('img', file);
            const s = await open('img');
            const before = file.writeCount;
            file.faults = { dropAfterWrites: before + cut };
            try {
              if (scenario === 'create') await createSnapshot(s.node, info('s1'));
              else if (scenario === 'apply') await gotoSnapshot(s.node, 's0');
              else await deleteSnapshot(s.node, findSnapshotByName(s.node, 's0')!.id, 's0');
              await s.close();
            } catch (e) {
              // Past the cut the node works on stale metadata: failing is allowed then.
              if (file.writeCount - before <= cut) throw e;
            }
            file.faults = {};
            return { file, writes: file.writeCount - before };
          };

          const old = await stateOf(pristine);
          const uncut = await session(Number.MAX_SAFE_INTEGER);
          const fresh = await stateOf(uncut.file);
          expect(fresh).not.toEqual(old);
          expect(uncut.writes).toBeGreaterThan(3);
          const seen = new Set<string>();
          let repaired = 0;
          for (let cut = 0; cut < uncut.writes; cut++) {
            const { file } = await session(cut);
            const where = { scenario, shape: shape.name, cut };
            writeFileSync(join(dir, 'cut.qcow2'), file.toBytes());
            // What QEMU's ordering can leave, and nothing else: leaks, and COPIED flags that
            // disagree with a refcount (the flags and the counts are written one after the
            // other). Never a refcount below the references, which would lose data.
            const check = qemuImgTry('check', join(dir, 'cut.qcow2'));
            const errors = check.out.split('\n').filter((l) => l.startsWith('ERROR') && !/^ERROR OFLAG_COPIED (data|L2) cluster: /.test(l));
            expect({ ...where, errors }).toEqual({ ...where, errors: [] });
            expect(check.out, JSON.stringify(where)).not.toMatch(/internal errors|check errors/);
            if (check.status !== 0) {
              // check -r all repairs it to a clean image that reads the same.
              qemuImgTry('check', '-r', 'all', join(dir, 'cut.qcow2'));
              const c = qemuCheck(join(dir, 'cut.qcow2'));
              expect({ ...where, corruptions: c.corruptions ?? 0, leaks: c.leaks ?? 0, errors: c['check-errors'] }).toEqual({ ...where, corruptions: 0, leaks: 0, errors: 0 });
              repaired++;
            }
            const st = await stateOf(file);
            // The table is one of the two, and each image reads as before or as after.
            expect([old.table, fresh.table], JSON.stringify(where)).toContain(st.table);
            expect([old.active, fresh.active], JSON.stringify(where)).toContain(st.active);
            for (const [id, h] of Object.entries(st.snaps)) expect([old.snaps[id], fresh.snaps[id]], `${JSON.stringify(where)} snapshot ${id}`).toContain(h);
            seen.add(JSON.stringify(st) === JSON.stringify(old) ? 'old' : JSON.stringify(st) === JSON.stringify(fresh) ? 'new' : 'between');
          }
          // The sweep saw both sides of the switch.
          expect([...seen]).toContain('old');
          expect([...seen]).toContain('new');
        } finally {
          await graph.closeAll();
          rmSync(dir, { recursive: true, force: true });
        }
      }, 60_000);
    }
  }
});
