/**
 * The `-l snapshot_param` of `img convert` and `img measure`: QEMU's
 * `snapshot.id=ID,snapshot.name=NAME` form or an id or name alone, and the
 * temporary load of that snapshot into the source node.
 */
import type { BlockNode } from '../../core/node.js';
import { loadSnapshotTmp, loadSnapshotTmpByIdOrName } from '../../core/snapshot.js';
import { errText } from '../common.js';
import { parseOptionList } from '../qemu-opts.js';
import { PROG, fail, type Ctx } from './context.js';

/** What `-l` names: `snapshot.id=ID,snapshot.name=NAME`, or an id or name alone. */
export interface SnapshotParam {
  id?: string;
  name?: string;
  byIdOrName?: string;
}

/** Parses `-l` as qemu-img does (QemuOpts for the `snapshot.` form). */
export function parseSnapshotParam(ctx: Ctx, text: string): SnapshotParam {
  if (!text.startsWith('snapshot.')) return { byIdOrName: text };
  const out: SnapshotParam = {};
  for (const [key, value] of parseOptionList(text)) {
    if (key !== 'snapshot.id' && key !== 'snapshot.name') {
      ctx.io.stderr(`${PROG}: Invalid parameter '${key}'\n`);
      fail(`Failed in parsing snapshot param '${text}'`);
    }
    // A bare key is a short-form boolean: "on", with QEMU's deprecation warning.
    if (value === 'on' && !text.split(',').some((item) => item.startsWith(`${key}=`))) {
      ctx.io.stderr(`${PROG}: warning: short-form boolean option '${key}' deprecated\nPlease use ${key}=on instead\n`);
    }
    if (key === 'snapshot.id') out.id = value;
    else out.name = value;
  }
  return out;
}

/** Makes the read-only source read the snapshot `-l` names; "Failed to load snapshot: ..." otherwise. */
export async function loadSnapshotParam(node: BlockNode, p: SnapshotParam): Promise<void> {
  try {
    if (p.byIdOrName !== undefined) await loadSnapshotTmpByIdOrName(node, p.byIdOrName);
    else await loadSnapshotTmp(node, p.id, p.name);
  } catch (e) {
    fail(`Failed to load snapshot: ${errText(e)}`);
  }
}
