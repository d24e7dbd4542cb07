/**
 * `diskworker img`: qemu-img's subcommands with its options, messages, output and exit codes,
 * over the DiskWorker block layer in Node. One file per subcommand in this folder; this one
 * dispatches.
 */
import { getopt } from '../getopt.js';
import { CliExit, type CliIo, errHint, errText } from '../common.js';
import { cmdAmend } from './amend.js';
import { help } from './help.js';
import { cmdBench } from './bench.js';
import { cmdBitmap } from './bitmap.js';
import { cmdCheck } from './check.js';
import { cmdCommit } from './commit.js';
import { cmdCompare } from './compare.js';
import { PROG, errorExit, fail, Ctx } from './context.js';
import { cmdConvert } from './convert.js';
import { cmdCreate } from './create.js';
import { cmdDd } from './dd.js';
import { cmdInfo } from './info.js';
import { cmdMap } from './map.js';
import { cmdMeasure } from './measure.js';
import { cmdRebase } from './rebase.js';
import { cmdResize } from './resize.js';
import { cmdSnapshot } from './snapshot.js';

// ---------------------------------------------------------------------------

type Handler = (ctx: Ctx, args: string[]) => Promise<number>;
const COMMANDS: Record<string, Handler> = {
  amend: cmdAmend,
  bench: cmdBench,
  bitmap: cmdBitmap,
  check: cmdCheck,
  commit: cmdCommit,
  compare: cmdCompare,
  convert: cmdConvert,
  create: cmdCreate,
  dd: cmdDd,
  info: cmdInfo,
  map: cmdMap,
  measure: cmdMeasure,
  rebase: cmdRebase,
  resize: cmdResize,
  snapshot: cmdSnapshot,
};

/** `diskworker img ...`: returns the exit code. */
export async function imgMain(args: string[], io: CliIo): Promise<number> {
  const ctx = new Ctx(io);
  // Global options before the command (qemu-img uses "+" getopt here).
  const g = getopt(args, '+:hVT:', [
    { name: 'help', hasArg: 0, val: 'h' },
    { name: 'version', hasArg: 0, val: 'V' },
    { name: 'trace', hasArg: 1, val: 'T' },
  ]);
  try {
    for (const o of g.opts) {
      if (o.kind === 'unknown') errorExit(`unrecognized option '${o.written}'`);
      if (o.kind === 'missing') errorExit(`missing argument for option '${o.written}'`);
      if (o.kind === 'noarg') errorExit(`unrecognized option '${o.written}'`);
      if (o.opt === 'h') return help(ctx);
      if (o.opt === 'V') {
        io.stdout(`${PROG} version 0.1.0 (qemu-img 7.2 compatible)\n`);
        return 0;
      }
    }
    if (g.operands.length < 1) errorExit('Not enough arguments');
    const [name, ...rest] = g.operands as [string, ...string[]];
    const dashdash = rest.indexOf('--');
    ctx.imageOpts = (dashdash < 0 ? rest : rest.slice(0, dashdash)).includes('--image-opts');
    const handler = Object.prototype.hasOwnProperty.call(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!handler) errorExit(`Command not found: ${name}`);
    return await handler(ctx, rest);
  } catch (e) {
    if (e instanceof CliExit) {
      if (e.message) io.stderr(`${PROG}: ${e.message}\n`);
      if (e.hint) io.stderr(e.hint);
      return e.exitCode;
    }
    io.stderr(`${PROG}: ${errText(e)}\n${errHint(e)}`);
    return 1;
  } finally {
    await ctx.closeAll();
  }
}
