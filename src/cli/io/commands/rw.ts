/** qemu-io's read, readv, write, writev and the aio_ commands. */
import { ReqFlag } from '../../../core/driver.js';
import { BlockError } from '../../../core/errors.js';
import { strerror } from '../../common.js';
import { hexdump, report, timed } from '../format.js';
import type { IoSession } from '../session.js';
import { EINVAL, REQUEST_MAX } from '../types.js';

export async function readCmd(s: IoSession, args: string[]): Promise<number> {
  const c = s.cmd('read');
  const r = s.parse(c, args, 'abCcqpP:l:s:v');
  if (!r) return EINVAL;
  let cflag = false, qflag = false, vflag = false, bflag = false, Pflag = false, sflag = false, lflag = false;
  let pattern = 0, patOff = 0, patCount = 0;
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    switch (o.opt) {
      case 'b': bflag = true; break;
      case 'C': cflag = true; break;
      case 'q': qflag = true; break;
      case 'v': vflag = true; break;
      case 'P': {
        Pflag = true;
        const p = s.pattern(o.arg!);
        if (p === null) return EINVAL;
        pattern = p;
        break;
      }
      case 's': {
        sflag = true;
        const v = s.num(o.arg!);
        if (v === null) return EINVAL;
        patOff = v;
        break;
      }
      case 'l': {
        lflag = true;
        const v = s.num(o.arg!);
        if (v === null) return EINVAL;
        patCount = v;
        break;
      }
      default: break;
    }
  }
  if (r.operands.length !== 2) return s.usage(c);
  if (!Pflag && (lflag || sflag)) return s.usage(c);
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const count = s.num(r.operands[1]!);
  if (count === null) return EINVAL;
  if (count > REQUEST_MAX) {
    s.out(`length cannot exceed ${REQUEST_MAX}, given ${r.operands[1]}\n`);
    return EINVAL;
  }
  if (!lflag) patCount = count - patOff;
  if (patCount < 0 || patCount + patOff > count) {
    s.out('pattern verification range exceeds end of read data\n');
    return EINVAL;
  }
  if (bflag) {
    if (offset % 512) { s.out(`${offset} is not a sector-aligned value for 'offset'\n`); return EINVAL; }
    if (count % 512) { s.out(`${count} is not a sector-aligned value for 'count'\n`); return EINVAL; }
  }
  let buf: Uint8Array = new Uint8Array(0);
  const t = await timed(async () => {
    if (bflag) {
      // The VM state area (qemu-io's bdrv_load_vmstate), not the guest's disk.
      const disk = s.backend;
      if (!disk.loadVmState) throw new BlockError('ENOTSUP', 'No VM state here');
      buf = new Uint8Array(count);
      await disk.loadVmState(offset, buf);
    } else buf = await readFilled(s, offset, count);
  });
  if (t.err) {
    s.out(`read failed: ${strerror(t.err)}\n`);
    return -5;
  }
  let ret = 0;
  if (Pflag) {
    for (let i = patOff; i < patOff + patCount; i++) {
      if (buf[i] !== pattern) {
        s.out(`Pattern verification failed at offset ${offset + patOff}, ${patCount} bytes\n`);
        ret = EINVAL;
        break;
      }
    }
  }
  if (qflag) return ret;
  if (vflag) s.out(hexdump(buf, offset));
  s.out(report('read', t.ms, offset, count, count, 1, cflag));
  return ret;
}

/** Parses the lengths of a vectored request; null on error (printed). */
export function iovLengths(s: IoSession, args: string[]): number | null {
  let total = 0;
  for (const a of args) {
    const len = s.num(a);
    if (len === null) return null;
    if (len > REQUEST_MAX) {
      s.out(`Argument '${a}' exceeds maximum size ${REQUEST_MAX}\n`);
      return null;
    }
    if (total > REQUEST_MAX - len) {
      s.out(`The total number of bytes exceed the maximum size ${REQUEST_MAX}\n`);
      return null;
    }
    total += len;
  }
  return total;
}

