/**
 * The qcow2 refcount code runs its long loops in the WASM refcount module (free-run
 * search, incrementing long ranges, check's comparison of counted and stored refcounts;
 * src/formats/qcow2/refcount.ts). Its answers must be exactly those of the TypeScript path:
 * the same workloads run with the module on and off must leave byte-identical images, and
 * check must report (and repair) corrupted refcounts the same way both times, and as
 * qemu-img check does. Spies make sure the WASM path really ran.
 */
import { describe, it, expect, afterAll, afterEach, vi } from 'vitest';
import { writeFileSync } from 'node:fs';
import { BlockBackend, createImage } from '../../../src/node.js';
import type { CheckResult } from '../../../src/core/driver.js';
import { setRefcountWasmEnabled } from '../../../src/formats/qcow2/refcount.js';
import { RefcountTs, WasmRefcount } from '../../../src/wasm/refcount.js';
import { MemoryStorage } from '../../../src/protocols/memory.js';
import { memGraph, openQcow2, prng, qemuCheck, qemuImgTry, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => {
  setRefcountWasmEnabled(true);
  t.cleanup();
});
afterEach(() => vi.restoreAllMocks());

const CS = 4096;

/** Counts the calls into the module's bulk operations. */
function spyWasm() {
  return {
    findFree: vi.spyOn(WasmRefcount.prototype, 'findFree'),
    compare: vi.spyOn(WasmRefcount.prototype, 'compareCounts'),
    add: vi.spyOn(WasmRefcount.prototype, 'tryAddRange'),
  };
}

/**
 * Fills most of an image, punches scattered holes (discard), then allocates runs of
 * random length (which must skip holes too short for them), reopens (the free-cluster
 * hint starts again at 0) and allocates more. Returns the image file's bytes.
 */
async function allocationWorkload(refcountBits: number, seed: number, wasmOn: boolean, cs = CS): Promise<Uint8Array> {
  setRefcountWasmEnabled(wasmOn);
  try {
    const storage = new MemoryStorage();
    const { graph } = memGraph(storage);
    const size = 8192 * cs;
    await createImage(graph, 'qcow2', 'memory:img', { size, cluster_size: cs, refcount_bits: refcountBits });
    let bb = await openQcow2(graph, 'memory:img', false, { discard: 'unmap' });
    const r = prng(seed);
    const fill = new Uint8Array(1 << 20).fill(0x5a);
    for (let off = 0; off < (size * 3) / 4; off += fill.length) await bb.write(off, fill);
    for (let k = 0; k < 300; k++) {
      const c = Math.floor((r() * ((size * 3) / 4)) / cs);
      await bb.discard(c * cs, cs * (1 + Math.floor(r() * 3)));
    }
    await bb.flush();
    const writeRuns = async (count: number) => {
      for (let k = 0; k < count; k++) {
        const clusters = 1 + Math.floor(r() * (r() < 0.5 ? 4 : 300));
        const c = Math.floor(r() * (size / cs - clusters));
        await bb.write(c * cs, new Uint8Array(clusters * cs).fill(1 + (k & 0x7f)));
      }
    };
    await writeRuns(60);
    await bb.close();
    bb = await openQcow2(graph, 'memory:img', false, { discard: 'unmap' });
    await writeRuns(60);
    await bb.close();
    return storage.get('img')!.toBytes();
  } finally {
    setRefcountWasmEnabled(true);
  }
}

