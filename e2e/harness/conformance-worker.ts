/**
 * A dedicated worker that runs the protocol conformance cases
 * (test/protocols/conformance-cases.ts, the same list Vitest runs in Node) over
 * the browser back ends: OPFS, IndexedDB, read-only HTTP and blob. One worker per
 * hot-path mode, so the module-level WASM switches of one run cannot leak into the other.
 *
 * Message in: { mode: 'wasm' | 'typescript', origin }. Message out: { results } or { error }.
 */
import { createBrowserGraph } from '../../src/browser.js';
import { createImage } from '../../src/core/create.js';
import { opfsTestHooks } from '../../src/protocols/opfs.js';
import { registerBlob } from '../../src/protocols/blob.js';
import type { BlockGraph } from '../../src/core/graph.js';
import { runAll, qcow2Fixture, IMAGE_SIZE, pattern, type CaseResult, type Image, type Target } from '../../test/protocols/conformance-cases.js';
import { useHotPaths, type HotPaths, type HotPathState } from '../../test/protocols/hot-paths.js';

async function created(g: BlockGraph, driver: string, filename: string): Promise<Image> {
  await createImage(g, driver, filename, { size: IMAGE_SIZE });
  return { spec: { driver, filename }, size: IMAGE_SIZE, initial: new Uint8Array(IMAGE_SIZE) };
}

/** The qemu-img made fixture served by scripts/serve-e2e.mjs (8 MiB; 0x11 in the first MiB, 0x22 at 3 MiB for 512 KiB). */
function qbaseContent(): Uint8Array {
  const c = new Uint8Array(8 << 20);
  c.fill(0x11, 0, 1 << 20);
  c.fill(0x22, 3 << 20, (3 << 20) + (512 << 10));
  return c;
}

async function targets(mode: HotPaths, origin: string): Promise<Target[]> {
  const g = createBrowserGraph();
  const baseUrl = `${origin}/fixtures/base.raw`;
  const baseBytes = new Uint8Array(await (await fetch(baseUrl)).arrayBuffer());
  const blobContent = pattern(99, IMAGE_SIZE);
  const blobName = registerBlob(new Blob([blobContent as Uint8Array<ArrayBuffer>]), `conformance-${mode}`);
  const blobQcow2 = await qcow2Fixture({ graph: g }, `conf-blob-${mode}.qcow2`);
  const blobQcow2Name = registerBlob(new Blob([blobQcow2.bytes as Uint8Array<ArrayBuffer>]), `conformance-${mode}-qcow2`);
  const readOnly = 'read-only: writes are refused before they reach storage (the write cases check that), and reads have no fault hook';
  return [
    {
      name: 'opfs',
      graph: g,
      data: 'stores',
      locks: true,
      sparse: false,
      allocated: 'logical',
      faults: {
        // The driver's test quota (counted over the files this worker has open): growing past it is ENOSPC.
        ENOSPC: {
          hits: 'grow',
          arm: () => {
            opfsTestHooks.quotaBytes = 1;
          },
          disarm: () => {
            opfsTestHooks.quotaBytes = undefined;
          },
        },
        EIO: 'OPFS has no hook that fails a sync access handle read or write',
      },
      fresh: (id) => created(g, 'opfs', `opfs:/conformance/${mode}-${id}.raw`),
      qcow2: async (id) => ({ filename: `opfs:/conformance/${mode}-${id}.qcow2` }),
    },
    {
      name: 'idb',
      graph: g,
      data: 'stores',
      locks: true,
      sparse: false,
      allocated: 'grows',
      faults: {
        ENOSPC: "the idb driver's chunk store is IndexedDB itself, with no quota hook; a failed commit is covered over an in-memory store by test/protocols/idb-chunks.test.ts",
        EIO: 'IndexedDB has no hook that fails a transaction',
      },
      fresh: (id) => created(g, 'idb', `idb:conformance-${mode}-${id}`),
      qcow2: async (id) => ({ filename: `idb:conformance-${mode}-${id}.qcow2` }),
    },
    {
      name: 'http',
      graph: g,
      data: 'read-only',
      locks: 'read-only',
      sparse: false,
      allocated: 'logical',
      faults: {
        ENOSPC: readOnly,
        EIO: `${readOnly}; failed reads (a server that ignores Range or compresses) are EIO in e2e/http.spec.ts, and the fixture server cannot fail an open image's reads`,
      },
      fresh: async () => ({ spec: { driver: 'http', filename: baseUrl }, size: baseBytes.length, initial: baseBytes }),
      qcow2: async () => ({ filename: `${origin}/fixtures/qbase.qcow2`, fixture: { size: 8 << 20, content: qbaseContent() } }),
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
      qcow2: async () => ({ filename: blobQcow2Name, fixture: { size: blobQcow2.content.length, content: blobQcow2.content } }),
    },
  ];
}

self.onmessage = async (ev: MessageEvent<{ mode: HotPaths; origin: string }>) => {
  try {
    const { mode, origin } = ev.data;
    const hotPaths: HotPathState = await useHotPaths(mode);
    const results: CaseResult[] = [];
    for (const t of await targets(mode, origin)) results.push(...(await runAll(t, mode, () => performance.now())));
    (self as unknown as Worker).postMessage({ hotPaths, results });
  } catch (e) {
    (self as unknown as Worker).postMessage({ error: String((e as Error)?.stack ?? e) });
  }
};
