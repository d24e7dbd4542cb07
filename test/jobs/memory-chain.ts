/**
 * The qemu-img-made chain of chain-fixture.ts, loaded into a memory back
 * end, so job tests can inject read and write faults into any image.
 */
import { Perm } from '../../src/core/permissions.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockBackend } from '../../src/core/backend.js';
import { BlockGraph } from '../../src/core/graph.js';
import { MemoryStorage, createMemoryDriver, type MemoryFile } from '../../src/protocols/memory.js';
import { rawDriver } from '../../src/formats/raw/raw.js';
import { qcow2Driver } from '../../src/formats/qcow2/qcow2.js';
import { makeChain, rawContent, sh, SIZE } from './chain-fixture.js';

/** The guest's backend: as a QEMU guest device it writes but takes no resize permission (block jobs share none). */
const GUEST = { perm: Perm.CONSISTENT_READ | Perm.WRITE };

export interface MemoryChain {
  graph: BlockGraph;
  storage: MemoryStorage;
  guest: BlockBackend;
  /** What the guest sees before any job (top's content). */
  content: Uint8Array;
  file(name: string): MemoryFile;
}

/** base ← mid ← top (+ an empty same-size target.qcow2) in memory; the guest holds top. */
export async function memoryChain(): Promise<MemoryChain> {
  const dir = makeChain();
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'target.qcow2', String(SIZE)], dir);
  const content = rawContent(dir, 'top.qcow2');
  const storage = new MemoryStorage();
  for (const name of ['base.qcow2', 'mid.qcow2', 'top.qcow2', 'target.qcow2']) {
    const bytes = new Uint8Array(readFileSync(join(dir, name)));
    storage.create(name, bytes.length).writeRaw(0, bytes);
  }
  const graph = new BlockGraph([createMemoryDriver(storage), rawDriver, qcow2Driver], 'memory');
  const guest = await BlockBackend.open(graph, { driver: 'qcow2', discard: 'unmap', file: { driver: 'memory', filename: 'top.qcow2' } }, {}, GUEST);
  return {
    graph,
    storage,
    guest,
    content,
    file: (name) => {
      const f = storage.get(name);
      if (!f) throw new Error(`no memory file ${name}`);
      return f;
    },
  };
}
