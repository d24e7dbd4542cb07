/**
 * Fuzzed headers of every format of issue #19 (vmdk sparse and
 * streamOptimized, vpc, vhdx, vdi, qed, qcow, luks, qcow2 with LUKS and with
 * legacy AES), a fast seeded sample: one to three edits (interesting values
 * and random bits, 1 to 8 bytes, either byte order) in the first 4 KiB of
 * an image qemu-img made, or in its metadata further on. Each is opened
 * through the library, read and asked for block status: it answers, or
 * fails with a BlockError that has a code; never another exception, and
 * the memory held while it is open stays bounded (array buffers under
 * 64 MiB above the start, whatever size the damage claims). `img info`
 * exits as qemu-img's does (0 or 1) for the same file.
 * Longer runs: FUZZ_SEEDS=N (cases per format).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, ours, theirs } from '../cli/harness.js';
import { prng } from '../prng.js';
import { BlockBackend, BlockError, createNodeGraph } from '../../src/node.js';
import { addSecret } from '../../src/core/secrets.js';

const MiB = 1 << 20;
const SEC = ['--object', 'secret,id=sec0,data=fuzzpw'];
const BOUND = 64 * MiB;

/** Image, driver, blockdev options beyond driver and file, where its metadata lies past the header. */
const IMAGES: Array<{ file: string; driver: string; opts?: Record<string, string>; meta: [number, number] }> = [
  { file: 'sparse.vmdk', driver: 'vmdk', meta: [0x10000, 0x30000] },
  { file: 'stream.vmdk', driver: 'vmdk', meta: [0x10000, 0x20000] },
  { file: 'dyn.vhd', driver: 'vpc', meta: [0x600, 0x1000] },
  { file: 'dyn.vhdx', driver: 'vhdx', meta: [0x10000, 0x300000] },
  { file: 'dyn.vdi', driver: 'vdi', meta: [0x200, 0x400] },
  { file: 'a.qed', driver: 'qed', meta: [0x10000, 0x50000] },
  { file: 'a.qcow', driver: 'qcow', meta: [0x1000, 0x3000] },
  { file: 'a.luks', driver: 'luks', opts: { 'key-secret': 'sec0' }, meta: [0x1000, 0x100000] },
  { file: 'luks.qcow2', driver: 'qcow2', opts: { 'encrypt.key-secret': 'sec0' }, meta: [0x10000, 0x30000] },
  { file: 'aes.qcow2', driver: 'qcow2', opts: { 'encrypt.key-secret': 'sec0' }, meta: [0x10000, 0x40000] },
];

const INTERESTING = [0, 1, 2, 7, 8, 9, 16, 63, 64, 255, 256, 511, 512, 513, 4096, 65535, 65536, MiB, 0x7fffffff, 0x80000000, 0xffffffff];

interface Edit {
  at: number;
  width: 1 | 2 | 4 | 8;
  value: bigint;
  little: boolean;
}

function edits(seed: number, meta: [number, number]): Edit[] {
  const rnd = prng(seed);
  const n = 1 + Math.floor(rnd() * 3);
  const out: Edit[] = [];
  for (let i = 0; i < n; i++) {
    const width = ([1, 2, 4, 8] as const)[Math.floor(rnd() * 4)]!;
    const inMeta = rnd() < 0.25;
    const at = inMeta ? meta[0] + Math.floor(rnd() * (meta[1] - meta[0] - 8)) : Math.floor(rnd() * (4096 - 8));
    const base = rnd() < 0.6 ? BigInt(INTERESTING[Math.floor(rnd() * INTERESTING.length)]!) : BigInt(Math.floor(rnd() * 2 ** 32));
    const value = (rnd() < 0.2 ? base << BigInt(Math.floor(rnd() * 32)) : base) & ((1n << BigInt(width * 8)) - 1n);
    out.push({ at, width, value, little: rnd() < 0.5 });
  }
  return out;
}

function apply(b: Buffer, list: Edit[]): void {
  for (const e of list) {
    if (e.at + e.width > b.length) continue;
    for (let i = 0; i < e.width; i++) {
      const byte = Number((e.value >> BigInt(8 * i)) & 0xffn);
      b[e.little ? e.at + i : e.at + e.width - 1 - i] = byte;
    }
  }
}

const describeEdits = (list: Edit[]) => list.map((e) => `@0x${e.at.toString(16)}:${e.width}${e.little ? 'le' : 'be'}=0x${e.value.toString(16)}`).join(' ');

