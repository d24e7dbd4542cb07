/**
 * `img convert` against qemu-img (and, with BASE_BIN, against another build of
 * diskworker) on the four images of bench/cli/convert.ts: wall and CPU time
 * (user + system, threads included) through /usr/bin/time, interleaved rounds
 * (the order flips each round), medians, start-up (`img info` of a small
 * image, measured in every round) subtracted, peak RSS, and the load average
 * after each round. For a shared machine, where best-of-three wall times say
 * more about the neighbours than about the code.
 *
 *   npx tsx bench/research/convert-ab.ts [rounds=5] [cases=full,zlib,zstd,toqcow2]
 *   BENCH_DIR=<dir with the images, kept>  BASE_BIN=<other dist/cli/diskworker.js>
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, benchRoot, makeConvertImages, sh } from '../cli/convert.js';

const rounds = Number(process.argv[2] ?? 5);
const cases = (process.argv[3] ?? 'full,zlib,zstd,toqcow2').split(',');
const ARGS: Record<string, string[]> = {
  full: ['convert', '-O', 'raw', 'full.qcow2', 'out.raw'],
  zlib: ['convert', '-O', 'raw', 'zlib.qcow2', 'out.raw'],
  zstd: ['convert', '-O', 'raw', 'zstd.qcow2', 'out.raw'],
  toqcow2: ['convert', '-O', 'qcow2', 'src.raw', 'out.qcow2'],
  start: ['info', 'small.qcow2'],
};
const tools: Record<string, string[]> = { qemu: ['qemu-img'], ours: [process.execPath, BIN, 'img'] };
if (process.env['BASE_BIN']) tools['base'] = [process.execPath, process.env['BASE_BIN'], 'img'];

interface Sample {
  wall: number;
  cpu: number;
  rssKb: number;
}

function run(dir: string, tool: string, c: string): Sample {
  for (const f of ['out.raw', 'out.qcow2']) rmSync(join(dir, f), { force: true });
  const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M', ...tools[tool]!, ...ARGS[c]!], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${tool} ${c}: ${r.stderr}`);
  const [e, u, s, m] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wall: e! * 1000, cpu: (u! + s!) * 1000, rssKb: m! };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0]!;

const keep = process.env['BENCH_DIR'];
const dir = keep ?? mkdtempSync(join(benchRoot(1024 * 5), 'dw-convert-ab-'));
try {
  if (!existsSync(join(dir, 'zstd.qcow2'))) makeConvertImages(dir, Number(process.env['BENCH_SIZE_MB'] ?? 1024));
  if (!existsSync(join(dir, 'small.qcow2'))) sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'small.qcow2', '64M'], dir);
  // Page cache and V8 code caches warm.
  for (const t of Object.keys(tools)) for (const c of [...cases, 'start']) run(dir, t, c);
  const got = new Map<string, Sample[]>();
  const loads = [load()];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? Object.keys(tools).reverse() : Object.keys(tools);
    for (const c of ['start', ...cases]) for (const t of order) got.set(`${t} ${c}`, [...(got.get(`${t} ${c}`) ?? []), run(dir, t, c)]);
    loads.push(load());
  }
  const med = (t: string, c: string, k: 'wall' | 'cpu') => median(got.get(`${t} ${c}`)!.map((s) => s[k]));
  for (const c of cases) {
    const line = Object.keys(tools).map((t) => {
      const wall = med(t, c, 'wall') - med(t, 'start', 'wall');
      const cpu = med(t, c, 'cpu') - med(t, 'start', 'cpu');
      const rss = (Math.max(...got.get(`${t} ${c}`)!.map((s) => s.rssKb)) * 1024) / 1e6;
      const vs = t === 'qemu' ? '' : ` = ${(wall / (med('qemu', c, 'wall') - med('qemu', 'start', 'wall'))).toFixed(2)}x / ${(cpu / (med('qemu', c, 'cpu') - med('qemu', 'start', 'cpu'))).toFixed(2)}x`;
      return `${t} ${wall.toFixed(0)} / ${cpu.toFixed(0)} ms${vs}, ${rss.toFixed(1)} MB`;
    });
    console.log(`${c} (wall / CPU, start-up subtracted; peak RSS): ${line.join('; ')}`);
  }
  console.log(`start-up (wall / CPU): ${Object.keys(tools).map((t) => `${t} ${med(t, 'start', 'wall').toFixed(0)} / ${med(t, 'start', 'cpu').toFixed(0)} ms`).join('; ')}`);
  console.log(`load average after each round: ${loads.join(' ')}`);
} finally {
  if (!keep) rmSync(dir, { recursive: true, force: true });
}
