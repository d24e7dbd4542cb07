/**
 * The console: a qemu-io prompt against the open image. The CLI's qemu-io
 * (src/cli/io/) runs on a BlockBackend in Node, so the page implements the
 * common commands itself on the Disk API, printing what qemu-io prints
 * (numbers and sizes through the CLI's own formatters).
 */
import type { Disk } from '../../src/client/index.js';
import { cvtstr, parseSizeQemu } from '../../src/cli/format.js';
import { app, bus } from './state.js';
import { h } from './ui.js';

const MAX_IO = 64 << 20;

interface Ctx {
  disk: Disk;
  out: (s: string) => void;
}

interface Command {
  name: string;
  args: string;
  oneline: string;
  help: string;
  run: (c: Ctx, argv: string[]) => Promise<void>;
}

const STRERROR: Record<string, string> = {
  EINVAL: 'Invalid argument',
  EIO: 'Input/output error',
  ENOSPC: 'No space left on device',
  EPERM: 'Operation not permitted',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  ENOTSUP: 'Operation not supported',
  EFBIG: 'File too large',
  ENOENT: 'No such file or directory',
  ECANCELED: 'Operation canceled',
  ENOMEDIUM: 'No medium found',
};

function timestr(ms: number): string {
  const usec = Math.round(ms * 1000);
  const sec = Math.floor(usec / 1e6);
  const hund = Math.floor(((usec % 1e6) / 1e6) * 100);
  return `${String(sec).padStart(2, '0')}.${String(hund).padStart(2, '0')} sec`;
}

/** qemu-io's two-line report of a finished request. */
function report(op: string, ms: number, offset: number, count: number): string {
  const secs = Math.max(ms, 0.001) / 1000;
  return `${op} ${count}/${count} bytes at offset ${offset}\n${cvtstr(count)}, 1 ops; ${timestr(ms)} (${cvtstr(count / secs)}/sec and ${(1 / secs).toFixed(4)} ops/sec)\n`;
}

function hexdump(buf: Uint8Array, offset: number): string {
  let out = '';
  for (let i = 0; i < buf.length; i += 16) {
    let hex = '';
    let asc = '';
    for (let j = 0; j < Math.min(16, buf.length - i); j++) {
      const b = buf[i + j]!;
      hex += b.toString(16).padStart(2, '0') + ' ';
      asc += (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ? String.fromCharCode(b) : '.';
    }
    out += `${(offset + i).toString(16).padStart(8, '0')}:  ${hex} ${asc}\n`;
  }
  return out;
}

class Usage extends Error {}

function num(text: string | undefined): number {
  if (text === undefined) throw new Usage();
  const r = parseSizeQemu(text);
  if (r.ok) return r.value;
  throw new Error(r.reason === 'range' ? `Parsing error: argument too large -- ${text}` : `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${text}`);
}

function patternByte(text: string): number {
  const t = text.trim();
  let v = NaN;
  if (/^0[xX][0-9a-fA-F]+$/.test(t)) v = parseInt(t.slice(2), 16);
  else if (/^0[0-7]*$/.test(t)) v = parseInt(t, 8);
  else if (/^[+-]?[0-9]+$/.test(t)) v = parseInt(t, 10);
  if (!(v >= 0 && v <= 255)) throw new Error(`${text} is not a valid pattern byte`);
  return v;
}

/** Splits options (getopt style, `spec` like "P:qvz") from positionals. */
function getopt(argv: string[], spec: string): { opts: Map<string, string>; rest: string[] } {
  const opts = new Map<string, string>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.length > 1 && a.startsWith('-') && !/^-[0-9]/.test(a) && rest.length === 0) {
      for (let j = 1; j < a.length; j++) {
        const ch = a[j]!;
        const at = spec.indexOf(ch);
        if (at < 0) throw new Usage(`invalid option -- '${ch}'`);
        if (spec[at + 1] === ':') {
          const v = a.slice(j + 1) || argv[++i];
          if (v === undefined) throw new Usage(`option requires an argument -- '${ch}'`);
          opts.set(ch, v);
          break;
        }
        opts.set(ch, '');
      }
    } else rest.push(a);
  }
  return { opts, rest };
}