describe('qcow2 refcounts: WASM path vs TypeScript path', () => {
  // 64-bit entries: 16 KiB clusters, so that a block (2048 entries) is longer than the
  // part of it the search scans in TypeScript first.
  for (const [bits, cs] of [[1, CS], [4, CS], [16, CS], [64, 4 * CS]] as const) {
    it(`allocations are identical with refcount_bits=${bits}, and qemu-img check calls the image clean`, { timeout: 120_000 }, async () => {
      const spies = spyWasm();
      const withWasm = await allocationWorkload(bits, 1000 + bits, true, cs);
      expect(spies.findFree).toHaveBeenCalled();
      const calls = spies.findFree.mock.calls.length;
      const plain = await allocationWorkload(bits, 1000 + bits, false, cs);
      expect(spies.findFree.mock.calls.length).toBe(calls);
      expect(withWasm.length).toBe(plain.length);
      expect(Buffer.compare(withWasm, plain)).toBe(0);
      const f = t.path(`alloc-${bits}.qcow2`);
      writeFileSync(f, withWasm);
      const q = qemuCheck(f);
      expect([q.corruptions ?? 0, q.leaks ?? 0, q['check-errors']]).toEqual([0, 0, 0]);
    });
  }

  it('long allocations (metadata preallocation) increment their refcounts in WASM, with the same result', async () => {
    const spies = spyWasm();
    const run = async (on: boolean) => {
      setRefcountWasmEnabled(on);
      try {
        const storage = new MemoryStorage();
        const { graph } = memGraph(storage);
        // 64 KiB clusters: the 2048 clusters of 128 MiB are allocated at once (WASM from 256).
        await createImage(graph, 'qcow2', 'memory:p', { size: 128 << 20, cluster_size: 65536, preallocation: 'metadata' });
        return storage.get('p')!.toBytes();
      } finally {
        setRefcountWasmEnabled(true);
      }
    };
    const a = await run(true);
    expect(spies.add).toHaveBeenCalled();
    expect(spies.add.mock.results.every((r) => r.value === -1)).toBe(true);
    const calls = spies.add.mock.calls.length;
    const b = await run(false);
    expect(spies.add.mock.calls.length).toBe(calls);
    expect(Buffer.compare(a, b)).toBe(0);
    const f = t.path('prealloc.qcow2');
    writeFileSync(f, a);
    const q = qemuCheck(f);
    expect([q.corruptions ?? 0, q.leaks ?? 0, q['check-errors']]).toEqual([0, 0, 0]);
  });
});

/** An image with `clusters` data clusters written by us (16-bit refcounts unless told). */
async function imageBytes(clusters: number, refcountBits = 16): Promise<Uint8Array> {
  const storage = new MemoryStorage();
  const { graph } = memGraph(storage);
  await createImage(graph, 'qcow2', 'memory:c', { size: 64 << 20, cluster_size: CS, refcount_bits: refcountBits });
  const bb = await openQcow2(graph, 'memory:c');
  await bb.write(0, new Uint8Array(clusters * CS).fill(3));
  await bb.close();
  return storage.get('c')!.toBytes();
}

/** The refcount block offsets of an image (from its refcount table). */
function refcountBlocks(img: Uint8Array): number[] {
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const table = Number(dv.getBigUint64(48));
  const clusters = dv.getUint32(56);
  const out: number[] = [];
  for (let i = 0; i < (clusters * CS) / 8; i++) {
    const off = Number(dv.getBigUint64(table + i * 8));
    if (off) out.push(off);
  }
  return out;
}

/** Runs check on a copy of `img` with the WASM path on or off; returns the result and the bytes after it. */
async function runCheck(img: Uint8Array, fix: { leaks: boolean; errors: boolean }, on: boolean): Promise<{ r: CheckResult | { error: string }; bytes: Uint8Array }> {
  setRefcountWasmEnabled(on);
  try {
    const storage = new MemoryStorage();
    storage.create('k', img.length).writeRaw(0, img);
    const { graph } = memGraph(storage);
    let bb: BlockBackend | undefined;
    let r: CheckResult | { error: string };
    try {
      bb = await openQcow2(graph, 'memory:k', !(fix.leaks || fix.errors));
      r = await bb.node.instance.check!(fix);
    } catch (e) {
      r = { error: `${(e as Error).message} ${JSON.stringify((e as { messages?: string[] }).messages ?? [])}` };
    }
    await bb?.close();
    return { r, bytes: storage.get('k')!.toBytes() };
  } finally {
    setRefcountWasmEnabled(true);
  }
}

