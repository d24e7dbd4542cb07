/**
 * `diskworker io`: qemu-io's command interpreter over a BlockBackend, with the
 * same commands, options, output lines and exit status.
 */
import { planReopen } from './io-reopen.js';
import { BlockBackend } from '../core/backend.js';
import type { BlockGraph } from '../core/graph.js';
import { ReqFlag, type PreallocMode } from '../core/driver.js';
import { BlockError, toBlockError } from '../core/errors.js';
import { isAllocatedAbove, cowChild } from '../core/block-status.js';
import { parseKeyValueList } from '../core/options.js';
import { createNodeGraph } from '../node.js';
import { getopt, type LongOption, type OptResult } from './getopt.js';
import { cFixed, cvtstr, parseSizeQemu } from './format.js';
import { type CliIo, driverInfo, errText, needsProbeWarning, parseCacheMode, probedRawWarning, strerror, formatNode, supportsCompressed } from './common.js';
import { dumpSpecific } from './info-dump.js';

const PROG = 'diskworker io';
/** QEMU's BDRV_REQUEST_MAX_BYTES. */
const REQUEST_MAX = 2147483136;

interface OpenOpts {
  readOnly: boolean;
  format?: string;
  imageOpts: boolean;
  forceShare: boolean;
  cache?: string;
  discard?: string;
  extra?: Record<string, string>;
  copyOnRead?: boolean;
}

/** Thrown by a command to fail with a negative errno-like result. */
const EINVAL = -22;

interface Cmd {
  name: string;
  alt?: string;
  /** Argument synopsis; undefined prints "name -- oneline" in the command list. */
  args?: string;
  oneline: string;
  argmin: number;
  argmax: number;
  /** Runs without an open image. */
  noFile?: boolean;
  /** Needs write permission (qemu-io takes BLK_PERM_WRITE first). */
  write?: boolean;
  fn: (s: IoSession, args: string[]) => Promise<number>;
}

function now(): number {
  return performance.now();
}