const COUNT = Number(process.env.FUZZ_SEEDS ?? 8);
const SEEDS = Array.from({ length: COUNT }, (_, i) => 4100 + i);

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('fuzzed headers of every issue #19 format: BlockErrors, bounded memory, info exits as qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((dir, sh) => {
      const s = SEC.join(' ');
      const io = (f: string, extra = '') => sh(`qemu-io ${extra} -c 'write -P 0x61 0 70k' -c 'write -P 0x62 1M 4k' -c 'write -z 2M 64k' ${f} >/dev/null`);
      sh('qemu-img create -q -f vmdk sparse.vmdk 4M');
      io('-f vmdk sparse.vmdk');
      // streamOptimized takes only appending writes: made by convert, with compressed grains.
      sh('qemu-img convert -O vmdk -o subformat=streamOptimized sparse.vmdk stream.vmdk');
      sh('qemu-img create -q -f vpc dyn.vhd 4M');
      io('-f vpc dyn.vhd');
      sh('qemu-img create -q -f vhdx -o block_size=1M,log_size=1M dyn.vhdx 4M');
      io('-f vhdx dyn.vhdx');
      sh('qemu-img create -q -f vdi dyn.vdi 4M');
      io('-f vdi dyn.vdi');
      sh('qemu-img create -q -f qed a.qed 4M');
      io('-f qed a.qed');
      sh('qemu-img create -q -f qcow a.qcow 4M');
      io('-f qcow a.qcow');
      const retry = (c: string) => sh(Array(12).fill(c).join(' || '));
      retry(`qemu-img create -q -f luks ${s} -o key-secret=sec0,iter-time=10 a.luks 4M`);
      io(`${s} --image-opts driver=luks,key-secret=sec0,file.filename=a.luks`);
      retry(`qemu-img create -q -f qcow2 ${s} -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 luks.qcow2 4M`);
      io(`${s} --image-opts driver=qcow2,encrypt.key-secret=sec0,file.filename=luks.qcow2`);
      sh(`qemu-img create -q -f qcow2 ${s} -o encrypt.format=aes,encrypt.key-secret=sec0 aes.qcow2 4M`);
      io(`${s} --image-opts driver=qcow2,encrypt.key-secret=sec0,file.filename=aes.qcow2`);
      for (const im of IMAGES) {
        for (const seed of SEEDS) {
          const b = readFileSync(join(dir, im.file));
          apply(b, edits(seed, im.meta));
          writeFileSync(join(dir, `m${seed}-${im.file}`), b);
        }
      }
    });
  }, 120_000);
  afterAll(() => fx.dispose());

  for (const im of IMAGES) {
    it(`${im.file}: seeds ${SEEDS[0]}..${SEEDS[SEEDS.length - 1]}`, async () => {
      const dir = fx.copy();
      const failures: string[] = [];
      for (const seed of SEEDS) {
        const f = `m${seed}-${im.file}`;
        const what = `seed ${seed} ${describeEdits(edits(seed, im.meta))}`;
        const graph = createNodeGraph();
        addSecret(graph, 'sec0', new TextEncoder().encode('fuzzpw'));
        const before = process.memoryUsage().arrayBuffers;
        let peak = 0;
        try {
          const bb = await BlockBackend.open(graph, { driver: im.driver, ...im.opts, file: { driver: 'file', filename: join(dir, f) } }, { readOnly: true });
          try {
            peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
            const len = Math.min(bb.length, 4 * MiB);
            for (const [off, n] of [[0, 64 * 1024], [MiB, 8192], [Math.max(0, len - 4096), 4096]] as const) {
              if (off + n > bb.length) continue;
              await bb.read(off, n).catch((e: unknown) => {
                if (!(e instanceof BlockError)) failures.push(`${what}: read threw ${String(e)}`);
              });
              peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
            }
            if (bb.length > 0) {
              await bb.blockStatus(0, Math.min(bb.length, 4 * MiB)).catch((e: unknown) => {
                if (!(e instanceof BlockError)) failures.push(`${what}: block status threw ${String(e)}`);
              });
            }
          } finally {
            await bb.close().catch(() => undefined);
          }
        } catch (e) {
          if (!(e instanceof BlockError) || !/^E[A-Z]+$/.test(e.code)) failures.push(`${what}: open threw ${String(e)} (${(e as Error).stack?.split('\n')[1]?.trim()})`);
        } finally {
          await graph.closeAll();
        }
        if (peak > BOUND) failures.push(`${what}: ${peak} bytes of array buffers while open`);
        const args = ['info', ...(im.driver === 'luks' || im.opts ? [...SEC] : []), '-f', im.driver, f];
        const t = theirs('img', args, dir);
        const o = await ours('img', args, dir);
        if (t.code !== o.code) failures.push(`${what}: img info exits ${o.code}, qemu-img ${t.code} (${(t.stderr || t.stdout).trim().split('\n')[0]} | ${(o.stderr || o.stdout).trim().split('\n')[0]})`);
      }
      expect(failures).toEqual([]);
    }, 300_000);
  }
});
