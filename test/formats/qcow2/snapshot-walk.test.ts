/**
 * The snapshot refcount walk (snapshot-refcount.ts) runs its per-entry loop
 * in WASM, or in TypeScript where WASM cannot load (snapshot-walk.ts). Both
 * must leave what QEMU leaves: the same images, built by qemu-io with
 * clusters scattered over many refcount blocks (more than the WASM walk
 * holds at once), compressed clusters, zero clusters and shared clusters, go
 * through snapshot create, apply and delete with the module on and off
 * (byte-identical files, the same errors) and through qemu-img snapshot
 * (the same refcount for every cluster, the same mapping, and a clean
 * check, which covers the COPIED flags).
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { copyFileSync, readFileSync } from 'node:fs';
import { BlockBackend } from '../../../src/node.js';
import type { SnapshotInfo } from '../../../src/core/driver.js';
import { createSnapshot, deleteSnapshot, findSnapshotByName, gotoSnapshot } from '../../../src/core/snapshot.js';
import { setRefcountWasmEnabled } from '../../../src/formats/qcow2/refcount.js';
import { WasmRefcount } from '../../../src/wasm/refcount.js';
import { hasQemu } from '../../cli/harness.js';
import { fileGraph, prng, qemuCheck, qemuImg, qemuImgTry, qemuIo, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => {
  setRefcountWasmEnabled(true);
  vi.restoreAllMocks();
  t.cleanup();
});

interface Kind {
  name: string;
  cs: number;
  bits: number;
  size: number;
}

const KINDS: Kind[] = [
  // 256 clusters per refcount block: a scattered layout meets 16 blocks in one L2 table.
  { name: '512-byte clusters, 16-bit refcounts', cs: 512, bits: 16, size: 2 << 20 },
  { name: '4 KiB clusters, 2-bit refcounts (overflow)', cs: 4096, bits: 2, size: 4 << 20 },
  { name: '4 KiB clusters, 4-bit refcounts', cs: 4096, bits: 4, size: 4 << 20 },
  { name: '4 KiB clusters, 8-bit refcounts', cs: 4096, bits: 8, size: 4 << 20 },
  { name: '4 KiB clusters, 32-bit refcounts', cs: 4096, bits: 32, size: 4 << 20 },
  { name: '4 KiB clusters, 64-bit refcounts', cs: 4096, bits: 64, size: 4 << 20 },
  { name: '64 KiB clusters, 16-bit refcounts', cs: 65536, bits: 16, size: 16 << 20 },
];

/**
 * The qemu-io commands of the seeded workload: compressed writes first (qcow2 compresses only
 * into unallocated clusters), then scattered writes, zero writes and discards.
 */
function workload(kind: Kind, seed: number, n: number, compressed: number): string[] {
  const r = prng(seed);
  const clusters = kind.size / kind.cs;
  const cmds: string[] = [];
  const taken = new Set<number>();
  while (taken.size < compressed) {
    const c = Math.floor(r() * clusters);
    if (taken.has(c)) continue;
    taken.add(c);
    cmds.push(`write -c -P ${1 + (taken.size % 250)} ${c * kind.cs} ${kind.cs}`);
  }
  for (let i = 0; i < n; i++) {
    const c = Math.floor(r() * (clusters - 4));
    const len = kind.cs * (1 + Math.floor(r() * 3));
    const k = r();
    if (k < 0.7) cmds.push(`write -P ${1 + (i % 250)} ${c * kind.cs} ${len}`);
    else if (k < 0.85) cmds.push(`write -z ${c * kind.cs} ${len}`);
    else cmds.push(`discard ${c * kind.cs} ${len}`);
  }
  return cmds;
}

const info = (name: string): SnapshotInfo => ({ id: '', name, vmStateSize: 0, dateSec: 1_700_000_000, dateNsec: 0, vmClockNsec: 0 });

type Step = { op: 'create' | 'apply' | 'delete'; name: string };
const STEPS: Step[] = [
  { op: 'create', name: 'x' },
  { op: 'apply', name: 'base' },
  { op: 'delete', name: 'x' },
  { op: 'create', name: 'y' },
  { op: 'delete', name: 'base' },
  { op: 'apply', name: 'y' },
];

