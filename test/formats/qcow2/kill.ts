/**
 * Real-process kill (shared by kill.test.ts and kill.fuzz.ts): a child Node
 * process (kill-child.ts) runs the crash workload (crash-workload.ts) on a
 * node-file qcow2 image and is killed with SIGKILL at a seeded random moment.
 * Then `qemu-img check` must find no corruptions, and QEMU must read back the
 * data of every request followed by a flush the child reported complete.
 */
import { expect } from 'vitest';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crashOps, modelAt, type CrashShape } from './crash-workload.js';
import { qemuCheck, qemuImg } from './helpers.js';
import { prng } from '../../prng.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');

/** The image and workload of the kill runs: 64 KiB clusters, zstd, 4 requests in flight. */
export const KILL_SHAPE: CrashShape = { size: 16 << 20, cs: 65536, ops: 3000, base: 0, compressed: true };
const IN_FLIGHT = 4;

/** One kill: the seed, when it came, and what the child had reported by then. */
export interface KillResult {
  seed: number;
  delayMs: number;
  /** Requests followed by a completed flush. */
  durable: number;
  /** Whether the child finished before the kill. */
  finished: boolean;
}

/**
 * Runs the child on a fresh image in `dir`, kills it at a moment drawn from
 * `seed` (a random delay of up to maxDelayMs after its 2nd..9th completed
 * flush), and checks the image.
 */
export async function killOnce(dir: string, seed: number, maxDelayMs: number): Promise<KillResult> {
  const img = join(dir, `kill-${seed}.qcow2`);
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${KILL_SHAPE.cs},compression_type=zstd`, img, String(KILL_SHAPE.size));
  const r = prng(seed);
  const delayMs = Math.floor(r() * maxDelayMs);
  // From the 2nd flush on, at least one request is covered by a flush.
  const afterFlushes = 2 + Math.floor(r() * 8);
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'kill-child.ts'), img, String(seed), JSON.stringify(KILL_SHAPE), String(IN_FLIGHT)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
  // The moment is counted from the child's `afterFlushes`-th completed flush, so
  // that every kill has flushed data to check however fast the machine is.
  const flushes = () => out.match(/^flushed /gm)?.length ?? 0;
  await new Promise<void>((res, rej) => {
    const poll = setInterval(() => {
      if (flushes() >= afterFlushes || out.includes('done\n')) {
        clearInterval(poll);
        res();
      }
    }, 2);
    void exited.then(() => {
      clearInterval(poll);
      if (!out.includes('done\n')) rej(new Error(`kill child exited by itself: ${err}`));
    });
  });
  await new Promise((res) => setTimeout(res, delayMs));
  child.kill('SIGKILL');
  const how = await exited;
  // Let the pipes drain what the child had written.
  await new Promise((res) => setImmediate(res));
  const finished = out.includes('done\n');
  if (!finished) expect({ seed, signal: how.signal, err }).toEqual({ seed, signal: 'SIGKILL', err: '' });
  let durable = 0;
  for (const m of out.matchAll(/^flushed (\d+)$/gm)) durable = Number(m[1]);

  const c = qemuCheck(img);
  expect({ seed, delayMs, corruptions: c.corruptions ?? 0, errors: c['check-errors'] }).toEqual({ seed, delayMs, corruptions: 0, errors: 0 });
  // QEMU reads back what was flushed (requests after the last reported flush may or may not be there).
  const ops = crashOps(KILL_SHAPE, seed);
  const { data, unstable } = modelAt(ops, durable, new Uint8Array(KILL_SHAPE.size));
  const raw = join(dir, `kill-${seed}.raw`);
  qemuImg('convert', '-O', 'raw', img, raw);
  const fd = openSync(raw, 'r');
  try {
    const got = new Uint8Array(KILL_SHAPE.size);
    readSync(fd, got, 0, got.length, 0);
    for (let sec = 0; sec < got.length / 512; sec++) {
      if (unstable[sec]) continue;
      if (Buffer.compare(got.subarray(sec * 512, sec * 512 + 512), data.subarray(sec * 512, sec * 512 + 512)) !== 0) {
        expect({ seed, delayMs, durable, sector: sec }).toBe('intact');
      }
    }
  } finally {
    closeSync(fd);
  }
  writeFileSync(join(dir, 'last-kill.txt'), `${seed} ${delayMs} ${durable}\n`);
  return { seed, delayMs, durable, finished };
}
