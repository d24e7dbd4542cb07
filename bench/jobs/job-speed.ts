/**
 * A job's speed limit in real time (issue #14: "a job at 10 MiB/s copies
 * 50 MiB in 5 s ± 10 %"). `diskworker daemon` and `qemu-storage-daemon`
 * each run mirror (to ready), backup, stream and commit with `speed` =
 * 10 MiB/s over 50 MiB of data, driven over QMP; the time from the command
 * to the job's BLOCK_JOB_READY / BLOCK_JOB_COMPLETED event is a ratio to
 * qemu-storage-daemon's in the same run and to the 5 s the limit gives
 * (± 10 %: a ratio in 0.9–1.1).
 *
 *   npx tsx bench/jobs/job-speed.ts     (this file alone; needs dist/ built)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN, benchRoot } from '../cli/convert.js';
import type { BenchResult } from '../types.js';
import { waitForSocket } from '../export/daemon-socket.js';

const MiB = 1 << 20;
const SPEED = 10 * MiB;
const DATA_MIB = 50;

function sh(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** A QMP connection: commands in order, events collected. */
class Qmp {
  private buf = '';
  private readonly lines: Array<Record<string, unknown>> = [];
  private wake: (() => void) | null = null;
  private constructor(private readonly sock: Socket) {
    sock.on('data', (d) => {
      this.buf += d.toString();
      for (let i; (i = this.buf.indexOf('\n')) >= 0; ) {
        this.lines.push(JSON.parse(this.buf.slice(0, i)) as Record<string, unknown>);
        this.buf = this.buf.slice(i + 1);
      }
      this.wake?.();
    });
  }

  static async connect(path: string): Promise<Qmp> {
    const q = new Qmp(createConnection(path));
    await q.next((m) => 'QMP' in m);
    await q.execute('qmp_capabilities');
    return q;
  }

  /** The next message `want` accepts (others before it are dropped). */
  async next(want: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    for (;;) {
      const i = this.lines.findIndex(want);
      if (i >= 0) return this.lines.splice(0, i + 1)[i]!;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  async execute(name: string, args?: Record<string, unknown>): Promise<void> {
    this.sock.write(JSON.stringify(args ? { execute: name, arguments: args } : { execute: name }) + '\n');
    const reply = await this.next((m) => 'return' in m || 'error' in m);
    if ('error' in reply) throw new Error(`${name}: ${JSON.stringify(reply['error'])}`);
  }

  close(): void {
    this.sock.destroy();
  }
}

interface JobCase {
  name: string;
  /** The daemon's nodes. */
  blockdevs: (dir: string) => string[];
  command: [string, Record<string, unknown>];
  /** The event that ends the measured time. */
  until: 'BLOCK_JOB_READY' | 'BLOCK_JOB_COMPLETED';
}

const qcow2 = (name: string, dir: string, backing?: string) =>
  JSON.stringify({ driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: join(dir, `${name}.qcow2`) }, ...(backing ? { backing } : {}) });

const CASES: JobCase[] = [
  { name: 'mirror sync=full (to ready)', blockdevs: (d) => [qcow2('src', d), qcow2('dst', d)], command: ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'dst', sync: 'full', speed: SPEED }], until: 'BLOCK_JOB_READY' },
  { name: 'backup sync=full', blockdevs: (d) => [qcow2('src', d), qcow2('dst', d)], command: ['blockdev-backup', { 'job-id': 'j', device: 'src', target: 'dst', sync: 'full', speed: SPEED }], until: 'BLOCK_JOB_COMPLETED' },
  { name: 'stream (base into top)', blockdevs: (d) => [qcow2('base', d), qcow2('top', d, 'base')], command: ['block-stream', { 'job-id': 'j', device: 'top', speed: SPEED }], until: 'BLOCK_JOB_COMPLETED' },
  { name: 'commit (mid into base)', blockdevs: (d) => [qcow2('base', d), qcow2('mid', d, 'base'), qcow2('top', d, 'mid')], command: ['block-commit', { 'job-id': 'j', device: 'top', 'top-node': 'mid', 'base-node': 'base', speed: SPEED }], until: 'BLOCK_JOB_COMPLETED' },
];