describe('qcow2 check: WASM compare vs TypeScript compare on corrupted refcount blocks', () => {
  /** Sets the stored 16-bit refcount of cluster `c` (2048 entries per block). */
  const put16 = (img: Uint8Array, c: number, v: number) => {
    const off = refcountBlocks(img)[Math.floor(c / 2048)]! + (c % 2048) * 2;
    img[off] = v >> 8;
    img[off + 1] = v & 0xff;
  };

  /** Corruptions of the (16-bit) refcount block of an image with 3000 data clusters. */
  const cases: Array<[string, (img: Uint8Array) => void]> = [
    ['clean', () => undefined],
    ['scattered leaks and too-low refcounts', (img) => {
      for (const c of [40, 41, 700, 1999, 2047, 2048, 2500]) put16(img, c, 2);
      for (const c of [100, 1500, 2990]) put16(img, c, 5);
      put16(img, 3030, 1); // beyond the data: a leak of a cluster past the last used one
    }],
    ['a used cluster with refcount 0 (needs a rebuild)', (img) => {
      put16(img, 1234, 0);
      put16(img, 900, 3);
      put16(img, 2600, 0);
    }],
    ['a long run of leaks (more mismatches than one scan reports)', (img) => {
      // 1024 is the size of the mismatch list a scan fills before it stops (check.ts).
      for (let c = 20; c < 2900; c++) put16(img, c, 2);
    }],
  ];

  for (const [name, corrupt] of cases) {
    it(`${name}: same report, same repair, and qemu-img agrees`, { timeout: 120_000 }, async () => {
      const img = await imageBytes(3000);
      corrupt(img);
      const f = t.path('chk.qcow2');
      writeFileSync(f, img);
      const q = qemuCheck(f);
      const spies = spyWasm();
      const on = await runCheck(img, { leaks: false, errors: false }, true);
      expect(spies.compare).toHaveBeenCalled();
      const calls = spies.compare.mock.calls.length;
      const off = await runCheck(img, { leaks: false, errors: false }, false);
      expect(spies.compare.mock.calls.length).toBe(calls);
      expect(on.r).toEqual(off.r);
      const r = on.r as CheckResult;
      expect([r.leaks, r.corruptions, r.imageEndOffset, r.allocatedClusters]).toEqual([
        q.leaks ?? 0,
        q.corruptions ?? 0,
        q['image-end-offset'],
        q['allocated-clusters'],
      ]);
      // Repairs: byte-identical images, which qemu-img then calls clean.
      const fixOn = await runCheck(img, { leaks: true, errors: true }, true);
      const fixOff = await runCheck(img, { leaks: true, errors: true }, false);
      expect(fixOn.r).toEqual(fixOff.r);
      expect(Buffer.compare(fixOn.bytes, fixOff.bytes)).toBe(0);
      writeFileSync(f, fixOn.bytes);
      const after = qemuCheck(f);
      expect([after.corruptions ?? 0, after.leaks ?? 0]).toEqual([0, 0]);
      // Leaks only, as `check -r leaks`: the same either way too.
      const leaksOn = await runCheck(img, { leaks: true, errors: false }, true);
      const leaksOff = await runCheck(img, { leaks: true, errors: false }, false);
      expect(leaksOn.r).toEqual(leaksOff.r);
      expect(Buffer.compare(leaksOn.bytes, leaksOff.bytes)).toBe(0);
    });
  }

  it('reports the mismatches qemu-img check prints, line for line', { timeout: 60_000 }, async () => {
    const img = await imageBytes(3000);
    for (const c of [40, 1999, 2900]) put16(img, c, 2);
    put16(img, 1500, 5);
    const f = t.path('lines.qcow2');
    writeFileSync(f, img);
    const theirs = qemuImgTry('check', f).out.split('\n').filter((l) => /^(Leaked|ERROR) cluster/.test(l));
    expect(theirs.length).toBe(4);
    for (const on of [true, false]) {
      const { r } = await runCheck(img, { leaks: false, errors: false }, on);
      expect((r as CheckResult).messages.filter((l) => /^(Leaked|ERROR) cluster/.test(l))).toEqual(theirs);
    }
  });

  it('other refcount widths (1, 4, 64 bits) give the same check answers on corrupted blocks either way', { timeout: 120_000 }, async () => {
    for (const bits of [1, 4, 64]) {
      const img = await imageBytes(2500, bits);
      // Corrupt block 0: two used clusters at 0 (a rebuild) and, where a width allows, a leak.
      const block = img.subarray(refcountBlocks(img)[0]!, refcountBlocks(img)[0]! + CS);
      RefcountTs.set(block, Math.log2(bits), 31, 0);
      RefcountTs.set(block, Math.log2(bits), 300, 0);
      if (bits > 1) RefcountTs.set(block, Math.log2(bits), 40, 3);
      const f = t.path(`w${bits}.qcow2`);
      writeFileSync(f, img);
      const q = qemuCheck(f);
      const on = await runCheck(img, { leaks: false, errors: false }, true);
      const off = await runCheck(img, { leaks: false, errors: false }, false);
      expect(on.r).toEqual(off.r);
      const r = on.r as CheckResult;
      expect([r.leaks, r.corruptions, r.imageEndOffset]).toEqual([q.leaks ?? 0, q.corruptions ?? 0, q['image-end-offset']]);
    }
  });
});
