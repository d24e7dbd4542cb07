/**
 * The command line of `diskworker daemon`, qemu-storage-daemon 7.2's options
 * that apply: --blockdev, --chardev (Unix socket servers), --monitor,
 * --nbd-server, --export (NBD), --object, --pidfile, -h, -V. Options are kept in order: QEMU creates
 * objects, block nodes, character devices and monitors in the order given.
 */
import { parseKeyValueList } from '../../core/options.js';

/** A --chardev socket server. */
export interface ChardevSpec {
  id: string;
  path: string;
}

/** A --monitor on a chardev. */
export interface MonitorSpec {
  chardev: string;
  pretty: boolean;
}

/** One option in command-line order, with the text it was given as (for messages). */
export type DaemonOption =
  | { kind: 'blockdev'; text: string; options: Record<string, unknown>; syntax: 'json' | 'keyval' }
  | { kind: 'chardev'; text: string; chardev: ChardevSpec }
  | { kind: 'monitor'; text: string; monitor: MonitorSpec }
  | { kind: 'object'; text: string }
  | { kind: 'nbd-server'; text: string; options: Record<string, unknown> }
  | { kind: 'export'; text: string; options: Record<string, unknown> };

/** The parsed command line. */
export interface DaemonArgs {
  help: boolean;
  version: boolean;
  /** A help text an option asked for (`--chardev help`): printed, then the daemon exits with 0. */
  helpText?: string;
  pidfile?: string;
  options: DaemonOption[];
}

/** A command-line error: the text QEMU prints after its name. */
export class DaemonArgError extends Error {
  constructor(
    message: string,
    /** Lines printed after the message (QEMU's error hints), '' when none. */
    readonly hint = '',
  ) {
    super(message);
  }
}

/** `a.b=x` keys into nested objects (QEMU's keyval). */
function nest(flat: Record<string, string>, text: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(flat)) {
    const parts = key.split('.');
    let o = out;
    for (const p of parts.slice(0, -1)) {
      const next = o[p];
      if (typeof next === 'string') throw new DaemonArgError(`${text}: Parameter '${p}' expects an object`);
      o = (o[p] ??= {}) as Record<string, unknown>;
    }
    o[parts[parts.length - 1]!] = value;
  }
  return out;
}

/** Objects whose keys are 0, 1, ... become lists, as QEMU's keyval reads `bitmaps.0=a,bitmaps.1=b`. */
function listify(v: Record<string, unknown>): Record<string, unknown>;
function listify(v: unknown): unknown;
function listify(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length > 0 && keys.every((k, i) => k === String(i))) return keys.map((k) => listify(o[k]));
  return Object.fromEntries(keys.map((k) => [k, listify(o[k])]));
}