export async function readvCmd(s: IoSession, args: string[], name = 'readv'): Promise<number> {
  const c = s.cmd(name);
  const r = s.parse(c, args, name === 'aio_read' ? 'CiP:qv' : 'CP:qv');
  if (!r) return EINVAL;
  let cflag = false, qflag = false, vflag = false, Pflag = false, pattern = 0;
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    if (o.opt === 'C') cflag = true;
    else if (o.opt === 'q') qflag = true;
    else if (o.opt === 'v') vflag = true;
    else if (o.opt === 'P') {
      Pflag = true;
      const p = s.pattern(o.arg!);
      if (p === null) return EINVAL;
      pattern = p;
    }
  }
  if (r.operands.length < 2) return s.usage(c);
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const count = iovLengths(s, r.operands.slice(1));
  if (count === null) return EINVAL;
  let buf: Uint8Array = new Uint8Array(0);
  const t = await timed(async () => {
    buf = await readFilled(s, offset, count);
  });
  if (t.err) {
    s.out(`${name === 'aio_read' ? 'aio_read' : 'readv'} failed: ${strerror(t.err)}\n`);
    return -5;
  }
  let ret = 0;
  if (Pflag && buf.some((b) => b !== pattern)) {
    s.out(`Pattern verification failed at offset ${offset}, ${count} bytes\n`);
    ret = EINVAL;
  }
  if (qflag) return ret;
  if (vflag) s.out(hexdump(buf, offset));
  s.out(report('read', t.ms, offset, count, count, 1, cflag));
  return ret;
}

export async function writeCmd(s: IoSession, args: string[]): Promise<number> {
  const c = s.cmd('write');
  const r = s.parse(c, args, 'bcCfnpP:quzs:');
  if (!r) return EINVAL;
  let bflag = false, cflag = false, Cflag = false, qflag = false, zflag = false, Pflag = false, sflag = false;
  let fua = false, unmap = false, noFallback = false;
  let pattern = 0xcd;
  let source = '';
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    switch (o.opt) {
      case 'b': bflag = true; break;
      case 'c': cflag = true; break;
      case 'C': Cflag = true; break;
      case 'f': fua = true; break;
      case 'n': noFallback = true; break;
      case 'q': qflag = true; break;
      case 'u': unmap = true; break;
      case 'z': zflag = true; break;
      case 's': sflag = true; source = o.arg!; break;
      case 'P': {
        Pflag = true;
        const p = s.pattern(o.arg!);
        if (p === null) return EINVAL;
        pattern = p;
        break;
      }
      default: break;
    }
  }
  if (r.operands.length !== 2) return s.usage(c);
  // qemu-io's checks, in its order.
  if (bflag && zflag) {
    s.out('-b and -z cannot be specified at the same time\n');
    return EINVAL;
  }
  if (fua && (bflag || cflag)) {
    s.out('-f and -b or -c cannot be specified at the same time\n');
    return EINVAL;
  }
  if (noFallback && !zflag) {
    s.out('-n requires -z to be specified\n');
    return EINVAL;
  }
  if (unmap && !zflag) {
    s.out('-u requires -z to be specified\n');
    return EINVAL;
  }
  if (Number(zflag) + Number(Pflag) + Number(sflag) > 1) {
    s.out('Only one of -z, -P, and -s can be specified at the same time\n');
    return EINVAL;
  }
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const count = s.num(r.operands[1]!);
  if (count === null) return EINVAL;
  if (count > REQUEST_MAX && !zflag) {
    s.out(`length cannot exceed ${REQUEST_MAX}, given ${r.operands[1]}\n`);
    return EINVAL;
  }
  if (bflag || cflag) {
    if (offset % 512) { s.out(`${offset} is not a sector-aligned value for 'offset'\n`); return EINVAL; }
    if (count % 512) { s.out(`${count} is not a sector-aligned value for 'count'\n`); return EINVAL; }
  }
  let buf: Uint8Array | null = null;
  if (!zflag) {
    if (sflag) {
      const src = await s.loadSource(source, count);
      if (typeof src === 'number') return src;
      buf = src;
    } else {
      buf = new Uint8Array(count).fill(pattern);
    }
  }
  const bb = s.backend;
  const t = await timed(async () => {
    if (bflag) {
      // The VM state area (qemu-io's bdrv_save_vmstate).
      if (!bb.saveVmState) throw new BlockError('ENOTSUP', 'No VM state here');
      await bb.saveVmState(offset, buf!);
    } else if (zflag) await bb.writeZeroes(offset, count, (unmap ? ReqFlag.MAY_UNMAP : 0) | (fua ? ReqFlag.FUA : 0) | (noFallback ? ReqFlag.NO_FALLBACK : 0));
    else if (cflag) {
      if (!bb.supportsCompressed()) {
        throw new BlockError('ENOTSUP', 'Compressed writes are not supported by this format');
      }
      await bb.write(offset, buf!, ReqFlag.COMPRESSED);
    }
    else await bb.write(offset, buf!, fua ? ReqFlag.FUA : 0);
  });
  if (t.err) {
    s.out(`write failed: ${strerror(t.err)}\n`);
    return -5;
  }
  if (qflag) return 0;
  s.out(report('wrote', t.ms, offset, count, count, 1, Cflag));
  return 0;
}