/** Runs `step` on `file` through our driver; the error text, or 'ok'. */
async function ours(file: string, step: Step): Promise<string> {
  const bb = await BlockBackend.open(fileGraph(), { driver: 'qcow2', discard: 'unmap', file: { driver: 'file', filename: file } });
  try {
    if (step.op === 'create') await createSnapshot(bb.node, info(step.name));
    else if (step.op === 'apply') await gotoSnapshot(bb.node, step.name);
    else await deleteSnapshot(bb.node, findSnapshotByName(bb.node, step.name)!.id, step.name);
    return 'ok';
  } catch (e) {
    return String((e as Error).message);
  } finally {
    await bb.close();
  }
}

/** Refcount of every cluster of a qcow2 file (version 3 header), from its refcount table. */
function refcounts(b: Buffer): number[] {
  const cs = 2 ** b.readUInt32BE(20);
  const order = b.readUInt32BE(96);
  const bits = 2 ** order;
  const table = Number(b.readBigUInt64BE(48));
  const per = (cs * 8) / bits;
  const out: number[] = [];
  for (let c = 0; c * cs < b.length; c++) {
    const block = Number(b.readBigUInt64BE(table + Math.floor(c / per) * 8) & 0x00fffffffffffe00n);
    const i = c % per;
    if (block === 0) out.push(0);
    else if (bits >= 8) out.push(Number(BigInt.asUintN(bits, b.readBigUInt64BE(block + (i * bits) / 8) >> BigInt(64 - bits))));
    else out.push((b[block + Math.floor((i * bits) / 8)]! >> ((i * bits) % 8)) & (2 ** bits - 1));
  }
  return out;
}

/** `qemu-img map` of the image (the guest view, host offsets included). */
function mapOf(file: string): string {
  return qemuImg('map', '--output=json', file);
}

describe.skipIf(!hasQemu())('snapshot refcount walk: WASM, TypeScript and QEMU agree', () => {
  for (const kind of KINDS) {
    it(kind.name, async () => {
      const base = t.path(`${kind.cs}-${kind.bits}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${kind.cs},refcount_bits=${kind.bits}`, base, String(kind.size));
      // Compressed clusters share host clusters: many references, too many for narrow refcounts.
      qemuIo(base, workload(kind, kind.cs + kind.bits, 120, kind.bits >= 8 ? 20 : 0));
      qemuImg('snapshot', '-c', 'base', base);
      // After the snapshot: writes copy shared clusters, so flags and refcounts differ by table.
      qemuIo(base, workload(kind, kind.cs * 3 + kind.bits, 60, 0));
      const [wasm, ts, qemu] = ['wasm', 'ts', 'qemu'].map((n) => t.path(`${kind.cs}-${kind.bits}-${n}.qcow2`)) as [string, string, string];
      for (const f of [wasm, ts, qemu]) copyFileSync(base, f);
      const walks = vi.spyOn(WasmRefcount.prototype, 'walkL2');
      for (const step of STEPS) {
        const where = { kind: kind.name, ...step };
        setRefcountWasmEnabled(true);
        walks.mockClear();
        const a = await ours(wasm, step);
        const ranWasm = walks.mock.calls.length;
        setRefcountWasmEnabled(false);
        const b = await ours(ts, step);
        expect({ ...where, result: b, bytes: Buffer.compare(readFileSync(ts), readFileSync(wasm)) }).toEqual({ ...where, result: a, bytes: 0 });
        // Only refcounts of up to 32 bits have the WASM loop.
        if (a === 'ok' && kind.bits < 64) expect(ranWasm, JSON.stringify(where)).toBeGreaterThan(0);
        const flag = { create: '-c', apply: '-a', delete: '-d' }[step.op];
        const q = qemuImgTry('snapshot', flag, step.name, qemu);
        expect({ ...where, ok: q.status === 0 }).toEqual({ ...where, ok: a === 'ok' });
        if (a !== 'ok') {
          // A failed operation leaves what QEMU's leaves only up to the failure: start again from QEMU's.
          copyFileSync(qemu, wasm);
          copyFileSync(qemu, ts);
          continue;
        }
        // Every refcount as QEMU leaves it, the same mapping (the bytes of freed clusters differ:
        // QEMU discards them), and check finds the COPIED flags right.
        expect({ ...where, refcounts: refcounts(readFileSync(wasm)), map: mapOf(wasm) }).toEqual({ ...where, refcounts: refcounts(readFileSync(qemu)), map: mapOf(qemu) });
        const check = qemuCheck(wasm);
        expect({ ...where, errors: check['check-errors'], corruptions: check.corruptions ?? 0, leaks: check.leaks ?? 0 }).toEqual({ ...where, errors: 0, corruptions: 0, leaks: 0 });
      }
    }, 60_000);
  }
});
