/** Shared names of the qemu-io interpreter: its command record and constants. */
import type { IoSession } from './session.js';

export const PROG = 'diskworker io';
/** QEMU's BDRV_REQUEST_MAX_BYTES. */
export const REQUEST_MAX = 2147483136;

export interface OpenOpts {
  readOnly: boolean;
  format?: string;
  imageOpts: boolean;
  forceShare: boolean;
  cache?: string;
  discard?: string;
  extra?: Record<string, string>;
  copyOnRead?: boolean;
  /** -s: writes go to a temporary overlay over the image, dropped at close (QEMU's BDRV_O_SNAPSHOT). */
  snapshot?: boolean;
}

/** Thrown by a command to fail with a negative errno-like result. */
export const EINVAL = -22;

export interface Cmd {
  name: string;
  alt?: string;
  /** Argument synopsis; undefined prints "name -- oneline" in the command list. */
  args?: string;
  oneline: string;
  argmin: number;
  argmax: number;
  /** Runs without an open image. */
  noFile?: boolean;
  /** Needs write permission (qemu-io takes BLK_PERM_WRITE first). */
  write?: boolean;
  fn: (s: IoSession, args: string[]) => Promise<number>;
}
