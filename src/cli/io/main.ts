/**
 * `diskworker io`: qemu-io's command interpreter over a BlockBackend, with the
 * same commands, options, output lines and exit status.
 */
import { getopt, type LongOption } from '../getopt.js';
import { type CliIo, errHint, errText, parseCacheMode } from '../common.js';
import { CORE_COMMANDS } from './commands/index.js';
import { closeCmd, openCmd, reopenCmd } from './commands/open.js';
import { abortCmd, sigraiseCmd } from './commands/process.js';
import { NodeIoSession } from './node-session.js';
import { addObject } from '../../qmp/objects.js';
import { type Cmd, type OpenOpts, PROG } from './types.js';

/** The commands only the CLI has: they act on the Node graph or process. */
const NODE_COMMANDS: Cmd[] = [
  { name: 'abort', oneline: 'simulate a program crash using abort(3)', argmin: 0, argmax: 0, noFile: true, fn: abortCmd },
  { name: 'close', alt: 'c', oneline: 'close the current open file', argmin: 0, argmax: 0, fn: closeCmd },
  { name: 'open', alt: 'o', args: '[-rsCnkU] [-t cache] [-d discard] [-o options] [path]', oneline: 'open the file specified by path', argmin: 1, argmax: -1, noFile: true, fn: openCmd },
  { name: 'reopen', args: '[(-r|-w)] [-c cache] [-o options]', oneline: 'reopens an image with new options', argmin: 0, argmax: -1, fn: reopenCmd },
  { name: 'sigraise', args: 'signal', oneline: 'raises a signal', argmin: 1, argmax: 1, noFile: true, fn: sigraiseCmd },
];

/** The CLI's command table: all of qemu-io's, by name as `help` lists them. */
export const CLI_COMMANDS: Cmd[] = [...CORE_COMMANDS, ...NODE_COMMANDS].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

const USAGE = `Usage: diskworker io [OPTIONS]... [-c STRING]... [file]
Exercise the block layer: run qemu-io commands on an image

  --object OBJECTDEF   define an object such as 'throttle-group'
                       for I/O limits
  --image-opts         treat file as option string
  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use
  -r, --read-only      export read-only
  -s, --snapshot       use snapshot file
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
  const s = new NodeIoSession(io, CLI_COMMANDS);
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
      case 's': o.snapshot = true; break;
      case 'C': o.copyOnRead = true; break;
      case 'object':
        try {
          const r = addObject(s.graph, x.arg!);
          if (r) {
            io.stdout(r.help);
            return 0;
          }
        } catch (e) {
          io.stderr(`${PROG}: ${errText(e)}\n${errHint(e)}`);
          return 1;
        }
        break;
      default: break; // -m, -k, -T: accepted, no effect
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
  s.imageOpts = o.imageOpts;
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
    // qemu-io flushes stdout after each prompt.
    io.stdout('qemu-io> ');
    io.flush?.();
    for await (const raw of io.stdin()) {
      const ret = await s.command(raw.replace(/\r?\n$/, ''));
      if (ret < 0) lastError = ret;
      if (s.quit) break;
      io.stdout('qemu-io> ');
      io.flush?.();
    }
  }
  await s.close();
  await s.graph.closeAll().catch(() => undefined);
  return lastError < 0 ? 1 : 0;
}