function keyval(text: string, implied: string, option: string): Record<string, string> {
  try {
    return parseKeyValueList(text, implied);
  } catch (e) {
    throw new DaemonArgError(`${option} ${text}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** QEMU's boolean option values (qapi_bool_parse); `''` is QemuOpts' bare flag (`server`). */
function onOff(v: string | undefined, fallback: boolean, where: string, name: string): boolean {
  if (v === undefined) return fallback;
  if (['on', 'yes', 'true', 'y', ''].includes(v)) return true;
  if (['off', 'no', 'false', 'n'].includes(v)) return false;
  throw new DaemonArgError(`${where}: Parameter '${name}' expects 'on' or 'off'`);
}

function parseChardev(text: string): ChardevSpec {
  const kv = keyval(text, 'backend', '--chardev');
  const where = `--chardev ${text}`;
  if (kv.backend !== 'socket') throw new DaemonArgError(`${where}: chardev backend '${kv.backend ?? ''}' is not supported by diskworker daemon (socket only)`);
  if (!kv.id) throw new DaemonArgError(`${where}: Parameter 'id' is missing`);
  if (!kv.path) throw new DaemonArgError(`${where}: diskworker daemon serves Unix sockets only: 'path' is missing`);
  if (!onOff(kv.server, false, where, 'server')) throw new DaemonArgError(`${where}: diskworker daemon serves its monitors: 'server=on' is needed`);
  if (onOff(kv.wait, true, where, 'wait')) throw new DaemonArgError(`${where}: 'wait=off' is needed (the daemon does not wait for a client before it starts)`);
  for (const k of Object.keys(kv)) {
    if (!['backend', 'id', 'path', 'server', 'wait'].includes(k)) throw new DaemonArgError(`${where}: Invalid parameter '${k}'`);
  }
  return { id: kv.id, path: kv.path };
}

function parseMonitor(text: string): MonitorSpec {
  const kv = keyval(text, 'chardev', '--monitor');
  const where = `--monitor ${text}`;
  if (!kv.chardev) throw new DaemonArgError(`${where}: Parameter 'chardev' is missing`);
  // QEMU's visit of MonitorOptions: the members' values, unknown members, then what the daemon allows.
  if (kv.mode !== undefined && kv.mode !== 'control' && kv.mode !== 'readline') throw new DaemonArgError(`${where}: Parameter 'mode' does not accept value '${kv.mode}'`);
  const pretty = onOff(kv.pretty, false, where, 'pretty');
  for (const k of Object.keys(kv)) {
    if (!['chardev', 'mode', 'pretty'].includes(k)) throw new DaemonArgError(`${where}: Parameter '${k}' is unexpected`);
  }
  if (kv.mode === 'readline') throw new DaemonArgError(`${where}: Only QMP is supported`);
  return { chardev: kv.chardev, pretty };
}

/** Whether a keyval option text asks for help: a `help` or `?` key without a value. */
function asksHelp(text: string): boolean {
  if (text.trimStart().startsWith('{')) return false;
  return text.split(/(?<!,),(?!,)/).some((part) => part === 'help' || part === '?');
}

/** Parses the daemon's arguments (without the tool name). */
export function parseDaemonArgs(argv: string[]): DaemonArgs {
  const args: DaemonArgs = { help: false, version: false, options: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    let name = a;
    let value: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      name = a.slice(0, eq);
      value = a.slice(eq + 1);
    }
    const takeValue = (): string => {
      if (value !== undefined) return value;
      const v = argv[++i];
      if (v === undefined) throw new DaemonArgError(`option '${name}' requires an argument`);
      return v;
    };
    // QEMU's keyval options answer `help` / `?` alike: there is none for these.
    if (['--blockdev', '--export', '--nbd-server', '--monitor'].includes(name)) {
      const text = takeValue();
      if (asksHelp(text)) throw new DaemonArgError(`${name} ${text}: Help is not available for this option`);
      value = text;
    }
    switch (name) {
      case '-h':
      case '--help':
        args.help = true;
        return args;
      case '-V':
      case '--version':
        args.version = true;
        return args;
      case '--blockdev': {
        const text = takeValue();
        let options: Record<string, unknown>;
        const syntax = text.trimStart().startsWith('{') ? 'json' : 'keyval';
        if (syntax === 'json') {
          try {
            options = JSON.parse(text) as Record<string, unknown>;
          } catch (e) {
            throw new DaemonArgError(`--blockdev ${text}: JSON parse error, ${e instanceof Error ? e.message : String(e)}`);
          }
        } else {
          options = nest(keyval(text, 'driver', '--blockdev'), `--blockdev ${text}`);
        }
        args.options.push({ kind: 'blockdev', text, options, syntax });
        break;
      }
      case '--chardev': {
        const text = takeValue();
        if (text === 'help' || text === '?') {
          args.helpText = 'Available chardev backend types: \n  socket\n';
          return args;
        }
        args.options.push({ kind: 'chardev', text, chardev: parseChardev(text) });
        break;
      }
      case '--monitor': {
        const text = takeValue();
        args.options.push({ kind: 'monitor', text, monitor: parseMonitor(text) });
        break;
      }
      case '--object': {
        // Parsed and created in turn (QEMU creates objects in the order given), help answered then.
        args.options.push({ kind: 'object', text: takeValue() });
        break;
      }
      case '--pidfile':
        args.pidfile = takeValue();
        break;
      case '--nbd-server':
      case '--export': {
        const text = takeValue();
        const options = listify(nest(keyval(text, name === '--export' ? 'type' : '', name), `${name} ${text}`));
        args.options.push({ kind: name === '--export' ? 'export' : 'nbd-server', text, options });
        break;
      }
      case '--daemonize':
      case '-T':
      case '--trace':
        throw new DaemonArgError(`option '${name}' is not supported by diskworker daemon`);
      default:
        if (a.startsWith('-')) throw new DaemonArgError(`unrecognized option '${a}'`);
        throw new DaemonArgError(`${a}: Unexpected argument`);
    }
  }
  return args;
}