function checkRange(disk: Disk, offset: number, count: number, op: string): void {
  if (offset + count > disk.length) throw Object.assign(new Error(''), { code: 'EIO' });
  if (count > MAX_IO) throw new Error(`${op}: the page limits requests to ${cvtstr(MAX_IO)} (asked ${cvtstr(count)})`);
}

function failed(op: string, e: unknown): string {
  const code = (e as { code?: string }).code;
  const msg = (e as Error).message;
  return `${op} failed: ${STRERROR[code ?? ''] ?? msg}${code && msg && STRERROR[code] ? `\n  (${msg})` : ''}\n`;
}

const COMMANDS: Command[] = [
  {
    name: 'read',
    args: '[-qv] [-P pattern] off len',
    oneline: 'reads a number of bytes at a specified offset',
    help: ' -P, -- use a pattern to verify read data\n -q, -- quiet mode, do not show I/O statistics\n -v, -- dump buffer to standard output\n',
    async run(c, argv) {
      const { opts, rest } = getopt(argv, 'P:qv');
      if (rest.length !== 2) throw new Usage();
      const offset = num(rest[0]);
      const count = num(rest[1]);
      checkRange(c.disk, offset, count, 'read');
      const t0 = performance.now();
      let buf: Uint8Array;
      try {
        buf = await c.disk.read(offset, count);
      } catch (e) {
        c.out(failed('read', e));
        return;
      }
      const ms = performance.now() - t0;
      if (opts.has('P')) {
        const p = patternByte(opts.get('P')!);
        if (buf.some((b) => b !== p)) c.out(`Pattern verification failed at offset ${offset}, ${count} bytes\n`);
      }
      if (opts.has('v')) c.out(hexdump(buf, offset));
      if (!opts.has('q')) c.out(report('read', ms, offset, count));
    },
  },
  {
    name: 'write',
    args: '[-qzu] [-P pattern] off len',
    oneline: 'writes a number of bytes at a specified offset',
    help: ' -P, -- use different pattern to fill file\n -z, -- write zeroes using blk_co_pwrite_zeroes\n -u, -- with -z, allow unmapping\n -q, -- quiet mode, do not show I/O statistics\n',
    async run(c, argv) {
      const { opts, rest } = getopt(argv, 'P:qzuc');
      if (opts.has('c')) throw new Error('write -c (compressed) is not available on the page API');
      if (rest.length !== 2) throw new Usage();
      if (opts.has('z') && opts.has('P')) throw new Error('-z and -P cannot be specified at the same time');
      if (opts.has('u') && !opts.has('z')) throw new Error('-u requires -z to be specified');
      const offset = num(rest[0]);
      const count = num(rest[1]);
      checkRange(c.disk, offset, count, 'write');
      const t0 = performance.now();
      try {
        if (opts.has('z')) await c.disk.writeZeroes(offset, count, opts.has('u'));
        else await c.disk.write(offset, new Uint8Array(count).fill(patternByte(opts.get('P') ?? '0xcd')));
      } catch (e) {
        c.out(failed('write', e));
        return;
      }
      const ms = performance.now() - t0;
      bus.emit('data', { offset, bytes: count });
      if (!opts.has('q')) c.out(report('wrote', ms, offset, count));
    },
  },
  {
    name: 'discard',
    args: '[-q] off len',
    oneline: 'discards a number of bytes at a specified offset',
    help: ' -q, -- quiet mode, do not show I/O statistics\n',
    async run(c, argv) {
      const { opts, rest } = getopt(argv, 'q');
      if (rest.length !== 2) throw new Usage();
      const offset = num(rest[0]);
      const count = num(rest[1]);
      if (offset + count > c.disk.length) throw Object.assign(new Error(''), { code: 'EIO' });
      const t0 = performance.now();
      try {
        await c.disk.discard(offset, count);
      } catch (e) {
        c.out(failed('discard', e));
        return;
      }
      bus.emit('data', { offset, bytes: count });
      if (!opts.has('q')) c.out(report('discard', performance.now() - t0, offset, count));
    },
  },
  {
    name: 'map',
    args: '',
    oneline: 'prints the allocated areas of a file',
    help: '',
    async run(c, argv) {
      if (argv.length) throw new Usage();
      const ext = await c.disk.map();
      const merged: Array<{ offset: number; length: number; allocated: boolean }> = [];
      for (const e of ext) {
        const last = merged[merged.length - 1];
        if (last && last.allocated === e.allocated) last.length += e.length;
        else merged.push({ offset: e.offset, length: e.length, allocated: e.allocated });
      }
      for (const m of merged) {
        c.out(`${cvtstr(m.length)} (0x${m.length.toString(16)}) bytes ${m.allocated ? '    allocated' : 'not allocated'} at offset ${cvtstr(m.offset)} (0x${m.offset.toString(16)})\n`);
      }
    },
  },
  {
    name: 'alloc',
    args: 'offset [count]',
    oneline: 'checks if offset is allocated in the file',
    help: '',
    async run(c, argv) {
      const { rest } = getopt(argv, '');
      if (rest.length < 1 || rest.length > 2) throw new Usage();
      const offset = num(rest[0]);
      const count = rest[1] !== undefined ? num(rest[1]) : 512;
      const ext = await c.disk.map(offset, Math.max(0, Math.min(count, c.disk.length - offset)));
      const sum = ext.filter((e) => e.allocated).reduce((s, e) => s + e.length, 0);
      c.out(`${sum}/${count} bytes allocated at offset ${cvtstr(offset)}\n`);
    },
  },
  {
    name: 'length',
    args: '',
    oneline: 'gets the length of the current file',
    help: '',
    async run(c) {
      c.out(`${cvtstr(c.disk.length)}\n`);
    },
  },
  {
    name: 'truncate',
    args: '[-m prealloc_mode] off',
    oneline: 'truncates the current file at the given offset',
    help: '',
    async run(c, argv) {
      const { rest } = getopt(argv, 'm:');
      if (rest.length !== 1) throw new Usage();
      try {
        await c.disk.truncate(num(rest[0]));
      } catch (e) {
        c.out(failed('truncate', e));
        return;
      }
      bus.emit('data', null);
    },
  },
  {
    name: 'info',
    args: '',
    oneline: 'prints information about the current file',
    help: '',
    async run(c) {
      const info = await app.dw!.info(c.disk.path);
      c.out(`format name: ${info.format}\n`);
      c.out(`cluster size: ${cvtstr(info.clusterSize ?? 0)}\n`);
      const data = info.specific?.data;
      if (data && Object.keys(data).length) {
        c.out('Format specific information:\n');
        for (const [k, v] of Object.entries(data)) c.out(`    ${k.replace(/-/g, ' ')}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`);
      }
    },
  },
  {
    name: 'flush',
    args: '',
    oneline: 'flush all in-core file state to disk',
    help: '',
    async run(c) {
      try {
        await c.disk.flush();
      } catch (e) {
        c.out(failed('flush', e));
      }
    },
  },
];

