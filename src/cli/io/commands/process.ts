/** qemu-io's abort and sigraise: they act on this Node process. */
import type { IoSession } from '../session.js';
import { EINVAL } from '../types.js';

/** Simulates a crash, as qemu-io's abort does. */
export async function abortCmd(): Promise<number> {
  process.abort();
}

/** Raises a signal in this process (qemu-io's sigraise). */
export async function sigraiseCmd(s: IoSession, args: string[]): Promise<number> {
  const sig = s.num(args[0]!);
  if (sig === null) return EINVAL;
  // Linux's NSIG.
  if (sig > 65) {
    s.io.stdout(`signal argument '${args[0]}' is too large to be a valid signal\n`);
    return EINVAL;
  }
  // As qemu-io: what stdout holds is written before the signal (abort, like abort(), loses it).
  s.io.flush?.();
  try {
    process.kill(process.pid, sig);
  } catch {
    // raise() with an unknown signal fails quietly in qemu-io too.
  }
  return 0;
}
