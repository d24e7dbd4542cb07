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
  try {
    process.kill(process.pid, sig);
  } catch {
    // raise() with an unknown signal fails quietly in qemu-io too.
  }
  return 0;
}