const HELP_CMD: Command = {
  name: 'help',
  args: '[command]',
  oneline: 'help for one or all commands',
  help: '',
  async run(c, argv) {
    if (argv[0]) {
      const cmd = find(argv[0]);
      if (!cmd) {
        c.out(`command ${argv[0]} not found\n`);
        return;
      }
      c.out(`\n${cmd.name} ${cmd.args} -- ${cmd.oneline}\n\n${cmd.help}\n`);
      return;
    }
    for (const cmd of [...COMMANDS, HELP_CMD]) c.out(`${cmd.name}${cmd.args ? ' ' + cmd.args : ''} -- ${cmd.oneline}\n`);
    c.out(`\nUse 'help commandname' for extended help.\nIn this page: 'clear' empties the console. Sizes take suffixes: 64k, 1M, 2G.\n`);
  },
};

function find(name: string): Command | undefined {
  return [...COMMANDS, HELP_CMD].find((c) => c.name === name);
}

/** Splits a command line into words (single and double quotes group). */
function words(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

export class Console {
  readonly root: HTMLElement;
  private readonly output: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly history: string[] = [];
  private histPos = 0;
  private queue: Promise<void> = Promise.resolve();
  private disk: Disk | null = null;

  constructor() {
    this.output = h('pre', { class: 'console-out mono', 'data-testid': 'console-output', 'aria-live': 'polite' });
    this.input = h('input', { class: 'console-input mono', 'data-testid': 'console-input', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'qemu-io command', placeholder: 'open an image first' });
    const examples = ['write -P 0xab 0 64k', 'read -v 0 32', 'write -z 1M 256k', 'map', 'alloc 0 128k', 'discard 0 64k', 'info', 'help'];
    const chips = h('div', { class: 'chips' }, h('span', { class: 'muted' }, 'Try:'), ...examples.map((ex) => h('button', { class: 'chip mono', type: 'button', onclick: () => this.run(ex) }, ex)));
    const form = h('form', { class: 'console-line', onsubmit: (e: Event) => {
      e.preventDefault();
      const line = this.input.value;
      this.input.value = '';
      this.run(line);
    } }, h('span', { class: 'prompt mono' }, 'qemu-io>'), this.input);
    this.input.addEventListener('keydown', (e) => this.key(e));
    this.root = h('div', { class: 'console' }, chips, this.output, form);
    this.output.addEventListener('click', () => this.input.focus());
    bus.on('select', (sel) => {
      if (sel?.disk === this.disk) return;
      this.disk = sel?.disk ?? null;
      this.input.placeholder = this.disk ? `command for ${this.disk.path} — try: write -P 0xab 0 64k` : 'open an image first';
      if (this.disk) this.print(`# ${this.disk.path} is open (${this.disk.format}, ${cvtstr(this.disk.length)}${this.disk.readOnly ? ', read-only' : ''})\n`, 'note');
    });
  }

  private key(e: KeyboardEvent): void {
    if (e.key === 'ArrowUp' && this.histPos > 0) {
      this.input.value = this.history[--this.histPos]!;
      e.preventDefault();
    } else if (e.key === 'ArrowDown') {
      this.histPos = Math.min(this.history.length, this.histPos + 1);
      this.input.value = this.history[this.histPos] ?? '';
      e.preventDefault();
    }
  }

  private print(text: string, cls?: string): void {
    const span = h('span', cls ? { class: cls } : {}, text);
    this.output.append(span);
    while (this.output.childNodes.length > 2000) this.output.firstChild?.remove();
    this.output.scrollTop = this.output.scrollHeight;
  }

  /** Runs one command line (queued behind the previous ones). */
  run(line: string): Promise<void> {
    const trimmed = line.trim();
    if (trimmed && this.history[this.history.length - 1] !== trimmed) this.history.push(trimmed);
    this.histPos = this.history.length;
    this.queue = this.queue.then(() => this.exec(trimmed));
    return this.queue;
  }

  private async exec(line: string): Promise<void> {
    this.print(`qemu-io> ${line}\n`, 'echo');
    if (!line || line.startsWith('#')) return;
    const [name, ...argv] = words(line);
    if (name === 'clear') {
      this.output.replaceChildren();
      return;
    }
    const cmd = find(name!);
    if (!cmd) {
      this.print(`command "${name}" not found\n`, 'err');
      return;
    }
    const disk = this.disk;
    if (!disk && cmd !== HELP_CMD) {
      this.print('no file open, select an image in the list\n', 'err');
      return;
    }
    let text = '';
    try {
      await cmd.run({ disk: disk!, out: (s) => (text += s) }, argv);
      if (text) this.print(text);
    } catch (e) {
      if (text) this.print(text);
      if (e instanceof Usage) {
        if (e.message) this.print(`${cmd.name}: ${e.message}\n`, 'err');
        this.print(`${cmd.name}: ${cmd.args ? 'bad arguments' : 'takes no arguments'}\nusage: ${cmd.name} ${cmd.args}\n`, 'err');
      } else if ((e as { code?: string }).code) {
        this.print(failed(cmd.name, e), 'err');
      } else {
        this.print(`${(e as Error).message}\n`, 'err');
      }
    }
  }
}
