/**
 * Differential QMP harness: starts qemu-storage-daemon 7.2 and
 * `diskworker daemon` with the same arguments (each over its own copy of a
 * directory of images), talks QMP to both (one command at a time, waiting
 * for each reply, collecting events), and masks what legitimately differs:
 * timestamps, generated node names, directories, snapshot times, versions.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, expect } from 'vitest';
import { QmpJsonSplitter } from '../../src/qmp/session.js';

export const BIN = resolve(__dirname, '../../dist/cli/diskworker.js');

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Side = 'qemu' | 'ours';

export function hasQsd(): boolean {
  const r = spawnSync('qemu-storage-daemon', ['-V'], { encoding: 'utf8' });
  return r.status === 0 && /version 7\.2/.test(r.stdout) && existsSync(BIN);
}

/** A QMP client over a Unix socket: replies in order, events collected. */
export class QmpClient {
  private readonly splitter = new QmpJsonSplitter();
  private readonly lines: Json[] = [];
  private wake: (() => void) | null = null;
  readonly events: Json[] = [];
  greeting: Json = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      // Texts, not lines: a pretty monitor spreads one message over several lines.
      for (const text of this.splitter.push(d)) {
        const msg = JSON.parse(text) as Json;
        if (msg && typeof msg === 'object' && !Array.isArray(msg) && 'event' in msg) this.events.push(msg);
        else this.lines.push(msg);
        this.wake?.();
      }
    });
    socket.on('close', () => this.wake?.());
  }

  /** Connects (retrying while the daemon starts) and reads the greeting. */
  static async connect(path: string, timeoutMs = 20_000): Promise<QmpClient> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((res, rej) => {
          const s = net.createConnection(path);
          s.once('connect', () => res(s));
          s.once('error', rej);
        });
        const c = new QmpClient(socket);
        c.greeting = await c.next();
        return c;
      } catch (e) {
        if (Date.now() > end) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private async next(timeoutMs = 30_000): Promise<Json> {
    const end = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.socket.destroyed || Date.now() > end) throw new Error('QMP connection closed or silent');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 200);
      });
      this.wake = null;
    }
    return this.lines.shift()!;
  }

  /** Sends one request (an object or raw text) and waits for its reply. */
  async send(request: Json | string): Promise<Json> {
    this.socket.write((typeof request === 'string' ? request : JSON.stringify(request)) + '\n');
    return this.next();
  }

  /** Waits until an event matching `pred` has arrived (by index from `from`). */
  async waitEvent(pred: (e: { event: string; data?: Record<string, Json> }) => boolean, timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.events.some((e) => pred(e as { event: string; data?: Record<string, Json> }))) {
      if (Date.now() > end) throw new Error(`event not seen; have ${JSON.stringify(this.events)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A running daemon of one side. */
export interface Daemon {
  side: Side;
  dir: string;
  proc: ChildProcess;
  sock: string;
  stderr: () => string;
  /** Sends `quit`-less SIGTERM and waits for the exit code. */
  stop(): Promise<number | null>;
}

/** Starts a daemon with `args` (`$DIR` replaced by its directory) plus a monitor on `$DIR/qmp.sock`. */
export function startDaemon(side: Side, dir: string, args: string[]): Daemon {
  const sock = join(dir, 'qmp.sock');
  const full = ['--chardev', `socket,id=mon0,path=${sock},server=on,wait=off`, '--monitor', 'chardev=mon0', ...args.map((a) => a.replaceAll('$DIR', dir))];
  const proc = side === 'qemu' ? spawn('qemu-storage-daemon', full, { cwd: dir }) : spawn(process.execPath, [BIN, 'daemon', ...full], { cwd: dir });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    side,
    dir,
    proc,
    sock,
    stderr: () => err,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

const scratch: string[] = [];
// Registered when a test file imports the harness, so it runs after the file's own
// afterAll hooks (hooks unwind as a stack): the daemons have stopped by then.
afterAll(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A new directory under the system's temporary one, removed after the test file. */
export function scratchDir(prefix = 'dw-qmp-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/**
 * Two directories with the same files, made by `setup` in each (a copy
 * would allocate the files differently and change their actual-size).
 */
export function twinDirs(setup: (dir: string) => void): { qemu: string; ours: string } {
  const root = scratchDir();
  const qemu = join(root, 'qemu');
  const ours = join(root, 'ours');
  for (const d of [qemu, ours]) {
    mkdirSync(d);
    setup(d);
  }
  return { qemu, ours };
}

/** Runs a shell tool; throws on failure. */
export function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Replaces what differs legitimately between the two daemons' answers. */
export function mask(value: Json, dir: string): Json {
  if (typeof value === 'string') {
    if (/^#block\d+$/.test(value)) return '#blockN';
    return value.replaceAll(dir, '$DIR');
  }
  if (Array.isArray(value)) return value.map((v) => mask(v, dir));
  if (value && typeof value === 'object') {
    const out: { [k: string]: Json } = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'timestamp') continue;
      if (['date-sec', 'date-nsec', 'vm-clock-sec', 'vm-clock-nsec'].includes(k)) out[k] = typeof v;
      else out[k] = mask(v, dir);
    }
    return out;
  }
  return value;
}

/** One step of a script: a request, a wait for an event, or something to run in the side's directory (a client tool). */
export type Step = Json | string | { wait: (e: { event: string; data?: Record<string, Json> }) => boolean } | { call: (dir: string) => void };

/** Runs the steps; returns the masked replies and events. */
export async function runScript(c: QmpClient, dir: string, steps: Step[]): Promise<{ replies: Json[]; events: Json[] }> {
  const replies: Json[] = [];
  for (const s of steps) {
    if (s && typeof s === 'object' && !Array.isArray(s) && 'wait' in s && typeof s.wait === 'function') {
      await c.waitEvent(s.wait as (e: { event: string }) => boolean);
      continue;
    }
    if (s && typeof s === 'object' && !Array.isArray(s) && 'call' in s && typeof s.call === 'function') {
      (s.call as (dir: string) => void)(dir);
      continue;
    }
    const req = typeof s === 'string' ? s.replaceAll('$DIR', dir) : (JSON.parse(JSON.stringify(s).replaceAll('$DIR', dir)) as Json);
    // QMP_TRACE=1 prints each request and its reply: a step that never answers shows itself.
    if (process.env.QMP_TRACE) console.error('QMP>', JSON.stringify(req));
    replies.push(mask(await c.send(req), dir));
    if (process.env.QMP_TRACE) console.error('QMP<', JSON.stringify(replies[replies.length - 1]));
  }
  return { replies, events: c.events.map((e) => mask(e, dir)) };
}

/** Waits for a job's JOB_STATUS_CHANGE to `status`. */
export const jobReaches = (id: string, status: string): Step => ({
  wait: (e) => e.event === 'JOB_STATUS_CHANGE' && e.data?.id === id && e.data?.status === status,
});

/** Sorts the entries of query-named-block-nodes (QEMU lists them in its own node order). */
export function sortNodes(reply: Json): Json {
  const r = reply as { return?: Json[] };
  if (!Array.isArray(r.return)) return reply;
  return { ...r, return: [...r.return].sort((a, b) => canonical(a).localeCompare(canonical(b))) } as Json;
}

/** JSON with object keys sorted (a sort key independent of member order). */
export function canonical(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k]!)}`).join(',')}}`;
  return JSON.stringify(v);
}

/** With QMP_DUMP=dir set, writes both sides' results there (to study a difference). */
export function dump(name: string, value: unknown): void {
  const dir = process.env.QMP_DUMP;
  if (dir) writeFileSync(join(dir, `${name}.json`), JSON.stringify(value, null, 1));
}

/** `qemu-img compare` of the same file in both directories: the exit code. */
export function compareImages(a: string, b: string): { code: number; out: string } {
  const r = spawnSync('qemu-img', ['compare', a, b], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

/** `qemu-img check` output and exit code. */
export function checkImage(file: string): { code: number; out: string } {
  const r = spawnSync('qemu-img', ['check', file], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

const started: Daemon[] = [];

/** Stops every daemon {@link both} started (for afterAll). */
export async function stopAll(): Promise<void> {
  await Promise.all(started.splice(0).map((d) => d.stop()));
}

/** What {@link both} returns for each side. */
export interface SideResult {
  replies: Json[];
  events: Json[];
  dir: string;
  code: number | null;
  stderr: string;
}

/** Runs `steps` on both daemons started with `args` over twin directories made by `setup`. */
export async function both(name: string, setup: (dir: string) => void, args: string[], steps: Step[]): Promise<Record<Side, SideResult>> {
  const dirs = twinDirs(setup);
  const out = {} as Record<Side, SideResult>;
  for (const side of ['qemu', 'ours'] as const) {
    const d = startDaemon(side, dirs[side], args);
    started.push(d);
    const c = await QmpClient.connect(d.sock);
    try {
      const r = await runScript(c, dirs[side], steps);
      out[side] = { ...r, dir: dirs[side], code: null, stderr: '' };
    } finally {
      c.close();
    }
    out[side].code = await d.stop();
    out[side].stderr = d.stderr();
  }
  dump(name, out);
  return out;
}

/** The named images of both sides: identical (qemu-img compare), clean, and with the same check report. */
export function expectImagesEqualAndClean(r: Record<Side, SideResult>, names: string[]): void {
  for (const n of names) {
    const a = `${r.qemu.dir}/${n}`;
    const b = `${r.ours.dir}/${n}`;
    expect(compareImages(a, b), n).toEqual({ code: 0, out: 'Images are identical.\n' });
    expect(checkImage(b).code, `check ${n}`).toBe(0);
    // Fragmentation depends on the order parallel copies allocate clusters (QEMU's varies run to run).
    const unfragmented = (out: string) => out.replace(/[\d.]+% fragmented/, 'N% fragmented');
    expect(unfragmented(checkImage(b).out)).toBe(unfragmented(checkImage(a).out));
  }
}

/** A QMP command step: `x('query-block')`, `x('block-stream', { device: 'a' })`. */
export const x = (execute: string, args?: Json): Step => (args ? { execute, arguments: args } : { execute });

/** A daemon `--blockdev` argument pair for the options `o`. */
export const blockdev = (o: Json): string[] => ['--blockdev', JSON.stringify(o)];

/** `--blockdev` for a qcow2 node `name` (options `extra`) over the file node `<name>f` of `$DIR/<name>.qcow2` (options `fileExtra`). */
export const qcow2 = (name: string, extra: Record<string, Json> = {}, fileExtra: Record<string, Json> = {}): string[] =>
  blockdev({ driver: 'qcow2', 'node-name': name, ...extra, file: { driver: 'file', 'node-name': `${name}f`, filename: `$DIR/${name}.qcow2`, ...fileExtra } });

/** query-named-block-nodes, flat and nested. */
export const queryNodesFlat = x('query-named-block-nodes', { flat: true });
export const queryNodesNested = x('query-named-block-nodes');
