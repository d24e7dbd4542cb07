/**
 * Compressed data is packed behind the compressed data written last, in the
 * same host cluster. Once that cluster is freed (its compressed clusters
 * discarded or zeroed) it may be handed out for anything else, and packing
 * into it again would overwrite that (two L2 entries on one host cluster,
 * refcount 2 on a COPIED cluster). Every cluster must read back what was
 * written, through us and through qemu-img convert, and qemu-img check must
 * call the image clean.
 *
 * QEMU 7.2 is not the reference here: it has the same fault (qemu-io
 * `write -c` 0, `discard` 0, `flush`, `write` 64k, `write -c` 128k on a 64 KiB
 * cluster image leaves "ERROR OFLAG_COPIED data cluster ... refcount=2" and
 * the data at 64k overwritten).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { closeSync, openSync, readSync } from 'node:fs';
import { ReqFlag } from '../../../src/node.js';
import { fileGraph, openQcow2, qemuCheck, qemuImg, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

const CS = 65536;
/** A cluster that compresses well, different for each `v`. */
const packable = (v: number) => new Uint8Array(CS).map((_, j) => (j % 7 === 0 ? v : 65 + (j % 13)));

type Step = { op: 'compress' | 'write' | 'discard' | 'zero-unmap' | 'flush'; cluster: number; v: number };

const scenarios: Array<[string, Step[]]> = [
  [
    'a discarded compressed cluster whose host cluster is reused for data',
    [
      { op: 'compress', cluster: 0, v: 1 },
      { op: 'discard', cluster: 0, v: 0 },
      { op: 'flush', cluster: 0, v: 0 },
      { op: 'write', cluster: 1, v: 9 },
      { op: 'compress', cluster: 2, v: 2 },
    ],
  ],
  [
    'two packed compressed clusters zeroed, then an L2 table and data take the freed space',
    [
      { op: 'compress', cluster: 0, v: 1 },
      { op: 'compress', cluster: 1, v: 2 },
      { op: 'zero-unmap', cluster: 0, v: 0 },
      { op: 'zero-unmap', cluster: 1, v: 0 },
      { op: 'flush', cluster: 0, v: 0 },
      // A cluster under a second L2 table (64 KiB clusters: 8192 entries per table).
      { op: 'write', cluster: 8192 + 3, v: 7 },
      { op: 'write', cluster: 5, v: 8 },
      { op: 'compress', cluster: 6, v: 3 },
      { op: 'compress', cluster: 7, v: 4 },
    ],
  ],
];

describe('qcow2 compressed packing after a free', () => {
  for (const ctype of ['zstd', 'zlib']) {
    for (const [name, steps] of scenarios) {
      it(`${ctype}: ${name}`, async () => {
        const tag = `${ctype}-${steps.length}`;
        const ours = t.path(`${tag}.qcow2`);
        qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CS},compression_type=${ctype}`, ours, String(1 << 30));
        const bb = await openQcow2(fileGraph(), ours, false, { discard: 'unmap' });
        /** Expected content of every cluster touched. */
        const model = new Map<number, Uint8Array>();
        for (const s of steps) {
          const off = s.cluster * CS;
          if (s.op === 'compress') {
            await bb.writeCompressed(off, packable(s.v));
            model.set(s.cluster, packable(s.v));
          } else if (s.op === 'write') {
            await bb.write(off, new Uint8Array(CS).fill(s.v));
            model.set(s.cluster, new Uint8Array(CS).fill(s.v));
          } else if (s.op === 'discard' || s.op === 'zero-unmap') {
            if (s.op === 'discard') await bb.discard(off, CS);
            else await bb.writeZeroes(off, CS, ReqFlag.MAY_UNMAP);
            model.set(s.cluster, new Uint8Array(CS));
          } else {
            await bb.flush();
          }
          // Read back at once, too: the damage is done by the write, not by a crash.
          for (const [c, want] of model) expect({ step: s, c, same: Buffer.compare(await bb.read(c * CS, CS), want) === 0 }).toEqual({ step: s, c, same: true });
        }
        await bb.close();
        const c = qemuCheck(ours);
        expect({ corruptions: c.corruptions ?? 0, leaks: c.leaks ?? 0, errors: c['check-errors'] }).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
        // QEMU reads the same content.
        const raw = t.path(`${tag}.raw`);
        qemuImg('convert', '-O', 'raw', ours, raw);
        const fd = openSync(raw, 'r');
        try {
          for (const [cl, want] of model) {
            const got = new Uint8Array(CS);
            readSync(fd, got, 0, CS, cl * CS);
            expect({ cl, same: Buffer.compare(got, want) === 0 }).toEqual({ cl, same: true });
          }
        } finally {
          closeSync(fd);
        }
      });
    }
  }
});
