/**
 * `img snapshot -l | -c NAME | -a NAME | -d NAME`: qemu-img 7.2's internal
 * snapshot editor, with its options, messages and exit codes. The image opens
 * read-write (read-only for -l) with its backing chain; the operations are
 * the block layer's (src/core/snapshot.ts).
 */
import type { SnapshotInfo } from '../../core/driver.js';
import { createSnapshot, deleteSnapshot, findSnapshotByName, gotoSnapshot, listSnapshots, snapshotFallback } from '../../core/snapshot.js';
import { BlockError, STRERROR, toBlockError } from '../../core/errors.js';
import { errText, needsProbeWarning, probedRawWarning, strerror } from '../common.js';
import { dumpSnapshots } from '../info-dump.js';
import { COMMON_LONGS, Ctx, errorExit, fail, parseOpts } from './context.js';
import { help } from './help.js';
import { snapshotJson } from '../../core/image-facts.js';

type Action = 'list' | 'create' | 'apply' | 'delete';

/** QEMU's snapshot names are at most 255 bytes (a char[256] in QEMUSnapshotInfo). */
function truncateName(name: string): string {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length <= 255) return name;
  // pstrcpy cuts bytes; a cut inside a UTF-8 sequence keeps only whole characters here.
  return new TextDecoder().decode(bytes.subarray(0, 255)).replace(/\uFFFD$/, '');
}

export async function cmdSnapshot(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'la:c:d:hqU', COMMON_LONGS, ctx);
  let action: Action | undefined;
  let name = '';
  let forceShare = false;
  const set = (a: Action, arg = ''): void => {
    if (action) errorExit("Cannot mix '-l', '-a', '-c', '-d'");
    action = a;
    name = arg;
  };
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'l': set('list'); break;
      case 'a': set('apply', o.arg!); break;
      case 'c': set('create', o.arg!); break;
      case 'd': set('delete', o.arg!); break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const bb = await ctx.open(operands[0]!, undefined, { readOnly: action === 'list', forceShare });
  const node = bb.node;
  switch (action) {
    case 'list': {
      const list = listSnapshots(node);
      if (list.length > 0) ctx.out('Snapshot list:\n' + dumpSnapshots(list.map(snapshotJson)));
      return 0;
    }
    case 'create': {
      // g_get_real_time(): microseconds.
      const us = Math.floor(Date.now() * 1000);
      const info: SnapshotInfo = {
        id: '',
        name: truncateName(name),
        vmStateSize: 0,
        dateSec: Math.floor(us / 1e6),
        dateNsec: (us % 1e6) * 1000,
        vmClockNsec: 0,
        icount: 0,
      };
      try {
        await createSnapshot(node, info);
      } catch (e) {
        const err = toBlockError(e);
        fail(`Could not create snapshot '${name}': -${err.errno} (${strerror(err)})`);
      }
      return 0;
    }
    case 'apply':
      // QEMU applies a snapshot through a fallback child (raw over its file) by closing and
      // opening the node again around it, which repeats the open's probing warning.
      if (!node.instance.snapshotGoto && snapshotFallback(node) && needsProbeWarning(node)) ctx.io.stderr(probedRawWarning(operands[0]!));
      try {
        await gotoSnapshot(node, name);
      } catch (e) {
        // What the format said about it, on a line of its own first (qcow2's error_report).
        const cause = e instanceof Error ? e.cause : undefined;
        if (cause instanceof BlockError && cause.text !== STRERROR[cause.code]) ctx.report(cause.text);
        fail(`Could not apply snapshot '${name}': ${errText(e)}`);
      }
      return 0;
    case 'delete': {
      const sn = findSnapshotByName(node, name);
      if (!sn) fail(`Could not delete snapshot '${name}': snapshot not found`);
      try {
        await deleteSnapshot(node, sn.id, sn.name);
      } catch (e) {
        fail(`Could not delete snapshot '${name}': ${errText(e)}`);
      }
      return 0;
    }
    default:
      return 0;
  }
}
