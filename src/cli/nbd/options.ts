/**
 * `diskworker nbd` command line: qemu-nbd 7.2's options, parsed with glibc
 * getopt rules and checked in qemu-nbd's order with its messages.
 */
import { getopt, type LongOption } from '../getopt.js';
import { parseCacheMode } from '../common.js';
import { parseOptionList } from '../qemu-opts.js';

export const PROG = 'diskworker nbd';
const NBD_MAX_STRING_SIZE = 4096;

const SHORT = 'hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:AB:L';
const LONG: LongOption[] = [
  { name: 'help', hasArg: 0, val: 'h' },
  { name: 'version', hasArg: 0, val: 'V' },
  { name: 'bind', hasArg: 1, val: 'b' },
  { name: 'port', hasArg: 1, val: 'p' },
  { name: 'socket', hasArg: 1, val: 'k' },
  { name: 'offset', hasArg: 1, val: 'o' },
  { name: 'read-only', hasArg: 0, val: 'r' },
  { name: 'allocation-depth', hasArg: 0, val: 'A' },
  { name: 'bitmap', hasArg: 1, val: 'B' },
  { name: 'connect', hasArg: 1, val: 'c' },
  { name: 'disconnect', hasArg: 0, val: 'd' },
  { name: 'list', hasArg: 0, val: 'L' },
  { name: 'snapshot', hasArg: 0, val: 's' },
  { name: 'load-snapshot', hasArg: 1, val: 'l' },
  { name: 'nocache', hasArg: 0, val: 'n' },
  { name: 'cache', hasArg: 1, val: 'cache' },
  { name: 'aio', hasArg: 1, val: 'aio' },
  { name: 'discard', hasArg: 1, val: 'discard' },
  { name: 'detect-zeroes', hasArg: 1, val: 'detect-zeroes' },
  { name: 'shared', hasArg: 1, val: 'e' },
  { name: 'format', hasArg: 1, val: 'f' },
  { name: 'persistent', hasArg: 0, val: 't' },
  { name: 'verbose', hasArg: 0, val: 'v' },
  { name: 'object', hasArg: 1, val: 'object' },
  { name: 'export-name', hasArg: 1, val: 'x' },
  { name: 'description', hasArg: 1, val: 'D' },
  { name: 'tls-creds', hasArg: 1, val: 'tls-creds' },
  { name: 'tls-hostname', hasArg: 1, val: 'tls-hostname' },
  { name: 'tls-authz', hasArg: 1, val: 'tls-authz' },
  { name: 'image-opts', hasArg: 0, val: 'image-opts' },
  { name: 'trace', hasArg: 1, val: 'T' },
  { name: 'fork', hasArg: 0, val: 'fork' },
  { name: 'pid-file', hasArg: 1, val: 'pid-file' },
  { name: 'selinux-label', hasArg: 1, val: 'selinux-label' },
];

/** Everything the command line asks for. */
export interface NbdCliOptions {
  file: string;
  format?: string;
  imageOpts: boolean;
  readOnly: boolean;
  snapshot: boolean;
  /** -l: `snapshot.id=` / `snapshot.name=` form, or an id or name alone. */
  loadSnapshot?: { id?: string; name?: string; byIdOrName?: string };
  cache: string;
  discard: 'ignore' | 'unmap';
  detectZeroes: 'off' | 'on' | 'unmap';
  offset: number;
  socket?: string;
  bind?: string;
  port?: string;
  exportName: string;
  description?: string;
  /** -e: clients served at once, 0 for no limit. */
  shared: number;
  persistent: boolean;
  /** -B names, in qemu-nbd's order (last given first). */
  bitmaps: string[];
  allocationDepth: boolean;
  fork: boolean;
  pidFile?: string;
  verbose: boolean;
}

/** The end of option parsing: print `stderr` / `stdout` and exit with `code`. */
export interface ParseExit {
  code: number;
  stdout?: string;
  stderr?: string;
}

const tryHelp = `${PROG}: Try \`${PROG} --help' for more information.\n`;

/** qemu_strtoi / qemu_strtou64 with base 0: decimal, 0x hex, 0 octal, the whole text. */
function parseCInteger(text: string): number | null {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return null;
  const body = m[2]!;
  const v = body.length > 1 && body[0] === '0' && !/[xX]/.test(body) ? parseInt(body, 8) : Number(body);
  return m[1] === '-' ? -v : v;
}

