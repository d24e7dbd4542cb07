/**
 * qemu-io's interpreter: output, number and pattern parsing, getopt with
 * qemu-io's messages and the command dispatch, over an IoDisk. Page-safe (no
 * Node modules): the demo's console runs it on the page's Disk.
 */
import { getopt, type LongOption, type OptResult } from '../getopt.js';
import { parseSizeQemu } from '../format.js';
import { errText } from '../common.js';
import type { IoDisk } from './disk.js';
import { type Cmd, EINVAL, PROG } from './types.js';

/**
 * How long an aio request started while another is suspended at a breakpoint
 * may take before it counts as waiting behind that one (ms).
 */
const BLOCKED_AIO_MS = 200;

/** Where the interpreter writes (the CLI's CliIo has this shape). */
export interface IoOutput {
  stdout(s: string): void;
  stderr(s: string): void;
  /** Writes out held-back stdout (see CliIo.flush). */
  flush?: () => void;
}

export class IoSession {
  /** The open disk; null when none is. */
  disk: IoDisk | null = null;
  quit = false;
  private pending: Promise<void>[] = [];

  /**
   * @param io where output goes
   * @param commands the command table, in the order `help` lists it
   */
  constructor(readonly io: IoOutput, readonly commands: Cmd[]) {}

  out(s: string): void {
    this.io.stdout(s);
  }
  err(s: string): void {
    this.io.stderr(s);
  }

  /** qemu-io's cvtnum with its error message; null on error (already printed). */
  num(text: string): number | null {
    const r = parseSizeQemu(text);
    if (r.ok) return r.value;
    if (r.reason === 'range') this.out(`Parsing error: argument too large -- ${text}\n`);
    else this.out(`Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${text}\n`);
    return null;
  }

  pattern(text: string): number | null {
    let v: number;
    const t = text.trim();
    if (/^0[xX][0-9a-fA-F]+$/.test(t)) v = parseInt(t.slice(2), 16);
    else if (/^0[0-9]*$/.test(t)) v = /^0[0-7]*$/.test(t) ? parseInt(t, 8) : NaN;
    else if (/^[+-]?[0-9]+$/.test(t)) v = parseInt(t, 10);
    else v = NaN;
    if (!(v >= 0 && v <= 255)) {
      this.out(`${text} is not a valid pattern byte\n`);
      return null;
    }
    return v;
  }

  /** Ends the session's use of the disk (the CLI closes its BlockBackend). */
  async close(): Promise<void> {
    this.releaseSuspended();
    await this.drainAio();
    this.disk = null;
  }

  /**
   * The bytes of `write -s source`; a negative result is the failure (already
   * printed). Reading files is the CLI's (NodeIoSession); the page has none.
   */
  async loadSource(source: string, _count: number): Promise<Uint8Array | number> {
    this.err(`${source}: Operation not supported\n`);
    return -95;
  }

  /** The open disk, for commands that run only with one (not `noFile`). */
  get backend(): IoDisk {
    return this.disk!;
  }

  /**
   * Runs an aio command's request (`run` prints its own result). Like
   * qemu-io, the command returns once the request has completed or, on a
   * disk with blkdebug, once a request was suspended at a breakpoint; a
   * suspended request completes (and prints) later, by aio_flush at the latest.
   */
  async startAio(run: () => Promise<number>): Promise<number> {
    let dbg = null;
    try {
      dbg = this.disk?.debugger?.() ?? null;
    } catch {
      dbg = null;
    }
    const p = run();
    if (!dbg) return p;
    const suspended = dbg.nextSuspension().then(() => null);
    const racers: Array<Promise<number | null>> = [p, suspended];
    // With a request suspended, this one may wait behind it (the same cluster, an overlapping
    // range) until a later `resume`: qemu-io's aio commands return at once, so after a while
    // without an answer the prompt goes on and the request is one in flight.
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (dbg.suspendedCount() > 0) racers.push(new Promise((res) => (timer = setTimeout(() => res(null), BLOCKED_AIO_MS))));
    const first = await Promise.race(racers);
    clearTimeout(timer);
    if (first !== null) return first;
    // A completed request leaves the list (wait_break counts the ones still running).
    const tracked: Promise<void> = p.then(() => {
      this.pending = this.pending.filter((x) => x !== tracked);
    });
    this.pending.push(tracked);
    return 0;
  }

