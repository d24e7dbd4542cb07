/**
 * Seeded mutations of a QED header's fields and table entries (interesting
 * values and random bits): `img info` and `img map` must answer as qemu-img
 * 7.2 does, in text and exit code; every failure of ours is a BlockError
 * (the API open below), never a crash.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { BlockBackend, BlockError, createNodeGraph } from '../../../src/node.js';

const MiB = 1 << 20;
/** Field, offset, width (L1 entry 0 at 0x10000; its L2 table's first entries at 0x50000). */
const FIELDS: Array<[string, number, 4 | 8]> = [
  ['magic', 0, 4],
  ['cluster_size', 4, 4],
  ['table_size', 8, 4],
  ['header_size', 12, 4],
  ['features', 16, 8],
  ['compat_features', 24, 8],
  ['autoclear_features', 32, 8],
  ['l1_table_offset', 40, 8],
  ['image_size', 48, 8],
  ['backing_filename_offset', 56, 4],
  ['backing_filename_size', 60, 4],
  ['L1 entry 0', 0x10000, 8],
  ['L2 entry 1', 0x50008, 8],
];
const INTERESTING = [0, 1, 2, 3, 4, 7, 16, 64, 512, 4096, 65536, 0x50000, 0x60000, MiB, 0x7fffffff, 0x80000000, 0xffffffff];

function mutation(seed: number): { what: string; apply: (b: Buffer) => void } {
  const rnd = prng(seed);
  const [name, at, width] = FIELDS[Math.floor(rnd() * FIELDS.length)]!;
  const pick = rnd() < 0.6 ? INTERESTING[Math.floor(rnd() * INTERESTING.length)]! : Math.floor(rnd() * 2 ** 32);
  if (width === 8) {
    const v = rnd() < 0.3 ? BigInt(pick) << BigInt(Math.floor(rnd() * 33)) : BigInt(pick);
    return { what: `${name} = ${v}`, apply: (b) => void b.writeBigUInt64LE(v & 0xffffffffffffffffn, at) };
  }
  return { what: `${name} = 0x${pick.toString(16)}`, apply: (b) => void b.writeUInt32LE(pick >>> 0, at) };
}

const SEEDS = Array.from({ length: 40 }, (_, i) => 9100 + i);

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('mutated qed headers vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((dir, sh) => {
      sh('qemu-img create -q -f qed base.qed 8M');
      sh("qemu-io -f qed -c 'write -P 0x61 0 8k' -c 'write -P 0x62 4M 4k' base.qed >/dev/null");
      for (const seed of SEEDS) {
        const b = readFileSync(join(dir, 'base.qed'));
        mutation(seed).apply(b);
        writeFileSync(join(dir, `m${seed}.qed`), b);
      }
    });
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const seed of SEEDS) {
    it(`seed ${seed}: ${mutation(seed).what}`, async () => {
      const f = `m${seed}.qed`;
      const dir = fx.copy();
      for (const args of [['info', '-f', 'qed', f], ['map', '-f', 'qed', '--output=json', f]]) {
        const t = theirs('img', args, dir);
        const o = await ours('img', args, dir);
        expect({ code: o.code, out: normalize(o.stdout), err: normalize(o.stderr) }, args.join(' ')).toEqual({ code: t.code, out: normalize(t.stdout), err: normalize(t.stderr) });
      }
      // Through the API: a BlockError or an image that reads.
      const graph = createNodeGraph();
      try {
        const bb = await BlockBackend.open(graph, { driver: 'qed', file: { driver: 'file', filename: join(dir, f) } }, { readOnly: true });
        await bb.read(0, Math.min(64 * 1024, bb.length)).catch((e: unknown) => expect(e).toBeInstanceOf(BlockError));
        await bb.close();
      } catch (e) {
        expect(e).toBeInstanceOf(BlockError);
        expect((e as BlockError).code).toMatch(/^E[A-Z]+$/);
      } finally {
        await graph.closeAll();
      }
    }, 120_000);
  }
});
