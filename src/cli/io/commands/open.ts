/** qemu-io's open, close and reopen over the Node block graph (NodeIoSession only). */
import { BlockBackend } from '../../../core/backend.js';
import { parseKeyValueList } from '../../../core/options.js';
import { errHint, errText, parseCacheMode } from '../../common.js';
import { planReopen } from '../reopen.js';
import type { IoSession } from '../session.js';
import type { NodeIoSession } from '../node-session.js';
import { type OpenOpts, EINVAL, PROG } from '../types.js';

export async function openCmd(session: IoSession, args: string[]): Promise<number> {
  const s = session as NodeIoSession;
  const c = s.cmd('open');
  const r = s.parse(c, args, 'snCro:kt:d:U');
  if (!r) return EINVAL;
  const o: OpenOpts = { readOnly: false, imageOpts: false, forceShare: false };
  const extra: Record<string, string> = {};
  for (const x of r.opts) {
    if (x.kind !== 'opt') continue;
    switch (x.opt) {
      case 'r': o.readOnly = true; break;
      case 's': o.snapshot = true; break;
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
        if (s.imageOpts) {
          // qemu-io prints this one on stdout.
          s.out("--image-opts and 'open -o' are mutually exclusive\n");
          return EINVAL;
        }
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
  // Under --image-opts the argument is an option string too.
  if (s.imageOpts && r.operands.length === 1) o.imageOpts = true;
  const ok = await s.open(r.operands[0] ?? '', o);
  return ok ? 0 : EINVAL;
}

export async function closeCmd(session: IoSession): Promise<number> {
  const s = session as NodeIoSession;
  await s.close();
  return 0;
}

export async function reopenCmd(session: IoSession, args: string[]): Promise<number> {
  const s = session as NodeIoSession;
  const c = s.cmd('reopen');
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
  const bb = s.bb!;
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
      // -c's cache.direct, or -o cache.direct=on|off: the file is reopened with or without O_DIRECT.
      const direct = cache ? cache.direct : extra['cache.direct'] !== undefined ? extra['cache.direct'] === 'on' : undefined;
      await s.graph.reopen([{ node, readOnly, options: plan.options, ...(direct !== undefined ? { direct } : {}) }]);
    } catch (e) {
      s.err(`${PROG}: ${errText(e)}\n${errHint(e)}`);
      s.bb = await BlockBackend.attach(s.graph, node, { name: '', writeThrough: bb.writeThrough });
      return -5;
    }
    s.bb = await BlockBackend.attach(s.graph, node, { name: '', writeThrough });
  } finally {
    await node.unref();
  }
  return 0;
}