export async function writevCmd(s: IoSession, args: string[], name = 'writev'): Promise<number> {
  const c = s.cmd(name);
  const r = s.parse(c, args, name === 'aio_write' ? 'CfiqP:uz' : 'CfqP:');
  if (!r) return EINVAL;
  let cflag = false, qflag = false, fua = false, zflag = false, unmap = false, Pflag = false, pattern = 0xcd;
  for (const o of r.opts) {
    if (o.kind !== 'opt') continue;
    if (o.opt === 'C') cflag = true;
    else if (o.opt === 'q') qflag = true;
    else if (o.opt === 'f') fua = true;
    else if (o.opt === 'z') zflag = true;
    else if (o.opt === 'u') unmap = true;
    else if (o.opt === 'P') {
      Pflag = true;
      const p = s.pattern(o.arg!);
      if (p === null) return EINVAL;
      pattern = p;
    }
  }
  if (r.operands.length < 2) return s.usage(c);
  if (zflag && Pflag) {
    s.out('-z and -P cannot be specified at the same time\n');
    return EINVAL;
  }
  if (unmap && !zflag) {
    s.out('-u requires -z to be specified\n');
    return EINVAL;
  }
  if (zflag && r.operands.length !== 2) {
    s.out('-z supports only a single length parameter\n');
    return EINVAL;
  }
  const offset = s.num(r.operands[0]!);
  if (offset === null) return EINVAL;
  const count = iovLengths(s, r.operands.slice(1));
  if (count === null) return EINVAL;
  const bb = s.backend;
  const t = await timed(async () => {
    if (zflag) await bb.writeZeroes(offset, count, (unmap ? ReqFlag.MAY_UNMAP : 0) | (fua ? ReqFlag.FUA : 0));
    else await bb.write(offset, new Uint8Array(count).fill(pattern), fua ? ReqFlag.FUA : 0);
  });
  if (t.err) {
    s.out(`${name === 'aio_write' ? 'aio_write' : 'writev'} failed: ${strerror(t.err)}\n`);
    return -5;
  }
  if (qflag) return 0;
  s.out(report('wrote', t.ms, offset, count, count, 1, cflag));
  return 0;
}

/**
 * Reads into a buffer filled with 0xab first, as qemu-io's buffers are: what
 * a driver leaves untouched (null-co without read-zeroes) shows as 0xab.
 */
export async function readFilled(s: IoSession, offset: number, count: number): Promise<Uint8Array> {
  s.backend.checkRead?.(offset, count);
  const buf = new Uint8Array(count).fill(0xab);
  await s.backend.pread(offset, buf);
  return buf;
}

export async function aioReadCmd(s: IoSession, args: string[]): Promise<number> {
  return s.startAio(() => readvCmd(s, args, 'aio_read'));
}
export async function aioWriteCmd(s: IoSession, args: string[]): Promise<number> {
  return s.startAio(() => writevCmd(s, args, 'aio_write'));
}
export async function aioFlushCmd(s: IoSession): Promise<number> {
  await s.drainAio();
  return 0;
}
