/**
 * Protocol conformance in Node: the shared case list (conformance-cases.ts) over
 * the memory, null-co, node-file and blob back ends, once with the WASM hot paths
 * and once with the TypeScript ones. The browser back ends (OPFS, IndexedDB,
 * read-only HTTP) run the same cases in e2e/conformance.spec.ts.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createNodeGraph } from '../../src/node.js';
import { createImage } from '../../src/core/create.js';
import { defaultMemoryStorage } from '../../src/protocols/memory.js';
import { blobDriver, registerBlob } from '../../src/protocols/blob.js';
import type { BlockGraph } from '../../src/core/graph.js';
import { CASES, applicable, qcow2Fixture, IMAGE_SIZE, pattern, type FaultInjector, type Image, type Target } from './conformance-cases.js';
import { useHotPaths, type HotPaths } from './hot-paths.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-conform-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function graph(): BlockGraph {
  const g = createNodeGraph();
  g.registerDriver(blobDriver);
  return g;
}

/** New image through the driver's own create, opened by driver name. */
async function created(g: BlockGraph, driver: string, filename: string): Promise<Image> {
  await createImage(g, driver, filename, { size: IMAGE_SIZE });
  return { spec: { driver, filename }, size: IMAGE_SIZE, initial: new Uint8Array(IMAGE_SIZE) };
}

/** The memory back end's fault hook: the next modifying request fails with `code`. */
function memoryFault(code: 'ENOSPC' | 'EIO'): FaultInjector {
  const file = (img: Image) => defaultMemoryStorage.get(String(img.spec['filename']).replace(/^memory:/, ''))!;
  return {
    hits: 'write',
    arm: (img) => {
      const f = file(img);
      f.faults = { failAfterWrites: f.writeCount, failCode: code };
    },
    disarm: (img) => {
      file(img).faults = {};
    },
  };
}

function targets(mode: HotPaths): Target[] {
  const g = graph();
  const blobContent = pattern(99, IMAGE_SIZE);
  const blobName = registerBlob(new Blob([blobContent as Uint8Array<ArrayBuffer>]), `conformance-${mode}`);
  let blobQcow2: Promise<string> | undefined;
  let blobQcow2Content: Uint8Array | undefined;
  const noFaultFs = 'Node has no fault hook for the file system (ENOSPC would need a full file system, EIO a failing disk)';
  const readOnly = 'read-only: writes are refused before they reach storage (the write cases check that), and reads have no fault hook';
  return [
    {
      name: 'memory',
      graph: g,
      data: 'stores',
      locks: true,
      sparse: true,
      allocated: 'grows',
      faults: { ENOSPC: memoryFault('ENOSPC'), EIO: memoryFault('EIO') },
      fresh: (id) => created(g, 'memory', `memory:conf-${mode}-${id}`),
      qcow2: async (id) => ({ filename: `memory:conf-${mode}-${id}.qcow2` }),
    },
    {
      name: 'null-co',
      graph: g,
      data: 'drops',
      locks: 'null-co keeps no state to protect: every open is its own empty device',
      sparse: false,
      reportsData: "QEMU's null-co answers block status with no data allocated",
      resizes: "QEMU's null-co has no truncate",
      allocated: 'zero',
      faults: { ENOSPC: 'null-co stores nothing, so it never runs out of space', EIO: 'null-co has no fault hook (QEMU null-co neither)' },
      fresh: async () => ({ spec: { driver: 'null-co', size: IMAGE_SIZE }, size: IMAGE_SIZE, initial: new Uint8Array(IMAGE_SIZE) }),
      qcow2: async () => ({ filename: 'null-co://' }),
    },
    {
      name: 'file',
      graph: g,
      data: 'stores',
      sectorLength: true,
      // QEMU's OFD locks refuse a second open of the file in the same process too (src/protocols/node-file-locks.ts).
      locks: { code: 'EAGAIN', words: ['Failed to get "write" lock'] },
      // A fresh file has holes, so all-zero blocks read as holes (src/protocols/node-file-holes.ts).
      sparse: true,
      allocated: 'grows',
      faults: { ENOSPC: noFaultFs, EIO: noFaultFs },
      fresh: (id) => created(g, 'file', path.join(dir, `${mode}-${id}.raw`)),
      qcow2: async (id) => ({ filename: path.join(dir, `${mode}-${id}.qcow2`) }),
    },
    {
      name: 'blob',
      graph: g,
      data: 'read-only',
      locks: 'read-only',
      sparse: false,
      allocated: 'none',
      faults: { ENOSPC: readOnly, EIO: readOnly },
      fresh: async () => ({ spec: { driver: 'blob', filename: blobName }, size: IMAGE_SIZE, initial: blobContent }),
      qcow2: async () => {
        blobQcow2 ??= qcow2Fixture({ graph: g }, `conf-blob-${mode}.qcow2`).then((fx) => {
          blobQcow2Content = fx.content;
          return registerBlob(new Blob([fx.bytes as Uint8Array<ArrayBuffer>]), `conformance-${mode}-qcow2`);
        });
        const filename = await blobQcow2;
        return { filename, fixture: { size: blobQcow2Content!.length, content: blobQcow2Content! } };
      },
    },
  ];
}

for (const mode of ['wasm', 'typescript'] as const) {
  describe(`protocol conformance (${mode} hot paths)`, () => {
    beforeAll(async () => {
      await useHotPaths(mode);
    });
    for (const t of targets(mode)) {
      describe(t.name, () => {
        for (const [i, c] of CASES.entries()) {
          const reason = applicable(c, t);
          if (reason !== null) continue; // listed in the matrix test below, with the reason
          it(c.name, async () => {
            await useHotPaths(mode);
            await c.run(t, `c${i}`, mode);
          });
        }
      });
    }
  });
}

describe('protocol conformance matrix', () => {
  it('every case runs on every Node back end except where the back end documents why not', () => {
    const na = targets('typescript').flatMap((t) => CASES.map((c) => [t.name, c.name, applicable(c, t)] as const).filter(([, , r]) => r !== null));
    // The back ends that cannot inject faults, and only those.
    expect(na.map(([t, c]) => `${t}: ${c}`)).toEqual([
      'null-co: injected ENOSPC',
      'null-co: injected EIO',
      'file: injected ENOSPC',
      'file: injected EIO',
      'blob: injected ENOSPC',
      'blob: injected EIO',
    ]);
    for (const [, , r] of na) expect(r!.length).toBeGreaterThan(10);
  });
});