/** Fresh images in `dir`: src / base / mid with 50 MiB of data, empty dst and top. */
function makeImages(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const n of ['src', 'base', 'mid', 'dst']) sh('qemu-img', ['create', '-q', '-f', 'qcow2', `${n}.qcow2`, `${DATA_MIB}M`], dir);
  sh('qemu-io', ['-f', 'qcow2', '-c', `write -q -P 1 0 ${DATA_MIB}M`, 'src.qcow2'], dir);
  sh('qemu-io', ['-f', 'qcow2', '-c', `write -q -P 2 0 ${DATA_MIB}M`, 'base.qcow2'], dir);
  sh('qemu-img', ['rebase', '-u', '-b', 'base.qcow2', '-F', 'qcow2', 'mid.qcow2'], dir);
  sh('qemu-io', ['-f', 'qcow2', '-c', `write -q -P 3 0 ${DATA_MIB}M`, 'mid.qcow2'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
}

/** Milliseconds from the job command to its event, on a daemon started for the case. */
async function timeJob(cmd: string[], dir: string, c: JobCase): Promise<number> {
  makeImages(dir);
  const qmpPath = join(dir, 'qmp.sock');
  const child = spawn(cmd[0]!, [...cmd.slice(1), ...c.blockdevs(dir).flatMap((b) => ['--blockdev', b]), '--chardev', `socket,id=m,path=${qmpPath},server=on,wait=off`, '--monitor', 'chardev=m'], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitForSocket(qmpPath, child);
    const q = await Qmp.connect(qmpPath);
    try {
      const t0 = performance.now();
      await q.execute(c.command[0], c.command[1]);
      const ev = await q.next((m) => m['event'] === c.until || m['event'] === 'BLOCK_JOB_ERROR' || m['event'] === 'BLOCK_JOB_CANCELLED');
      const ms = performance.now() - t0;
      const data = ev['data'] as Record<string, unknown>;
      if (ev['event'] !== c.until || data['error'] !== undefined) throw new Error(`${c.name}: ${JSON.stringify(ev)}`);
      if (data['len'] !== DATA_MIB * MiB) throw new Error(`${c.name}: the job moved ${String(data['len'])} bytes, not ${DATA_MIB} MiB`);
      return ms;
    } finally {
      q.close();
    }
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
}

export async function run(): Promise<BenchResult[]> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build first (npm run build:ts)`);
  const root = mkdtempSync(join(benchRoot(8 * DATA_MIB), 'dw-bench-job-speed-'));
  const nominal = (DATA_MIB * MiB * 1000) / SPEED;
  const results: BenchResult[] = [];
  try {
    for (const c of CASES) {
      const ours = await timeJob(['node', BIN, 'daemon'], join(root, 'dw'), c);
      const qsd = await timeJob(['qemu-storage-daemon'], join(root, 'qsd'), c);
      results.push(
        { name: `${c.name} of ${DATA_MIB} MiB at speed 10 MiB/s, diskworker daemon`, unit: 'ms', value: ours, baseline: 'qemu-storage-daemon, same command', baselineValue: qsd, ratio: qsd / ours },
        { name: `the same, against the ${nominal} ms the limit gives (± 10 %: ratio 0.9–1.1)`, unit: 'ms', value: ours, baseline: 'the limit', baselineValue: nominal, ratio: nominal / ours, target: 0.9 },
      );
    }
    return results;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const r of await run()) console.log(`${r.name}: ${r.value.toFixed(0)} ${r.unit} vs ${r.baseline} ${r.baselineValue.toFixed(0)} → ${r.ratio.toFixed(3)}×`);
}
