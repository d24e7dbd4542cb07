/**
 * The throttle filter in real time (issue #16: "a node limited to 10 MiB/s
 * moves 50 MiB in 5 s ± 10 %; two nodes in one group share it").
 *
 * `diskworker daemon` and `qemu-storage-daemon`, started with the same
 * options, each hold two raw files behind throttle nodes of one group
 * (x-bps-total = 10 MiB/s) and export both over NBD. qemu-io clients write
 * 50 MiB in 1 MiB requests: one client alone (5 s expected), then two at
 * once, one per node (the group's 10 MiB/s shared: 10 s for both). Each time
 * is a ratio to qemu-storage-daemon's in the same run, and to the time the
 * limit itself gives (the ± 10 % of the issue: a ratio in 0.9–1.1).
 *
 *   npx tsx bench/filters/throttle.ts     (this file alone; needs dist/ built)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN, benchRoot } from '../cli/convert.js';
import type { BenchResult } from '../types.js';
import { waitForSocket } from '../export/daemon-socket.js';

const MiB = 1 << 20;
const RATE = 10 * MiB;
const TOTAL_MIB = 50;

/** A daemon exporting throttle nodes `a` and `b` of group tg0 over files a.raw / b.raw in `dir`. */
async function startDaemon(cmd: string[], dir: string, sock: string): Promise<ChildProcess> {
  const nodes = ['a', 'b'].flatMap((n) => [
    '--blockdev', `driver=file,node-name=f${n},filename=${join(dir, `${n}.raw`)}`,
    '--blockdev', `driver=throttle,node-name=${n},throttle-group=tg0,file=f${n}`,
    '--export', `type=nbd,id=e${n},node-name=${n},writable=on`,
  ]);
  const child = spawn(cmd[0]!, [
    ...cmd.slice(1),
    '--object', `throttle-group,id=tg0,x-bps-total=${RATE}`,
    '--nbd-server', `addr.type=unix,addr.path=${sock}`,
    ...nodes,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitForSocket(sock, child);
  return child;
}

/** qemu-io writing 50 MiB in 1 MiB requests to export `name`; resolves when it exits. */
function client(sock: string, name: string): Promise<void> {
  const cmds: string[] = [];
  for (let i = 0; i < TOTAL_MIB; i++) cmds.push('-c', `write -q -P ${(i % 250) + 1} ${i * MiB} 1M`);
  return new Promise((resolve, reject) => {
    const c = spawn('qemu-io', ['-f', 'raw', ...cmds, `nbd+unix:///${name}?socket=${sock}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('exit', (code) => (code === 0 && err === '' ? resolve() : reject(new Error(`qemu-io on ${name}: exit ${code}: ${err}`))));
  });
}

/** Milliseconds until every client of `names` is done. */
async function timed(sock: string, names: string[]): Promise<number> {
  const t0 = performance.now();
  await Promise.all(names.map((n) => client(sock, n)));
  return performance.now() - t0;
}

export async function run(): Promise<BenchResult[]> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build first (npm run build:ts)`);
  const root = mkdtempSync(join(benchRoot(4 * TOTAL_MIB), 'dw-bench-throttle-'));
  const children: ChildProcess[] = [];
  try {
    const dirs = { dw: join(root, 'dw'), qsd: join(root, 'qsd') };
    for (const d of Object.values(dirs)) {
      mkdirSync(d);
      for (const n of ['a', 'b']) {
        writeFileSync(join(d, `${n}.raw`), '');
        truncateSync(join(d, `${n}.raw`), 64 * MiB);
      }
    }
    const ours = await startDaemon(['node', BIN, 'daemon'], dirs.dw, join(dirs.dw, 'nbd.sock'));
    children.push(ours);
    const qsd = await startDaemon(['qemu-storage-daemon'], dirs.qsd, join(dirs.qsd, 'nbd.sock'));
    children.push(qsd);
    const one = { dw: await timed(join(dirs.dw, 'nbd.sock'), ['a']), qsd: await timed(join(dirs.qsd, 'nbd.sock'), ['a']) };
    const two = { dw: await timed(join(dirs.dw, 'nbd.sock'), ['a', 'b']), qsd: await timed(join(dirs.qsd, 'nbd.sock'), ['a', 'b']) };
    const nominalOne = (TOTAL_MIB * MiB * 1000) / RATE;
    const nominalTwo = 2 * nominalOne;
    return [
      {
        name: `throttle x-bps-total=10 MiB/s: ${TOTAL_MIB} MiB in 1 MiB writes through one node (NBD, qemu-io), diskworker daemon`,
        unit: 'ms', value: one.dw, baseline: 'qemu-storage-daemon, same options and writes', baselineValue: one.qsd, ratio: one.qsd / one.dw,
      },
      {
        name: `the same, against the time the limit gives (${TOTAL_MIB} MiB / 10 MiB/s; ±10 %: ratio 0.9–1.1)`,
        unit: 'ms', value: one.dw, baseline: 'the limit', baselineValue: nominalOne, ratio: nominalOne / one.dw, target: 0.9,
      },
      {
        name: `two nodes of one group, ${TOTAL_MIB} MiB each at once (both done), diskworker daemon`,
        unit: 'ms', value: two.dw, baseline: 'qemu-storage-daemon, same options and writes', baselineValue: two.qsd, ratio: two.qsd / two.dw,
      },
      {
        name: `the same, against the time the shared limit gives (${2 * TOTAL_MIB} MiB / 10 MiB/s; ratio 0.9–1.1)`,
        unit: 'ms', value: two.dw, baseline: 'the limit', baselineValue: nominalTwo, ratio: nominalTwo / two.dw, target: 0.9,
      },
    ];
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const r of await run()) console.log(`${r.name}: ${r.value.toFixed(0)} ${r.unit} vs ${r.baseline} ${r.baselineValue.toFixed(0)} → ${r.ratio.toFixed(3)}×`);
}