  /** aio requests not yet completed. */
  get aioPending(): number {
    return this.pending.length;
  }

  /** Resolves when one of the aio requests in flight completes (at once when none is). */
  aioAnySettled(): Promise<void> {
    return this.pending.length === 0 ? Promise.resolve() : Promise.race(this.pending);
  }

  /**
   * Lets requests suspended at blkdebug breakpoints go on when nothing else
   * could resume them (closing or quitting: qemu-io would wait for ever).
   */
  releaseSuspended(): void {
    let d = null;
    try {
      d = this.disk?.debugger?.() ?? null;
    } catch {
      d = null;
    }
    d?.resumeAll();
  }

  /** Resolves when every aio request in flight has completed. */
  async drainAio(): Promise<void> {
    const p = this.pending;
    this.pending = [];
    await Promise.all(p);
  }

  usage(c: Cmd): number {
    this.out(`${c.name} ${c.args ?? ''} -- ${c.oneline}\n`);
    return EINVAL;
  }

  /** getopt with the glibc messages, named after the command. */
  parse(c: Cmd, args: string[], spec: string, longs: LongOption[] = []): { opts: OptResult[]; operands: string[] } | null {
    const r = getopt(args, spec, longs);
    for (const o of r.opts) {
      if (o.kind === 'unknown') {
        this.err(o.letter ? `${c.name}: invalid option -- '${o.letter}'\n` : `${c.name}: unrecognized option '${o.written}'\n`);
        this.usage(c);
        return null;
      }
      if (o.kind === 'missing') {
        this.err(o.letter ? `${c.name}: option requires an argument -- '${o.letter}'\n` : `${c.name}: option '${o.written}' requires an argument\n`);
        this.usage(c);
        return null;
      }
      if (o.kind === 'noarg') {
        this.err(`${c.name}: option '${o.written}' doesn't allow an argument\n`);
        this.usage(c);
        return null;
      }
    }
    return r;
  }

  /** The command record of a name. */
  cmd(name: string): Cmd {
    return this.commands.find((c) => c.name === name)!;
  }


  /** Runs one command line; returns < 0 on failure. */
  async command(line: string): Promise<number> {
    const argv = line.split(' ').filter((x) => x !== '');
    if (argv.length === 0) return 0;
    const name = argv[0]!;
    const c = this.commands.find((x) => x.name === name || x.alt === name);
    if (!c) {
      this.err(`command "${name}" not found\n`);
      return EINVAL;
    }
    if (!c.noFile && !this.disk) {
      this.err("no file open, try 'help open'\n");
      return EINVAL;
    }
    const n = argv.length - 1;
    if (n < c.argmin || (c.argmax !== -1 && n > c.argmax)) {
      if (c.argmax === -1) this.err(`bad argument count ${n} to ${name}, expected at least ${c.argmin} arguments\n`);
      else if (c.argmin === c.argmax) this.err(`bad argument count ${n} to ${name}, expected ${c.argmin} arguments\n`);
      else this.err(`bad argument count ${n} to ${name}, expected between ${c.argmin} and ${c.argmax} arguments\n`);
      return EINVAL;
    }
    if (c.write && this.disk && this.disk.readOnly) {
      this.err(`${PROG}: Block node is read-only\n`);
      return -13;
    }
    try {
      return await c.fn(this, argv.slice(1));
    } catch (e) {
      this.err(`${PROG}: ${errText(e)}\n`);
      return -5;
    }
  }
}
