/** qemu-io's output lines: the statistics line, its times and the hexdump. */
import { cFixed, cvtstr } from '../format.js';

export function now(): number {
  return performance.now();
}

/** qemu-io's timestr for the statistics line. */
export function timestr(ms: number, verbose: boolean): string {
  const totalUsec = Math.round(ms * 1000);
  const sec = Math.floor(totalUsec / 1e6);
  const usec = totalUsec % 1e6;
  const hund = Math.floor((usec / 1e6) * 100);
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (verbose || h > 0) {
    return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(hund).padStart(2, '0')}`;
  }
  return `${String(m * 60 + s).padStart(2, '0')}.${String(hund).padStart(2, '0')} sec`;
}

export function report(op: string, ms: number, offset: number, count: number, total: number, cnt: number, cflag: boolean): string {
  const secs = Math.max(ms, 0.001) / 1000;
  if (!cflag) {
    return (
      `${op} ${total}/${count} bytes at offset ${offset}\n` +
      `${cvtstr(total)}, ${cnt} ops; ${timestr(ms, false)} (${cvtstr(total / secs)}/sec and ${cFixed(cnt / secs, 4)} ops/sec)\n`
    );
  }
  return `${total},${cnt},${timestr(ms, true)},${cFixed(total / secs, 3)},${cFixed(cnt / secs, 3)}\n`;
}

export function hexdump(buf: Uint8Array, offset: number): string {
  let out = '';
  for (let i = 0; i < buf.length; i += 16) {
    const n = Math.min(16, buf.length - i);
    let hex = '';
    let asc = '';
    for (let j = 0; j < n; j++) {
      const b = buf[i + j]!;
      hex += b.toString(16).padStart(2, '0') + ' ';
      const isAlnum = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
      asc += isAlnum ? String.fromCharCode(b) : '.';
    }
    out += `${(offset + i).toString(16).padStart(8, '0')}:  ${hex} ${asc}\n`;
  }
  return out;
}

export async function timed(fn: () => Promise<void>): Promise<{ ms: number; err?: unknown }> {
  const t = now();
  try {
    await fn();
    return { ms: now() - t };
  } catch (e) {
    return { ms: now() - t, err: e };
  }
}
