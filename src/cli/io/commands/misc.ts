/** qemu-io's discard, flush, truncate, length, info, map, alloc, sleep, quit and the breakpoint commands. */
import type { PreallocMode } from '../../../core/driver.js';
import { BlockError, toBlockError } from '../../../core/errors.js';
import { cvtstr } from '../../format.js';
import { errText, strerror } from '../../common.js';
import { report, timed } from '../format.js';
import type { IoSession } from '../session.js';
import type { BlockDebugger } from '../../../core/debug-event.js';
import { EINVAL, PROG, REQUEST_MAX } from '../types.js';

export async function discardCmd(s: IoSession, args: string[]): Promise<number> {
  const c = s.cmd('discard');
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
 * The debug commands: breakpoints of the blkdebug node at or below the disk
 * (ENOTSUP without one, as qemu-io reports it). A breakpoint's suspend and
 * resume lines go to stdout, as blkdebug prints them.
 */
export const ENOTSUP_RC = -95;

/** Runs `fn` on the disk's debugger; a failure is printed after `what` and returned as -errno. */
function withDebugger(s: IoSession, what: string, fn: (d: BlockDebugger) => void): number {
  try {
    const d = s.backend.debugger?.();
    if (!d) throw new BlockError('ENOTSUP', 'Operation not supported');
    d.output = (line) => s.out(line);
    fn(d);
    return 0;
  } catch (e) {
    s.out(`${what}: ${strerror(e)}\n`);
    return -toBlockError(e).errno;
  }
}

export async function breakCmd(s: IoSession, args: string[]): Promise<number> {
  return withDebugger(s, 'Could not set breakpoint', (d) => d.breakpoint(args[0]!, args[1]!));
}

export async function removeBreakCmd(s: IoSession, args: string[]): Promise<number> {
  return withDebugger(s, `Could not remove breakpoint ${args[0]}`, (d) => d.removeBreakpoint(args[0]!));
}

export async function resumeCmd(s: IoSession, args: string[]): Promise<number> {
  return withDebugger(s, 'Could not resume request', (d) => d.resume(args[0]!));
}

/**
 * Waits until a request is suspended as the tag. qemu-io polls for ever when
 * none can be; here the wait ends with ENOENT once every aio request in
 * flight has completed or is held at another breakpoint, and with ENOTSUP on
 * a disk without blkdebug.
 */
export async function waitBreakCmd(s: IoSession, args: string[]): Promise<number> {
  const tag = args[0]!;
  let d: BlockDebugger | undefined;
  try {
    d = s.backend.debugger?.();
  } catch {
    d = undefined;
  }
  if (!d) {
    s.out(`Could not wait for breakpoint ${tag}: Operation not supported\n`);
    return ENOTSUP_RC;
  }
  // Wait while some aio request is still running (not every one held at a breakpoint).
  while (!d.isSuspended(tag) && s.aioPending > d.suspendedCount()) {
    await Promise.race([d.whenSuspended(tag), s.aioAnySettled(), d.nextSuspension()]);
  }
  if (d.isSuspended(tag)) return 0;
  s.out(`Could not wait for breakpoint ${tag}: No such file or directory\n`);
  return -2;
}

export async function flushCmd(s: IoSession): Promise<number> {
  // qemu-io's flush only returns the error: nothing is printed, the exit code says it.
  try {
    await s.backend.flush();
  } catch (e) {
    return -toBlockError(e).errno;
  }
  return 0;
}

export async function truncateCmd(s: IoSession, args: string[]): Promise<number> {
  const c = s.cmd('truncate');
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
    await s.backend.truncate(offset, prealloc);
  } catch (e) {
    s.err(`${PROG}: ${errText(e)}\n`);
    return -5;
  }
  return 0;
}

export async function lengthCmd(s: IoSession): Promise<number> {
  if (!s.backend.available) {
    s.out(`getlength: ${strerror(new BlockError('ENOMEDIUM', 'No medium found'))}\n`);
    return -123;
  }
  s.out(`${cvtstr(s.backend.length)}\n`);
  return 0;
}

export async function infoCmd(s: IoSession): Promise<number> {
  const r = await s.backend.info();
  s.out(r.text);
  return r.supported ? 0 : -95;
}

export async function mapCmd(s: IoSession): Promise<number> {
  if (!s.backend.available) {
    s.err(`${PROG}: Failed to query image length: ${strerror(new BlockError('ENOMEDIUM', 'No medium found'))}\n`);
    return -123;
  }
  let offset = 0;
  let bytes = s.backend.length;
  while (bytes > 0) {
    let first: { allocated: boolean; pnum: number };
    try {
      first = await s.backend.isAllocated(offset, bytes);
      let num = first.pnum;
      while (num > 0 && num < bytes) {
        const next = await s.backend.isAllocated(offset + num, bytes - num);
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

export async function allocCmd(s: IoSession, args: string[]): Promise<number> {
  const offset0 = s.num(args[0]!);
  if (offset0 === null) return EINVAL;
  let count = 512;
  if (args.length > 1) {
    const v = s.num(args[1]!);
    if (v === null) return EINVAL;
    // No upper limit, as qemu-io 7.2: block status stops at the end of the image.
    count = v;
  }
  let offset = offset0;
  let remaining = count;
  let sum = 0;
  while (remaining > 0) {
    let r;
    try {
      r = await s.backend.isAllocated(offset, remaining);
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

export async function sleepCmd(s: IoSession, args: string[]): Promise<number> {
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

export async function quitCmd(s: IoSession): Promise<number> {
  s.quit = true;
  return 0;
}
