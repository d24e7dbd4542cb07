/**
 * `img map`: allocation extents, human and JSON.
 */
import type { BlockNode } from '../../core/node.js';
import { Status } from '../../core/driver.js';
import { blockStatus, cowChild } from '../../core/block-status.js';
import { hexAlt } from '../format.js';
import { strerror } from '../common.js';
import { errorExit, fail, Ctx, parseOpts, cvtnum, outputFormat, COMMON_LONGS } from './context.js';
import { help } from './help.js';

// map

interface MapEntry {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  depth: number;
  present: boolean;
  offset?: number;
  filename?: string;
}

async function mapStatus(top: BlockNode, offset: number, bytes: number): Promise<MapEntry> {
  let n: BlockNode | undefined = top;
  let depth = 0;
  let st = { status: 0, pnum: bytes } as { status: number; pnum: number; map?: number; file?: BlockNode };
  for (;;) {
    while (n.driver.kind === 'filter' && n.filtered) n = n.filtered.node;
    st = await blockStatus(n, true, offset, bytes);
    bytes = st.pnum;
    if (st.status & (Status.ZERO | Status.DATA)) break;
    const next = cowChild(n);
    if (!next) {
      st = { ...st, status: 0 };
      break;
    }
    n = next;
    depth++;
  }
  const hasOffset = !!(st.status & Status.OFFSET_VALID) && st.map !== undefined;
  const e: MapEntry = {
    start: offset,
    length: st.pnum,
    data: !!(st.status & Status.DATA),
    zero: !!(st.status & Status.ZERO),
    depth,
    present: !!(st.status & Status.ALLOCATED),
  };
  if (hasOffset) {
    e.offset = st.map!;
    if (st.file) e.filename = st.file.filename;
  }
  return e;
}

function mergeable(c: MapEntry, n: MapEntry): boolean {
  if (c.length === 0) return false;
  if (c.zero !== n.zero || c.data !== n.data || c.depth !== n.depth || c.present !== n.present) return false;
  if ((c.filename !== undefined) !== (n.filename !== undefined) || (c.offset !== undefined) !== (n.offset !== undefined)) return false;
  if (c.filename !== undefined && c.filename !== n.filename) return false;
  if (c.offset !== undefined && c.offset + c.length !== n.offset) return false;
  return true;
}

export async function cmdMap(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'f:hU', [
    { name: 'format', hasArg: 1, val: 'f' },
    { name: 'output', hasArg: 1, val: 'output' },
    { name: 'start-offset', hasArg: 1, val: 's' },
    { name: 'max-length', hasArg: 1, val: 'l' },
    ...COMMON_LONGS,
  ], ctx);
  let fmt: string | undefined;
  let output = 'human';
  let start = 0;
  let maxLen = -1;
  let forceShare = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'output': output = o.arg!; break;
      case 's': start = cvtnum('start offset', o.arg!); break;
      case 'l': maxLen = cvtnum('max length', o.arg!); break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const of = outputFormat(output);
  const filename = operands[0]!;
  const bb = await ctx.open(filename, fmt, { readOnly: true, forceShare });
  const top = bb.node;
  let length = bb.length;
  if (maxLen !== -1) length = Math.min(start + maxLen, length);
  let out = of === 'human' ? `${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n` : '[';
  const flushOut = () => {
    if (out.length > 65536) {
      ctx.out(out);
      out = '';
    }
  };
  const dump = (e: MapEntry, next: MapEntry | null) => {
    if (of === 'human') {
      if (e.data && e.offset === undefined) {
        ctx.out(out);
        out = '';
        fail('File contains external, encrypted or compressed clusters.');
      }
      if (e.data && !e.zero) {
        out += `${hexAlt(e.start).padEnd(16)}${hexAlt(e.length).padEnd(16)}${hexAlt(e.offset ?? 0).padEnd(16)}${e.filename ?? ''}\n`;
      }
      if (next && (!next.data || next.zero)) {
        next.data = false;
        next.zero = true;
      }
    } else {
      out += `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}`;
      if (e.offset !== undefined) out += `, "offset": ${e.offset}`;
      out += '}';
      if (next) out += ',\n';
    }
    flushOut();
  };
  let curr: MapEntry = { start, length: 0, data: false, zero: false, depth: 0, present: false };
  while (curr.start + curr.length < length) {
    const offset = curr.start + curr.length;
    let next: MapEntry;
    try {
      next = await mapStatus(top, offset, length - offset);
    } catch (e) {
      ctx.out(out);
      fail(`Could not read file metadata: ${strerror(e)}`);
    }
    if (mergeable(curr, next)) {
      curr.length += next.length;
      continue;
    }
    if (curr.length > 0) dump(curr, next);
    curr = next;
  }
  dump(curr, null);
  if (of === 'json') out += ']\n';
  ctx.out(out);
  return 0;
}
