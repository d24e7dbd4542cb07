/**
 * NBD export read throughput (issue #15's speed goal, ≥ 0.7×): the same
 * qcow2 image served by `diskworker daemon --nbd-server ... --export
 * type=nbd` and by `qemu-storage-daemon` with the same options, read by
 * `qemu-img convert -O raw nbd+unix://...` over a Unix socket. Both daemons
 * are started once; after a first convert against each (reported on its
 * own), the converts alternate between them (several rounds, best time of
 * each), and the QMP round trip of `query-block-exports` on
 * each monitor is reported too.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { BIN, benchRoot } from '../cli/convert.js';
import type { BenchResult } from '../types.js';
import { SIZE_MB } from '../jobs/common.js';
import { waitForSocket } from './daemon-socket.js';

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** Starts a daemon serving `image` as export `n` on `sock`, QMP on `qmp`. */
async function startDaemon(cmd: string[], image: string, sock: string, qmp: string): Promise<ChildProcess> {
  const child = spawn(cmd[0]!, [
    ...cmd.slice(1),
    '--blockdev', `driver=file,node-name=f,filename=${image}`,
    '--blockdev', 'driver=qcow2,node-name=n,file=f',
    '--nbd-server', `addr.type=unix,addr.path=${sock}`,
    '--export', 'type=nbd,id=e,node-name=n',
    '--chardev', `socket,id=m,path=${qmp},server=on,wait=off`,
    '--monitor', 'chardev=m',
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitForSocket(sock, child);
  await waitForSocket(qmp, child);
  return child;
}

/** Median round trip of `rounds` query-block-exports commands on a QMP socket, in ms. */
async function qmpRoundTrip(path: string, rounds: number): Promise<number> {
  const sock = createConnection(path);
  let buf = '';
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  sock.on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    wake?.();
  });
  const next = async (): Promise<string> => {
    while (lines.length === 0) await new Promise<void>((r) => (wake = r));
    return lines.shift()!;
  };
  await next(); // greeting
  sock.write('{"execute":"qmp_capabilities"}\n');
  await next();
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    sock.write('{"execute":"query-block-exports"}\n');
    const reply = await next();
    times.push(performance.now() - t0);
    if (!reply.includes('"return"')) throw new Error(`query-block-exports: ${reply}`);
  }
  sock.destroy();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function convertMs(sock: string, out: string): number {
  const t0 = performance.now();
  sh('qemu-img', ['convert', '-O', 'raw', `nbd+unix:///n?socket=${sock}`, out]);
  const t = performance.now() - t0;
  rmSync(out, { force: true });
  return t;
}

export async function run(): Promise<BenchResult[]> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build first (npm run build:ts)`);
  const dir = mkdtempSync(join(benchRoot(SIZE_MB * 3), 'dw-bench-nbd-'));
  const children: ChildProcess[] = [];
  try {
    // Three quarters written (patterns in 1 MiB stripes), the rest unallocated.
    const image = join(dir, 'src.qcow2');
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', image, `${SIZE_MB}M`]);
    const cmds: string[] = [];
    for (let mb = 0; mb < SIZE_MB; mb += 4) for (let k = 0; k < 3; k++) cmds.push('-c', `write -q -P ${(mb + k) % 251} ${(mb + k) * 1024 * 1024} 1M`);
    sh('qemu-io', ['-f', 'qcow2', ...cmds, image]);
    const ours = await startDaemon(['node', BIN, 'daemon'], image, join(dir, 'dw.sock'), join(dir, 'dw.qmp'));
    children.push(ours);
    // Read-only users of one image: the daemons share it (QEMU's locking allows shared readers only).
    const copy = join(dir, 'copy.qcow2');
    sh('cp', [image, copy]);
    const qsd = await startDaemon(['qemu-storage-daemon'], copy, join(dir, 'qsd.sock'), join(dir, 'qsd.qmp'));
    children.push(qsd);
    // The first convert against a fresh daemon is reported on its own: ours then still runs its
    // per-request code unoptimised (V8 optimises it during the first two or three converts).
    const qCold = convertMs(join(dir, 'qsd.sock'), join(dir, 'out.raw'));
    const oCold = convertMs(join(dir, 'dw.sock'), join(dir, 'out.raw'));
    let oBest = Infinity;
    let qBest = Infinity;
    for (let round = 0; round < 5; round++) {
      qBest = Math.min(qBest, convertMs(join(dir, 'qsd.sock'), join(dir, 'out.raw')));
      oBest = Math.min(oBest, convertMs(join(dir, 'dw.sock'), join(dir, 'out.raw')));
    }
    const qRtt = await qmpRoundTrip(join(dir, 'qsd.qmp'), 200);
    const oRtt = await qmpRoundTrip(join(dir, 'dw.qmp'), 200);
    const mib = SIZE_MB;
    return [
      {
        name: `NBD export read: qemu-img convert -O raw nbd+unix:// of a ${SIZE_MB} MiB qcow2 (3/4 allocated), diskworker daemon`,
        unit: 'MiB/s',
        value: (mib / oBest) * 1000,
        baseline: 'qemu-storage-daemon serving a copy of the image the same way',
        baselineValue: (mib / qBest) * 1000,
        ratio: qBest / oBest,
        target: 0.7,
      },
      {
        name: `NBD export read, first convert after the daemons started (${SIZE_MB} MiB), diskworker daemon`,
        unit: 'MiB/s',
        value: (mib / oCold) * 1000,
        baseline: 'qemu-storage-daemon, its first convert',
        baselineValue: (mib / qCold) * 1000,
        ratio: qCold / oCold,
      },
      {
        name: 'QMP round trip (query-block-exports over the Unix socket monitor, median of 200), diskworker daemon',
        unit: 'ms',
        value: oRtt,
        baseline: 'qemu-storage-daemon',
        baselineValue: qRtt,
        ratio: qRtt / oRtt,
      },
    ];
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    rmSync(dir, { recursive: true, force: true });
  }
}