/** qemu-io's timestr for the statistics line. */
function timestr(ms: number, verbose: boolean): string {
  const totalUsec = Math.round(ms * 1000);
  const sec = Math.floor(totalUsec / 1e6);
  const usec = totalUsec % 1e6;
  const hund = Math.floor((usec / 1e6) * 100);
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (verbose || h > 0) {
    return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(hund).padStart(2, '0')}`;
  }
  return `${String(m * 60 + s).padStart(2, '0')}.${String(hund).padStart(2, '0')} sec`;
}

function report(op: string, ms: number, offset: number, count: number, total: number, cnt: number, cflag: boolean): string {
  const secs = Math.max(ms, 0.001) / 1000;
  if (!cflag) {
    return (
      `${op} ${total}/${count} bytes at offset ${offset}\n` +
      `${cvtstr(total)}, ${cnt} ops; ${timestr(ms, false)} (${cvtstr(total / secs)}/sec and ${cFixed(cnt / secs, 4)} ops/sec)\n`
    );
  }
  return `${total},${cnt},${timestr(ms, true)},${cFixed(total / secs, 3)},${cFixed(cnt / secs, 3)}\n`;
}

function hexdump(buf: Uint8Array, offset: number): string {
  let out = '';
  for (let i = 0; i < buf.length; i += 16) {
    const n = Math.min(16, buf.length - i);
    let hex = '';
    let asc = '';
    for (let j = 0; j < n; j++) {
      const b = buf[i + j]!;
      hex += b.toString(16).padStart(2, '0') + ' ';
      const isAlnum = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
      asc += isAlnum ? String.fromCharCode(b) : '.';
    }
    out += `${(offset + i).toString(16).padStart(8, '0')}:  ${hex} ${asc}\n`;
  }
  return out;
}

export class IoSession {
  bb: BlockBackend | null = null;
  quit = false;
  readonly graph: BlockGraph = createNodeGraph();
  private pending: Promise<void>[] = [];

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

  get backend(): BlockBackend {
    return this.bb!;
  }

  /** Runs one command line; returns < 0 on failure. */
  async command(line: string): Promise<number> {
    const argv = line.split(' ').filter((x) => x !== '');
    if (argv.length === 0) return 0;
    const name = argv[0]!;
    const c = COMMANDS.find((x) => x.name === name || x.alt === name);
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

// ---------------------------------------------------------------------------
// Commands

async function timed(fn: () => Promise<void>): Promise<{ ms: number; err?: unknown }> {
  const t = now();
  try {
    await fn();
    return { ms: now() - t };
  } catch (e) {
    return { ms: now() - t, err: e };
  }
}


async function readCmd(s: IoSession, args: string[]): Promise<number> {
  const c = cmd('read');
  const r = s.parse(c, args, 'abCcqpP:l:s:v');
  if (!r) return EINVAL;
  let cflag = false, qflag = false, vflag = false, bflag = false, Pflag = false, sflag = false, lflag = false;
  let pattern = 0, patOff = 0, patCount = 0;
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    switch (o.opt) {
      case 'b': bflag = true; break;
      case 'C': cflag = true; break;
      case 'q': qflag = true; break;
      case 'v': vflag = true; break;
      case 'P': {
        Pflag = true;
        const p = s.pattern(o.arg!);
        if (p === null) return EINVAL;
        pattern = p;
        break;
      }
      case 's': {
        sflag = true;
        const v = s.num(o.arg!);
        if (v === null) return EINVAL;
        patOff = v;
        break;
      }
      case 'l': {
        lflag = true;
        const v = s.num(o.arg!);
        if (v === null) return EINVAL;
        patCount = v;
        break;
      }
      default: break;
    }
  }
  if (r.operands.length !== 2) return s.usage(c);
  if (!Pflag && (lflag || sflag)) return s.usage(c);
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const count = s.num(r.operands[1]!);
  if (count === null) return EINVAL;
  if (count > REQUEST_MAX) {
    s.out(`length cannot exceed ${REQUEST_MAX}, given ${r.operands[1]}\n`);
    return EINVAL;
  }
  if (!lflag) patCount = count - patOff;
  if (patCount < 0 || patCount + patOff > count) {
    s.out('pattern verification range exceeds end of read data\n');
    return EINVAL;
  }
  if (bflag) {
    if (offset % 512) { s.out(`${offset} is not a sector-aligned value for 'offset'\n`); return EINVAL; }
    if (count % 512) { s.out(`${count} is not a sector-aligned value for 'count'\n`); return EINVAL; }
    s.out('read failed: Operation not supported\n');
    return -95;
  }
  let buf: Uint8Array = new Uint8Array(0);
  const t = await timed(async () => {
    buf = await readFilled(s, offset, count);
  });
  if (t.err) {
    s.out(`read failed: ${strerror(t.err)}\n`);
    return -5;
  }
  let ret = 0;
  if (Pflag) {
    for (let i = patOff; i < patOff + patCount; i++) {
      if (buf[i] !== pattern) {
        s.out(`Pattern verification failed at offset ${offset + patOff}, ${patCount} bytes\n`);
        ret = EINVAL;
        break;
      }
    }
  }
  if (qflag) return ret;
  if (vflag) s.out(hexdump(buf, offset));
  s.out(report('read', t.ms, offset, count, count, 1, cflag));
  return ret;
}

/** Parses the lengths of a vectored request; null on error (printed). */
function iovLengths(s: IoSession, args: string[]): number | null {
  let total = 0;
  for (const a of args) {
    const len = s.num(a);
    if (len === null) return null;
    if (len > REQUEST_MAX) {
      s.out(`Argument '${a}' exceeds maximum size ${REQUEST_MAX}\n`);
      return null;
    }
    if (total > REQUEST_MAX - len) {
      s.out(`The total number of bytes exceed the maximum size ${REQUEST_MAX}\n`);
      return null;
    }
    total += len;
  }
  return total;
}

async function readvCmd(s: IoSession, args: string[], name = 'readv'): Promise<number> {
  const c = cmd(name);
  const r = s.parse(c, args, name === 'aio_read' ? 'CiP:qv' : 'CP:qv');
  if (!r) return EINVAL;
  let cflag = false, qflag = false, vflag = false, Pflag = false, pattern = 0;
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    if (o.opt === 'C') cflag = true;
    else if (o.opt === 'q') qflag = true;
    else if (o.opt === 'v') vflag = true;
    else if (o.opt === 'P') {
      Pflag = true;
      const p = s.pattern(o.arg!);
      if (p === null) return EINVAL;
      pattern = p;
    }
  }
  if (r.operands.length < 2) return s.usage(c);
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const count = iovLengths(s, r.operands.slice(1));
  if (count === null) return EINVAL;
  let buf: Uint8Array = new Uint8Array(0);
  const t = await timed(async () => {
    buf = await readFilled(s, offset, count);
  });
  if (t.err) {
    s.out(`${name === 'aio_read' ? 'aio_read' : 'readv'} failed: ${strerror(t.err)}\n`);
    return -5;
  }
  let ret = 0;
  if (Pflag && buf.some((b) => b !== pattern)) {
    s.out(`Pattern verification failed at offset ${offset}, ${count} bytes\n`);
    ret = EINVAL;
  }
  if (qflag) return ret;
  if (vflag) s.out(hexdump(buf, offset));
  s.out(report('read', t.ms, offset, count, count, 1, cflag));
  return ret;
}

async function writeCmd(s: IoSession, args: string[]): Promise<number> {
  const c = cmd('write');
  const r = s.parse(c, args, 'bcCfnpP:quzs:');
  if (!r) return EINVAL;
  let bflag = false, cflag = false, Cflag = false, qflag = false, zflag = false, Pflag = false, sflag = false;
  let fua = false, unmap = false, noFallback = false;
  let pattern = 0xcd;
  let source = '';
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    switch (o.opt) {
      case 'b': bflag = true; break;
      case 'c': cflag = true; break;
      case 'C': Cflag = true; break;
      case 'f': fua = true; break;
      case 'n': noFallback = true; break;
      case 'q': qflag = true; break;
      case 'u': unmap = true; break;
      case 'z': zflag = true; break;
      case 's': sflag = true; source = o.arg!; break;
      case 'P': {
        Pflag = true;
        const p = s.pattern(o.arg!);
        if (p === null) return EINVAL;
        pattern = p;
        break;
      }
      default: break;
    }
  }
  if (r.operands.length !== 2) return s.usage(c);
  if (Number(zflag) + Number(Pflag) + Number(sflag) > 1) {
    s.out('Only one of -z, -P, and -s can be specified at the same time\n');
    return EINVAL;
  }
  if (bflag && fua) {
    s.out('-f and -b cannot be specified simultaneously\n');
    return EINVAL;
  }
  if (unmap && !zflag) {
    s.out('-u requires -z to be specified\n');
    return EINVAL;
  }
  if (noFallback && !zflag) {
    s.out('-n requires -z to be specified\n');
    return EINVAL;
  }
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const count = s.num(r.operands[1]!);
  if (count === null) return EINVAL;
  if (count > REQUEST_MAX && !zflag) {
    s.out(`length cannot exceed ${REQUEST_MAX}, given ${r.operands[1]}\n`);
    return EINVAL;
  }
  if (bflag || cflag) {
    if (offset % 512) { s.out(`${offset} is not a sector-aligned value for 'offset'\n`); return EINVAL; }
    if (count % 512) { s.out(`${count} is not a sector-aligned value for 'count'\n`); return EINVAL; }
  }
  if (bflag) {
    s.out('write failed: Operation not supported\n');
    return -95;
  }
  let buf: Uint8Array | null = null;
  if (!zflag) {
    if (sflag) {
      const fs = await import('node:fs/promises');
      let fh;
      try {
        fh = await fs.open(source, 'r');
      } catch (e) {
        s.err(`${source}: ${strerror(e)}\n`);
        return -2;
      }
      try {
        buf = new Uint8Array(count);
        const { bytesRead } = await fh.read(buf, 0, count, 0);
        if (bytesRead < count) {
          s.err(`${PROG}: Failed to read all bytes from ${source}\n`);
          return EINVAL;
        }
      } finally {
        await fh.close();
      }
    } else {
      buf = new Uint8Array(count).fill(pattern);
    }
  }
  const bb = s.backend;
  const t = await timed(async () => {
    if (zflag) await bb.writeZeroes(offset, count, (unmap ? ReqFlag.MAY_UNMAP : 0) | (fua ? ReqFlag.FUA : 0) | (noFallback ? ReqFlag.NO_FALLBACK : 0));
    else if (cflag) {
      if (!supportsCompressed(formatNode(bb.node))) {
        throw new BlockError('ENOTSUP', 'Compressed writes are not supported by this format');
      }
      await bb.write(offset, buf!, ReqFlag.COMPRESSED);
    }
    else await bb.write(offset, buf!, fua ? ReqFlag.FUA : 0);
  });
  if (t.err) {
    s.out(`write failed: ${strerror(t.err)}\n`);
    return -5;
  }
  if (qflag) return 0;
  s.out(report('wrote', t.ms, offset, count, count, 1, Cflag));
  return 0;
}

async function writevCmd(s: IoSession, args: string[], name = 'writev'): Promise<number> {
  const c = cmd(name);
  const r = s.parse(c, args, name === 'aio_write' ? 'CfiqP:uz' : 'CfqP:');
  if (!r) return EINVAL;
  let cflag = false, qflag = false, fua = false, zflag = false, unmap = false, Pflag = false, pattern = 0xcd;
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    if (o.opt === 'C') cflag = true;
    else if (o.opt === 'q') qflag = true;
    else if (o.opt === 'f') fua = true;
    else if (o.opt === 'z') zflag = true;
    else if (o.opt === 'u') unmap = true;
    else if (o.opt === 'P') {
      Pflag = true;
      const p = s.pattern(o.arg!);
      if (p === null) return EINVAL;
      pattern = p;
    }
  }
  if (r.operands.length < 2) return s.usage(c);
  if (zflag && Pflag) {
    s.out('-z and -P cannot be specified at the same time\n');
    return EINVAL;
  }
  if (unmap && !zflag) {
    s.out('-u requires -z to be specified\n');
    return EINVAL;
  }
  if (zflag && r.operands.length !== 2) {
    s.out('-z supports only a single length parameter\n');
    return EINVAL;
  }
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const count = iovLengths(s, r.operands.slice(1));
  if (count === null) return EINVAL;
  const bb = s.backend;
  const t = await timed(async () => {
    if (zflag) await bb.writeZeroes(offset, count, (unmap ? ReqFlag.MAY_UNMAP : 0) | (fua ? ReqFlag.FUA : 0));
    else await bb.write(offset, new Uint8Array(count).fill(pattern), fua ? ReqFlag.FUA : 0);
  });
  if (t.err) {
    s.out(`${name === 'aio_write' ? 'aio_write' : 'writev'} failed: ${strerror(t.err)}\n`);
    return -5;
  }
  if (qflag) return 0;
  s.out(report('wrote', t.ms, offset, count, count, 1, cflag));
  return 0;
}

async function discardCmd(s: IoSession, args: string[]): Promise<number> {
  const c = cmd('discard');
  const r = s.parse(c, args, 'Cq');
  if (!r) return EINVAL;
  let cflag = false, qflag = false;
  for (const o of r.opts) if (o.kind === 'opt') (o.opt === 'C' ? (cflag = true) : (qflag = true));
  if (r.operands.length !== 2) return s.usage(c);
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const bytes = s.num(r.operands[1]!);
  if (bytes === null) return EINVAL;
  if (bytes > REQUEST_MAX) {
    s.out(`length cannot exceed ${REQUEST_MAX}, given ${r.operands[1]}\n`);
    return EINVAL;
  }
  const t = await timed(() => s.backend.discard(offset, bytes));
  if (t.err) {
    s.out(`discard failed: ${strerror(t.err)}\n`);
    return -5;
  }
  if (!qflag) s.out(report('discard', t.ms, offset, bytes, bytes, 1, cflag));
  return 0;
}

/*
 * The debug commands. The graph has no blkdebug nodes, so the breakpoint
 * commands fail with ENOTSUP as qemu-io does on any other image. qemu-io's
 * wait_break polls forever there; it fails the same way here instead, since
 * no breakpoint can ever be set.
 */
const ENOTSUP_RC = -95;

async function breakCmd(s: IoSession): Promise<number> {
  s.out('Could not set breakpoint: Operation not supported\n');
  return ENOTSUP_RC;
}

async function removeBreakCmd(s: IoSession, args: string[]): Promise<number> {
  s.out(`Could not remove breakpoint ${args[0]}: Operation not supported\n`);
  return ENOTSUP_RC;
}

async function resumeCmd(s: IoSession): Promise<number> {
  s.out('Could not resume request: Operation not supported\n');
  return ENOTSUP_RC;
}

async function waitBreakCmd(s: IoSession, args: string[]): Promise<number> {
  s.out(`Could not wait for breakpoint ${args[0]}: Operation not supported\n`);
  return ENOTSUP_RC;
}

/** Simulates a crash, as qemu-io's abort does. */
async function abortCmd(): Promise<number> {
  process.abort();
}

/** Raises a signal in this process (qemu-io's sigraise). */
async function sigraiseCmd(s: IoSession, args: string[]): Promise<number> {
  const sig = s.num(args[0]!);
  if (sig === null) return EINVAL;
  try {
    process.kill(process.pid, sig);
  } catch {
    // raise() with an unknown signal fails quietly in qemu-io too.
  }
  return 0;
}

async function flushCmd(s: IoSession): Promise<number> {
  // qemu-io's flush only returns the error: nothing is printed, the exit code says it.
  try {
    await s.backend.flush();
  } catch (e) {
    return -toBlockError(e).errno;
  }
  return 0;
}

async function truncateCmd(s: IoSession, args: string[]): Promise<number> {
  const c = cmd('truncate');
  const r = s.parse(c, args, 'm:');
  if (!r) return EINVAL;
  let prealloc: PreallocMode = 'off';
  for (const o of r.opts) {
    if (o.kind === 'opt' && o.opt === 'm') {
      if (!['off', 'metadata', 'falloc', 'full'].includes(o.arg!)) {
        s.err(`${PROG}: Invalid preallocation mode '${o.arg}'\n`);
        return EINVAL;
      }
      prealloc = o.arg as PreallocMode;
    }
  }
  if (r.operands.length !== 1) return s.usage(c);
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  try {
    await s.backend.truncate(offset, { exact: false, prealloc });
  } catch (e) {
    s.err(`${PROG}: ${errText(e)}\n`);
    return -5;
  }
  return 0;
}

/**
 * Reads into a buffer filled with 0xab first, as qemu-io's buffers are: what
 * a driver leaves untouched (null-co without read-zeroes) shows as 0xab.
 */
async function readFilled(s: IoSession, offset: number, count: number): Promise<Uint8Array> {
  const buf = new Uint8Array(count).fill(0xab);
  await s.backend.pread(offset, buf);
  return buf;
}

async function lengthCmd(s: IoSession): Promise<number> {
  if (!s.backend.isAvailable) {
    s.out(`getlength: ${strerror(new BlockError('ENOMEDIUM', 'No medium found'))}\n`);
    return -123;
  }
  s.out(`${cvtstr(s.backend.length)}\n`);
  return 0;
}

async function infoCmd(s: IoSession): Promise<number> {
  const node = formatNode(s.backend.node);
  s.out(`format name: ${node.driver.name}\n`);
  // qemu-io prints the driver's format name, then its protocol name (the same for protocols).
  if (node.driver.kind === 'protocol') s.out(`format name: ${node.driver.name}\n`);
  const inf = driverInfo(node);
  if (inf === null) return -95;
  s.out(`cluster size: ${cvtstr(inf?.clusterSize ?? 0)}\n`);
  const spec = node.instance.getSpecificInfo?.();
  s.out(`vm state offset: ${cvtstr(inf?.vmStateOffset ?? qcow2VmStateOffset(node.driver.name, node.length, inf?.clusterSize, spec?.data))}\n`);
  if (spec) {
    s.out('Format specific information:\n');
    s.out(dumpSpecific(spec.data));
  }
  return 0;
}

/**
 * Where qcow2 keeps VM state (after the last L1 entry the guest disk can
 * use), for drivers whose getInfo does not say.
 */
function qcow2VmStateOffset(driver: string, size: number, clusterSize: number | undefined, spec: Record<string, unknown> | undefined): number {
  if (driver !== 'qcow2' || !clusterSize) return 0;
  const entry = spec?.['extended-l2'] === true ? 16 : 8;
  const perL1 = clusterSize * (clusterSize / entry);
  return Math.ceil(size / perL1) * perL1;
}

async function mapCmd(s: IoSession): Promise<number> {
  if (!s.backend.isAvailable) {
    s.err(`${PROG}: Failed to query image length: ${strerror(new BlockError('ENOMEDIUM', 'No medium found'))}\n`);
    return -123;
  }
  const node = s.backend.node;
  // Like bdrv_is_allocated: this layer only.
  const base = cowChild(node);
  let offset = 0;
  let bytes = s.backend.length;
  while (bytes > 0) {
    let first: { allocated: boolean; pnum: number };
    try {
      first = await isAllocatedAbove(node, base, false, offset, bytes);
      let num = first.pnum;
      while (num > 0 && num < bytes) {
        const next = await isAllocatedAbove(node, base, false, offset + num, bytes - num);
        if (next.allocated !== first.allocated || next.pnum === 0) break;
        num += next.pnum;
      }
      first = { allocated: first.allocated, pnum: num };
    } catch (e) {
      s.err(`${PROG}: Failed to get allocation status: ${strerror(e)}\n`);
      return -5;
    }
    if (first.pnum === 0) {
      s.err(`${PROG}: Unexpected end of image\n`);
      return -5;
    }
    const num = first.pnum;
    s.out(`${cvtstr(num)} (0x${num.toString(16)}) bytes ${first.allocated ? '    allocated' : 'not allocated'} at offset ${cvtstr(offset)} (0x${offset.toString(16)})\n`);
    offset += num;
    bytes -= num;
  }
  return 0;
}

async function allocCmd(s: IoSession, args: string[]): Promise<number> {
  const offset0 = s.num(args[0]!);
  if (offset0 === null) return EINVAL;
  let count = 512;
  if (args.length > 1) {
    const v = s.num(args[1]!);
    if (v === null) return EINVAL;
    if (v > 0x7fffffff) {
      s.out(`length argument cannot exceed ${0x7fffffff}, given ${args[1]}\n`);
      return EINVAL;
    }
    count = v;
  }
  const node = s.backend.node;
  const base = cowChild(node);
  let offset = offset0;
  let remaining = count;
  let sum = 0;
  while (remaining > 0) {
    let r;
    try {
      if (offset >= node.length) r = { allocated: false, pnum: 0 };
      else r = await isAllocatedAbove(node, base, false, offset, Math.min(remaining, node.length - offset));
    } catch (e) {
      s.out(`is_allocated failed: ${strerror(e)}\n`);
      return -5;
    }
    offset += r.pnum;
    remaining -= r.pnum;
    if (r.allocated) sum += r.pnum;
    if (r.pnum === 0) {
      count -= remaining;
      remaining = 0;
    }
  }
  s.out(`${sum}/${count} bytes allocated at offset ${cvtstr(offset0)}\n`);
  return 0;
}

async function openCmd(s: IoSession, args: string[]): Promise<number> {
  const c = cmd('open');
  const r = s.parse(c, args, 'snCro:kt:d:U');
  if (!r) return EINVAL;
  const o: OpenOpts = { readOnly: false, imageOpts: false, forceShare: false };
  const extra: Record<string, string> = {};
  for (const x of r.opts) {
    if (x.kind !== 'opt') continue;
    switch (x.opt) {
      case 'r': o.readOnly = true; break;
      case 'U': o.forceShare = true; break;
      case 'n': o.cache = 'none'; break;
      case 'C': o.copyOnRead = true; break;
      case 't':
        if (!parseCacheMode(x.arg!)) {
          s.err(`${PROG}: Invalid cache option: ${x.arg}\n`);
          return EINVAL;
        }
        o.cache = x.arg!;
        break;
      case 'd':
        if (!['off', 'ignore', 'on', 'unmap'].includes(x.arg!)) {
          s.err(`${PROG}: Invalid discard option: ${x.arg}\n`);
          return EINVAL;
        }
        o.discard = x.arg!;
        break;
      case 'o':
        try {
          Object.assign(extra, parseKeyValueList(x.arg!));
        } catch (e) {
          s.err(`${PROG}: ${errText(e)}\n`);
          return EINVAL;
        }
        break;
      default: break;
    }
  }
  if (r.operands.length > 1) return s.usage(c);
  if (r.operands.length === 0 && Object.keys(extra).length === 0) return s.usage(c);
  if ('driver' in extra) {
    o.format = extra['driver'];
    delete extra['driver'];
  }
  o.extra = extra;
  const ok = await s.open(r.operands[0] ?? '', o);
  return ok ? 0 : EINVAL;
}

async function closeCmd(s: IoSession): Promise<number> {
  await s.close();
  return 0;
}

async function reopenCmd(s: IoSession, args: string[]): Promise<number> {
  const c = cmd('reopen');
  const r = s.parse(c, args, 'c:o:rw');
  if (!r) return EINVAL;
  let ro: boolean | undefined;
  let cache: ReturnType<typeof parseCacheMode> = null;
  const extra: Record<string, string> = {};
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    if (o.opt === 'r' || o.opt === 'w') {
      if (ro !== undefined) {
        s.err(`${PROG}: Only one -r/-w option may be given\n`);
        return EINVAL;
      }
      ro = o.opt === 'r';
    } else if (o.opt === 'c') {
      cache = parseCacheMode(o.arg!);
      if (!cache) {
        s.err(`${PROG}: Invalid cache option: ${o.arg}\n`);
        return EINVAL;
      }
    } else if (o.opt === 'o') {
      try {
        Object.assign(extra, parseKeyValueList(o.arg!));
      } catch (e) {
        s.err(`${PROG}: ${errText(e)}\n`);
        return EINVAL;
      }
    }
  }
  if (r.operands.length !== 0) return s.usage(c);
  const bb = s.backend;
  const node = bb.node;
  const plan = planReopen(node, extra, ro, cache !== null);
  if (!plan.ok) {
    s.err(`${PROG}: ${plan.message}\n`);
    return EINVAL;
  }
  const readOnly = plan.readOnly ?? node.readOnly;
  const writeThrough = cache ? !cache.writeback : bb.writeThrough;
  if (cache) node.noFlush = cache.noFlush;
  node.ref();
  try {
    await s.drainAio();
    await bb.close();
    s.bb = null;
    try {
      await s.graph.reopen([{ node, readOnly, options: plan.options }]);
    } catch (e) {
      s.err(`${PROG}: ${errText(e)}\n`);
      s.bb = await BlockBackend.attach(s.graph, node, { name: '', writeThrough: bb.writeThrough });
      return -5;
    }
    s.bb = await BlockBackend.attach(s.graph, node, { name: '', writeThrough });
  } finally {
    await node.unref();
  }
  return 0;
}

async function sleepCmd(s: IoSession, args: string[]): Promise<number> {
  const t = args[0]!.trim();
  let ms = NaN;
  if (/^\+?0[xX][0-9a-fA-F]+$/.test(t)) ms = parseInt(t.replace('+', ''), 16);
  else if (/^\+?0[0-7]*$/.test(t)) ms = parseInt(t.replace('+', ''), 8);
  else if (/^[+-]?[1-9][0-9]*$/.test(t)) ms = parseInt(t, 10);
  if (!(ms >= 0)) {
    s.out(`${args[0]} is not a valid number\n`);
    return EINVAL;
  }
  await new Promise((r) => setTimeout(r, ms));
  return 0;
}

async function helpCmd(s: IoSession, args: string[]): Promise<number> {
  if (args.length === 0) {
    for (const c of COMMANDS) s.out(c.args === undefined ? `${c.name} -- ${c.oneline}\n` : `${c.name} ${c.args} -- ${c.oneline}\n`);
    s.out("\nUse 'help commandname' for extended help.\n");
    return 0;
  }
  const c = COMMANDS.find((x) => x.name === args[0] || x.alt === args[0]);
  if (!c) {
    s.out(`command ${args[0]} not found\n`);
    return EINVAL;
  }
  // qemu-io names the command as it was typed ("help r" prints "r ...").
  s.out(c.args === undefined ? `${args[0]} -- ${c.oneline}\n` : `${args[0]} ${c.args} -- ${c.oneline}\n`);
  const long = LONG_HELP[c.name];
  if (long) s.out(long);
  return 0;
}

async function quitCmd(s: IoSession): Promise<number> {
  s.quit = true;
  return 0;
}

async function aioReadCmd(s: IoSession, args: string[]): Promise<number> {
  return readvCmd(s, args, 'aio_read');
}
async function aioWriteCmd(s: IoSession, args: string[]): Promise<number> {
  return writevCmd(s, args, 'aio_write');
}
async function aioFlushCmd(s: IoSession): Promise<number> {
  await s.drainAio();
  return 0;
}

const COMMANDS: Cmd[] = [
  { name: 'abort', oneline: 'simulate a program crash using abort(3)', argmin: 0, argmax: 0, noFile: true, fn: abortCmd },
  { name: 'aio_flush', oneline: 'completes all outstanding aio requests', argmin: 0, argmax: 0, fn: aioFlushCmd },
  { name: 'aio_read', args: '[-Ciqv] [-P pattern] off len [len..]', oneline: 'asynchronously reads a number of bytes', argmin: 2, argmax: -1, fn: aioReadCmd },
  { name: 'aio_write', args: '[-Cfiquz] [-P pattern] off len [len..]', oneline: 'asynchronously writes a number of bytes', argmin: 2, argmax: -1, write: true, fn: aioWriteCmd },
  { name: 'alloc', args: 'offset [count]', oneline: 'checks if offset is allocated in the file', argmin: 1, argmax: 2, fn: allocCmd },
  { name: 'break', args: 'event tag', oneline: 'sets a breakpoint on event and tags the stopped request as tag', argmin: 2, argmax: 2, fn: breakCmd },
  { name: 'close', alt: 'c', oneline: 'close the current open file', argmin: 0, argmax: 0, fn: closeCmd },
  { name: 'discard', alt: 'd', args: '[-Cq] off len', oneline: 'discards a number of bytes at a specified offset', argmin: 2, argmax: -1, write: true, fn: discardCmd },
  { name: 'flush', alt: 'f', oneline: 'flush all in-core file state to disk', argmin: 0, argmax: 0, fn: flushCmd },
  { name: 'help', alt: '?', args: '[command]', oneline: 'help for one or all commands', argmin: 0, argmax: 1, noFile: true, fn: helpCmd },
  { name: 'info', alt: 'i', oneline: 'prints information about the current file', argmin: 0, argmax: 0, fn: infoCmd },
  { name: 'length', alt: 'l', oneline: 'gets the length of the current file', argmin: 0, argmax: 0, fn: lengthCmd },
  { name: 'map', alt: 'm', args: '', oneline: 'prints the allocated areas of a file', argmin: 0, argmax: 0, fn: mapCmd },
  { name: 'open', alt: 'o', args: '[-rsCnkU] [-t cache] [-d discard] [-o options] [path]', oneline: 'open the file specified by path', argmin: 1, argmax: -1, noFile: true, fn: openCmd },
  { name: 'quit', alt: 'q', oneline: 'exit the program', argmin: 0, argmax: 0, noFile: true, fn: quitCmd },
  {
    name: 'read', alt: 'r', args: '[-abCqv] [-P pattern [-s off] [-l len]] off len', oneline: 'reads a number of bytes at a specified offset', argmin: 2, argmax: -1, fn: readCmd,
  },
  { name: 'readv', args: '[-Cqv] [-P pattern] off len [len..]', oneline: 'reads a number of bytes at a specified offset', argmin: 2, argmax: -1, fn: (s, a) => readvCmd(s, a) },
  { name: 'remove_break', args: 'tag', oneline: 'remove a breakpoint by tag', argmin: 1, argmax: 1, fn: removeBreakCmd },
  { name: 'reopen', args: '[(-r|-w)] [-c cache] [-o options]', oneline: 'reopens an image with new options', argmin: 0, argmax: -1, fn: reopenCmd },
  { name: 'resume', args: 'tag', oneline: 'resumes the request tagged as tag', argmin: 1, argmax: 1, fn: resumeCmd },
  { name: 'sigraise', args: 'signal', oneline: 'raises a signal', argmin: 1, argmax: 1, noFile: true, fn: sigraiseCmd },
  { name: 'sleep', oneline: 'waits for the given value in milliseconds', argmin: 1, argmax: 1, noFile: true, fn: sleepCmd },
  { name: 'truncate', alt: 't', args: '[-m prealloc_mode] off', oneline: 'truncates the current file at the given offset', argmin: 1, argmax: 3, write: true, fn: truncateCmd },
  { name: 'wait_break', args: 'tag', oneline: 'waits for the suspension of a request', argmin: 1, argmax: 1, fn: waitBreakCmd },
  {
    name: 'write', alt: 'w', args: '[-bcCfnquz] [-P pattern | -s source_file] off len', oneline: 'writes a number of bytes at a specified offset', argmin: 2, argmax: -1, write: true, fn: writeCmd,
  },
  { name: 'writev', args: '[-Cfq] [-P pattern] off len [len..]', oneline: 'writes a number of bytes at a specified offset', argmin: 2, argmax: -1, write: true, fn: (s, a) => writevCmd(s, a) },
];

/** Extended help (`help command`), as qemu-io 7.2 prints it. */
const LONG_HELP: Record<string, string> = {
  sigraise: "\n raises the given signal\n\n Example:\n 'sigraise 15' - raises SIGTERM\n\n Invokes raise(signal), where \"signal\" is the mandatory integer argument\n given to sigraise.\n\n",
  aio_read: "\n asynchronously reads a range of bytes from the given offset\n\n Example:\n 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n\n Reads a segment of the currently open file, optionally dumping it to the\n standard output stream (with -v option) for subsequent inspection.\n The read is performed asynchronously and the aio_flush command must be\n used to ensure all outstanding aio requests have been completed.\n Note that due to its asynchronous nature, this command will be\n considered successful once the request is submitted, independently\n of potential I/O errors or pattern mismatches.\n -C, -- report statistics in a machine parsable format\n -P, -- use a pattern to verify read data\n -i, -- treat request as invalid, for exercising stats\n -v, -- dump buffer to standard output\n -q, -- quiet mode, do not show I/O statistics\n\n",
  aio_write: "\n asynchronously writes a range of bytes from the given offset source\n from multiple buffers\n\n Example:\n 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n\n Writes into a segment of the currently open file, using a buffer\n filled with a set pattern (0xcdcdcdcd).\n The write is performed asynchronously and the aio_flush command must be\n used to ensure all outstanding aio requests have been completed.\n Note that due to its asynchronous nature, this command will be\n considered successful once the request is submitted, independently\n of potential I/O errors or pattern mismatches.\n -P, -- use different pattern to fill file\n -C, -- report statistics in a machine parsable format\n -f, -- use Force Unit Access semantics\n -i, -- treat request as invalid, for exercising stats\n -q, -- quiet mode, do not show I/O statistics\n -u, -- with -z, allow unmapping\n -z, -- write zeroes using blk_aio_pwrite_zeroes\n\n",
  discard: "\n discards a range of bytes from the given offset\n\n Example:\n 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file\n\n Discards a segment of the currently open file.\n -C, -- report statistics in a machine parsable format\n -q, -- quiet mode, do not show I/O statistics\n\n",
  open: "\n opens a new file in the requested mode\n\n Example:\n 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached\n\n Opens a file for subsequent use by all of the other qemu-io commands.\n -r, -- open file read-only\n -s, -- use snapshot file\n -C, -- use copy-on-read\n -n, -- disable host cache, short for -t none\n -U, -- force shared permissions\n -k, -- use kernel AIO implementation (Linux only, prefer use of -i)\n -i, -- use AIO mode (threads, native or io_uring)\n -t, -- use the given cache mode for the image\n -d, -- use the given discard mode for the image\n -o, -- options to be given to the block driver\n",
  read: "\n reads a range of bytes from the given offset\n\n Example:\n 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file\n\n Reads a segment of the currently open file, optionally dumping it to the\n standard output stream (with -v option) for subsequent inspection.\n -b, -- read from the VM state rather than the virtual disk\n -C, -- report statistics in a machine parsable format\n -l, -- length for pattern verification (only with -P)\n -p, -- ignored for backwards compatibility\n -P, -- use a pattern to verify read data\n -q, -- quiet mode, do not show I/O statistics\n -s, -- start offset for pattern verification (only with -P)\n -v, -- dump buffer to standard output\n\n",
  readv: "\n reads a range of bytes from the given offset into multiple buffers\n\n Example:\n 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n\n Reads a segment of the currently open file, optionally dumping it to the\n standard output stream (with -v option) for subsequent inspection.\n Uses multiple iovec buffers if more than one byte range is specified.\n -C, -- report statistics in a machine parsable format\n -P, -- use a pattern to verify read data\n -v, -- dump buffer to standard output\n -q, -- quiet mode, do not show I/O statistics\n\n",
  reopen: "\n Changes the open options of an already opened image\n\n Example:\n 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image\n\n -r, -- Reopen the image read-only\n -w, -- Reopen the image read-write\n -c, -- Change the cache mode to the given value\n -o, -- Changes block driver options (cf. 'open' command)\n\n",
  write: "\n writes a range of bytes from the given offset\n\n Example:\n 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file\n\n Writes into a segment of the currently open file, using a buffer\n filled with a set pattern (0xcdcdcdcd).\n -b, -- write to the VM state rather than the virtual disk\n -c, -- write compressed data with blk_write_compressed\n -f, -- use Force Unit Access semantics\n -n, -- with -z, don't allow slow fallback\n -p, -- ignored for backwards compatibility\n -P, -- use different pattern to fill file\n -s, -- use a pattern file to fill the write buffer\n -C, -- report statistics in a machine parsable format\n -q, -- quiet mode, do not show I/O statistics\n -u, -- with -z, allow unmapping\n -z, -- write zeroes using blk_co_pwrite_zeroes\n\n",
  writev: "\n writes a range of bytes from the given offset source from multiple buffers\n\n Example:\n 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n\n Writes into a segment of the currently open file, using a buffer\n filled with a set pattern (0xcdcdcdcd).\n -P, -- use different pattern to fill file\n -C, -- report statistics in a machine parsable format\n -f, -- use Force Unit Access semantics\n -q, -- quiet mode, do not show I/O statistics\n\n",
};

function cmd(name: string): Cmd {
  return COMMANDS.find((c) => c.name === name)!;
}

const USAGE = `Usage: diskworker io [OPTIONS]... [-c STRING]... [file]
Exercise the block layer: run qemu-io commands on an image

  --image-opts         treat file as option string
  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use
  -r, --read-only      export read-only
  -s, --snapshot       use snapshot file (not supported)
  -n, --nocache        disable host cache, short for -t none
  -C, --copy-on-read   enable copy-on-read
  -m, --misalign       misalign allocations for O_DIRECT
  -i, --aio=MODE       use AIO mode (threads, native or io_uring)
  -t, --cache=MODE     use the given cache mode for the image
  -d, --discard=MODE   use the given discard mode for the image
  -U, --force-share    force shared permissions
  -h, --help           display this help and exit
  -V, --version        output version information and exit

See 'diskworker io -c help' for information on available commands.
`;

const LONG: LongOption[] = [
  { name: 'help', hasArg: 0, val: 'h' },
  { name: 'version', hasArg: 0, val: 'V' },
  { name: 'cmd', hasArg: 1, val: 'c' },
  { name: 'format', hasArg: 1, val: 'f' },
  { name: 'read-only', hasArg: 0, val: 'r' },
  { name: 'snapshot', hasArg: 0, val: 's' },
  { name: 'nocache', hasArg: 0, val: 'n' },
  { name: 'copy-on-read', hasArg: 0, val: 'C' },
  { name: 'misalign', hasArg: 0, val: 'm' },
  { name: 'native-aio', hasArg: 0, val: 'k' },
  { name: 'discard', hasArg: 1, val: 'd' },
  { name: 'cache', hasArg: 1, val: 't' },
  { name: 'aio', hasArg: 1, val: 'i' },
  { name: 'trace', hasArg: 1, val: 'T' },
  { name: 'object', hasArg: 1, val: 'object' },
  { name: 'image-opts', hasArg: 0, val: 'image-opts' },
  { name: 'force-share', hasArg: 0, val: 'U' },
];

/** `diskworker io ...`: returns the exit code. */
export async function ioMain(args: string[], io: CliIo): Promise<number> {
  const r = getopt(args, 'hVc:d:f:rsnCmki:t:T:U', LONG);
  const s = new IoSession(io);
  const cmds: string[] = [];
  const o: OpenOpts = { readOnly: false, imageOpts: false, forceShare: false };
  for (const x of r.opts) {
    if (x.kind === 'unknown') {
      io.stderr(x.letter ? `${PROG}: invalid option -- '${x.letter}'\n` : `${PROG}: unrecognized option '${x.written}'\n`);
      io.stdout(USAGE);
      return 1;
    }
    if (x.kind === 'missing') {
      io.stderr(x.letter ? `${PROG}: option requires an argument -- '${x.letter}'\n` : `${PROG}: option '${x.written}' requires an argument\n`);
      io.stdout(USAGE);
      return 1;
    }
    if (x.kind === 'noarg') {
      io.stderr(`${PROG}: option '${x.written}' doesn't allow an argument\n`);
      io.stdout(USAGE);
      return 1;
    }
    switch (x.opt) {
      case 'h': io.stdout(USAGE); return 0;
      case 'V': io.stdout('diskworker io version 0.1.0 (qemu-io 7.2 compatible)\n'); return 0;
      case 'c': cmds.push(x.arg!); break;
      case 'f': o.format = x.arg!; break;
      case 'r': o.readOnly = true; break;
      case 'U': o.forceShare = true; break;
      case 'n': o.cache = 'none'; break;
      case 't':
        if (!parseCacheMode(x.arg!)) {
          io.stderr(`${PROG}: Invalid cache option: ${x.arg}\n`);
          return 1;
        }
        o.cache = x.arg!;
        break;
      case 'd':
        if (!['off', 'ignore', 'on', 'unmap'].includes(x.arg!)) {
          io.stderr(`${PROG}: Invalid discard option: ${x.arg}\n`);
          return 1;
        }
        o.discard = x.arg!;
        break;
      case 'i':
        if (!['threads', 'native', 'io_uring'].includes(x.arg!)) {
          io.stderr(`${PROG}: Invalid aio option: ${x.arg}\n`);
          return 1;
        }
        break;
      case 'image-opts': o.imageOpts = true; break;
      case 's':
        io.stderr(`${PROG}: -s (snapshot mode) is not supported yet\n`);
        return 1;
      case 'C': o.copyOnRead = true; break;
      default: break; // -m, -k, -T, --object: accepted, no effect
    }
  }
  if (r.operands.length > 1) {
    // qemu-io prints only the usage here, without an error line.
    io.stdout(USAGE);
    return 1;
  }
  if (o.format && o.imageOpts) {
    io.stderr(`${PROG}: --image-opts and -f are mutually exclusive\n`);
    return 1;
  }
  if (r.operands.length === 1) {
    if (!(await s.open(r.operands[0]!, o))) {
      await s.graph.closeAll().catch(() => undefined);
      return 1;
    }
  }
  let lastError = 0;
  if (cmds.length > 0) {
    for (const line of cmds) {
      if (s.quit) break;
      const ret = await s.command(line);
      if (ret < 0) lastError = ret;
    }
  } else if (io.stdin) {
    io.stdout('qemu-io> ');
    for await (const raw of io.stdin()) {
      const ret = await s.command(raw.replace(/\r?\n$/, ''));
      if (ret < 0) lastError = ret;
      if (s.quit) break;
      io.stdout('qemu-io> ');
    }
  }
  await s.close();
  await s.graph.closeAll().catch(() => undefined);
  return lastError < 0 ? 1 : 0;
}
