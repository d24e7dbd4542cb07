/**
 * `img convert -O raw` from each foreign format (issue #19) against qemu-img
 * on the same files: an image of every format and sub-format qemu-img writes
 * (vmdk monolithicSparse and streamOptimized, vpc dynamic, vhdx dynamic, vdi
 * dynamic, qed, qcow v1, luks aes-256-xts), all made by qemu-img from one
 * raw file of data that compresses to about half. Wall time, page cache warm,
 * interleaved, best of three, start-up subtracted (the least `img info` of a
 * small qcow2 measured next to each case, as bench/cli/convert.ts does).
 *
 * Size: BENCH_FORMATS_MB (default 256).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, benchRoot, sh, startupMs, timed, writeData } from '../cli/convert.js';
import type { BenchResult } from '../types.js';

const SIZE_MB = Number(process.env['BENCH_FORMATS_MB'] ?? 256);
const ROUNDS = 3;
const SECRET = 'secret,id=sec0,data=bench';

/** One source image: its file, how qemu-img makes it from src.raw, how both tools name it to convert. */
interface Case {
  name: string;
  file: string;
  make: string[];
  /** The convert's source arguments (before `-O raw <file> out.raw` or in place of the file). */
  source: string[];
}

const CASES: Case[] = [
  { name: 'vmdk monolithicSparse', file: 's.vmdk', make: ['-O', 'vmdk'], source: ['s.vmdk'] },
  { name: 'vmdk streamOptimized', file: 'so.vmdk', make: ['-O', 'vmdk', '-o', 'subformat=streamOptimized'], source: ['so.vmdk'] },
  { name: 'vpc dynamic', file: 'd.vhd', make: ['-O', 'vpc'], source: ['d.vhd'] },
  { name: 'vhdx dynamic', file: 'd.vhdx', make: ['-O', 'vhdx'], source: ['d.vhdx'] },
  { name: 'vdi dynamic', file: 'd.vdi', make: ['-O', 'vdi'], source: ['d.vdi'] },
  { name: 'qed', file: 'd.qed', make: ['-O', 'qed'], source: ['d.qed'] },
  { name: 'qcow (v1)', file: 'd.qcow', make: ['-O', 'qcow'], source: ['d.qcow'] },
  {
    name: 'luks aes-256-xts',
    file: 'd.luks',
    make: ['--object', SECRET, '-O', 'luks', '-o', 'key-secret=sec0,iter-time=10'],
    source: ['--object', SECRET, '--image-opts', 'driver=luks,key-secret=sec0,file.filename=d.luks'],
  },
];

export async function run(): Promise<BenchResult[]> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build first`);
  const dir = mkdtempSync(join(benchRoot(SIZE_MB * 12), 'dw-bench-formats-'));
  const results: BenchResult[] = [];
  try {
    writeData(join(dir, 'src.raw'), SIZE_MB);
    for (const c of CASES) sh('qemu-img', ['convert', ...c.make, 'src.raw', c.file], dir);
    rmSync(join(dir, 'src.raw'));
    const startup = await startupMs(dir);
    for (const c of CASES) {
      const args = ['convert', ...c.source.slice(0, -1), '-O', 'raw', c.source[c.source.length - 1]!, 'out.raw'];
      // Warm the page cache (and our command's code cache) once.
      rmSync(join(dir, 'out.raw'), { force: true });
      await timed('qemu-img', args, dir);
      rmSync(join(dir, 'out.raw'), { force: true });
      await timed(process.execPath, [BIN, 'img', ...args], dir);
      let q = Infinity;
      let o = Infinity;
      let qStart = startup.qemu;
      let oStart = startup.ours;
      for (let round = 0; round < ROUNDS; round++) {
        qStart = Math.min(qStart, (await timed('qemu-img', ['info', 'small.qcow2'], dir)).ms);
        oStart = Math.min(oStart, (await timed(process.execPath, [BIN, 'img', 'info', 'small.qcow2'], dir)).ms);
        rmSync(join(dir, 'out.raw'), { force: true });
        q = Math.min(q, (await timed('qemu-img', args, dir)).ms);
        rmSync(join(dir, 'out.raw'), { force: true });
        o = Math.min(o, (await timed(process.execPath, [BIN, 'img', ...args], dir)).ms);
      }
      const oursNet = Math.max(1, o - oStart);
      const qemuNet = Math.max(1, q - qStart);
      results.push({
        name: `convert -O raw from ${c.name}, ${SIZE_MB} MiB (start-up excluded)`,
        unit: 'ms',
        value: oursNet,
        baseline: 'qemu-img, same file',
        baselineValue: qemuNet,
        ratio: qemuNet / oursNet,
        target: 1 / 1.5,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}
