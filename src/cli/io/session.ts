/**
 * qemu-io's interpreter state: the open BlockBackend, output, number and
 * pattern parsing, getopt with qemu-io's messages and the command dispatch.
 */
import { BlockBackend } from '../../core/backend.js';
import type { BlockGraph } from '../../core/graph.js';
import { parseKeyValueList } from '../../core/options.js';
import { createNodeGraph } from '../../node.js';
import { getopt, type LongOption, type OptResult } from '../getopt.js';
import { parseSizeQemu } from '../format.js';
import { type CliIo, errText, needsProbeWarning, parseCacheMode, probedRawWarning } from '../common.js';
import { COMMANDS } from './commands/index.js';
import { type Cmd, type OpenOpts, EINVAL, PROG } from './types.js';

export class IoSession {
  bb: BlockBackend | null = null;
  quit = false;
  readonly graph: BlockGraph = createNodeGraph();
  private pending: Promise<void>[] = [];
  /** The command table, in the order `help` lists it. */
  readonly commands: Cmd[] = COMMANDS;

  constructor(readonly io: CliIo) {
    // Drivers' notices (qcow2's corruption events) go to stderr as QEMU prints them.
    this.graph.onNotice = (text) => io.stderr(`${text}\n`);
  }

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

  async open(file: string, o: OpenOpts): Promise<boolean> {
    if (this.bb) {
      this.err(`${PROG}: file open already, try 'help close'\n`);
      return false;
    }
    let spec: Record<string, unknown>;
    if (o.forceShare && !o.readOnly) {
      this.err(`${PROG}: can't open${o.imageOpts ? '' : ` device ${file}`}: force-share=on can only be used with read-only images\n`);
      return false;
    }
    try {
      if (o.imageOpts) {
        spec = parseKeyValueList(file, 'file');
        if (o.format) {
          this.err(`${PROG}: --image-opts and 'format' is invalid\n`);
          return false;
        }
      } else {
        // `open -o file.filename=x` names no file: the options say it all.
        if (file !== '') this.graph.checkProtocolName(file);
        spec = file === '' ? {} : { filename: file };
      }
      Object.assign(spec, o.extra ?? {});
      // qemu-io's defaults: discard=unmap and a disabled write cache (writethrough).
      const cache = parseCacheMode(o.cache ?? 'writethrough')!;
      spec['cache.direct'] ??= cache.direct;
      spec['cache.no-flush'] ??= cache.noFlush;
      spec['discard'] ??= o.discard === 'off' || o.discard === 'ignore' ? 'ignore' : 'unmap';
      if (o.forceShare) spec['force-share'] = true;
      const flags = { readOnly: o.readOnly, ...(o.format ? { format: o.format } : {}) };
      this.bb = await BlockBackend.open(this.graph, spec, flags, { name: '', writeThrough: !cache.writeback });
    } catch (e) {
      const shown = o.imageOpts || file === '' ? '' : ` device ${file}`;
      this.err(`${PROG}: can't open${shown}: ${errText(e)}\n`);
      return false;
    }
    if (needsProbeWarning(this.bb.node)) this.err(probedRawWarning(file));
    for (const line of this.bb.node.instance.openMessages?.() ?? []) this.err(`${line}\n`);
    if (o.copyOnRead) this.bb.node.copyOnRead++;
    return true;
  }

  async close(): Promise<void> {
    await this.drainAio();
    const bb = this.bb;
    this.bb = null;
    if (bb) await bb.close().catch((e) => this.err(`${PROG}: ${errText(e)}\n`));
  }

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

  get backend(): BlockBackend {
    return this.bb!;
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
    if (!c.noFile && !this.bb) {
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
    if (c.write && this.bb && this.bb.readOnly) {
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