/** Parses argv (after `nbd`); returns the options or how to exit. */
export function parseNbdArgs(args: readonly string[], usage: string, version: string): NbdCliOptions | ParseExit {
  const r = getopt(args, SHORT, LONG);
  let format: string | undefined;
  let imageOpts = false;
  let readOnly = false;
  let snapshot = false;
  let loadSnapshot: NbdCliOptions['loadSnapshot'];
  let cache: string | undefined;
  let discard: 'ignore' | 'unmap' = 'ignore';
  let seenDiscard = false;
  let seenAio = false;
  let detectZeroes: NbdCliOptions['detectZeroes'] = 'off';
  let offset = 0;
  let socket: string | undefined;
  let bind: string | undefined;
  let port: string | undefined;
  let exportName: string | undefined;
  let description: string | undefined;
  let shared = 1;
  let persistent = false;
  const bitmaps: string[] = [];
  let allocationDepth = false;
  let fork = false;
  let pidFile: string | undefined;
  let verbose = false;
  let list = false;
  let device: string | undefined;
  let disconnect = false;
  let tlsCreds: string | undefined;
  let tlsHostname: string | undefined;
  let tlsAuthz: string | undefined;
  let selinuxLabel: string | undefined;
  const fail = (msg: string): ParseExit => ({ code: 1, stderr: `${PROG}: ${msg}\n` });

  for (const x of r.opts) {
    if (x.kind === 'unknown') {
      return { code: 1, stderr: (x.letter ? `${PROG}: invalid option -- '${x.letter}'\n` : `${PROG}: unrecognized option '${x.written}'\n`) + tryHelp };
    }
    if (x.kind === 'missing') {
      return { code: 1, stderr: (x.letter ? `${PROG}: option requires an argument -- '${x.letter}'\n` : `${PROG}: option '${x.written}' requires an argument\n`) + tryHelp };
    }
    if (x.kind === 'noarg') return { code: 1, stderr: `${PROG}: option '${x.written}' doesn't allow an argument\n${tryHelp}` };
    const arg = x.arg ?? '';
    switch (x.opt) {
      case 's':
        snapshot = true;
        break;
      case 'n':
      case 'cache': {
        const mode = x.opt === 'n' ? 'none' : arg;
        if (cache !== undefined) return fail('-n and --cache can only be specified once');
        if (!parseCacheMode(mode)) return fail(`Invalid cache mode \`${mode}'`);
        cache = mode;
        break;
      }
      case 'aio':
        if (seenAio) return fail('--aio can only be specified once');
        seenAio = true;
        if (!['threads', 'native', 'io_uring'].includes(arg)) return fail(`Invalid aio mode '${arg}'`);
        break;
      case 'discard':
        if (seenDiscard) return fail('--discard can only be specified once');
        seenDiscard = true;
        if (arg === 'off' || arg === 'ignore') discard = 'ignore';
        else if (arg === 'on' || arg === 'unmap') discard = 'unmap';
        else return fail(`Invalid discard mode \`${arg}'`);
        break;
      case 'detect-zeroes':
        if (arg !== 'off' && arg !== 'on' && arg !== 'unmap') return fail(`Failed to parse detect_zeroes mode: invalid parameter value: ${arg}`);
        if (arg === 'unmap' && discard !== 'unmap') {
          return fail('setting detect-zeroes to unmap is not allowed without setting discard operation to unmap');
        }
        detectZeroes = arg;
        break;
      case 'b':
        bind = arg;
        break;
      case 'p':
        port = arg;
        break;
      case 'o': {
        const v = parseCInteger(arg);
        if (v === null || v < 0 || !Number.isSafeInteger(v)) return fail(`Invalid offset '${arg}'`);
        offset = v;
        break;
      }
      case 'l':
        if (arg.startsWith('snapshot.')) {
          const parsed: { id?: string; name?: string } = {};
          try {
            for (const [key, value] of parseOptionList(arg)) {
              if (key === 'snapshot.id') parsed.id = value;
              else if (key === 'snapshot.name') parsed.name = value;
              else return { code: 1, stderr: `${PROG}: Invalid parameter '${key}'\n${PROG}: Failed in parsing snapshot param \`${arg}'\n` };
            }
          } catch {
            return fail(`Failed in parsing snapshot param \`${arg}'`);
          }
          loadSnapshot = parsed;
        } else {
          loadSnapshot = { byIdOrName: arg };
        }
        readOnly = true;
        break;
      case 'r':
        readOnly = true;
        break;
      case 'A':
        allocationDepth = true;
        break;
      case 'B':
        bitmaps.unshift(arg);
        break;
      case 'k':
        if (!arg.startsWith('/')) return fail('socket path must be absolute');
        socket = arg;
        break;
      case 'd':
        disconnect = true;
        break;
      case 'c':
        device = arg;
        break;
      case 'e': {
        const v = parseCInteger(arg);
        if (v === null || v < 0 || v > 0x7fffffff) return fail(`Invalid shared device number '${arg}'`);
        shared = v;
        break;
      }
      case 'f':
        format = arg;
        break;
      case 't':
        persistent = true;
        break;
      case 'x':
        if (new TextEncoder().encode(arg).length > NBD_MAX_STRING_SIZE) return fail(`export name '${arg}' too long`);
        exportName = arg;
        break;
      case 'D':
        if (new TextEncoder().encode(arg).length > NBD_MAX_STRING_SIZE) return fail(`export description '${arg}' too long`);
        description = arg;
        break;
      case 'v':
        verbose = true;
        break;
      case 'V':
        return { code: 0, stdout: version };
      case 'h':
        return { code: 0, stdout: usage };
      case 'tls-creds':
        tlsCreds = arg;
        break;
      case 'tls-hostname':
        tlsHostname = arg;
        break;
      case 'tls-authz':
        tlsAuthz = arg;
        break;
      case 'image-opts':
        imageOpts = true;
        break;
      case 'fork':
        fork = true;
        break;
      case 'L':
        list = true;
        break;
      case 'pid-file':
        pidFile = arg;
        break;
      case 'selinux-label':
        selinuxLabel = arg;
        break;
      default:
        // --object and -T: accepted; this tool has no secrets or trace points to set up.
        break;
    }
  }
  if (list) {
    if (r.operands.length !== 0) return fail('List mode is incompatible with a file name');
    if (exportName !== undefined || description !== undefined || offset || device !== undefined || disconnect || format !== undefined ||
        loadSnapshot || bitmaps.length || allocationDepth || seenAio || seenDiscard || cache !== undefined) {
      return fail('List mode is incompatible with per-device settings');
    }
    if (fork) return fail('List mode is incompatible with forking');
  } else if (r.operands.length !== 1) {
    return { code: 1, stderr: `${PROG}: Invalid number of arguments\nTry \`${PROG} --help' for more information.\n` };
  }
  if (tlsCreds !== undefined) {
    if (device !== undefined) return fail('TLS is not supported with a host device');
    if (tlsAuthz !== undefined && list) return fail('TLS authorization is incompatible with export list');
    if (tlsHostname !== undefined && !list) return fail('TLS hostname is only supported with export list');
    // --object is not acted on, so no TLS credentials object can exist.
    return fail(`Failed to get TLS creds: No TLS credentials with id '${tlsCreds}'`);
  }
  if (tlsAuthz !== undefined) return fail('--tls-authz is not permitted without --tls-creds');
  if (tlsHostname !== undefined) return fail('--tls-hostname is not permitted without --tls-creds');
  if (selinuxLabel !== undefined) return fail('SELinux support not enabled in this binary');
  if (list) return fail('List mode (-L) is not supported: this tool only serves exports');
  // The kernel's /dev/nbdN is out of reach of this tool.
  if (disconnect || device !== undefined) return fail('Kernel /dev/nbdN support not available');
  if (imageOpts && format !== undefined) return fail('--image-opts and -f are mutually exclusive');
  return {
    file: r.operands[0]!,
    ...(format !== undefined ? { format } : {}),
    imageOpts,
    readOnly,
    snapshot,
    ...(loadSnapshot ? { loadSnapshot } : {}),
    cache: cache ?? 'writeback',
    discard,
    detectZeroes,
    offset,
    ...(socket !== undefined ? { socket } : {}),
    ...(bind !== undefined ? { bind } : {}),
    ...(port !== undefined ? { port } : {}),
    exportName: exportName ?? '',
    ...(description !== undefined ? { description } : {}),
    shared,
    persistent,
    bitmaps,
    allocationDepth,
    fork,
    ...(pidFile !== undefined ? { pidFile } : {}),
    verbose,
  };
}
